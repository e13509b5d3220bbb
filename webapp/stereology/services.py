"""Writes of the stereology app: studies (managers), marks and counted pairs (reviewers and
experts). Each function checks the caller's role itself and raises the domain errors of
``webapp.core.errors`` (400 bad values, 403 wrong role, 409 closed campaign).

A mark is matched to a detection when it is made, as ``pipeline.stereology.match_marked_point``
decides: the segment under the point in the layer's label image (within ``tolerance_um`` of
it), or, when the store cannot be read, the detection whose bounding box holds the point with
the nearest centroid. A segment that the campaign's filter leaves out counts as not detected.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

import numpy as np
import pandas as pd
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from pipeline.errors import PipelineError
from pipeline.stereology import (
    DEFAULT_H_UM,
    DetectionBoxes,
    DisectorPlan,
    PointMatch,
    mask_section_counts,
    match_marked_point,
    max_h_sections,
    plan_disector,
)
from webapp.core.errors import Conflict, InvalidRequest, NotAllowed
from webapp.datasets.models import Layer, LayerKind
from webapp.proofreading.models import CampaignState, ProofreadingCampaign, Role
from webapp.proofreading.services import roles_of
from webapp.stereology.models import DisectorMark, DisectorStudy, PairCount
from webapp.stereology.selectors import (
    LayerGeometry,
    layer_geometry,
    open_layer_array,
    population,
)

MAX_PAIRS = 500
MAX_TOLERANCE_UM = 1000.0
MARK_ROLES = (Role.REVIEWER, Role.EXPERT)


def _require(campaign: ProofreadingCampaign, user: User, roles: tuple[str, ...], why: str) -> None:
    if user.is_superuser:
        return
    if not roles_of(campaign, user) & set(roles):
        raise NotAllowed(why)


def _require_open(campaign: ProofreadingCampaign) -> None:
    if campaign.state != CampaignState.OPEN:
        raise Conflict("The campaign is closed; a manager can reopen it.")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{name} must be a number.")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidRequest(f"{name} must be a finite number.")
    return number


# --- studies ------------------------------------------------------------------------------------


def _mask_counts(mask_layer: Layer, campaign: ProofreadingCampaign, geometry: LayerGeometry) -> Any:
    if mask_layer.dataset_id != campaign.layer.dataset_id:
        raise InvalidRequest("The mask must be a layer of the campaign's dataset.")
    if mask_layer.kind != LayerKind.SEGMENTATION:
        raise InvalidRequest(
            f"The mask must be a segmentation (label) layer, non-zero inside; "
            f"{mask_layer.name!r} is of kind {mask_layer.kind!r}."
        )
    mask_geometry = layer_geometry(mask_layer)
    if mask_geometry.shape != geometry.shape:
        raise InvalidRequest(
            f"The mask's shape {mask_geometry.shape} is not the layer's {geometry.shape} (z, y, x)."
        )
    array = open_layer_array(mask_layer, mask_geometry)
    if array is None:
        raise InvalidRequest(f"The mask layer {mask_layer.name!r} cannot be read.")
    return mask_section_counts(array, 0)


def study_create(
    user: User,
    campaign: ProofreadingCampaign,
    *,
    name: str,
    n_pairs: int,
    h_um: float = DEFAULT_H_UM,
    seed: int | None = None,
    mask_layer: Layer | None = None,
    tolerance_um: float = 0.0,
) -> DisectorStudy:
    """Place ``n_pairs`` disectors h apart along z through the layer (or the mask's region) by
    systematic uniform random sampling (managers). 400 when h or K do not fit: every pair's
    reference and look-up section must lie inside the volume (or the mask's z extent), since a
    look-up section outside shows nothing and turns every object of the reference into a count
    (an estimate of N many times too large when h is near the depth)."""
    _require(
        campaign, user, (Role.MANAGER,), "Only the campaign's managers create disector studies."
    )
    _require_open(campaign)
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("name must have 1 to 200 characters.")
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or not 1 <= n_pairs <= MAX_PAIRS:
        raise InvalidRequest(f"n_pairs (K) must be a whole number from 1 to {MAX_PAIRS}.")
    h = _number("h_um", h_um)
    if h <= 0:
        raise InvalidRequest("h_um (the disector height) must be positive.")
    tolerance = _number("tolerance_um", tolerance_um)
    if not 0 <= tolerance <= MAX_TOLERANCE_UM:
        raise InvalidRequest(f"tolerance_um must be between 0 and {MAX_TOLERANCE_UM:g}.")
    if seed is None:
        seed = secrets.randbelow(2**31)
    elif not 0 <= seed < 2**63:
        raise InvalidRequest("seed must be between 0 and 2^63 - 1.")
    geometry = layer_geometry(campaign.layer)
    counts = None if mask_layer is None else _mask_counts(mask_layer, campaign, geometry)
    section_um = geometry.voxel_size_nm[0] / 1000
    h_sections = round(h / section_um)
    if counts is not None:
        inside = np.flatnonzero(counts)
        length = int(inside[-1] - inside[0] + 1) if len(inside) else 0
        where = "the mask's region"
    else:
        length = geometry.shape[0]
        where = "the volume"
    if n_pairs > length:
        raise InvalidRequest(
            f"{n_pairs} pairs do not fit {where}'s {length} sections along z; choose K <= {length}."
        )
    largest = max_h_sections(length, n_pairs)
    if h_sections > largest:
        fits = (
            f"the largest h that fits {n_pairs} pairs is {largest * section_um:g} um"
            if largest >= 1
            else f"no h fits {n_pairs} pairs: choose fewer pairs"
        )
        raise InvalidRequest(
            f"h = {h:g} um ({h_sections} sections of {section_um:g} um) does not fit {where}, "
            f"{length * section_um:g} um deep ({length} sections) along z: each pair's reference "
            f"and look-up section must both lie inside it, and {fits}."
        )
    try:
        plan = plan_disector(
            geometry.shape,
            geometry.voxel_size_nm,
            n_pairs=n_pairs,
            h_um=h,
            axis=0,
            seed=seed,
            section_counts=counts,
            lookup_inside=True,
        )
    except PipelineError as exc:
        raise InvalidRequest(str(exc)) from exc
    return DisectorStudy.objects.create(
        campaign=campaign,
        name=name,
        mask_layer=mask_layer,
        n_pairs=n_pairs,
        h_um_requested=h,
        seed=seed,
        tolerance_um=tolerance,
        plan=plan.to_dict(),
        created_by=user,
    )


def study_delete(study: DisectorStudy, user: User) -> None:
    _require(study.campaign, user, (Role.MANAGER,), "Only the campaign's managers delete studies.")
    study.delete()


# --- marks --------------------------------------------------------------------------------------


def _pair_of(study: DisectorStudy, pair: Any) -> dict[str, Any]:
    if isinstance(pair, bool) or not isinstance(pair, int) or not 0 <= pair < len(study.pairs):
        raise InvalidRequest(f"pair must be a whole number from 0 to {len(study.pairs) - 1}.")
    return study.pairs[pair]


def match_point(study: DisectorStudy, point: tuple[float, float, float]) -> PointMatch:
    """The detection the marked object is (``pipeline.stereology.match_marked_point``)."""
    layer = study.campaign.layer
    geometry = layer_geometry(layer)
    labels = open_layer_array(layer, geometry)
    if labels is not None:
        return match_marked_point(
            point, geometry.voxel_size_nm, labels=labels, tolerance_um=study.tolerance_um
        )
    # No label image: the detections whose (tolerance-grown) box holds the point.
    grow = [study.tolerance_um * 1000 / v for v in geometry.voxel_size_nm]
    z, y, x = point
    near = population(study.campaign).filter(
        bbox_z0__lte=z + 0.5 + grow[0],
        bbox_z1__gt=z + 0.5 - grow[0],
        bbox_y0__lte=y + 0.5 + grow[1],
        bbox_y1__gt=y + 0.5 - grow[1],
        bbox_x0__lte=x + 0.5 + grow[2],
        bbox_x1__gt=x + 0.5 - grow[2],
    )
    columns = ["segment_id", "centroid_z", "centroid_y", "centroid_x"]
    columns += ["bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1"]
    frame = pd.DataFrame(list(near.values_list(*columns)[:1000]), columns=columns)
    boxes = DetectionBoxes.from_frame(frame, id_column="segment_id")
    return match_marked_point(
        point, geometry.voxel_size_nm, detections=boxes, tolerance_um=study.tolerance_um
    )


def mark_add(study: DisectorStudy, user: User, pair: Any, z: Any, y: Any, x: Any) -> DisectorMark:
    """A point on an object in pair ``pair``'s reference section that its look-up section does
    not show (reviewers and experts); counts the pair for the caller."""
    campaign = study.campaign
    _require(campaign, user, MARK_ROLES, "Only the campaign's reviewers and experts mark objects.")
    _require_open(campaign)
    spec = _pair_of(study, pair)
    point = (_number("z", z), _number("y", y), _number("x", x))
    shape = tuple(DisectorPlan.from_dict(study.plan).shape)
    for name, value, extent in zip("zyx", point, shape, strict=True):
        if not -0.5 <= value < extent - 0.5:
            raise InvalidRequest(f"{name} = {value:g} lies outside the layer (0 to {extent - 1}).")
    if abs(point[0] - spec["reference"]) >= 0.5:
        raise InvalidRequest(
            f"Marks go on the pair's reference section z = {spec['reference']}, not z = "
            f"{point[0]:g}: mark objects seen there that the look-up section does not show."
        )
    match = match_point(study, point)
    segment = match.detection_id
    how: str = match.how
    detection = None
    if segment is not None:
        detection = population(campaign).filter(segment_id=segment).first()
        if detection is None:
            how = "filtered"
    with transaction.atomic():
        PairCount.objects.get_or_create(study=study, pair=pair, reviewer=user)
        return DisectorMark.objects.create(
            study=study,
            pair=pair,
            reviewer=user,
            z=point[0],
            y=point[1],
            x=point[2],
            detection=detection,
            segment_id=segment,
            match=how,
            distance_um=match.distance_um,
        )


def mark_delete(mark: DisectorMark, user: User) -> None:
    """Remove one's own mark (a manager may remove anyone's); the pair stays counted."""
    if mark.reviewer_id != user.id:
        _require(
            mark.study.campaign,
            user,
            (Role.MANAGER,),
            "Only whoever made a mark, or a manager, removes it.",
        )
    _require_open(mark.study.campaign)
    mark.delete()


def pair_counted_set(study: DisectorStudy, user: User, pair: Any, counted: bool) -> bool:
    """Record that the caller has counted pair ``pair`` (or no longer has: only without marks
    in it). Idempotent; returns ``counted``."""
    campaign = study.campaign
    _require(campaign, user, MARK_ROLES, "Only the campaign's reviewers and experts count pairs.")
    _require_open(campaign)
    _pair_of(study, pair)
    if counted:
        try:
            PairCount.objects.get_or_create(study=study, pair=pair, reviewer=user)
        except IntegrityError:  # a concurrent request made it: counted either way
            pass
        return True
    if DisectorMark.objects.filter(study=study, pair=pair, reviewer=user).exists():
        raise Conflict("This pair has your marks: remove them before un-counting it.")
    PairCount.objects.filter(study=study, pair=pair, reviewer=user).delete()
    return False
