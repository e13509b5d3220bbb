"""Curation API serializers: a curation job, a publication request."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from rest_framework import serializers

from webapp.core.jobs.models import JobState
from webapp.curation.models import CurationJob


class CurationJobSerializer(serializers.ModelSerializer[CurationJob]):
    progress = serializers.FloatField(read_only=True, help_text="done / total of the stage, 0-1.")
    state = serializers.ChoiceField(
        choices=JobState.choices,
        read_only=True,
        help_text="status as it stands now: 'retrying' while a running job's worker is gone.",
    )
    campaign = serializers.IntegerField(source="campaign_id", read_only=True, allow_null=True)
    layer = serializers.SerializerMethodField(help_text="Name of the source layer.")
    dataset = serializers.SerializerMethodField(help_text="Slug of the layer's dataset.")
    name = serializers.SerializerMethodField(help_text="Name of the curated layer.")
    verdicts = serializers.SerializerMethodField(help_text="Verdicts whose objects it keeps.")
    kept = serializers.SerializerMethodField(help_text="Objects kept, once known.")
    result_layer = serializers.SerializerMethodField(
        help_text="Name of the published layer, once it exists."
    )
    viewer_url = serializers.SerializerMethodField(
        help_text="The viewer page showing the published layer alone among the segmentations "
        "(its source hidden), once the layer exists."
    )

    class Meta:
        model = CurationJob
        fields = [
            "id",
            "kind",
            "status",
            "state",
            "stage",
            "done",
            "total",
            "progress",
            "error",
            "campaign",
            "layer",
            "dataset",
            "name",
            "verdicts",
            "kept",
            "result_layer",
            "viewer_url",
            "created",
            "updated",
            "started",
            "finished",
        ]
        read_only_fields = fields

    def get_layer(self, job: CurationJob) -> str:
        return job.layer.name

    def get_dataset(self, job: CurationJob) -> str:
        return job.layer.dataset.slug

    def get_name(self, job: CurationJob) -> str:
        return str((job.params or {}).get("name", ""))

    def get_verdicts(self, job: CurationJob) -> list[str]:
        return [str(v) for v in (job.params or {}).get("verdicts", [])]

    def get_kept(self, job: CurationJob) -> int | None:
        kept: Any = (job.params or {}).get("kept")
        return int(kept) if kept is not None else None

    def get_result_layer(self, job: CurationJob) -> str | None:
        return job.result_layer.name if job.result_layer is not None else None

    def get_viewer_url(self, job: CurationJob) -> str | None:
        if job.result_layer is None:
            return None
        # The new layer shown alone among the segmentations, its source hidden.
        return f"/datasets/{job.layer.dataset.slug}/?{urlencode({'show': job.result_layer.name})}"


class PublishRequestSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        help_text="Name of the new layer (default '<layer>-curated', made unique).",
    )
    verdicts = serializers.ListField(
        child=serializers.CharField(max_length=40),
        required=False,
        min_length=1,
        max_length=12,
        help_text="Final verdicts whose objects the layer keeps (default: the campaign's "
        "positive classes, e.g. tp and tp_distortion).",
    )
