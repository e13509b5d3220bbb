"""Writes of the annotation app: campaigns, members, boxes, hand-out, saves, review, audit.

Every function checks the caller's role itself and raises the domain errors of
``webapp.core.errors`` (400 bad values, 403 wrong role, 404 unknown object, 409 state forbids,
413 too large), and writes an ``AuditEntry`` in the same transaction.

Concurrency ("two annotators never get the same assignment"): a box's N slots are N assignment
rows made with the box; taking one is an UPDATE of a free row (annotator null) that holds its
row lock until commit, and a partial unique index allows one assignment per box and annotator.

- PostgreSQL: ``next_task`` picks its candidate with ``SELECT ... FOR UPDATE SKIP LOCKED``, so
  annotators asking at once get different slots and never wait on each other.
- SQLite has no row locks: each hand-out begins with a write to the campaign row, which takes
  SQLite's single write lock at once, so hand-outs run one after another.

Saves are optimistic: a save names the version it was based on; the assignment's row is locked
and a save based on an older version is refused with 409 and the current version (the page then
offers to reload or to apply its unsaved changes on top), so nothing is overwritten silently.

Painted labels (``labels_save``) follow the same rule: their chunks are checked and written as
blobs before the lock (so the lock is held for milliseconds), and the version is recorded under it;
a save that lost the race leaves only unreferenced blobs.

Time on task is measured here, from activity the server sees (the hand-out, saves, and the
page's reports of view changes): the gap since the assignment's previous activity counts when it
is at most ``ANNOTATION_IDLE_SECONDS`` (idle gaps count nothing).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastremap
import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from pipeline import task_boxes
from pipeline.errors import PipelineError
from pipeline.label_store import (
    ChunkIndex,
    LabelGeometry,
    PayloadEncoding,
    PayloadTooLargeError,
    chunk_from_payload,
    chunks_write,
    labels_read,
)
from pipeline.label_versions import (
    LabelVersion,
    chunk_key_parse,
    version_next,
    version_restore,
)
from pipeline.task_boxes import TaskBox as BoxSpec
from pipeline.units import nanometres_per_unit
from webapp.annotation import selectors
from webapp.annotation.label_gc import labels_gc_soon
from webapp.annotation.models import (
    OBJECT_SOURCES,
    PROPOSAL_SOURCES,
    Annotation,
    AnnotationCampaign,
    AnnotationKind,
    Assignment,
    AssignmentState,
    AuditAction,
    AuditEntry,
    BoxSource,
    CampaignMember,
    CampaignState,
    Revision,
    RevisionKind,
    Role,
    Skip,
    TaskBox,
)
from webapp.annotation.selectors import (
    label_blobs,
    label_geometry,
    label_version_at,
    labels_at,
    labels_provenance_at,
)
from webapp.core.errors import Conflict, InvalidRequest, NotAllowed, NotFound, TooLarge
from webapp.datasets.models import Dataset, Layer, LayerKind

MAX_REDUNDANCY = 10
MAX_CLASSES = 50
MAX_OPS_PER_SAVE = 5_000
MAX_ANNOTATIONS = 20_000  # current annotations of one assignment
MAX_POLYLINE_POINTS = 1_000
MAX_REASON = 500
MAX_COMMENT = 5_000
# Chunks per labels save: Django refuses a multipart body of more files
# (DATA_UPLOAD_MAX_NUMBER_FILES); a page that changed more saves in several requests.
MAX_LABEL_CHUNKS_PER_SAVE = 100
EDITABLE = (AssignmentState.IN_PROGRESS, AssignmentState.REJECTED)
COORD_COUNTS = {
    AnnotationKind.POINT: (1, 1),
    AnnotationKind.LINE: (2, 2),
    AnnotationKind.BOX: (2, 2),
    AnnotationKind.ELLIPSOID: (2, 2),
    AnnotationKind.POLYLINE: (2, MAX_POLYLINE_POINTS),
}
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_CLASS_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def idle_seconds() -> float:
    return float(getattr(settings, "ANNOTATION_IDLE_SECONDS", 120))


# --- shared checks ------------------------------------------------------------------------------


def _roles(campaign: AnnotationCampaign, user: User) -> set[str]:
    return set(
        CampaignMember.objects.filter(campaign=campaign, user=user).values_list("role", flat=True)
    )


def _require(campaign: AnnotationCampaign, user: User, action: str, message: str) -> None:
    if not selectors.may(campaign, user, action):
        if not selectors.may(campaign, user, "view"):
            raise NotFound("No such campaign, or you may not see it.")
        raise NotAllowed(message)


def _require_manager(campaign: AnnotationCampaign, user: User) -> None:
    _require(campaign, user, "change", "Only the campaign's managers may do this.")


def _require_open(campaign: AnnotationCampaign) -> None:
    if campaign.state != CampaignState.OPEN:
        raise Conflict("The campaign is closed; a manager can reopen it.")


def _serialise_on_sqlite(campaign_id: int) -> None:
    """SQLite: take the database's write lock now (see the module docstring)."""
    if connection.vendor == "sqlite":
        AnnotationCampaign.objects.filter(id=campaign_id).update(state=F("state"))


def _audit(
    campaign: AnnotationCampaign | int,
    actor: User | None,
    action: str,
    *,
    box: TaskBox | None = None,
    assignment: Assignment | None = None,
    detail: dict[str, Any] | None = None,
    **more: Any,
) -> None:
    campaign_id = campaign if isinstance(campaign, int) else campaign.pk
    AuditEntry.objects.create(
        campaign_id=campaign_id,
        actor=actor,
        action=action,
        box=box if box is not None else (assignment.box if assignment is not None else None),
        assignment=assignment,
        detail={**(detail or {}), **more},
    )


# --- campaigns ----------------------------------------------------------------------------------


