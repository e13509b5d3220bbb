"""Reads of the curation app: whose verdicts a layer shows, the accepted objects, the jobs.

Several campaigns may run over one layer. The layer's segment properties and its detections
exports carry the verdicts of **one** campaign: the most recently created campaign over the
layer that has at least one decided item (open or closed), with its final verdicts (the
consensus of the first round, or the expert's in the second round). Items not decided yet carry
no verdict. Each campaign's own export keeps its own verdicts; a curated layer carries the
verdicts of the campaign it was published from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db.models import QuerySet

from webapp.core.errors import InvalidRequest
from webapp.core.users import AnyUser
from webapp.curation.models import CurationJob, CurationKind
from webapp.datasets.models import Layer, LayerKind
from webapp.proofreading.models import CampaignItem, ItemStatus, ProofreadingCampaign
from webapp.proofreading.verdict_sets import VerdictClass, verdict_classes


def verdict_campaign_of(layer: Layer | int) -> ProofreadingCampaign | None:
    """The campaign whose verdicts the layer shows (see the module docstring), or None."""
    layer_id = layer if isinstance(layer, int) else layer.id
    return (
        ProofreadingCampaign.objects.filter(layer_id=layer_id, items__status=ItemStatus.DECIDED)
        .order_by("-created", "-id")
        .distinct()
        .first()
    )


def decided_verdicts(
    campaign: ProofreadingCampaign, segment_ids: Iterable[int] | None = None
) -> dict[int, str]:
    """Segment id -> final verdict of the campaign's decided items (optionally only some)."""
    items = CampaignItem.objects.filter(campaign=campaign, status=ItemStatus.DECIDED).exclude(
        verdict=""
    )
    if segment_ids is not None:
        items = items.filter(segment_id__in=list(segment_ids))
    return {int(s): str(v) for s, v in items.values_list("segment_id", "verdict").iterator(2000)}


def classes_of(campaign: ProofreadingCampaign) -> list[VerdictClass]:
    return verdict_classes(campaign.verdict_set)


def accepted_by_default(campaign: ProofreadingCampaign) -> list[str]:
    """The verdicts a curated layer keeps unless told otherwise: the positive classes (true
    positive, true positive with shape distortion in the default set)."""
    return [c.name for c in classes_of(campaign) if c.kind == "positive"]


def accepted_segments(campaign: ProofreadingCampaign, verdicts: Sequence[str]) -> dict[int, str]:
    """Segment id -> verdict of the decided items whose final verdict is in ``verdicts``."""
    wanted = set(verdicts)
    return {s: v for s, v in decided_verdicts(campaign).items() if v in wanted}


def mesh_layers_of(layer: Layer) -> list[Layer]:
    """The mesh layers drawn from segmentation ``layer`` (where its segment properties live)."""
    return list(
        Layer.objects.select_related("dataset")
        .filter(source_layer=layer, kind=LayerKind.MESH)
        .order_by("id")
    )


def publish_jobs_of(campaign: ProofreadingCampaign) -> list[CurationJob]:
    """The campaign's curated-layer publications, newest first (at most 20)."""
    return list(
        CurationJob.objects.select_related("result_layer__dataset", "layer__dataset")
        .filter(campaign=campaign, kind=CurationKind.PUBLISH)
        .order_by("-created", "-id")[:20]
    )


def curation_jobs_visible(user: AnyUser) -> list[CurationJob]:
    return list(CurationJob.objects.restrict(user, "view").order_by("-created", "-id")[:100])


def detection_ids_with_verdict(layer: Layer, verdict: str) -> QuerySet[Any, int]:
    """The ids of the layer's detections whose final verdict in the layer's verdict campaign is
    ``verdict`` (the ``verdict=`` filter of the detections list and exports); 400 when the layer
    has no verdicts or the campaign's verdict set has no such name."""
    campaign = verdict_campaign_of(layer)
    if campaign is None:
        raise InvalidRequest(
            "No proofreading campaign over this layer has decided a detection yet, so there is "
            "no verdict to filter by."
        )
    names = [c.name for c in verdict_classes(campaign.verdict_set)]
    if verdict not in names:
        raise InvalidRequest(
            f"Unknown verdict {verdict[:40]!r}: campaign {campaign.id} uses {', '.join(names)}."
        )
    return (
        CampaignItem.objects.filter(campaign=campaign, status=ItemStatus.DECIDED, verdict=verdict)
        .filter(detection_id__isnull=False)
        .values_list("detection_id", flat=True)
    )
