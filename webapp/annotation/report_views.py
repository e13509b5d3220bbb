"""The campaign dashboard page: a server-rendered frame plus a script
(``frontend/src/pages/annotation_dashboard.ts``) that polls the dashboard API and draws its
plots. It shows everyone's work, so it needs "report" on the campaign (managers and
reviewers): other members get 403, anyone else 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from webapp.annotation import selectors

#: How often the dashboard asks the API again (milliseconds).
DASHBOARD_POLL_MS = 3000


@login_required
@require_safe
def dashboard_page(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """Boxes and slots by state, per-annotator figures and approvals over time, live."""
    campaign = selectors.campaigns_visible(request.user).filter(id=campaign_id).first()
    if campaign is None:
        raise Http404("No such annotation campaign, or you are not one of its members.")
    if not selectors.may(campaign, request.user, "report"):
        raise PermissionDenied("Only the campaign's managers and reviewers can open this page.")
    api = f"/api/v1/annotation/campaigns/{campaign.id}/"
    config: dict[str, Any] = {
        "campaignId": campaign.id,
        "pollMs": DASHBOARD_POLL_MS,
        "redundancy": campaign.redundancy,
        "csvUrl": f"{api}dashboard.csv",
    }
    return render(
        request,
        "annotation/dashboard.html",
        {"campaign": campaign, "dataset": campaign.dataset, "config": config},
    )