def label_schema_parse(value: Any) -> list[dict[str, str]]:
    """A label schema: 1-50 classes, each ``name`` (a-z 0-9 _ -), ``label``, ``colour``
    (#rrggbb) and ``key`` (one character, not a key the task page uses itself)."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CLASSES:
        raise InvalidRequest(f"label_schema must be a list of 1-{MAX_CLASSES} classes.")
    reserved = set(getattr(settings, "ANNOTATION_RESERVED_KEYS", "nsfu"))
    out: list[dict[str, str]] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise InvalidRequest(f"label_schema[{i}] must be an object.")
        name = str(entry.get("name", ""))
        if not _CLASS_NAME.match(name):
            raise InvalidRequest(
                f"label_schema[{i}].name must be 1-40 characters of a-z, 0-9, _ and -, "
                f"starting with a letter or digit; got {name[:50]!r}."
            )
        label = str(entry.get("label") or name)[:100]
        colour = str(entry.get("colour", ""))
        if not _COLOUR.match(colour):
            raise InvalidRequest(f"label_schema[{i}].colour must be #rrggbb, got {colour[:20]!r}.")
        key = str(entry.get("key", ""))
        if len(key) != 1 or not key.isprintable() or key.isspace():
            raise InvalidRequest(f"label_schema[{i}].key must be one character.")
        if key.lower() in reserved:
            raise InvalidRequest(
                f"label_schema[{i}].key {key!r} is taken by the task page "
                f"({', '.join(sorted(reserved))})."
            )
        out.append({"name": name, "label": label, "colour": colour.lower(), "key": key.lower()})
    for field in ("name", "key"):
        values = [c[field] for c in out]
        if len(set(values)) != len(values):
            raise InvalidRequest(f"label_schema: two classes have the same {field}.")
    return out


def box_size_parse(value: Any) -> list[float]:
    if isinstance(value, int | float):
        value = [value] * 3
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(v, int | float) and math.isfinite(v) and 0 < v <= 1e6 for v in value)
    ):
        raise InvalidRequest("box_size_um must be one positive number or three (z y x), in um.")
    return [float(v) for v in value]


def layer_extent(layer: Layer) -> tuple[list[int], list[float]]:
    """Full-resolution shape (z y x; depth 1 for a 2D image) and voxel size (um), from the row."""
    try:
        sizes = dict(zip(layer.axes, layer.shape, strict=True))
        shape = [int(sizes.get("z", 1)), int(sizes["y"]), int(sizes["x"])]
        per_unit_um = nanometres_per_unit(layer.unit) / 1000.0
        voxel = [float(v) * per_unit_um for v in list(layer.voxel_size)]
    except (KeyError, TypeError, ValueError, PipelineError) as exc:
        raise InvalidRequest(f"Layer {layer.name!r} has no usable shape and voxel size.") from exc
    if len(voxel) == 2:
        voxel = [voxel[0], *voxel]  # a 2D image: a depth of one voxel as thick as it is wide
    voxel = voxel[-3:]
    if len(voxel) != 3 or not all(math.isfinite(v) and v > 0 for v in voxel):
        raise InvalidRequest(f"Layer {layer.name!r} has no positive voxel size.")
    return shape, voxel


def layer_geometry(layer: Layer) -> dict[str, list[float]]:
    """Full-resolution shape (z y x; depth 1 for a 2D image), voxel size and origin in um."""
    shape, voxel = layer_extent(layer)
    origin = [0.0, 0.0, 0.0]
    try:
        from pipeline.ome_zarr_io import open_spatial_level

        level = open_spatial_level(Path(layer.dataset.root) / layer.path, 0, what="image")
        translation = [t / 1000.0 for t in level.translation_nm]
        origin = ([0.0] * (3 - len(translation)) + translation)[-3:]
    except (PipelineError, OSError, ValueError, KeyError):
        pass  # an unreadable store keeps the origin at 0; the shape came from the row
    return {"shape": [float(n) for n in shape], "voxel_size_um": voxel, "origin_um": origin}


def campaign_shape(campaign: AnnotationCampaign) -> tuple[int, int, int]:
    shape = campaign.geometry["shape"]
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def box_voxels_of(campaign: AnnotationCampaign) -> tuple[int, int, int]:
    geometry = campaign.geometry
    voxel_nm = [v * 1000.0 for v in geometry["voxel_size_um"]]
    return task_boxes.box_size_voxels(campaign.box_size_um, voxel_nm, campaign_shape(campaign))


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    instructions: str = ""
    label_schema: Any = None
    box_size_um: Any = None
    redundancy: int = 1
    deadline: datetime | None = None
    match_tolerance_um: float = 3.0
    painted: bool = False


def campaign_create(
    actor: User, dataset: Dataset, image_layer: Layer, spec: CampaignSpec
) -> AnnotationCampaign:
    """A campaign over one image layer of ``dataset`` (its owner); the creator is its manager."""
    if not Dataset.objects.allows(actor, "change", dataset):
        if not Dataset.objects.allows(actor, "view", dataset):
            raise NotFound("No such dataset, or you may not see it.")
        raise NotAllowed("Only the dataset's owner may start annotation campaigns on it.")
    if image_layer.dataset_id != dataset.pk or image_layer.kind != LayerKind.IMAGE:
        raise InvalidRequest(f"{image_layer.name!r} is not an image layer of this dataset.")
    name = spec.name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidRequest("The name must be 1-200 characters.")
    if not 1 <= spec.redundancy <= MAX_REDUNDANCY:
        raise InvalidRequest(f"redundancy must be 1-{MAX_REDUNDANCY} annotators per box.")
    if not (math.isfinite(spec.match_tolerance_um) and 0 < spec.match_tolerance_um <= 1000):
        raise InvalidRequest("match_tolerance_um must be a distance of 0-1000 um.")
    schema = label_schema_parse(
        spec.label_schema if spec.label_schema is not None else _default_schema()
    )
    box_size = box_size_parse(spec.box_size_um if spec.box_size_um is not None else 50.0)
    geometry = layer_geometry(image_layer)
    with transaction.atomic():
        campaign = AnnotationCampaign.objects.create(
            dataset=dataset,
            image_layer=image_layer,
            name=name,
            instructions=spec.instructions,
            label_schema=schema,
            box_size_um=box_size,
            redundancy=spec.redundancy,
            deadline=spec.deadline,
            match_tolerance_um=spec.match_tolerance_um,
            painted=bool(spec.painted),
            geometry=geometry,
            created_by=actor,
        )
        CampaignMember.objects.create(
            campaign=campaign, user=actor, role=Role.MANAGER, added_by=actor
        )
        _audit(campaign, actor, AuditAction.CAMPAIGN_CREATE, name=name)
    return campaign


def _default_schema() -> list[dict[str, str]]:
    from webapp.annotation.models import default_label_schema

    return default_label_schema()


CHANGEABLE = (
    "name",
    "instructions",
    "deadline",
    "state",
    "match_tolerance_um",
    "label_schema",
    "painted",
)


def campaign_update(
    campaign: AnnotationCampaign, actor: User, changes: dict[str, Any]
) -> AnnotationCampaign:
    """Change settings (managers). Classes may be added or relabelled, never removed while
    annotations use them."""
    _require_manager(campaign, actor)
    unknown = set(changes) - set(CHANGEABLE)
    if unknown:
        raise InvalidRequest(f"These cannot be changed: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        row = AnnotationCampaign.objects.select_for_update().get(pk=campaign.pk)
        if "name" in changes:
            name = str(changes["name"]).strip()
            if not 1 <= len(name) <= 200:
                raise InvalidRequest("The name must be 1-200 characters.")
            row.name = name
        if "instructions" in changes:
            row.instructions = str(changes["instructions"])
        if "deadline" in changes:
            row.deadline = changes["deadline"]
        if "state" in changes:
            if changes["state"] not in CampaignState.values:
                raise InvalidRequest(f"state must be one of {', '.join(CampaignState.values)}.")
            row.state = changes["state"]
        if "match_tolerance_um" in changes:
            value = float(changes["match_tolerance_um"])
            if not (math.isfinite(value) and 0 < value <= 1000):
                raise InvalidRequest("match_tolerance_um must be a distance of 0-1000 um.")
            row.match_tolerance_um = value
        if "painted" in changes:
            row.painted = bool(changes["painted"])
        if "label_schema" in changes:
            schema = label_schema_parse(changes["label_schema"])
            used = set(
                Annotation.objects.filter(assignment__box__campaign=row)
                .values_list("label", flat=True)
                .distinct()
            )
            gone = used - {c["name"] for c in schema}
            if gone:
                raise Conflict(
                    f"Annotations use the class(es) {', '.join(sorted(gone))}: keep them."
                )
            row.label_schema = schema
        row.save()
        _audit(row, actor, AuditAction.CAMPAIGN_CHANGE, fields=sorted(changes))
    return row


def campaign_delete(campaign: AnnotationCampaign, actor: User) -> None:
    _require(campaign, actor, "delete", "Only the campaign's managers may delete it.")
    campaign.delete()


def member_add(
    campaign: AnnotationCampaign, actor: User, username: str, role: str
) -> CampaignMember:
    """Give ``username`` a role (managers). They must be able to see the dataset."""
    _require_manager(campaign, actor)
    if role not in Role.values:
        raise InvalidRequest(f"role must be one of {', '.join(Role.values)}.")
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise InvalidRequest(f"No user named {username[:150]!r}.")
    if not Dataset.objects.allows(user, "view", campaign.dataset):
        raise InvalidRequest(
            f"{user.username} cannot see dataset {campaign.dataset.slug!r}; share it with them "
            "(their team, or make it public) before adding them."
        )
    with transaction.atomic():
        if CampaignMember.objects.filter(campaign=campaign, user=user, role=role).exists():
            raise Conflict(f"{user.username} is already a {role} of this campaign.")
        member = CampaignMember.objects.create(
            campaign=campaign, user=user, role=role, added_by=actor
        )
        _audit(campaign, actor, AuditAction.MEMBER_ADD, user=user.username, role=role)
    return member


def member_remove(member: CampaignMember, actor: User) -> None:
    """Take a role away (managers); the campaign keeps at least one manager. Work already done
    stays."""
    campaign = member.campaign
    _require_manager(campaign, actor)
    with transaction.atomic():
        if (
            member.role == Role.MANAGER
            and CampaignMember.objects.filter(campaign=campaign, role=Role.MANAGER).count() <= 1
        ):
            raise Conflict("A campaign needs at least one manager.")
        _audit(
            campaign,
            actor,
            AuditAction.MEMBER_REMOVE,
            user=member.user.username,
            role=member.role,
        )
        member.delete()


# --- boxes --------------------------------------------------------------------------------------


def boxes_add(
    campaign: AnnotationCampaign,
    actor: User,
    specs: Sequence[BoxSpec],
    source: str,
    *,
    source_ref: str = "",
    priority: int = 0,
) -> list[TaskBox]:
    """Make boxes and their N assignments (managers). Names must be new in the campaign; every
    box must lie inside the volume and have a size."""
    _require_manager(campaign, actor)
    if not specs:
        raise InvalidRequest("No boxes to add.")
    if len(specs) > task_boxes.MAX_BOXES:
        raise TooLarge(f"At most {task_boxes.MAX_BOXES:,} boxes at a time.")
    shape = campaign_shape(campaign)
    for spec in specs:
        try:
            task_boxes.check_box(spec, shape)
        except PipelineError as exc:
            raise InvalidRequest(str(exc)) from exc
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InvalidRequest("Two of the new boxes have the same name.")
    with transaction.atomic():
        taken = set(
            TaskBox.objects.filter(campaign=campaign, name__in=names).values_list("name", flat=True)
        )
        if taken:
            raise Conflict(
                f"The campaign already has box(es) named {', '.join(sorted(taken)[:5])}."
            )
        rows = TaskBox.objects.bulk_create(
            [
                TaskBox(
                    campaign=campaign,
                    name=s.name,
                    z0=s.start[0],
                    y0=s.start[1],
                    x0=s.start[2],
                    depth=s.size[0],
                    height=s.size[1],
                    width=s.size[2],
                    priority=priority,
                    source=source,
                    source_ref=source_ref[:200],
                )
                for s in specs
            ],
            batch_size=1000,
        )
        if any(r.pk is None for r in rows):  # backends without RETURNING on bulk inserts
            rows = list(TaskBox.objects.filter(campaign=campaign, name__in=names))
        Assignment.objects.bulk_create(
            [Assignment(box=r, slot=k) for r in rows for k in range(campaign.redundancy)],
            batch_size=2000,
        )
        _audit(campaign, actor, AuditAction.BOXES_ADD, source=source, count=len(rows))
        transaction.on_commit(_analyse_after_bulk_insert)
    return rows


def _analyse_after_bulk_insert() -> None:
    """PostgreSQL: refresh the planner's statistics of the tables a hand-out reads. Right after
    a campaign's first boxes are made, autovacuum has not analysed them yet: the planner
    believed the free slots were one row and chose nested loops, and each ``next_task`` took
    3.8 s with 3,200 slots (11 ms after ANALYZE), so the first minutes of a campaign, when
    everyone starts at once, were the slowest (bench/annotate.py)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE annotation_taskbox, annotation_assignment")


