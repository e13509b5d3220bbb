"""Runs API serializers: a run with its stages and curves, a start request, a model version."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pipeline.training_history import HISTORY_FIELDS
from webapp.core.jobs.models import JobState, JobStatus
from webapp.runs import selectors
from webapp.runs.models import STAGES, ModelVersion, PipelineRun
from webapp.runs.presets import OVERRIDES, PRESETS

MAX_ID = 2**31 - 1


class RunStageSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.ChoiceField(choices=[(s, s) for s in STAGES])
    state = serializers.ChoiceField(
        choices=[(s, s) for s in ("pending", "running", "done", "skipped", "stopped")],
        help_text="'stopped': the run ended (failed, cancelled) while it ran.",
    )
    done = serializers.IntegerField()
    total = serializers.IntegerField(help_text="0 while unknown.")
    seconds = serializers.FloatField(allow_null=True)
    started = serializers.CharField(allow_null=True)
    eta = serializers.CharField(allow_null=True, help_text="When it should end at its pace so far.")
    part = serializers.CharField(
        allow_null=True,
        help_text="The part of the running stage that done/total count (e.g. 'fit segmentation' "
        "after training); null while they count the stage itself.",
    )


class RunEpochSerializer(serializers.Serializer[dict[str, Any]]):
    """One epoch of training (``pipeline.training.HISTORY_FIELDS``); null where not measured
    (validation scores only every ``val_interval`` epochs)."""


for _name in HISTORY_FIELDS:
    RunEpochSerializer._declared_fields[_name] = serializers.FloatField(
        allow_null=True, required=False
    )


class RunBoxSerializer(serializers.Serializer[dict[str, Any]]):
    """A box of the ground truth a run trains on."""

    box = serializers.IntegerField(help_text="The campaign's box id.")
    name = serializers.CharField()
    source = serializers.ChoiceField(  # type: ignore[assignment]  # a field named source
        choices=[(s, s) for s in ("consensus", "assignment", "approved")],
        help_text="A manager's accepted consensus or volume, else the first approved one.",
    )
    version = serializers.IntegerField(help_text="The labels' version it uses.")
    held_out = serializers.BooleanField(help_text="Kept for evaluation, not trained on.")


class RunVerdictsSerializer(serializers.Serializer[dict[str, Any]]):
    campaign = serializers.IntegerField(help_text="The proofreading campaign.")
    name = serializers.CharField()
    layer = serializers.CharField(help_text="The segmentation layer it proofread.")
    verdicts = serializers.IntegerField(help_text="Final verdicts fitted on.")
    t_volume = serializers.FloatField(help_text="Objects are kept from this volume (um^3)...")
    t_sphericity = serializers.FloatField(help_text="...and this sphericity.")
    precision = serializers.FloatField()
    recall = serializers.FloatField()
    f1 = serializers.FloatField()


class RunSerializer(serializers.ModelSerializer[PipelineRun]):
    status = serializers.ChoiceField(choices=JobStatus.choices, read_only=True)
    state = serializers.ChoiceField(
        choices=JobState.choices,
        read_only=True,
        help_text="status as it stands now: 'retrying' while a stage's worker is gone.",
    )
    progress = serializers.FloatField(read_only=True, help_text="done / total of the stage, 0-1.")
    dataset = serializers.CharField(source="dataset.slug", read_only=True)
    campaign = serializers.IntegerField(source="campaign_id", read_only=True, allow_null=True)
    owner = serializers.CharField(source="owner.username", read_only=True, allow_null=True)
    parent = serializers.IntegerField(  # type: ignore[assignment]  # a field, not the serializer's
        source="parent_id",
        read_only=True,
        allow_null=True,
        help_text="The model version it fine-tunes or segments with (see mode).",
    )
    mode = serializers.ChoiceField(
        choices=[(m, m) for m in ("train", "fine-tune", "predict")],
        read_only=True,
        help_text="train: from scratch; fine-tune: from parent's weights; predict: segments "
        "with parent, trains nothing.",
    )
    result_layer = serializers.CharField(
        source="result_layer.name", read_only=True, allow_null=True
    )
    model = serializers.SerializerMethodField(help_text="The model version it registered.")
    model_id = serializers.SerializerMethodField(
        help_text="Id of that model version (models/<id>/, models/<id>/download/)."
    )
    stages = serializers.SerializerMethodField()
    history = serializers.SerializerMethodField()
    boxes = serializers.SerializerMethodField(
        help_text="The ground truth it trains on: per box its name, source, version and "
        "whether it is held out for evaluation."
    )
    verdicts = serializers.SerializerMethodField(
        help_text="The proofreading verdicts whose fitted volume/sphericity filter the run "
        "applies (campaign, how many, the thresholds and their scores on the verdicts); null "
        "when none: the run keeps every object."
    )
    warnings = serializers.SerializerMethodField(
        help_text="Stages that produced nothing (no seed, no object, a model segmenting nothing "
        "in validation): such a version is published but never made the current model."
    )
    log = serializers.CharField(
        read_only=True,
        help_text="One timestamped line per stage started and ended (with its figures), the "
        "warnings, what was published; a failure's traceback at the end.",
    )

    class Meta:
        model = PipelineRun
        fields = [
            "id", "dataset", "campaign", "owner", "preset", "params", "mode", "parent",
            "status", "state", "stage", "done", "total", "progress", "stages", "history",
            "boxes", "verdicts", "metrics", "warnings", "error", "log", "result_layer", "model",
            "model_id", "created", "started", "finished",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(RunStageSerializer(many=True))
    def get_stages(self, run: PipelineRun) -> list[dict[str, Any]]:
        return selectors.run_stages(run)

    @extend_schema_field(RunEpochSerializer(many=True))
    def get_history(self, run: PipelineRun) -> list[dict[str, Any]]:
        return selectors.run_history(run)

    @extend_schema_field(RunBoxSerializer(many=True))
    def get_boxes(self, run: PipelineRun) -> list[dict[str, Any]]:
        return [
            {k: b[k] for k in ("box", "name", "source", "version", "held_out")}
            for b in (run.ground_truth or {}).get("boxes", [])
        ]

    @extend_schema_field(RunVerdictsSerializer(allow_null=True))
    def get_verdicts(self, run: PipelineRun) -> dict[str, Any] | None:
        found = (run.ground_truth or {}).get("verdicts")
        return dict(found) if found else None

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_warnings(self, run: PipelineRun) -> list[str]:
        found = (run.metrics or {}).get("warnings") or []
        return [str(w) for w in found]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_model(self, run: PipelineRun) -> int | None:
        model = getattr(run, "model", None)
        return None if model is None else model.number

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_model_id(self, run: PipelineRun) -> int | None:
        model = getattr(run, "model", None)
        return None if model is None else model.pk


class RunStartSerializer(serializers.Serializer[dict[str, Any]]):
    campaign = serializers.IntegerField(
        min_value=1,
        max_value=MAX_ID,
        required=False,
        help_text="The painted annotation campaign to train on (with `model`: to evaluate on).",
    )
    dataset = serializers.SlugField(
        max_length=100,
        required=False,
        help_text="With `model` and no campaign: the dataset (slug) to segment.",
    )
    parent = serializers.IntegerField(  # type: ignore[assignment]  # a field, not the serializer's
        min_value=1,
        max_value=MAX_ID,
        required=False,
        help_text="Fine-tune this model version (of any dataset you may see) instead of "
        "training from scratch.",
    )
    model = serializers.IntegerField(
        min_value=1,
        max_value=MAX_ID,
        required=False,
        help_text="Segment with this model version (of any dataset you may see): nothing is "
        "trained; a campaign's approved boxes, if given, all evaluate it.",
    )
    preset = serializers.ChoiceField(choices=sorted(PRESETS), default="standard")
    params = serializers.DictField(
        child=serializers.FloatField(min_value=-1e12, max_value=1e12),
        required=False,
        help_text="Overrides, 'section.key': value; see runs/presets/.",
    )


class RunPresetSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    config = serializers.DictField()


class RunOverrideSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField()
    type = serializers.CharField()
    low = serializers.FloatField()
    high = serializers.FloatField()
    help = serializers.CharField()


class RunPresetsSerializer(serializers.Serializer[dict[str, Any]]):
    presets = RunPresetSerializer(many=True)
    params = RunOverrideSerializer(many=True)


def presets_body() -> dict[str, Any]:
    return {
        "presets": [
            {"name": p.name, "title": p.label, "description": p.description, "config": p.config}
            for p in PRESETS.values()
        ],
        "params": [
            {"name": k, "type": o.kind.__name__, "low": o.low, "high": o.high, "help": o.help}
            for k, o in sorted(OVERRIDES.items())
        ],
    }


class ModelVersionSerializer(serializers.ModelSerializer[ModelVersion]):
    dataset = serializers.CharField(source="dataset.slug", read_only=True)
    run = serializers.IntegerField(source="run_id", read_only=True, allow_null=True)
    layer = serializers.CharField(source="layer.name", read_only=True, allow_null=True)
    current = serializers.BooleanField(
        read_only=True, help_text="The dataset's current model (at most one is)."
    )

    class Meta:
        model = ModelVersion
        fields = [
            "id", "dataset", "number", "current", "run", "layer", "params", "metrics", "created",
        ]  # fmt: skip
        read_only_fields = fields


class ModelProofreadingSerializer(serializers.Serializer[dict[str, Any]]):
    """The proofreading campaign opened on a model version's segmentation."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    items = serializers.IntegerField(help_text="Detections to proofread.")
    url = serializers.CharField(help_text="The campaign's page.")
    created = serializers.BooleanField(
        help_text="False: the open campaign the caller already manages on this layer."
    )


