"""Annotation API serializers: shapes and bounds here, meaning in the services; answers are
documented field by field so the schema tells the truth."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

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
    TaskBox,
)
from webapp.annotation.services import (
    MAX_COMMENT,
    MAX_OPS_PER_SAVE,
    MAX_REASON,
    MAX_REDUNDANCY,
)

MAX_VERSION = 2**31 - 1
MAX_CSV = 5 * 1024 * 1024


class LabelClassSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField(max_length=40, help_text="Stored and exported, e.g. 'nucleus'.")
    label = serializers.CharField(  # type: ignore[assignment]
        max_length=100, required=False, help_text="What the page shows."
    )
    colour = serializers.CharField(max_length=7, help_text="'#rrggbb'.")
    key = serializers.CharField(max_length=1, help_text="Keyboard shortcut of the class.")


class GeometrySerializer(serializers.Serializer[dict[str, Any]]):
    shape = serializers.ListField(child=serializers.FloatField(), help_text="z y x voxels.")
    voxel_size_um = serializers.ListField(child=serializers.FloatField())
    origin_um = serializers.ListField(child=serializers.FloatField())


class AnnotationCampaignSerializer(serializers.ModelSerializer[AnnotationCampaign]):
    dataset = serializers.CharField(source="dataset.slug", read_only=True)
    image_layer = serializers.CharField(source="image_layer.name", read_only=True)
    label_schema = LabelClassSerializer(many=True, read_only=True)
    box_size_um = serializers.ListField(child=serializers.FloatField(), read_only=True)
    geometry = GeometrySerializer(read_only=True)
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, default=None, allow_null=True
    )
    my_roles = serializers.SerializerMethodField()

    class Meta:
        model = AnnotationCampaign
        fields = [
            "id",
            "name",
            "dataset",
            "image_layer",
            "instructions",
            "label_schema",
            "box_size_um",
            "redundancy",
            "deadline",
            "state",
            "match_tolerance_um",
            "painted",
            "geometry",
            "created_by",
            "created",
            "my_roles",
        ]
        read_only_fields = fields

    def get_my_roles(self, campaign: AnnotationCampaign) -> list[str]:
        from webapp.annotation.selectors import roles_of

        request = self.context.get("request")
        return roles_of(campaign, request.user) if request is not None else []


class AnnotationCampaignCreateSerializer(serializers.Serializer[dict[str, Any]]):
    dataset = serializers.CharField(max_length=100, help_text="The dataset's slug.")
    image_layer = serializers.CharField(max_length=100, help_text="An image layer's name.")
    name = serializers.CharField(max_length=200)
    instructions = serializers.CharField(required=False, allow_blank=True, max_length=50_000)
    label_schema = LabelClassSerializer(many=True, required=False)
    box_size_um = serializers.ListField(
        child=serializers.FloatField(min_value=0.001, max_value=1e6),
        min_length=3,
        max_length=3,
        required=False,
        help_text="z y x in um (default 50 um each).",
    )
    redundancy = serializers.IntegerField(min_value=1, max_value=MAX_REDUNDANCY, default=1)
    deadline = serializers.DateTimeField(required=False, allow_null=True)
    match_tolerance_um = serializers.FloatField(min_value=0.001, max_value=1000, default=3.0)
    painted = serializers.BooleanField(
        default=False, help_text="Objects are painted as voxel labels (the labels endpoints)."
    )
    members = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField(max_length=150)),
        required=False,
        max_length=200,
        help_text="[{'username', 'role'}] added after the creator (its first manager).",
    )


class AnnotationCampaignUpdateSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField(max_length=200, required=False)
    instructions = serializers.CharField(required=False, allow_blank=True, max_length=50_000)
    deadline = serializers.DateTimeField(required=False, allow_null=True)
    state = serializers.ChoiceField(choices=CampaignState.choices, required=False)
    match_tolerance_um = serializers.FloatField(min_value=0.001, max_value=1000, required=False)
    label_schema = LabelClassSerializer(many=True, required=False)
    painted = serializers.BooleanField(required=False)


class AnnotationMemberSerializer(serializers.ModelSerializer[CampaignMember]):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = CampaignMember
        fields = ["id", "username", "role", "created"]
        read_only_fields = fields


class AnnotationMemberInputSerializer(serializers.Serializer[dict[str, Any]]):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


# --- boxes --------------------------------------------------------------------------------------


class BoxSerializer(serializers.ModelSerializer[TaskBox]):
    start = serializers.ListField(child=serializers.IntegerField(), help_text="z y x voxels.")
    size = serializers.ListField(child=serializers.IntegerField(), help_text="z y x voxels.")
    n_taken = serializers.IntegerField(read_only=True, help_text="Slots taken by annotators.")
    n_submitted = serializers.IntegerField(read_only=True)
    n_approved = serializers.IntegerField(read_only=True)
    flagged = serializers.SerializerMethodField()
    consensus_points = serializers.SerializerMethodField(
        help_text="Points of the consensus a manager accepted as the box's ground truth; null "
        "when none was accepted."
    )
    label_truth = serializers.SerializerMethodField(
        help_text="A painted box's accepted ground-truth volume: consensus (quorum q) or "
        "assignment (one annotator's); null when none was accepted."
    )

    class Meta:
        model = TaskBox
        fields = [
            "id",
            "name",
            "start",
            "size",
            "priority",
            "source",
            "source_ref",
            "flagged",
            "flag_reason",
            "n_taken",
            "n_submitted",
            "n_approved",
            "consensus_points",
            "label_truth",
            "created",
        ]
        read_only_fields = fields

    def get_flagged(self, box: TaskBox) -> bool:
        return bool(box.flag_reason)

    def get_consensus_points(self, box: TaskBox) -> int | None:
        # selectors.boxes_of joins the ground truth; a box without one has no such attribute.
        truth = getattr(box, "ground_truth", None)
        return None if truth is None else len(truth.points)

    def get_label_truth(self, box: TaskBox) -> str | None:
        truth = getattr(box, "label_truth", None)
        if truth is None:
            return None
        n = truth.objects_count
        objects = f"{n} object{'' if n == 1 else 's'}"
        if truth.source == "consensus":
            return f"consensus (quorum {truth.quorum}), {objects}"
        annotator = next((m["annotator"] for m in truth.members), "?")
        return f"{annotator}'s volume, {objects}"


class BoxBriefSerializer(serializers.ModelSerializer[TaskBox]):
    """A box as an assignment shows it: without its slot counts."""

    start = serializers.ListField(child=serializers.IntegerField(), help_text="z y x voxels.")
    size = serializers.ListField(child=serializers.IntegerField(), help_text="z y x voxels.")
    flagged = serializers.SerializerMethodField()

    class Meta:
        model = TaskBox
        fields = ["id", "name", "start", "size", "priority", "source", "source_ref", "flagged",
                  "flag_reason", "created"]  # fmt: skip
        read_only_fields = fields

    def get_flagged(self, box: TaskBox) -> bool:
        return bool(box.flag_reason)


class RegionSerializer(serializers.Serializer[dict[str, Any]]):
    start = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=2**31 - 1),
        min_length=3,
        max_length=3,
        help_text="z y x voxels.",
    )
    size = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**31 - 1),
        min_length=3,
        max_length=3,
    )


class BoxesCreateSerializer(serializers.Serializer[dict[str, Any]]):
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=BoxSource.choices,
        help_text="tile: the volume or `region` in boxes of the campaign's size; sample: "
        "`count` boxes by stratified random sampling (`seed`, `region`, `mask_layer`); csv: "
        "the table in `csv` (id, x, y, z, w, h, d in voxels); missed: a box around each missed "
        "object of the proofreading campaign `proofreading_campaign`.",
    )
    region = RegionSerializer(required=False)
    count = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    mask_layer = serializers.CharField(max_length=100, required=False)
    min_inside = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.5)
    csv = serializers.CharField(max_length=MAX_CSV, required=False, trim_whitespace=False)
    proofreading_campaign = serializers.IntegerField(
        min_value=1, max_value=2**63 - 1, required=False
    )
    priority = serializers.IntegerField(min_value=-1000, max_value=1000, default=0)


class BoxesCreatedSerializer(serializers.Serializer[dict[str, Any]]):
    created = serializers.IntegerField()
    boxes = BoxSerializer(many=True)


# --- assignments --------------------------------------------------------------------------------


class AssignmentSerializer(serializers.ModelSerializer[Assignment]):
    campaign = serializers.IntegerField(source="box.campaign_id", read_only=True)
    box = BoxBriefSerializer(read_only=True)
    annotator = serializers.CharField(
        source="annotator.username", read_only=True, default=None, allow_null=True
    )
    reviewer = serializers.CharField(
        source="reviewer.username", read_only=True, default=None, allow_null=True
    )
    count = serializers.SerializerMethodField(help_text="Current annotations.")

    class Meta:
        model = Assignment
        fields = [
            "id",
            "campaign",
            "box",
            "slot",
            "annotator",
            "state",
            "version",
            "taken",
            "submitted",
            "reviewer",
            "reviewed",
            "review_comment",
            "active_seconds",
            "count",
        ]
        read_only_fields = fields

    def get_count(self, assignment: Assignment) -> int:
        known = getattr(assignment, "current_count", None)  # read with the row (hand-out)
        if known is not None or hasattr(assignment, "current_count"):
            return int(known or 0)
        return Annotation.objects.filter(assignment=assignment, valid_to__isnull=True).count()


class AnnotationSerializer(serializers.ModelSerializer[Annotation]):
    coords = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()),
        help_text="Voxel positions z y x (voxel i's centre at i): point [p]; line and box "
        "[a, b]; ellipsoid [centre, radii]; polyline [p1..pn].",
    )

    class Meta:
        model = Annotation
        fields = ["uid", "kind", "label", "object_id", "coords", "description", "valid_from"]
        read_only_fields = fields


class AnnotationStateSerializer(serializers.Serializer[dict[str, Any]]):
    version = serializers.IntegerField()
    current_version = serializers.IntegerField()
    annotations = AnnotationSerializer(many=True)


class OpSerializer(serializers.Serializer[dict[str, Any]]):
    op = serializers.ChoiceField(choices=["upsert", "delete"])
    uid = serializers.CharField(max_length=64)
    kind = serializers.ChoiceField(choices=AnnotationKind.choices, required=False)
    label = serializers.CharField(max_length=40, required=False)  # type: ignore[assignment]
    object_id = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False)
    coords = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(), min_length=3, max_length=3),
        required=False,
        max_length=1000,
    )
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)


class SaveInputSerializer(serializers.Serializer[dict[str, Any]]):
    base_version = serializers.IntegerField(min_value=0, max_value=MAX_VERSION)
    ops = OpSerializer(many=True, max_length=MAX_OPS_PER_SAVE, min_length=1)  # type: ignore[call-arg]


class SaveResultSerializer(serializers.Serializer[dict[str, Any]]):
    version = serializers.IntegerField()
    created = serializers.IntegerField()
    changed = serializers.IntegerField()
    deleted = serializers.IntegerField()
    count = serializers.IntegerField()
    active_seconds = serializers.FloatField()


class LabelGeometrySerializer(serializers.Serializer[dict[str, Any]]):
    shape = serializers.ListField(child=serializers.IntegerField(), help_text="z y x voxels.")
    chunk = serializers.ListField(child=serializers.IntegerField(), help_text="z y x voxels.")
    start = serializers.ListField(
        child=serializers.IntegerField(), help_text="The box's first voxel in the image, z y x."
    )
    voxel_size_nm = serializers.ListField(child=serializers.FloatField(), help_text="z y x.")
    origin_nm = serializers.ListField(
        child=serializers.FloatField(), help_text="Physical position of the box's voxel 0, z y x."
    )


class ObjectProvenanceSerializer(serializers.Serializer[dict[str, Any]]):
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=OBJECT_SOURCES,
        help_text="Painted by hand, accepted from a click, or accepted from a proposal.",
    )
    proposal_source = serializers.ChoiceField(
        choices=PROPOSAL_SOURCES, required=False, help_text="What proposed it."
    )
    model = serializers.CharField(
        required=False, max_length=100, help_text="The model version that proposed it."
    )
    interpolated = serializers.DictField(
        child=serializers.ListField(child=serializers.IntegerField(min_value=0)),
        required=False,
        help_text="The slices interpolation filled, per plane (xy, xz, yz): indices in the box "
        "along the plane's normal.",
    )


class LabelsStateSerializer(serializers.Serializer[dict[str, Any]]):
    version = serializers.IntegerField(help_text="The version these labels are of.")
    current_version = serializers.IntegerField()
    geometry = LabelGeometrySerializer()
    chunks = serializers.IntegerField(help_text="Chunks holding labels (the others are 0).")
    # The field shadows Field.source only in the stubs (DRF moves declared fields out).
    source = serializers.CharField(  # type: ignore[assignment]
        help_text="URL of this version as a read-only OME-Zarr label image (zarr v2 and v3, "
        "zstd chunks); it never changes."
    )
    neuroglancer_source = serializers.CharField(help_text="The same for Neuroglancer.")
    neuroglancer_sources = serializers.ListField(
        child=serializers.CharField(),
        help_text="The sources of a Neuroglancer segmentation layer showing this version: the "
        "OME-Zarr labels, then its objects' meshes (precomputed, absent while nothing is painted).",
    )
    provenance = serializers.DictField(
        child=ObjectProvenanceSerializer(),
        help_text="Where each object of this version came from, by object id (as the saves said; "
        "objects saved without it are absent).",
    )


class LabelObjectSerializer(serializers.Serializer[dict[str, Any]]):
    segment_id = serializers.IntegerField(help_text="The object's id in the labels.")
    voxels = serializers.IntegerField()
    volume_um3 = serializers.FloatField(allow_null=True)
    surface_area_um2 = serializers.FloatField(
        allow_null=True, help_text="Area of the object's smoothed mesh, as the pipeline measures."
    )
    sphericity = serializers.FloatField(
        allow_null=True, help_text="pi^(1/3) (6 V)^(2/3) / A: 1 for a sphere."
    )
    area_um2 = serializers.FloatField(
        allow_null=True,
        help_text="An object of a 2D image: its area (its volume, surface and sphericity are "
        "null); null in a volume.",
    )
    centroid_z = serializers.FloatField(help_text="In the image's voxels.")
    centroid_y = serializers.FloatField()
    centroid_x = serializers.FloatField()
    centroid_z_um = serializers.FloatField(help_text="Physical position, um.")
    centroid_y_um = serializers.FloatField()
    centroid_x_um = serializers.FloatField()
    provenance = ObjectProvenanceSerializer(
        allow_null=True, help_text="Where the object came from, as the save that painted it said."
    )


class LabelObjectsSerializer(serializers.Serializer[dict[str, Any]]):
    version = serializers.IntegerField(help_text="The version measured.")
    current_version = serializers.IntegerField()
    objects = LabelObjectSerializer(many=True)


class LabelsSaveResultSerializer(serializers.Serializer[dict[str, Any]]):
    version = serializers.IntegerField()
    chunks_changed = serializers.IntegerField(
        help_text="Chunks whose content differs from the base version's."
    )
    chunks = serializers.IntegerField(help_text="Chunks holding labels after the save.")
    active_seconds = serializers.FloatField()


class ConflictSerializer(serializers.Serializer[dict[str, Any]]):
    message = serializers.CharField()
    current_version = serializers.IntegerField()


class RestoreInputSerializer(serializers.Serializer[dict[str, Any]]):
    version = serializers.IntegerField(min_value=0, max_value=MAX_VERSION)
    base_version = serializers.IntegerField(min_value=0, max_value=MAX_VERSION)


class SubmitInputSerializer(serializers.Serializer[dict[str, Any]]):
    base_version = serializers.IntegerField(min_value=0, max_value=MAX_VERSION)


class FlagInputSerializer(serializers.Serializer[dict[str, Any]]):
    reason = serializers.CharField(max_length=MAX_REASON)


class ReviewInputSerializer(serializers.Serializer[dict[str, Any]]):
    comment = serializers.CharField(max_length=MAX_COMMENT, required=False, allow_blank=True)


class RevisionSerializer(serializers.ModelSerializer[Revision]):
    author = serializers.CharField(
        source="author.username", read_only=True, default=None, allow_null=True
    )
    kind = serializers.ChoiceField(choices=RevisionKind.choices, read_only=True)
    summary = serializers.DictField(child=serializers.IntegerField(), read_only=True)

    class Meta:
        model = Revision
        fields = ["number", "kind", "based_on", "restored_from", "author", "created", "summary"]
        read_only_fields = fields


class AuditSerializer(serializers.ModelSerializer[AuditEntry]):
    actor = serializers.CharField(
        source="actor.username", read_only=True, default=None, allow_null=True
    )
    action = serializers.ChoiceField(choices=AuditAction.choices, read_only=True)
    box = serializers.CharField(source="box.name", read_only=True, default=None, allow_null=True)
    detail = serializers.DictField(read_only=True)

    class Meta:
        model = AuditEntry
        fields = ["id", "created", "actor", "action", "box", "assignment", "detail"]
        read_only_fields = fields


STATES = AssignmentState.choices


# --- coverage map -------------------------------------------------------------------------------


class CoverageBoxSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.IntegerField()
    name = serializers.CharField()
    state = serializers.ChoiceField(
        choices=["todo", "in_progress", "submitted", "approved", "flagged"],
        help_text="Of the box's slots together: flagged; approved (all); submitted (all "
        "submitted or approved); in_progress (any taken); todo.",
    )
    rect = serializers.ListField(
        child=serializers.FloatField(),
        help_text="x, y, width, height in the thumbnail's pixels: the box projected along z.",
    )
    crosses_slice = serializers.BooleanField(
        help_text="Whether the box holds the thumbnail's slice (the middle z)."
    )
    suggested = serializers.FloatField(
        allow_null=True,
        help_text="The model's uncertainty (mean entropy, bits) where Suggest next boxes chose "
        "this box; null for boxes no model suggested.",
    )


class CoverageSerializer(serializers.Serializer[dict[str, Any]]):
    thumbnail_url = serializers.CharField(allow_null=True)
    width = serializers.IntegerField(help_text="The thumbnail's width in pixels.")
    height = serializers.IntegerField()
    shape = serializers.ListField(child=serializers.IntegerField(), help_text="z y x voxels.")
    slice_z = serializers.IntegerField(help_text="The z slice the thumbnail shows.")
    total = serializers.IntegerField(help_text="Boxes in the campaign.")
    truncated = serializers.BooleanField(help_text="Only the first boxes (by id) are drawn.")
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Drawn, by state.")
    boxes = CoverageBoxSerializer(many=True)


# --- dashboard ----------------------------------------------------------------------------------


def _counts(help_text: str) -> serializers.DictField:
    return serializers.DictField(child=serializers.IntegerField(), help_text=help_text)


class AnnotatorFiguresSerializer(serializers.Serializer[dict[str, Any]]):
    annotator = serializers.CharField()
    tasks = serializers.IntegerField(help_text="Slots this annotator holds now.")
    by_state = _counts("Their slots per assignment state.")
    objects = serializers.IntegerField(
        help_text="Current annotations of their submitted and approved tasks."
    )
    median_seconds_per_task = serializers.FloatField(
        allow_null=True, help_text="Server-measured, submitted and approved tasks."
    )
    median_seconds_per_object = serializers.FloatField(
        allow_null=True, help_text="Median over their tasks with objects of seconds / objects."
    )
    reviews = serializers.IntegerField(help_text="Approvals and rejections of their tasks.")
    rejections = serializers.IntegerField()
    rejection_rate = serializers.FloatField(allow_null=True, help_text="rejections / reviews.")


class ApprovalTimelinePointSerializer(serializers.Serializer[dict[str, Any]]):
    start = serializers.DateTimeField(help_text="Start of the hour or day (UTC).")
    approved = serializers.IntegerField()
    submitted = serializers.IntegerField()
    approved_total = serializers.IntegerField(help_text="Approvals up to the end of this one.")


class ApprovalTimelineSerializer(serializers.Serializer[dict[str, Any]]):
    bucket = serializers.ChoiceField(choices=["hour", "day"])
    points = ApprovalTimelinePointSerializer(many=True)


class AgreementAnnotatorSerializer(serializers.Serializer[dict[str, Any]]):
    annotator = serializers.CharField()
    boxes = serializers.IntegerField()
    precision = serializers.FloatField(allow_null=True)
    recall = serializers.FloatField(allow_null=True)
    mean_f1 = serializers.FloatField(allow_null=True)


class DashboardAgreementSerializer(serializers.Serializer[dict[str, Any]]):
    tolerance_um = serializers.FloatField()
    boxes_compared = serializers.IntegerField()
    mean_f1 = serializers.FloatField(allow_null=True)
    f1_bins = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Boxes per tenth of their mean pairwise F1: [0, 0.1), ..., [0.9, 1.0].",
    )
    annotators = AgreementAnnotatorSerializer(many=True)


class DashboardLabelBoxSerializer(serializers.Serializer[dict[str, Any]]):
    box = serializers.IntegerField()
    name = serializers.CharField()
    mean_f1 = serializers.FloatField(allow_null=True, help_text="Mean object F1 of its pairs.")
    mean_dice = serializers.FloatField(allow_null=True, help_text="Mean voxel Dice of its pairs.")


class DashboardLabelPairSerializer(serializers.Serializer[dict[str, Any]]):
    reference = serializers.CharField()
    other = serializers.CharField()
    boxes = serializers.IntegerField(help_text="Boxes both painted.")
    matched = serializers.IntegerField()
    precision = serializers.FloatField(allow_null=True)
    recall = serializers.FloatField(allow_null=True)
    f1 = serializers.FloatField(allow_null=True)
    dice = serializers.FloatField(allow_null=True)
    mean_matched_iou = serializers.FloatField(allow_null=True)


class DashboardLabelAgreementSerializer(serializers.Serializer[dict[str, Any]]):
    boxes_compared = serializers.IntegerField()
    mean_f1 = serializers.FloatField(allow_null=True)
    mean_dice = serializers.FloatField(allow_null=True)
    boxes = DashboardLabelBoxSerializer(many=True)
    pairs = DashboardLabelPairSerializer(many=True, help_text="Pooled over their boxes.")


class AnnotationDashboardSerializer(serializers.Serializer[dict[str, Any]]):
    redundancy = serializers.IntegerField()
    boxes_total = serializers.IntegerField()
    boxes_complete = serializers.IntegerField(help_text="Boxes with all N slots approved.")
    progress = serializers.FloatField(allow_null=True, help_text="boxes_complete / boxes_total.")
    boxes = _counts(
        "Boxes per state: todo, in_progress, in_review (all slots submitted or approved), "
        "complete (all approved), flagged."
    )
    slots = _counts("Assignments (slots) per state.")
    annotators = AnnotatorFiguresSerializer(many=True)
    timeline = ApprovalTimelineSerializer(help_text="Approvals and submissions per hour or day.")
    agreement = DashboardAgreementSerializer(
        allow_null=True,
        help_text="Point agreement between annotators; null with N = 1, before two "
        "annotators have handed in one box, or in a painted campaign.",
    )
    painted_agreement = DashboardLabelAgreementSerializer(
        allow_null=True,
        help_text="A painted campaign's label agreement (object F1 at IoU >= 0.5, voxel Dice) "
        "per box and per annotator pair; null otherwise or before two volumes of one box.",
    )