def boxes_tile(
    campaign: AnnotationCampaign, actor: User, region: BoxSpec | None = None, priority: int = 0
) -> list[TaskBox]:
    """Cut the volume (or a region) into boxes of the campaign's box size."""
    _require_manager(campaign, actor)
    prefix = _free_prefix(campaign, "tile")
    specs = task_boxes.tile_boxes(campaign_shape(campaign), box_voxels_of(campaign), region)
    specs = [BoxSpec(f"{prefix}{s.name[len('tile') :]}", s.start, s.size) for s in specs]
    return boxes_add(campaign, actor, specs, BoxSource.TILE, priority=priority)


def boxes_sample(
    campaign: AnnotationCampaign,
    actor: User,
    count: int,
    seed: int,
    *,
    region: BoxSpec | None = None,
    mask_layer: Layer | None = None,
    min_inside: float = 0.5,
    priority: int = 0,
) -> list[TaskBox]:
    """``count`` boxes by stratified random sampling in the region, inside a mask (a label
    layer of the dataset: its nonzero voxels) when given."""
    _require_manager(campaign, actor)
    mask = None
    factor: tuple[float, ...] = (1.0, 1.0, 1.0)
    if mask_layer is not None:
        mask, factor = _coarse_mask(campaign, mask_layer)
    prefix = _free_prefix(campaign, "sample")
    specs = task_boxes.stratified_sample(
        campaign_shape(campaign),
        box_voxels_of(campaign),
        count,
        seed,
        region=region,
        mask=mask,
        mask_factor=factor,
        min_inside=min_inside,
    )
    specs = [BoxSpec(f"{prefix}{s.name[len('sample') :]}", s.start, s.size) for s in specs]
    ref = f"seed {seed}" + (f", mask {mask_layer.name}" if mask_layer is not None else "")
    return boxes_add(campaign, actor, specs, BoxSource.SAMPLE, source_ref=ref, priority=priority)


MASK_MAX_VOXELS = 1 << 24


def _coarse_mask(campaign: AnnotationCampaign, layer: Layer) -> tuple[Any, tuple[float, ...]]:
    """The finest level of a label layer with at most 16 Mi voxels, and its voxel factor."""
    import numpy as np

    from pipeline.ome_zarr_io import open_multiscale

    if layer.dataset_id != campaign.dataset_id or layer.kind != LayerKind.SEGMENTATION:
        raise InvalidRequest(f"{layer.name!r} is not a label layer of this campaign's dataset.")
    try:
        image = open_multiscale(Path(layer.dataset.root) / layer.path)
        spatial = image.spatial_indices
        shape = campaign_shape(campaign)
        for level in image.levels:
            full = [int(level.shape[i]) for i in spatial]
            if len(full) == 2:
                full = [1, *full]
            if math.prod(full) <= MASK_MAX_VOXELS or level is image.levels[-1]:
                data = np.asarray(level[...])
                data = data.reshape(full) if data.size == math.prod(full) else data
                factor = tuple(s / max(n, 1) for s, n in zip(shape, full, strict=True))
                return data, factor
    except (PipelineError, OSError, ValueError, KeyError) as exc:
        raise InvalidRequest(f"The mask layer {layer.name!r} cannot be read: {exc}") from exc
    raise InvalidRequest(f"The mask layer {layer.name!r} has no levels.")


def boxes_import_csv(
    campaign: AnnotationCampaign, actor: User, text: str, priority: int = 0
) -> list[TaskBox]:
    """Boxes from a CSV table (``bboxes/*.csv``: id, x, y, z, w, h, d in voxels)."""
    _require_manager(campaign, actor)
    specs = task_boxes.parse_boxes_csv(text, campaign_shape(campaign))
    return boxes_add(campaign, actor, specs, BoxSource.CSV, priority=priority)


