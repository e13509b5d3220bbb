"""Proofreading pages: the campaign list (with the creation form) and the queue page, which
is also the experts' second round (``?round=2``).

The queue page is the viewer page's Neuroglancer iframe with the dataset's default state
(``webapp.viewer.services.build_viewer_state``) plus the campaign's verdict set and API URLs;
the page script (frontend/src/pages/proofreading_queue.ts) then drives the viewer one detection
at a time through the API. Writes from the list page go through the same service as the API.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
)
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe

from webapp.core.errors import DomainError
from webapp.core.permissions import VIEW
from webapp.core.users import signed_in_user
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.proofreading import selectors, services
from webapp.proofreading.gallery_views import queue_focus_item
from webapp.proofreading.models import FIRST_ROUND, SECOND_ROUND, QueueOrder, Role, Selection
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
    """The caller's campaigns (optionally one dataset's: ``?dataset=<slug>``), with a link to
    the second round for experts where items wait for one; POST creates a campaign over a
    segmentation layer (dataset owners) with the form's settings."""
    if request.method == "POST":
        return _campaign_create(request)
    return _render_list(request, {})


def _render_list(request: HttpRequest, form: dict[str, str], status: int = 200) -> HttpResponse:
    queryset = selectors.campaigns_visible(request.user).order_by("-created", "-id")
    dataset = request.GET.get("dataset", "")
    if dataset:
        queryset = queryset.filter(layer__dataset__slug=dataset)
    campaigns = list(queryset)
    expert_of = [
        c.id
        for c in campaigns
        if any(m.role == Role.EXPERT for m in getattr(c, "my_memberships", []))
    ]
    waiting = selectors.second_round_waiting(expert_of)
    rows = [(c, waiting.get(c.id, 0) if c.id in expert_of else None) for c in campaigns]
    for campaign in campaigns:
        # Links to the reports (dashboard, thresholds) for the roles that may read them.
        roles = {m.role for m in getattr(campaign, "my_memberships", [])}
        campaign.may_report = request.user.is_superuser or bool(  # type: ignore[attr-defined]
            roles & {Role.MANAGER, Role.EXPERT}
        )
    layers = _segmentation_layers(request)
    defaults = {"selection": Selection.ALL, "order": QueueOrder.RANDOM, "reviewers_per_item": "1"}
    if dataset and "layer" not in form:
        first = next((la for la in layers if la.dataset.slug == dataset), None)
        if first is not None:
            defaults["layer"] = str(first.id)
    context = {
        "campaigns": rows,
        "layers": layers,
        "dataset": dataset,
        "form": {**defaults, **form} if form else {**defaults, "review": "1"},
        "selections": Selection.choices,
        "orders": QueueOrder.choices,
        "max_reviewers": services.MAX_REVIEWERS_PER_ITEM,
    }
    return render(request, "proofreading/campaign_list.html", context, status=status)


FORM_FIELDS = (
    "name",
    "layer",
    "selection",
    "volume_min",
    "sphericity_min",
    "sample_size",
    "seed",
    "order",
    "reviewers_per_item",
    "reviewers",
    "experts",
    "managers",
    "review",
)


class FormError(ValueError):
    """A field of the creation form that cannot be read; its message is shown as it is."""


def _form_number(form: dict[str, str], name: str, label: str) -> float | None:
    raw = form.get(name, "").strip()
    if not raw:
        return None
    try:
        number = float(raw)
    except ValueError:
        raise FormError(f"{label} must be a number (got {raw[:30]!r}).") from None
    if not math.isfinite(number):
        raise FormError(f"{label} must be a finite number.")
    return number


def _form_int(form: dict[str, str], name: str, label: str, low: int, high: int) -> int | None:
    raw = form.get(name, "").strip()
    if not raw:
        return None
    try:
        number = int(raw)
    except ValueError:
        raise FormError(f"{label} must be a whole number (got {raw[:30]!r}).") from None
    if not low <= number <= high:
        raise FormError(f"{label} must be between {low} and {high}.")
    return number


def _usernames(raw: str) -> list[str]:
    return [name for name in re.split(r"[\s,;]+", raw) if name]


def form_settings(form: dict[str, str]) -> tuple[CampaignSettings, list[tuple[str, str]]]:
    """The creation form read into ``CampaignSettings`` and (username, role) members; the
    meaning (a filter needs a threshold, K fits the population...) is checked by the service.
    Fields that do not apply to the chosen selection are ignored rather than refused, since a
    browser sends every field of the form."""
    selection = form.get("selection") or Selection.ALL
    if selection not in Selection.values:
        raise FormError(f"Selection must be one of: {', '.join(Selection.values)}.")
    order = form.get("order") or QueueOrder.RANDOM
    if order not in QueueOrder.values:
        raise FormError(f"Order must be one of: {', '.join(QueueOrder.values)}.")
    volume_min = _form_number(form, "volume_min", "Minimum volume")
    sphericity_min = _form_number(form, "sphericity_min", "Minimum sphericity")
    sample_size = _form_int(form, "sample_size", "Sample size K", 1, 10_000_000)
    seed = _form_int(form, "seed", "Seed", 0, 2**63 - 1)
    reviewers_per_item = _form_int(
        form,
        "reviewers_per_item",
        "Reviewers per detection",
        1,
        services.MAX_REVIEWERS_PER_ITEM,
    )
    if selection == Selection.ALL:
        volume_min = sphericity_min = None
    if selection != Selection.SAMPLE:
        sample_size = None
    elif sample_size is None:
        raise FormError("A random sample needs its size K.")
    settings = CampaignSettings(
        name=form.get("name", ""),
        selection=selection,
        volume_min=volume_min,
        sphericity_min=sphericity_min,
        sample_size=sample_size,
        seed=seed,
        order=order,
        reviewers_per_item=reviewers_per_item or 1,
    )
    members: list[tuple[str, str]] = []
    for field, role in (("reviewers", Role.REVIEWER), ("experts", Role.EXPERT)):
        members += [(name, str(role)) for name in _usernames(form.get(field, ""))]
    members += [(name, str(Role.MANAGER)) for name in _usernames(form.get("managers", ""))]
    if len(set(members)) != len(members):
        raise FormError("A user is named twice for the same role.")
    return settings, members


