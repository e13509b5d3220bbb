"""Reads of the annotation app: what each member may see of a campaign."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import Count, Model, Q, QuerySet
from django.db.models.expressions import RawSQL

from pipeline.box_image import read_box, stretch_uint8
from pipeline.label_store import BlobStore, ChunkIndex, LabelGeometry
from pipeline.label_versions import LabelVersion, version_empty
from webapp.annotation.models import (
    AnnotationCampaign,
    AnnotationCampaignQuerySet,
    Assignment,
    AssistJob,
    AuditEntry,
    CampaignMember,
    MemberFacts,
    Revision,
    Role,
    TaskBox,
)
from webapp.core.permissions import principal_of, rules_allow
from webapp.core.users import AnyUser

if TYPE_CHECKING:
    from pipeline.label_meshes import VersionMeshes

M = TypeVar("M", bound=Model)


def campaigns_visible(user: AnyUser) -> QuerySet[AnnotationCampaign]:
    return AnnotationCampaign.objects.restrict(user, "view").select_related(
        "dataset", "image_layer"
    )


def roles_of(campaign: AnnotationCampaign, user: AnyUser) -> list[str]:
    """The caller's roles in the campaign (all of them for a superuser)."""
    if getattr(user, "is_superuser", False):
        return ["manager", "annotator", "reviewer"]
    if not user.is_authenticated:
        return []
    return sorted(
        CampaignMember.objects.filter(campaign=campaign, user_id=user.pk).values_list(
            "role", flat=True
        )
    )


def may(campaign: AnnotationCampaign, user: AnyUser, action: str) -> bool:
    """Whether ``user`` may do ``action`` to the campaign: read in Python from the roles loaded
    with it (``with_member_facts``) when they were, else asked of the database."""
    facts = getattr(campaign, "member_facts", None)
    if facts is not None and facts.user_id == user.pk:
        return rules_allow(AnnotationCampaignQuerySet.rules, action, campaign, principal_of(user))
    return AnnotationCampaign.objects.allows(user, action, campaign)


_ROLE_BITS = {role: 1 << i for i, role in enumerate(Role.values)}


def with_member_facts(rows: QuerySet[M], campaign_column: str, user_id: int) -> QuerySet[M]:
    """``rows`` with the caller's roles in the campaign whose id is ``campaign_column`` (a
    column of the query's SQL, e.g. ``annotation_taskbox.campaign_id`` for assignments with
    their box joined) as a bit mask (``_member_roles``), in the same statement;
    ``attach_member_facts`` then hangs them on the campaign for ``may``. Plain SQL: three
    EXISTS subqueries built by the ORM tripled the CPU time of the row's query (2.5 ms)."""
    members = connection.ops.quote_name(CampaignMember._meta.db_table)
    bits = " ".join(f"WHEN '{role}' THEN {bit}" for role, bit in _ROLE_BITS.items())
    mask = (
        f"SELECT COALESCE(SUM(CASE m.role {bits} ELSE 0 END), 0) FROM {members} m "
        f"WHERE m.campaign_id = {campaign_column} AND m.user_id = %s"
    )
    return rows.annotate(_member_roles=RawSQL(mask, (user_id,)))  # type: ignore[return-value]


def _column(model: type[Model], column: str) -> str:
    quote = connection.ops.quote_name
    return f"{quote(model._meta.db_table)}.{quote(column)}"


def attach_member_facts(row: Any, campaign: AnnotationCampaign, user_id: int) -> None:
    mask = int(row._member_roles or 0)
    roles = frozenset(role for role, bit in _ROLE_BITS.items() if mask & bit)
    campaign.member_facts = MemberFacts(user_id, roles)  # type: ignore[attr-defined]


def campaign_of(user: AnyUser, campaign_id: int) -> AnnotationCampaign | None:
    """The campaign if ``user`` may see it, with its dataset, image layer and the caller's
    roles, in one statement (``may`` then asks nothing more)."""
    if not user.is_authenticated or user.pk is None:
        return None
    row = (
        with_member_facts(
            AnnotationCampaign.objects.select_related("dataset", "image_layer"),
            _column(AnnotationCampaign, "id"),
            user.pk,
        )
        .filter(pk=campaign_id)
        .order_by()
        .first()
    )
    if row is None:
        return None
    attach_member_facts(row, row, user.pk)
    return row if may(row, user, "view") else None


