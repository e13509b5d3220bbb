"""Proofreading verdicts feed the next run: the volume/sphericity filter a run applies.

A run segments, measures and filters its objects. Without verdicts the filter keeps everything;
once proofreaders have classified a version's detections (true positive, with distortion, false
positive), the thresholds fitted on their final verdicts (``proofreading.thresholds``: the best
F1 at recall >= 0.8, k-fold over regions) are what the next run filters with. The run records
which campaign and how many verdicts in its ground-truth snapshot, and its published layer gets
that filter.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from webapp.core.errors import InvalidRequest
from webapp.datasets.models import Dataset
from webapp.proofreading.models import CampaignItem, ItemStatus, ProofreadingCampaign
from webapp.proofreading.thresholds import thresholds_fit

#: Fewer labelled verdicts than this fit no filter (a fit on a handful is noise).
MIN_VERDICTS = 8
#: The most recent campaigns looked at (each fit reads its decided items).
CAMPAIGNS_TRIED = 3


#: What the pages say when no verdicts set a filter.
NO_FILTER = "none: the run keeps every object it segments"


def _recent_campaigns(dataset: Dataset) -> QuerySet[ProofreadingCampaign]:
    """The dataset's most recent proofreading campaigns, newest first."""
    campaigns = ProofreadingCampaign.objects.filter(layer__dataset=dataset).select_related("layer")
    return campaigns.order_by("-created", "-id")[:CAMPAIGNS_TRIED]


def verdict_filter(dataset: Dataset) -> dict[str, Any] | None:
    """The filter fitted on the final verdicts of the most recent proofreading campaign of the
    dataset that has enough of them (none: None), with where it came from."""
    for campaign in _recent_campaigns(dataset):
        try:
            fit = thresholds_fit(campaign)
        except InvalidRequest:  # nothing decided, or no positive: nothing to fit
            continue
        if fit.n_labelled < MIN_VERDICTS:
            continue
        return {
            "campaign": campaign.pk,
            "name": campaign.name,
            "layer": campaign.layer.name,
            "verdicts": fit.n_labelled,
            "t_volume": fit.volume_min,
            "t_sphericity": fit.sphericity_min,
            "precision": fit.precision,
            "recall": fit.recall,
            "f1": fit.f1,
        }
    return None


def verdict_source(dataset: Dataset) -> dict[str, Any] | None:
    """What :func:`verdict_filter` would fit on, without fitting (the Retrain panel shows it on
    every page load): the most recent campaign of the dataset with enough decided items."""
    for campaign in _recent_campaigns(dataset):
        decided = CampaignItem.objects.filter(campaign=campaign, status=ItemStatus.DECIDED).count()
        if decided >= MIN_VERDICTS:
            return {"name": campaign.name, "layer": campaign.layer.name, "decided": decided}
    return None


def source_text(found: dict[str, Any] | None) -> str:
    """The Retrain panel's words for :func:`verdict_source`."""
    if not found:
        return NO_FILTER
    return (
        f"the run fits it on the {found['decided']} decided items of “{found['name']}” "
        f"on {found['layer']}"
    )


def verdicts_text(found: dict[str, Any] | None) -> str:
    """How the run page says what :func:`verdict_filter` found."""
    if not found:
        return NO_FILTER
    return (
        f"{found['verdicts']} verdicts of \u201c{found['name']}\u201d on {found['layer']}: "
        f"objects kept from {found['t_volume']:.3g} \u00b5m\u00b3 and sphericity "
        f"{found['t_sphericity']:.2f} (F1 {found['f1']:.2f} on the verdicts)"
    )