def boxes_from_points(
    campaign: AnnotationCampaign,
    actor: User,
    points: Iterable[tuple[str, Sequence[float]]],
    source_ref: str,
    priority: int = 0,
) -> list[TaskBox]:
    """A box of the campaign's size around each point (z y x voxels), e.g. missed objects."""
    _require_manager(campaign, actor)
    specs = task_boxes.boxes_around_points(
        points, box_voxels_of(campaign), campaign_shape(campaign)
    )
    return boxes_add(
        campaign, actor, specs, BoxSource.MISSED, source_ref=source_ref, priority=priority
    )


def untouched_boxes(campaign: AnnotationCampaign) -> list[TaskBox]:
    """The campaign's boxes nobody has started (every assignment still to do)."""
    started = Assignment.objects.filter(box=OuterRef("pk")).exclude(state=AssignmentState.TODO)
    return list(TaskBox.objects.filter(campaign=campaign).exclude(Exists(started)).order_by("pk"))


def boxes_suggested(
    campaign: AnnotationCampaign,
    actor: User,
    ranked: Sequence[tuple[BoxSpec, TaskBox | None, float]],
    ref: str,
) -> list[TaskBox]:
    """Put ``ranked`` boxes (most wanted first: a spec, the untouched box it is when it exists
    already, its score) at the front of the campaign's queue (managers): existing boxes get a
    higher priority, new ones are added (source ``suggested``, ``ref`` and the score noted).
    The first is handed out first; earlier priorities keep their order below them."""
    _require_manager(campaign, actor)
    if not ranked:
        raise InvalidRequest("No boxes to suggest.")
    with transaction.atomic():
        top = TaskBox.objects.filter(campaign=campaign).aggregate(p=Max("priority"))["p"] or 0
        new = [(i, spec, score) for i, (spec, box, score) in enumerate(ranked) if box is None]
        prefix = _free_prefix(campaign, "suggest")
        created = (
            boxes_add(
                campaign,
                actor,
                [BoxSpec(f"{prefix}-{i + 1}", spec.start, spec.size) for i, spec, _ in new],
                BoxSource.SUGGESTED,
                source_ref=ref,
            )
            if new
            else []
        )
        made = {i: row for (i, _, _), row in zip(new, created, strict=True)}
        out = []
        for i, (_, box, score) in enumerate(ranked):
            row = made.get(i) or box
            assert row is not None
            row.priority = top + len(ranked) - i
            row.suggested_uncertainty = float(score)
            if i in made:
                row.source_ref = f"{ref}, uncertainty {score:.3f}"[:200]
            TaskBox.objects.filter(pk=row.pk).update(
                priority=row.priority,
                source_ref=row.source_ref,
                suggested_uncertainty=row.suggested_uncertainty,
            )
            out.append(row)
    return out


def _free_prefix(campaign: AnnotationCampaign, base: str) -> str:
    """``base`` or ``base2``, ``base3``...: the first prefix no box name of the campaign uses,
    so adding a second tiling or sample never collides with the first."""
    k = 1
    while True:
        prefix = base if k == 1 else f"{base}{k}"
        if not TaskBox.objects.filter(campaign=campaign, name__startswith=f"{prefix}-").exists():
            return prefix
        k += 1


def box_delete(box: TaskBox, actor: User) -> None:
    """Delete a box nobody has saved anything in (managers)."""
    campaign = box.campaign
    _require_manager(campaign, actor)
    with transaction.atomic():
        if Revision.objects.filter(assignment__box=box).exists():
            raise Conflict(f"Box {box.name!r} holds saved annotations: it is kept.")
        _audit(campaign, actor, AuditAction.BOX_DELETE, name=box.name)
        box.delete()


def box_unflag(box: TaskBox, actor: User) -> TaskBox:
    """Clear a box's flag (managers): it is handed out again."""
    _require_manager(box.campaign, actor)
    with transaction.atomic():
        TaskBox.objects.filter(pk=box.pk).update(flag_reason="", flagged_by=None, flagged_at=None)
        _audit(box.campaign, actor, AuditAction.BOX_UNFLAG, box=box)
    box.refresh_from_db()
    return box


# --- hand-out -----------------------------------------------------------------------------------


def next_task(campaign: AnnotationCampaign, user: User) -> Assignment | None:
    """The annotator's next assignment: their rejected or unfinished one first, else a free
    slot of the highest-priority box they have not taken (boxes they skipped last, flagged
    boxes never). None when nothing is left for them.

    Taking a slot is one statement (``_take``): an UPDATE of the first free slot, chosen by a
    subquery that locks it (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), returning its id. The
    row comes back with what the API answers (box, annotator, count of current annotations).
    """
    _require(campaign, user, "annotate", "Only the campaign's annotators take tasks.")
    _require_open(campaign)
    own = _own_open(campaign, user)
    if own is not None:
        return own
    for _attempt in range(5):
        try:
            with transaction.atomic():
                _serialise_on_sqlite(campaign.pk)
                taken = _take(campaign, user)
                if taken is None:
                    return None
                assignment_id, box_id = taken
                AuditEntry.objects.create(
                    campaign_id=campaign.pk,
                    actor=user,
                    action=AuditAction.ASSIGNMENT_TAKE,
                    box_id=box_id,
                    assignment_id=assignment_id,
                    detail={},
                )
        except IntegrityError:
            # This user took another slot of the same box meanwhile (another tab).
            own = _own_open(campaign, user)
            if own is not None:
                return own
            continue
        row: Assignment = _with_answer(Assignment.objects.filter(pk=assignment_id)).get()
        return row
    raise Conflict("Many annotators asked at once; ask again.")


def _take(campaign: AnnotationCampaign, user: User) -> tuple[int, int] | None:
    """Give the first free slot to ``user``: its id and box id, or None when none is left.

    One UPDATE of the slot a subquery picks: a free slot (no annotator, to do) of an unflagged
    box of the campaign where the user has no slot, boxes they skipped only when no other is
    left; highest priority first, then box and slot, which is the ``taskbox_handout`` index's
    order, so the database walks the boxes and stops at the first free slot rather than sort
    them all. PostgreSQL locks the slot with SKIP LOCKED: annotators asking at once get
    different slots without waiting. Plain SQL: building it with the ORM cost more CPU than
    the database took to run it (bench/annotate.py).
    """
    q = connection.ops.quote_name
    assignments, boxes = q(Assignment._meta.db_table), q(TaskBox._meta.db_table)
    skips = q(Skip._meta.db_table)
    lock = " FOR UPDATE OF a SKIP LOCKED" if connection.vendor == "postgresql" else ""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    for skipped in ("NOT EXISTS", "EXISTS"):  # boxes the annotator skipped come last
        sql = (
            f"UPDATE {assignments} SET annotator_id = %s, state = %s, taken = %s, "
            "last_activity = %s, updated = %s WHERE annotator_id IS NULL AND id = ("
            f"SELECT a.id FROM {assignments} a JOIN {boxes} b ON b.id = a.box_id "
            "WHERE b.campaign_id = %s AND a.annotator_id IS NULL AND a.state = %s "
            "AND b.flag_reason = '' "
            f"AND NOT EXISTS (SELECT 1 FROM {assignments} m "
            "WHERE m.box_id = a.box_id AND m.annotator_id = %s) "
            f"AND {skipped} (SELECT 1 FROM {skips} s "
            "WHERE s.box_id = a.box_id AND s.user_id = %s) "
            f"ORDER BY b.priority DESC, b.id, a.slot LIMIT 1{lock}) RETURNING id, box_id"
        )
        params: list[Any] = [
            user.pk, AssignmentState.IN_PROGRESS.value, now, now, now,
            campaign.pk, AssignmentState.TODO.value, user.pk, user.pk,
        ]  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is not None:
            return int(row[0]), int(row[1])
    return None


def _with_answer(rows: Any) -> Any:
    """Assignments with what the API answers about them, in the same statement."""
    current = Annotation.objects.filter(assignment=OuterRef("pk"), valid_to__isnull=True)
    return rows.select_related("box", "annotator", "reviewer").annotate(
        current_count=Subquery(
            current.order_by().values("assignment").annotate(n=Count("id")).values("n")
        )
    )