def boxes_of(campaign: AnnotationCampaign) -> QuerySet[TaskBox]:
    """Every member sees the campaign's boxes, with how many slots are in each state (and
    their accepted ground truth, points and painted, joined)."""
    return (
        TaskBox.objects.filter(campaign=campaign)
        .select_related("ground_truth", "label_truth")
        .annotate(
            n_approved=Count("assignments", filter=Q(assignments__state="approved")),
            n_submitted=Count("assignments", filter=Q(assignments__state="submitted")),
            n_taken=Count("assignments", filter=Q(assignments__annotator__isnull=False)),
        )
    )


def assignments_visible(user: AnyUser) -> QuerySet[Assignment]:
    """Annotators see their own assignments; reviewers and managers every assignment of their
    campaigns."""
    if not user.is_authenticated:
        return Assignment.objects.none()
    reportable = AnnotationCampaign.objects.restrict(user, "report").values("pk")
    return Assignment.objects.filter(
        Q(annotator_id=user.pk, box__campaign__in=campaigns_visible(user).values("pk"))
        | Q(box__campaign__in=reportable)
    ).select_related("box__campaign", "annotator", "reviewer")


def assignment_visible(
    user: AnyUser, assignment_id: int, *, people: bool = True
) -> Assignment | None:
    """One assignment if ``user`` may see it (the rule of ``assignments_visible``), else None;
    ``people=False`` leaves out the annotator's and reviewer's user rows (a save needs neither).

    Every save and activity report of the task page starts here, so it is one statement: the
    row with its box, campaign, dataset and the caller's roles, the campaign rule then read in
    Python from them (the list's OR of two permission subqueries took three times as long to
    build and run, and then a second query for the rule, 11 ms a call). A reviewer's or
    manager's rule ("report") implies "view", so the annotator's own row needs "view" and any
    other row "report".
    """
    if not user.is_authenticated or user.pk is None:
        return None
    row = (
        with_member_facts(
            Assignment.objects.select_related(
                "box__campaign__dataset", *(("annotator", "reviewer") if people else ())
            ),
            _column(TaskBox, "campaign_id"),  # the box is joined (select_related)
            user.pk,
        )
        .filter(pk=assignment_id)
        .order_by()  # the default ordering would join the box and campaign for nothing
        .first()
    )
    if row is None:
        return None
    attach_member_facts(row, row.box.campaign, user.pk)
    action = "view" if row.annotator_id == user.pk else "report"
    return row if may(row.box.campaign, user, action) else None


def revisions_of(assignment: Assignment) -> QuerySet[Revision]:
    return Revision.objects.filter(assignment=assignment).select_related("author")


def audit_of(
    campaign: AnnotationCampaign,
    *,
    action: str | None = None,
    actor: str | None = None,
    box_id: int | None = None,
) -> QuerySet[AuditEntry]:
    rows = AuditEntry.objects.filter(campaign=campaign).select_related("actor", "box")
    if action:
        rows = rows.filter(Q(action=action) | Q(action__startswith=f"{action}."))
    if actor:
        rows = rows.filter(actor__username=actor)
    if box_id is not None:
        rows = rows.filter(box_id=box_id)
    return rows


# --- painted labels -----------------------------------------------------------------------------

LABEL_CHUNK = (64, 64, 64)


def label_geometry(box: TaskBox) -> LabelGeometry:
    """Where a box's label volume lies: its voxels in the image grid, nm (the campaign's
    geometry is in um), chunks of 64^3 clipped to the box."""
    geometry = box.campaign.geometry
    voxel = geometry.get("voxel_size_um") or [1.0, 1.0, 1.0]
    origin = geometry.get("origin_um") or [0.0, 0.0, 0.0]
    return LabelGeometry(
        shape=box.size,
        chunk=LABEL_CHUNK,
        voxel_size_nm=(voxel[0] * 1000.0, voxel[1] * 1000.0, voxel[2] * 1000.0),
        start=box.start,
        image_origin_nm=(origin[0] * 1000.0, origin[1] * 1000.0, origin[2] * 1000.0),
    )


def label_blobs_root(campaign_id: int) -> Path:
    return Path(settings.DATA_ROOT) / "annotation" / f"campaign-{campaign_id}" / "blobs"


