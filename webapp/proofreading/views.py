"""Proofreading pages: the campaign list (with a minimal creation form) and the queue page.

The queue page is the viewer page's Neuroglancer iframe with the dataset's default state
(``webapp.viewer.services.build_viewer_state``) plus the campaign's verdict set and API URLs;
the page script (frontend/src/pages/proofreading_queue.ts) then drives the viewer one detection
at a time through the API. Writes from the list page go through the same service as the API.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe

from webapp.core.errors import DomainError
from webapp.core.permissions import VIEW
from webapp.core.users import signed_in_user
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.proofreading import selectors, services
from webapp.proofreading.services import CampaignSettings
from webapp.proofreading.verdict_sets import verdict_classes
from webapp.viewer.neuroglancer_client import neuroglancer_client_url
from webapp.viewer.services import build_viewer_state


def _segmentation_layers(request: HttpRequest) -> list[Layer]:
    datasets = Dataset.objects.restrict(request.user, "change")
    return list(
        Layer.objects.filter(dataset__in=datasets, kind=LayerKind.SEGMENTATION)
        .select_related("dataset")
        .order_by("dataset__name", "name")
    )


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def campaign_list(request: HttpRequest) -> HttpResponse:
    """The caller's campaigns (optionally one dataset's: ``?dataset=<slug>``); POST creates a
    campaign over a segmentation layer with the default verdict set (dataset owners)."""
    if request.method == "POST":
        return _campaign_create(request)
    campaigns = selectors.campaigns_visible(request.user).order_by("-created", "-id")
    dataset = request.GET.get("dataset", "")
    if dataset:
        campaigns = campaigns.filter(layer__dataset__slug=dataset)
    listed = list(campaigns)
    for campaign in listed:
        # Links to the reports (dashboard, thresholds) for the roles that may read them.
        roles = {m.role for m in getattr(campaign, "my_memberships", [])}
        campaign.may_report = request.user.is_superuser or bool(  # type: ignore[attr-defined]
            roles & {"manager", "expert"}
        )
    return render(
        request,
        "proofreading/campaign_list.html",
        {"campaigns": listed, "layers": _segmentation_layers(request), "dataset": dataset},
    )


def _campaign_create(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    name = request.POST.get("name", "").strip()
    raw_layer = request.POST.get("layer", "")
    layer = next((la for la in _segmentation_layers(request) if str(la.id) == raw_layer), None)
    back = reverse("proofreading:campaign-list")
    if layer is None:
        messages.error(request, "Choose a segmentation layer of a dataset you own.")
        return HttpResponseRedirect(back)
    try:
        reviewers = int(request.POST.get("reviewers_per_item") or 1)
        campaign = services.campaign_create(
            user,
            layer,
            CampaignSettings(
                name=name,
                reviewers_per_item=reviewers,
                # The filter selection without bounds takes the layer's stored filter.
                selection="filter" if request.POST.get("use_filter") else "all",
            ),
            # The creator reviews too: a page-made campaign is usually proofread by its maker.
            members=[(user.username, "reviewer")] if request.POST.get("review") else [],
        )
    except ValueError:
        messages.error(request, "Reviewers per detection must be a whole number.")
        return HttpResponseRedirect(back)
    except DomainError as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(back)
    messages.success(request, f"Campaign {campaign.name!r} created with {campaign.n_items} items.")
    return HttpResponseRedirect(back)


@login_required
@require_safe
def queue_page(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """One detection at a time in Neuroglancer, for the campaign's members (404 otherwise)."""
    campaign = selectors.campaigns_visible(request.user).filter(id=campaign_id).first()
    if campaign is None:
        raise Http404("No such proofreading campaign, or you are not one of its members.")
    dataset = campaign.layer.dataset
    if not Dataset.objects.allows(request.user, VIEW, dataset):
        raise Http404("You may not see this campaign's dataset.")
    state: dict[str, Any] = build_viewer_state(dataset, request.build_absolute_uri("/")).to_json()
    api = f"/api/v1/proofreading/campaigns/{campaign.id}/"
    roles = sorted(m.role for m in getattr(campaign, "my_memberships", []))
    config = {
        "campaignId": campaign.id,
        "layer": campaign.layer.name,
        "round": 2 if roles == ["expert"] else 1,
        "prefetch": 4,
        "csrfToken": get_token(request),
        "verdictSet": [
            {"name": c.name, "label": c.label, "colour": c.colour, "key": c.key, "kind": c.kind}
            for c in verdict_classes(campaign.verdict_set)
        ],
        "nextUrl": f"{api}next/",
        "exportUrl": f"{api}export.csv",
    }
    context = {
        "campaign": campaign,
        "dataset": dataset,
        "state": state,
        "config": config,
        "client_url": neuroglancer_client_url(),
        "verdict_set": config["verdictSet"],
        "may_report": selectors.may_report(campaign, request.user),
    }
    return render(request, "proofreading/queue.html", context)