class AutoRetrainRequestSerializer(serializers.Serializer[dict[str, Any]]):
    """Turn a campaign's automatic retraining on, or change it."""

    every = serializers.IntegerField(
        min_value=1, max_value=10_000, help_text="Retrain after this many newly approved boxes."
    )
    preset = serializers.ChoiceField(choices=sorted(PRESETS), default="standard")
    params = serializers.DictField(
        child=serializers.FloatField(min_value=-1e12, max_value=1e12), required=False
    )


class AutoRetrainSerializer(serializers.Serializer[dict[str, Any]]):
    """A campaign's automatic retraining: off (``enabled`` false, the rest null) unless its
    managers set it."""

    enabled = serializers.BooleanField()
    every = serializers.IntegerField(
        allow_null=True, help_text="Retrain after this many newly approved boxes."
    )
    preset = serializers.CharField(allow_null=True)
    params = serializers.DictField(child=serializers.FloatField(), allow_null=True)
    owner = serializers.CharField(allow_null=True, help_text="Runs start as this manager.")
    approved_boxes = serializers.IntegerField(
        help_text="Boxes with approved painted ground truth now."
    )
    trained_boxes = serializers.IntegerField(
        help_text="Boxes the campaign's latest run trained on."
    )


class SuggestionsRequestSerializer(serializers.Serializer[dict[str, Any]]):
    campaign = serializers.IntegerField(
        min_value=1, max_value=MAX_ID, help_text="The annotation campaign to add the boxes to."
    )
    count = serializers.IntegerField(
        min_value=1, max_value=100, default=5, help_text="How many boxes to suggest."
    )


class SuggestedBoxSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.IntegerField()
    name = serializers.CharField()
    start = serializers.ListField(child=serializers.IntegerField(), help_text="z, y, x voxels.")
    size = serializers.ListField(child=serializers.IntegerField(), help_text="z, y, x voxels.")
    priority = serializers.IntegerField(help_text="Higher is handed out first.")
    uncertainty = serializers.FloatField(help_text="Mean voxel entropy of the probability, bits.")
    created = serializers.BooleanField(help_text="A new box (else an untouched one moved up).")


class SuggestionsSerializer(serializers.Serializer[dict[str, Any]]):
    model = serializers.IntegerField(help_text="The model version's number.")
    campaign = serializers.IntegerField()
    boxes = SuggestedBoxSerializer(many=True, help_text="Most uncertain first.")