def _campaign_create(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    form = {name: str(request.POST.get(name, ""))[:2000] for name in FORM_FIELDS}
    layer = next((la for la in _segmentation_layers(request) if str(la.id) == form["layer"]), None)
    if layer is None:
        messages.error(request, "Choose a segmentation layer of a dataset you own.")
        return _render_list(request, form, status=400)
    try:
        settings, members = form_settings(form)
        # The creator reviews too when asked: a page-made campaign is often proofread by its maker.
        if form["review"] and (user.username, Role.REVIEWER) not in members:
            members.insert(0, (user.username, str(Role.REVIEWER)))
        campaign = services.campaign_create(user, layer, settings, members=members)
    except (FormError, DomainError) as exc:
        messages.error(request, str(exc))
        return _render_list(request, form, status=400)
    messages.success(request, f"Campaign {campaign.name!r} created with {campaign.n_items} items.")
    back = reverse("proofreading:campaign-list")
    dataset = request.GET.get("dataset", "")
    if dataset == layer.dataset.slug:  # back to the dataset's campaigns, where the form was
        back += "?" + urlencode({"dataset": dataset})
    return HttpResponseRedirect(back)


ROUND_PARAM = {"1": FIRST_ROUND, "2": SECOND_ROUND}
# The second round looks at the raw data slice by slice: one large 2D panel, the segment as a
# faint overlay so that the image under it stays visible.
SECOND_ROUND_VIEW = {"layout": "xy", "selectedAlpha": 0.2}


@login_required
@require_safe
def queue_page(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """One detection at a time in Neuroglancer, for the campaign's members (404 otherwise).

    ``?round=2`` is the experts' second round (the earlier verdicts shown, the raw data in one
    2D panel); without it, experts who do not review the first round get the second round."""
    campaign = selectors.campaigns_visible(request.user).filter(id=campaign_id).first()
    if campaign is None:
        raise Http404("No such proofreading campaign, or you are not one of its members.")
    dataset = campaign.layer.dataset
    if not Dataset.objects.allows(request.user, VIEW, dataset):
        raise Http404("You may not see this campaign's dataset.")
    roles = sorted(m.role for m in getattr(campaign, "my_memberships", []))
    raw_round = request.GET.get("round", "")
    if raw_round and raw_round not in ROUND_PARAM:
        return HttpResponseBadRequest(
            "round must be 1 (first round) or 2 (second round, experts).",
            content_type="text/plain; charset=utf-8",
        )
    round_ = ROUND_PARAM.get(raw_round, SECOND_ROUND if roles == [Role.EXPERT] else FIRST_ROUND)
    is_expert = Role.EXPERT in roles or request.user.is_superuser
    if round_ == SECOND_ROUND and not is_expert:
        raise PermissionDenied("Only the campaign's experts review in the second round.")
    waiting = selectors.second_round_waiting([campaign.id]).get(campaign.id, 0)
    state: dict[str, Any] = build_viewer_state(dataset, request.build_absolute_uri("/")).to_json()
    api = f"/api/v1/proofreading/campaigns/{campaign.id}/"
    queue_url = reverse("proofreading:queue", args=[campaign.id])
    config = {
        "campaignId": campaign.id,
        "layer": campaign.layer.name,
        "round": round_,
        "prefetch": 4,
        "csrfToken": get_token(request),
        "verdictSet": [
            {"name": c.name, "label": c.label, "colour": c.colour, "key": c.key, "kind": c.kind}
            for c in verdict_classes(campaign.verdict_set)
        ],
        "nextUrl": f"{api}next/",
        "exportUrl": f"{api}export.csv",
        "missedCsvUrl": f"{api}missed.csv",
        "missedLayer": "missed objects",
        "view": SECOND_ROUND_VIEW if round_ == SECOND_ROUND else {},
        "galleryUrl": reverse("proofreading:gallery", args=[campaign.id]),
        "planar": campaign.layer.spatial_dims == 2,
    }
    config["focusItem"] = queue_focus_item(request, campaign, round_)
    context = {
        "campaign": campaign,
        "dataset": dataset,
        "state": state,
        "config": config,
        "client_url": neuroglancer_client_url(),
        "verdict_set": config["verdictSet"],
        "second_round": round_ == SECOND_ROUND,
        "second_round_waiting": waiting,
        "second_round_url": f"{queue_url}?round=2" if is_expert and round_ == FIRST_ROUND else "",
        "first_round_url": (
            f"{queue_url}?round=1"
            if round_ == SECOND_ROUND and (Role.REVIEWER in roles or request.user.is_superuser)
            else ""
        ),
        "may_export": Role.MANAGER in roles or is_expert,
    }
    return render(request, "proofreading/queue.html", context)
