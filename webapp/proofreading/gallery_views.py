"""The gallery page: a campaign's items as a grid of cards, many decided at a glance.

The page (frontend/src/pages/proofreading_gallery.ts) claims a page of items through ``next/``
(count = the page size), shows each item's card (``detections`` card endpoint: rendered by the
layer's card job, or on demand for a card it has not reached) and gives one verdict to the
selected items through ``verdicts/bulk/``. Alt+click (or M) on a card's slice tile drops a
missed-object point (``missed/``) on the voxel under the pointer, mapped through the card's
geometry that ``cards/page/`` sends with it. Opening the page makes sure the layer's cards are
being rendered for its current data, the campaign's next pending items first.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from webapp.core.permissions import VIEW
from webapp.core.users import signed_in_user
from webapp.datasets.models import Dataset
from webapp.detections.cards import cards_build_start
from webapp.proofreading import selectors
from webapp.proofreading.gallery_services import item_claim
from webapp.proofreading.models import CampaignItem, ItemStatus, ProofreadingCampaign
from webapp.proofreading.verdict_sets import verdict_classes

logger = logging.getLogger(__name__)

#: Cards a page shows (and ``next/`` claims): six columns of 194 px cards, four rows.
GALLERY_PAGE_SIZE = 24
#: The campaign's next pending items whose cards the job renders first (a few pages).
PRIORITY_ITEMS = 5 * GALLERY_PAGE_SIZE


def campaign_for_page(request: HttpRequest, campaign_id: int) -> ProofreadingCampaign:
    """The campaign if the caller is a member and may see its dataset; 404 otherwise."""
    campaign = selectors.campaigns_visible(request.user).filter(id=campaign_id).first()
    if campaign is None:
        raise Http404("No such proofreading campaign, or you are not one of its members.")
    if not Dataset.objects.allows(request.user, VIEW, campaign.layer.dataset):
        raise Http404("You may not see this campaign's dataset.")
    return campaign


def reviewer_round(campaign: ProofreadingCampaign) -> int:
    """The round the caller reviews in: 2 for experts only, else 1 (as the queue page)."""
    roles = sorted(m.role for m in getattr(campaign, "my_memberships", []))
    return 2 if roles == ["expert"] else 1


def cards_for_gallery(campaign: ProofreadingCampaign) -> None:
    """Queue the layer's card job if its current data has none, the campaign's next pending
    items first; logged, never raised (cards are also rendered on demand)."""
    priority = list(
        CampaignItem.objects.filter(campaign=campaign, status=ItemStatus.PENDING)
        .order_by("queue_key")
        .values_list("segment_id", flat=True)[:PRIORITY_ITEMS]
    )
    try:
        cards_build_start(campaign.layer, reason="gallery", priority=priority)
    except Exception:
        logger.exception("could not queue the gallery cards of layer %s", campaign.layer_id)


@login_required
@require_safe
def gallery_page(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """A grid of the caller's next items as cards, for the campaign's members (404 otherwise)."""
    campaign = campaign_for_page(request, campaign_id)
    layer = campaign.layer
    dataset = layer.dataset
    cards_for_gallery(campaign)
    api = f"/api/v1/proofreading/campaigns/{campaign.id}/"
    config: dict[str, Any] = {
        "campaignId": campaign.id,
        "round": reviewer_round(campaign),
        "pageSize": GALLERY_PAGE_SIZE,
        "csrfToken": get_token(request),
        "verdictSet": [
            {"name": c.name, "label": c.label, "colour": c.colour, "key": c.key, "kind": c.kind}
            for c in verdict_classes(campaign.verdict_set)
        ],
        # Cards of a page: cards/page/ of the layer; of segment S alone: cardBase + "S/card.png".
        "cardBase": reverse(
            "api-detections-list", kwargs={"slug": dataset.slug, "layer_name": layer.name}
        ),
        "datasetSlug": dataset.slug,
        "layerName": layer.name,
        "queueUrl": reverse("proofreading:queue", args=[campaign.id]),
        "nextUrl": f"{api}next/",
        "missedCsvUrl": f"{api}missed.csv",
        "planar": layer.spatial_dims == 2,
    }
    context = {
        "campaign": campaign,
        "dataset": dataset,
        "config": config,
        "verdict_set": config["verdictSet"],
    }
    return render(request, "proofreading/gallery.html", context)


def queue_focus_item(
    request: HttpRequest, campaign: ProofreadingCampaign, round_: int
) -> int | None:
    """The item named by the queue page's ``?item=`` (a card opened from the gallery), handed
    to the caller so the page shows it first; None when absent, malformed, or not theirs to
    decide now (decided, in another round, held by N others)."""
    raw = request.GET.get("item", "")
    if request.method != "GET" or not raw.isdigit() or len(raw) > 18:
        return None
    handout = item_claim(campaign, signed_in_user(request), int(raw), round_=round_)
    return handout.item.id if handout is not None else None