def _own_open(campaign: AnnotationCampaign, user: User) -> Assignment | None:
    """The annotator's open assignment (rejected ones first: a reviewer is waiting for them),
    with what the API answers; found by its id first, as usually there is none."""
    found = (
        Assignment.objects.filter(box__campaign=campaign, annotator=user, state__in=EDITABLE)
        .order_by(F("state").desc(), "taken", "id")
        .values_list("pk", flat=True)
        .first()
    )
    if found is None:
        return None
    row: Assignment = _with_answer(Assignment.objects.filter(pk=found)).get()
    return row


def _lock_own(assignment_id: int, user: User, what: str) -> Assignment:
    """The caller's assignment, row-locked; 403 when it is someone else's."""
    row = (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("box__campaign")
        .filter(pk=assignment_id)
        .first()
    )
    if row is None:
        raise NotFound("No such assignment.")
    if row.annotator_id != user.pk:
        raise NotAllowed(f"Only the annotator who took this task may {what} it.")
    return row


def _touch(row: Assignment, now: datetime) -> None:
    """Count the gap since the last activity when it is not idle time (module docstring)."""
    row.active_seconds += _active_gap(row.last_activity, now)
    row.last_activity = now


def _active_gap(last_activity: datetime | None, now: datetime) -> float:
    if last_activity is None:
        return 0.0
    gap = (now - last_activity).total_seconds()
    return gap if 0 < gap <= idle_seconds() else 0.0


def activity(assignment: Assignment, user: User) -> Assignment:
    """The page reports activity (a view change): time on task advances."""
    with transaction.atomic():
        row = _lock_own(assignment.pk, user, "report activity on")
        if row.state in EDITABLE:
            _touch(row, timezone.now())
            row.save(update_fields=["active_seconds", "last_activity", "updated"])
    return row


def _current_count(assignment_id: int) -> int:
    return Annotation.objects.filter(assignment_id=assignment_id, valid_to__isnull=True).count()


def skip(assignment: Assignment, user: User) -> None:
    """Give the task back; the box comes back to this annotator only when nothing else is left.
    Refused while it holds annotations (delete them or submit)."""
    with transaction.atomic():
        row = _lock_own(assignment.pk, user, "skip")
        if row.state != AssignmentState.IN_PROGRESS:
            raise Conflict(f"A {row.get_state_display().lower()} task cannot be skipped.")
        _release(row, user, AuditAction.ASSIGNMENT_SKIP)


def flag(assignment: Assignment, user: User, reason: str) -> None:
    """Flag the box (e.g. no tissue, broken image) with a reason: it leaves the queue until a
    manager clears the flag, and the task is given back."""
    reason = reason.strip()
    if not 1 <= len(reason) <= MAX_REASON:
        raise InvalidRequest(f"Give a reason of 1-{MAX_REASON} characters.")
    with transaction.atomic():
        row = _lock_own(assignment.pk, user, "flag")
        if row.state != AssignmentState.IN_PROGRESS:
            raise Conflict(f"A {row.get_state_display().lower()} task cannot be flagged.")
        TaskBox.objects.filter(pk=row.box_id).update(
            flag_reason=reason, flagged_by=user, flagged_at=timezone.now()
        )
        _audit(row.box.campaign_id, user, AuditAction.BOX_FLAG, assignment=row, reason=reason)
        _release(row, user, None)


def _release(row: Assignment, user: User, action: str | None) -> None:
    if _current_count(row.pk):
        raise Conflict(
            "This task holds your annotations: submit it, or delete them before giving it back."
        )
    Skip.objects.get_or_create(box_id=row.box_id, user=user)
    if action is not None:
        _audit(row.box.campaign_id, user, action, assignment=row)
    row.annotator = None
    row.state = AssignmentState.TODO
    row.taken = None
    row.last_activity = None
    row.save(update_fields=["annotator", "state", "taken", "last_activity", "updated"])


# --- saves --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SaveResult:
    version: int
    created: int
    changed: int
    deleted: int
    count: int
    active_seconds: float  # time on task after this save (the page shows it)


def _check_coords(kind: str, coords: Any, box: TaskBox, where: str) -> list[list[float]]:
    lo_count, hi_count = COORD_COUNTS[AnnotationKind(kind)]
    if not isinstance(coords, list) or not lo_count <= len(coords) <= hi_count:
        raise InvalidRequest(
            f"{where}: a {kind} needs {lo_count}"
            + (f"-{hi_count}" if hi_count != lo_count else "")
            + " positions (z y x)."
        )
    out: list[list[float]] = []
    for point in coords:
        if (
            not isinstance(point, list)
            or len(point) != 3
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in point)
        ):
            raise InvalidRequest(f"{where}: each position is three finite numbers (z y x).")
        out.append([float(v) for v in point])
    check = out[:1] if kind == AnnotationKind.ELLIPSOID else out
    for point in check:
        inside = all(
            s - 0.5 <= v <= s + n - 0.5 for v, s, n in zip(point, box.start, box.size, strict=True)
        )
        if not inside:
            raise InvalidRequest(
                f"{where}: position {[round(v, 2) for v in point]} (z y x) is outside the task "
                f"box (start {list(box.start)}, size {list(box.size)})."
            )
    if kind == AnnotationKind.ELLIPSOID and not all(r > 0 for r in out[1]):
        raise InvalidRequest(f"{where}: an ellipsoid's radii must be positive.")
    return out


def _parse_op(op: Any, index: int, box: TaskBox, classes: set[str]) -> dict[str, Any]:
    where = f"ops[{index}]"
    if not isinstance(op, dict):
        raise InvalidRequest(f"{where} must be an object.")
    kind_of_op = op.get("op")
    uid = op.get("uid")
    if not isinstance(uid, str) or not 1 <= len(uid) <= 64 or not uid.isprintable():
        raise InvalidRequest(f"{where}.uid must be 1-64 printable characters.")
    if kind_of_op == "delete":
        return {"op": "delete", "uid": uid}
    if kind_of_op != "upsert":
        raise InvalidRequest(f"{where}.op must be 'upsert' or 'delete'.")
    kind = op.get("kind")
    if kind not in AnnotationKind.values:
        raise InvalidRequest(f"{where}.kind must be one of {', '.join(AnnotationKind.values)}.")
    label = op.get("label")
    if not isinstance(label, str) or label not in classes:
        raise InvalidRequest(
            f"{where}.label {str(label)[:50]!r} is not a class of this campaign "
            f"({', '.join(sorted(classes))})."
        )
    object_id = op.get("object_id", 0)
    if not isinstance(object_id, int) or isinstance(object_id, bool) or not 0 <= object_id < 2**63:
        raise InvalidRequest(f"{where}.object_id must be a whole number >= 0.")
    description = op.get("description", "")
    if not isinstance(description, str) or len(description) > 500:
        raise InvalidRequest(f"{where}.description must be text of at most 500 characters.")
    coords = _check_coords(str(kind), op.get("coords"), box, where)
    return {
        "op": "upsert",
        "uid": uid,
        "kind": kind,
        "label": label,
        "object_id": object_id,
        "coords": coords,
        "description": description,
    }


def _lock_for_write(assignment_id: int, user: User, base_version: int) -> Assignment:
    row = _lock_own(assignment_id, user, "edit")
    _writable(row, base_version)
    return row