def label_blobs(campaign_id: int) -> BlobStore:
    """The campaign's chunk blobs: one store for all its assignments, so a chunk painted alike
    by two annotators (or left as it was by a restore) is stored once."""
    durable = bool(getattr(settings, "ANNOTATION_LABELS_DURABLE", True))
    return BlobStore(label_blobs_root(campaign_id), durable=durable)


def _labels_revision_at(assignment_id: int, version: int) -> tuple[Any, dict[str, Any]]:
    """The manifest and provenance of the latest revision <= ``version`` that changed the
    labels (None and {} when none did): one query."""
    row = (
        Revision.objects.filter(
            assignment_id=assignment_id, number__lte=version, labels__isnull=False
        )
        .order_by("-number")
        .values_list("labels", "provenance")
        .first()
    )
    return (None, {}) if row is None else (row[0], dict(row[1] or {}))


def _version_of(manifest: Any, version: int, geometry: LabelGeometry) -> LabelVersion:
    if manifest is None:
        return LabelVersion(number=version, based_on=None) if version else version_empty()
    found = LabelVersion.from_json(manifest, geometry)
    return LabelVersion(
        number=version,
        based_on=found.based_on,
        chunks=found.chunks,
        changed=found.changed,
        restored_from=found.restored_from,
    )


def label_version_at(assignment_id: int, version: int, geometry: LabelGeometry) -> LabelVersion:
    """The labels manifest in force at ``version``: the latest revision <= it that changed the
    labels, renumbered ``version`` (points and labels share one version sequence); empty when
    none did."""
    manifest, _ = _labels_revision_at(assignment_id, version)
    return _version_of(manifest, version, geometry)


@dataclass(frozen=True)
class Labels:
    """An assignment's painted labels at one version: the chunk map and where its blobs are."""

    version: int
    geometry: LabelGeometry
    chunks: Mapping[ChunkIndex, str]
    blobs: BlobStore
    #: Where each object came from (:func:`labels_provenance_at`), read with the chunk map.
    provenance: Mapping[str, Any] = field(default_factory=dict)


def labels_at(assignment: Assignment, version: int | None = None) -> Labels:
    """The labels of ``version`` (the current one when None); the caller checks the number."""
    number = assignment.version if version is None else version
    geometry = label_geometry(assignment.box)
    manifest, provenance = _labels_revision_at(assignment.pk, number)
    chunks = _version_of(manifest, number, geometry).chunks
    return Labels(number, geometry, chunks, label_blobs(assignment.box.campaign_id), provenance)


def label_meshes_root(campaign_id: int) -> Path:
    """The campaign's mesh cache: one for all its assignments, so an object painted alike by
    two annotators, or unchanged by a save, is meshed once."""
    return Path(settings.DATA_ROOT) / "annotation" / f"campaign-{campaign_id}" / "meshes"


def label_meshes(assignment: Assignment, labels: Labels) -> VersionMeshes:
    """The Neuroglancer mesh source of a labels version, built on first use and cached."""
    # Meshing imports zmesh, scipy and pandas: only a request for meshes pays for them.
    from pipeline.label_meshes import version_meshes

    return version_meshes(
        labels.blobs, labels.geometry, labels.chunks, label_meshes_root(assignment.box.campaign_id)
    )


def assist_job_latest(assignment: Assignment) -> AssistJob | None:
    """The assignment's latest propose-all job (the one its page shows)."""
    return AssistJob.objects.filter(assignment=assignment).order_by("-created", "-id").first()


def labels_provenance_at(assignment_id: int, version: int) -> dict[str, Any]:
    """Where each painted object of ``version`` came from: the provenance of the labels
    revision in force at it (as :func:`label_version_at`); empty when none was recorded."""
    return _labels_revision_at(assignment_id, version)[1]


@dataclass(frozen=True)
class BoxImage:
    """A task box's image as the painting editor draws it: uint8 (z, y, x), clipped to the
    image, and the raw values that map to 0 and 255."""

    voxels: np.ndarray
    value_range: tuple[float, float]


def box_image(assignment: Assignment) -> BoxImage:
    """The box's voxels of the campaign's image layer, stretched to uint8 by
    :func:`pipeline.box_image.stretch_uint8`; raises ``InvalidInputError`` when the image is
    missing or has no voxels in the box."""
    box = assignment.box
    layer = box.campaign.image_layer
    raw = read_box(Path(layer.dataset.root) / layer.path, box.start, box.size)
    voxels, value_range = stretch_uint8(raw)
    return BoxImage(np.ascontiguousarray(voxels), value_range)
