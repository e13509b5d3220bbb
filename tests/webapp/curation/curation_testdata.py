"""What the curation tests share: the verdict plan, the password, a campaign and its verdicts
(imported by name: a unique module)."""

from __future__ import annotations

from typing import Any

from webapp.datasets.models import Layer
from webapp.proofreading import services
from webapp.proofreading.models import CampaignItem, ProofreadingCampaign
from webapp.proofreading.services import CampaignSettings

PASSWORD = "curate-pass-123"
# Verdicts given to the first items (by segment id): the rest stay undecided.
PLAN = ["tp", "tp", "tp_distortion", "fp", "fp", "uncertain"]


def make_campaign(layer: Layer, people: dict[str, Any], name: str = "Curate") -> Any:
    return services.campaign_create(
        people["owner"],
        layer,
        CampaignSettings(name=name, seed=1),
        members=[("rev", "reviewer")],
    )


def give_verdicts(campaign: ProofreadingCampaign, user: Any, plan: list[str]) -> dict[int, str]:
    """Verdicts by ``user`` on the campaign's first items by segment id; returns segment ->
    verdict given."""
    items = list(CampaignItem.objects.filter(campaign=campaign).order_by("segment_id"))
    given = {}
    for item, verdict in zip(items, plan, strict=False):
        services.verdict_create(campaign, user, item.id, verdict)
        given[item.segment_id] = verdict
    return given