def _writable(row: Assignment, base_version: int) -> None:
    """409 unless the task is editable and ``base_version`` is its current version."""
    if row.state not in EDITABLE:
        raise Conflict(
            f"This task is {row.get_state_display().lower()}: it can no longer be edited.",
            current_version=row.version,
        )
    if base_version != row.version:
        raise Conflict(
            f"Your edits are based on version {base_version}, but version {row.version} was "
            "saved since (another tab or machine). Reload it, or apply your unsaved changes on "
            "top of it.",
            current_version=row.version,
        )


def save(assignment: Assignment, user: User, base_version: int, ops: Any) -> SaveResult:
    """Apply a batch of upserts and deletes as one new version (nothing when nothing changes).

    The task page saves about once a second, so this is the hot path (bench/annotate.py): one
    statement reads the assignment's state, its current annotation count and the current rows
    of the uids the batch names (``_save_snapshot``); the ops are parsed once; then one UPDATE
    claims the next version only if the assignment is still exactly as read (version, state,
    annotator, last activity), which takes its row lock; then the rows, the revision and the
    audit entry are written. A claim that finds the row changed (another save, an activity
    report, a submit in between) falls back to locking the row first and reading again under
    the lock, which also gives the 403 and 409 answers.
    """
    if not isinstance(ops, list | tuple) or not ops:
        raise InvalidRequest("ops must be a non-empty list.")
    if len(ops) > MAX_OPS_PER_SAVE:
        raise TooLarge(f"At most {MAX_OPS_PER_SAVE:,} changes per save.")
    named: set[str] = {
        op["uid"] for op in ops if isinstance(op, dict) and isinstance(op.get("uid"), str)
    }
    uids = list(named)
    with transaction.atomic():
        for locked in (False, True):
            if locked:
                row = _lock_for_write(assignment.pk, user, base_version)  # 403, 409
                box = row.box
            else:
                box = assignment.box
            snap = _save_snapshot(assignment.pk, uids)
            if snap is None or not snap.writable_by(user, base_version):
                continue  # the locked pass answers why
            result = _save_apply(assignment.pk, box, user, base_version, ops, snap)
            if result is not None:
                return result
    raise Conflict("The task changed while saving; save again.", current_version=base_version)


@dataclass
class _SaveSnapshot:
    """What a save reads in its one statement (``_save_snapshot``)."""

    version: int
    state: str
    annotator_id: int | None
    last_activity: datetime | None
    active_seconds: float
    count: int  # current annotations
    current: dict[str, Annotation]  # the current rows of the batch's uids

    def writable_by(self, user: User, base_version: int) -> bool:
        return (
            self.version == base_version and self.state in EDITABLE and self.annotator_id == user.pk
        )


