"""The managers' pages of a campaign: the thresholds page and the dashboard.

Both are a server-rendered frame plus a script that reads the API (the thresholds page
``frontend/src/pages/proofreading_thresholds.ts``, the dashboard
``frontend/src/pages/proofreading_dashboard.ts``). They show every verdict, so they need
"report" on the campaign (managers and experts): other members get 403, anyone else 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.views.decorators.http import require_safe

from webapp.core.users import signed_in_user
from webapp.proofreading import selectors
from webapp.proofreading.models import ProofreadingCampaign
from webapp.proofreading.thresholds import (
    DEFAULT_FOLDS,
    DEFAULT_MIN_RECALL,
    may_save_filter,
)

#: How often the dashboard asks the API again (milliseconds).
DASHBOARD_POLL_MS = 3000


def _report_campaign(request: HttpRequest, campaign_id: int) -> ProofreadingCampaign:
    campaign = selectors.campaigns_visible(request.user).filter(id=campaign_id).first()
    if campaign is None:
        raise Http404("No such proofreading campaign, or you are not one of its members.")
    if not selectors.may_report(campaign, request.user):
        raise PermissionDenied("Only the campaign's managers and experts can open this page.")
    return campaign


def _api(campaign: ProofreadingCampaign) -> str:
    return f"/api/v1/proofreading/campaigns/{campaign.id}/"


@login_required
@require_safe
def thresholds_page(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """Volume against sphericity of the decided detections, with draggable thresholds."""
    campaign = _report_campaign(request, campaign_id)
    api = _api(campaign)
    config: dict[str, Any] = {
        "campaignId": campaign.id,
        "csrfToken": get_token(request),
        "dataUrl": f"{api}thresholds/",
        "fitUrl": f"{api}thresholds/fit/",
        "filterUrl": f"{api}thresholds/filter/",
        "canSave": may_save_filter(campaign, signed_in_user(request)),
        "minRecall": DEFAULT_MIN_RECALL,
        "nFolds": DEFAULT_FOLDS,
        "planar": campaign.layer.spatial_dims == 2,
    }
    return render(
        request,
        "proofreading/thresholds.html",
        {"campaign": campaign, "dataset": campaign.layer.dataset, "config": config},
    )


@login_required
@require_safe
def dashboard_page(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """Progress and per-reviewer plots, refreshed by polling the dashboard API."""
    campaign = _report_campaign(request, campaign_id)
    api = _api(campaign)
    config: dict[str, Any] = {
        "campaignId": campaign.id,
        "dashboardUrl": f"{api}dashboard/",
        "agreementUrl": f"{api}agreement/",
        "csvUrl": f"{api}dashboard.csv",
        "pollMs": DASHBOARD_POLL_MS,
        "verdictSet": campaign.verdict_set,
    }
    return render(
        request,
        "proofreading/dashboard.html",
        {
            "campaign": campaign,
            "dataset": campaign.layer.dataset,
            "config": config,
            "csv_url": config["csvUrl"],
        },
    )