def _save_snapshot(assignment_id: int, uids: list[str]) -> _SaveSnapshot | None:
    """The assignment's state, its count of current annotations and the current rows of
    ``uids``, in one statement (one snapshot: they agree with each other). Plain SQL: the ORM
    took longer to build this than the database to answer it."""
    quote = connection.ops.quote_name
    assignments, annotations = quote(Assignment._meta.db_table), quote(Annotation._meta.db_table)
    marks = ", ".join(["%s"] * len(uids)) or "NULL"
    sql = (
        "SELECT s.version, s.state, s.annotator_id, s.last_activity, s.active_seconds, "
        f"(SELECT COUNT(*) FROM {annotations} c WHERE c.assignment_id = s.id "
        "AND c.valid_to IS NULL), "
        "a.id, a.uid, a.kind, a.label, a.object_id, a.coords, a.description, a.valid_from "
        f"FROM {assignments} s LEFT JOIN {annotations} a ON a.assignment_id = s.id "
        f"AND a.valid_to IS NULL AND a.uid IN ({marks}) WHERE s.id = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*uids, assignment_id])
        rows = cursor.fetchall()
    if not rows:
        return None
    first = rows[0]
    current: dict[str, Annotation] = {}
    for r in rows:
        if r[6] is None:
            continue
        coords = json.loads(r[11]) if isinstance(r[11], str | bytes) else r[11]
        current[r[7]] = Annotation(
            id=r[6], assignment_id=assignment_id, uid=r[7], kind=r[8], label=r[9],
            object_id=r[10], coords=coords, description=r[12], valid_from=r[13],
        )  # fmt: skip
    return _SaveSnapshot(
        version=int(first[0]),
        state=first[1],
        annotator_id=first[2],
        last_activity=_db_datetime(first[3]),
        active_seconds=float(first[4]),
        count=int(first[5]),
        current=current,
    )


def _db_datetime(value: Any) -> datetime | None:
    """A datetime column read by plain SQL: aware on PostgreSQL, naive UTC (or text) on SQLite."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else parse_datetime(str(value))
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


def _save_apply(
    assignment_id: int,
    box: TaskBox,
    user: User,
    base_version: int,
    ops: Sequence[Any],
    snap: _SaveSnapshot,
) -> SaveResult | None:
    """Parse the ops, claim the next version and write it; None when the claim found the
    assignment changed since ``snap`` (nothing written)."""
    classes = {c["name"] for c in box.campaign.label_schema}
    last: dict[str, dict[str, Any]] = {}
    for i, op in enumerate(ops):  # the last change of each uid wins within a batch
        parsed = _parse_op(op, i, box, classes)
        last[parsed["uid"]] = parsed
    number = base_version + 1
    close: list[int] = []
    new: list[Annotation] = []
    created = changed = deleted = 0
    for uid, op in last.items():
        old = snap.current.get(uid)
        if op["op"] == "delete":
            if old is None:
                continue  # already gone: deleting twice is harmless
            close.append(old.pk)
            deleted += 1
            continue
        if old is not None and _same(old, op):
            continue
        if old is not None:
            close.append(old.pk)
            changed += 1
        else:
            created += 1
        new.append(
            Annotation(
                assignment_id=assignment_id,
                uid=uid,
                kind=op["kind"],
                label=op["label"],
                object_id=op["object_id"],
                coords=op["coords"],
                description=op["description"],
                valid_from=number,
            )
        )
    now = timezone.now()
    active_seconds = snap.active_seconds + _active_gap(snap.last_activity, now)
    unchanged = Assignment.objects.filter(
        pk=assignment_id,
        version=base_version,
        annotator_id=user.pk,
        state__in=EDITABLE,
        **(
            {"last_activity": snap.last_activity}
            if snap.last_activity is not None
            else {"last_activity__isnull": True}
        ),
    )
    touched = {"active_seconds": active_seconds, "last_activity": now, "updated": now}
    if not close and not new:
        if not unchanged.update(**touched):
            return None
        return SaveResult(base_version, 0, 0, 0, snap.count, active_seconds)
    count = snap.count + created - deleted
    if count > MAX_ANNOTATIONS:
        raise TooLarge(f"A task holds at most {MAX_ANNOTATIONS:,} annotations.")
    if not unchanged.update(version=number, **touched):  # takes the row lock
        return None
    if close:
        Annotation.objects.filter(pk__in=close).update(valid_to=number)
    Annotation.objects.bulk_create(new, batch_size=1000)
    summary = {"created": created, "changed": changed, "deleted": deleted, "count": count}
    Revision.objects.create(
        assignment_id=assignment_id,
        number=number,
        based_on=base_version,
        author=user,
        summary=summary,
    )
    AuditEntry.objects.create(
        campaign_id=box.campaign_id,
        actor=user,
        action=AuditAction.ANNOTATIONS_SAVE,
        box_id=box.pk,
        assignment_id=assignment_id,
        detail={**summary, "version": number},
    )
    return SaveResult(number, created, changed, deleted, count, active_seconds)


def _same(old: Annotation, op: dict[str, Any]) -> bool:
    return bool(
        old.kind == op["kind"]
        and old.label == op["label"]
        and old.object_id == op["object_id"]
        and old.coords == op["coords"]
        and old.description == op["description"]
    )


def restore(assignment: Assignment, user: User, version: int, base_version: int) -> SaveResult:
    """Make an earlier version current again, as a new version (the annotator)."""
    with transaction.atomic():
        row = _lock_for_write(assignment.pk, user, base_version)
        if not 0 <= version < row.version:
            raise InvalidRequest(f"version must be 0-{row.version - 1} (an earlier version).")
        target = {a.uid: a for a in annotations_at(row.pk, version)}
        current = {a.uid: a for a in annotations_at(row.pk, None)}
        number = row.version + 1
        close = [
            a.pk for uid, a in current.items() if uid not in target or not _same_row(a, target[uid])
        ]
        new = [
            Annotation(
                assignment=row,
                uid=uid,
                kind=a.kind,
                label=a.label,
                object_id=a.object_id,
                coords=a.coords,
                description=a.description,
                valid_from=number,
            )
            for uid, a in target.items()
            if uid not in current or not _same_row(current[uid], a)
        ]
        Annotation.objects.filter(pk__in=close).update(valid_to=number)
        Annotation.objects.bulk_create(new, batch_size=1000)
        created = sum(1 for a in new if a.uid not in current)
        deleted = sum(1 for uid in current if uid not in target)
        summary = {
            "created": created,
            "changed": len(new) - created,
            "deleted": deleted,
            "count": len(target),
        }
        labels = _labels_restored(row, version)
        if labels is not None:
            summary.update(chunks_changed=len(labels.changed), chunks=len(labels.chunks))
        Revision.objects.create(
            assignment=row,
            number=number,
            kind=RevisionKind.RESTORE,
            based_on=base_version,
            restored_from=version,
            author=user,
            summary=summary,
            labels=None if labels is None else labels.to_json(),
            provenance={} if labels is None else labels_provenance_at(row.pk, version),
        )
        _touch(row, timezone.now())
        row.version = number
        row.save(update_fields=["version", "active_seconds", "last_activity", "updated"])
        _audit(row.box.campaign_id, user, AuditAction.ANNOTATIONS_RESTORE, assignment=row,
               restored=version, version=number)  # fmt: skip
    return SaveResult(
        number, summary["created"], summary["changed"], deleted, len(target), row.active_seconds
    )


def _labels_restored(row: Assignment, version: int) -> LabelVersion | None:
    """The labels manifest that brings back ``version``'s labels, or None when they are the
    current ones already (or nothing was ever painted)."""
    if not Revision.objects.filter(assignment=row, labels__isnull=False).exists():
        return None
    geometry = label_geometry(row.box)
    current = label_version_at(row.pk, row.version, geometry)
    target = label_version_at(row.pk, version, geometry)
    if dict(current.chunks) == dict(target.chunks):
        return None
    return version_restore(current, row.version, target)


def _same_row(a: Annotation, b: Annotation) -> bool:
    return (a.kind, a.label, a.object_id, a.coords, a.description) == (
        b.kind,
        b.label,
        b.object_id,
        b.coords,
        b.description,
    )


# --- painted labels ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelsSaveResult:
    version: int
    chunks_changed: int  # chunks whose content differs from the base version's
    chunks: int  # non-zero chunks after the save
    active_seconds: float


def _labels_check(assignment: Assignment, user: User) -> LabelGeometry:
    """403 unless the caller took the task, 400 unless its campaign paints; its geometry."""
    if assignment.annotator_id != user.pk:
        raise NotAllowed("Only the annotator who took this task may edit it.")
    if not assignment.box.campaign.painted:
        raise InvalidRequest(
            "This campaign's objects are not painted: it takes annotations, not labels."
        )
    return label_geometry(assignment.box)


def label_payloads_parse(
    assignment: Assignment, user: User, payloads: Sequence[tuple[str, bytes, PayloadEncoding]]
) -> dict[ChunkIndex, Any]:
    """Chunks from request parts ``(key "z.y.x", bytes, encoding)``, every one checked (400
    with the reason; 413 for a payload larger than its chunk) before anything is written."""
    geometry = _labels_check(assignment, user)
    if not payloads:
        raise InvalidRequest("Send at least one chunk: a file part named z.y.x.")
    if len(payloads) > MAX_LABEL_CHUNKS_PER_SAVE:
        raise TooLarge(
            f"At most {MAX_LABEL_CHUNKS_PER_SAVE} chunks per save; save the others in another."
        )
    chunks: dict[ChunkIndex, Any] = {}
    for key, data, encoding in payloads:
        index = chunk_key_parse(key, geometry)
        if index in chunks:
            raise InvalidRequest(f"Chunk {key} is sent twice.")
        try:
            chunks[index] = chunk_from_payload(data, geometry, index, encoding)
        except PayloadTooLargeError as exc:
            raise TooLarge(str(exc)) from exc
    return chunks


PROVENANCE_SOURCES = OBJECT_SOURCES
MAX_PROVENANCE_BYTES = 1024**2
MAX_MODEL_NAME = 100


def provenance_parse(text: str) -> dict[str, dict[str, Any]]:
    """The labels save's ``provenance`` field (JSON text), checked: an object mapping object ids
    (decimal uint32, not 0) to {"source": manual|click|proposal, "proposal_source"?:
    model|watershed, "model"?: the model's name, "interpolated"?: {plane: filled slices}}. 400
    with the reason for anything else."""
    if len(text) > MAX_PROVENANCE_BYTES:
        raise TooLarge(f"provenance may be at most {MAX_PROVENANCE_BYTES:,} characters.")
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidRequest("provenance must be JSON text.") from None
    if not isinstance(data, dict):
        raise InvalidRequest('provenance must be a JSON object: {"<object id>": {"source": ...}}.')
    checked: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if not (key.isascii() and key.isdigit() and len(key) <= 10 and 0 < int(key) < 2**32):
            raise InvalidRequest(f"provenance key {key[:20]!r} is not an object id (1..2^32-1).")
        if not isinstance(value, dict) or value.get("source") not in PROVENANCE_SOURCES:
            raise InvalidRequest(
                f"provenance of object {key}: source must be one of "
                f"{', '.join(PROVENANCE_SOURCES)}."
            )
        extra = set(value) - {"source", "proposal_source", "model", "interpolated"}
        if extra:
            raise InvalidRequest(
                f"provenance of object {key}: unknown field(s) {', '.join(sorted(extra))[:60]}."
            )
        entry: dict[str, Any] = {"source": str(value["source"])}
        if "proposal_source" in value:
            if value["proposal_source"] not in PROPOSAL_SOURCES:
                raise InvalidRequest(
                    f"provenance of object {key}: proposal_source must be model or watershed."
                )
            entry["proposal_source"] = str(value["proposal_source"])
        if "model" in value:
            model = value["model"]
            if not isinstance(model, str) or not 0 < len(model) <= MAX_MODEL_NAME:
                raise InvalidRequest(
                    f"provenance of object {key}: model must be a name of 1 to "
                    f"{MAX_MODEL_NAME} characters."
                )
            entry["model"] = model
        if "interpolated" in value:
            entry["interpolated"] = _interpolated_parse(key, value["interpolated"])
        checked[str(int(key))] = entry
    return checked


INTERPOLATION_PLANES = ("xy", "xz", "yz")
MAX_INTERPOLATED_SLICES = 4096


def _interpolated_parse(key: str, value: Any) -> dict[str, list[int]]:
    """An object's ``interpolated`` provenance: the slices (box-relative indices along the
    plane's normal) that interpolation filled, per plane, e.g. {"xy": [13, 14, 15]}."""
    where = f"provenance of object {key}: interpolated"
    if not isinstance(value, dict) or not set(value) <= set(INTERPOLATION_PLANES):
        raise InvalidRequest(f"{where} must map xy, xz or yz to lists of slice numbers.")
    out: dict[str, list[int]] = {}
    for plane, slices in value.items():
        if (
            not isinstance(slices, list)
            or len(slices) > MAX_INTERPOLATED_SLICES
            or not all(type(n) is int and 0 <= n < 2**31 for n in slices)
        ):
            raise InvalidRequest(
                f"{where} {plane} must be a list of at most {MAX_INTERPOLATED_SLICES} slice "
                "numbers (whole numbers from 0)."
            )
        if slices:
            out[plane] = sorted(set(slices))
    return out


def labels_save(
    assignment: Assignment,
    user: User,
    base_version: int,
    chunks: Any,
    provenance: dict[str, dict[str, Any]] | None = None,
) -> LabelsSaveResult:
    """Write changed chunks (index -> uint32 array) of the painted labels as one new version.

    ``provenance`` (checked by :func:`provenance_parse`) updates the base version's map of where
    each object came from; the new version keeps the result.

    Every chunk is checked before any is written; the blobs are written before the row is
    locked (a save of 100 chunks keeps the lock for milliseconds), then the base is checked
    again under the lock: a save that lost the race gets 409 and leaves only unreferenced blobs.
    """
    box = assignment.box
    geometry = _labels_check(assignment, user)
    fresh = Assignment.objects.filter(pk=assignment.pk).first()
    if fresh is None:
        raise NotFound("No such assignment.")
    _writable(fresh, base_version)  # a stale save writes nothing
    if not isinstance(chunks, dict) or not chunks:
        raise InvalidRequest("Send at least one chunk.")
    if len(chunks) > MAX_LABEL_CHUNKS_PER_SAVE:
        raise TooLarge(f"At most {MAX_LABEL_CHUNKS_PER_SAVE} chunks per save.")
    written = chunks_write(label_blobs(box.campaign_id), geometry, chunks)
    with transaction.atomic():
        row = _lock_for_write(assignment.pk, user, base_version)
        current = label_version_at(row.pk, row.version, geometry)
        labels = version_next(current, row.version, written)
        _touch(row, timezone.now())
        if not labels.changed:
            row.save(update_fields=["active_seconds", "last_activity", "updated"])
            return LabelsSaveResult(row.version, 0, len(current.chunks), row.active_seconds)
        summary = {"chunks_changed": len(labels.changed), "chunks": len(labels.chunks)}
        Revision.objects.create(
            assignment=row,
            number=labels.number,
            based_on=base_version,
            author=user,
            summary=summary,
            labels=labels.to_json(),
            provenance={**labels_provenance_at(row.pk, row.version), **(provenance or {})},
        )
        row.version = labels.number
        row.save(update_fields=["version", "active_seconds", "last_activity", "updated"])
        _audit(
            box.campaign_id,
            user,
            AuditAction.LABELS_SAVE,
            assignment=row,
            detail={**summary, "version": labels.number},
        )
    transaction.on_commit(lambda: labels_gc_soon(box.campaign_id))
    return LabelsSaveResult(
        labels.number, summary["chunks_changed"], summary["chunks"], row.active_seconds
    )


def annotations_at(assignment_id: int, version: int | None) -> Any:
    """The annotations of a version (the current ones when None), oldest first."""
    rows = Annotation.objects.filter(assignment_id=assignment_id)
    if version is None:
        return rows.filter(valid_to__isnull=True).order_by("id")
    return rows.filter(
        Q(valid_from__lte=version) & (Q(valid_to__isnull=True) | Q(valid_to__gt=version))
    ).order_by("id")


def submit(assignment: Assignment, user: User, base_version: int) -> Assignment:
    """Hand the task in for review, as of ``base_version`` (409 when a newer one was saved)."""
    with transaction.atomic():
        row = _lock_for_write(assignment.pk, user, base_version)
        now = timezone.now()
        _touch(row, now)
        row.state = AssignmentState.SUBMITTED
        row.submitted = now
        row.reviewer = None
        row.reviewed = None
        if row.box.campaign.painted:
            row.painted_objects = _painted_objects(row)
        row.save()
        _audit(row.box.campaign_id, user, AuditAction.ASSIGNMENT_SUBMIT, assignment=row,
               version=row.version)  # fmt: skip
    return row


def _painted_objects(row: Assignment) -> int:
    """How many objects (distinct non-zero ids) the task's current labels hold: counted once,
    when it is handed in, so the dashboard need not read every box's labels."""
    labels = labels_at(row)
    if not labels.chunks:
        return 0
    ids = fastremap.unique(labels_read(labels.blobs, labels.geometry, labels.chunks))
    return int(np.count_nonzero(ids))


# --- review -------------------------------------------------------------------------------------


def next_review(campaign: AnnotationCampaign, user: User) -> Assignment | None:
    """The oldest submitted assignment of someone else that no other reviewer holds."""
    _require(campaign, user, "review", "Only the campaign's reviewers review tasks.")
    held = (
        Assignment.objects.filter(
            box__campaign=campaign, state=AssignmentState.SUBMITTED, reviewer=user
        )
        .select_related("box")
        .order_by("submitted", "id")
        .first()
    )
    if held is not None:
        return held
    with transaction.atomic():
        _serialise_on_sqlite(campaign.pk)
        candidates = (
            Assignment.objects.filter(
                box__campaign=campaign, state=AssignmentState.SUBMITTED, reviewer__isnull=True
            )
            .exclude(annotator=user)
            .order_by("submitted", "id")
        )
        if connection.vendor == "postgresql":
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        chosen = candidates.first()
        if chosen is None:
            return None
        Assignment.objects.filter(pk=chosen.pk, reviewer__isnull=True).update(reviewer=user)
        chosen.refresh_from_db()
    return chosen


def _lock_for_review(assignment_id: int, user: User) -> Assignment:
    row = (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("box__campaign")
        .filter(pk=assignment_id)
        .first()
    )
    if row is None:
        raise NotFound("No such assignment.")
    _require(row.box.campaign, user, "review", "Only the campaign's reviewers review tasks.")
    if row.annotator_id == user.pk:
        raise NotAllowed("You cannot review your own task.")
    if row.state != AssignmentState.SUBMITTED:
        raise Conflict(f"This task is {row.get_state_display().lower()}, not submitted.")
    if row.reviewer_id not in (None, user.pk):
        raise Conflict("Another reviewer holds this task.")
    return row


def approve(assignment: Assignment, user: User, comment: str = "") -> Assignment:
    if len(comment) > MAX_COMMENT:
        raise InvalidRequest(f"The comment may be at most {MAX_COMMENT} characters.")
    with transaction.atomic():
        row = _lock_for_review(assignment.pk, user)
        row.state = AssignmentState.APPROVED
        row.reviewer = user
        row.reviewed = timezone.now()
        row.review_comment = comment
        row.save()
        _audit(row.box.campaign_id, user, AuditAction.ASSIGNMENT_APPROVE, assignment=row,
               version=row.version, comment=comment)  # fmt: skip
    return row


def reject(assignment: Assignment, user: User, comment: str) -> Assignment:
    """Send the task back to its annotator with a comment saying what to fix."""
    comment = comment.strip()
    if not 1 <= len(comment) <= MAX_COMMENT:
        raise InvalidRequest("Say what to fix: a comment of 1-5000 characters is needed.")
    with transaction.atomic():
        row = _lock_for_review(assignment.pk, user)
        row.state = AssignmentState.REJECTED
        row.reviewer = user
        row.reviewed = timezone.now()
        row.review_comment = comment
        row.last_activity = None  # the annotator's clock restarts when they come back
        row.save()
        _audit(row.box.campaign_id, user, AuditAction.ASSIGNMENT_REJECT, assignment=row,
               version=row.version, comment=comment)  # fmt: skip
    return row
