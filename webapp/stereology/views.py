"""Stereology pages: a campaign's disector studies (with a creation form for managers) and the
counting page, where a reviewer goes pair by pair through one study.

The counting page is the queue page's pattern: Neuroglancer in a same-origin iframe with the
dataset's default state (one xy panel here), the study's plan and API URLs in a JSON script,
and frontend/src/pages/stereology.ts driving the viewer through the API. One viewer flips
between the reference and look-up sections (Tab) rather than two side by side: both show the
same x, y at full panel size, the eye compares them in place, and one viewer loads half the
data.
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

from pipeline.stereology import DEFAULT_H_UM, max_h_sections
from webapp.core.errors import DomainError
from webapp.core.permissions import VIEW
from webapp.core.users import signed_in_user
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.proofreading.models import ProofreadingCampaign, Role
from webapp.proofreading.selectors import campaigns_visible
from webapp.stereology import selectors, services
from webapp.stereology.api.serializers import DisectorMarkSerializer, DisectorStudySerializer
from webapp.viewer.neuroglancer_client import neuroglancer_client_url
from webapp.viewer.services import build_viewer_state

DEFAULT_K = 10
NO_CAMPAIGN = "No such proofreading campaign, or you are not one of its members."


def _campaign(request: HttpRequest, campaign_id: int) -> ProofreadingCampaign:
    campaign = campaigns_visible(request.user).filter(id=campaign_id).first()
    if campaign is None:
        raise Http404(NO_CAMPAIGN)
    return campaign


def _is_manager(campaign: ProofreadingCampaign, request: HttpRequest) -> bool:
    roles = {m.role for m in getattr(campaign, "my_memberships", [])}
    return Role.MANAGER in roles or bool(getattr(request.user, "is_superuser", False))


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def campaign_studies(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """The campaign's studies (members); POST creates one (managers)."""
    campaign = _campaign(request, campaign_id)
    if request.method == "POST":
        return _study_create(request, campaign)
    studies = selectors.studies_visible(request.user).filter(campaign=campaign)
    # Only label layers can be masks (non-zero inside): an image layer is not a region.
    masks = Layer.objects.filter(
        dataset_id=campaign.layer.dataset_id, kind=LayerKind.SEGMENTATION
    ).exclude(id=campaign.layer_id)
    depth_um, default_h = _depth_and_default_h(campaign)
    context = {
        "campaign": campaign,
        "studies": studies,
        "manager": _is_manager(campaign, request),
        "masks": list(masks),
        "default_k": DEFAULT_K,
        "default_h": default_h,
        "depth_um": depth_um,
    }
    return render(request, "stereology/campaign_studies.html", context)


def _depth_and_default_h(campaign: ProofreadingCampaign) -> tuple[float | None, float]:
    """The layer's depth along z (um) and the form's default h: 50 um when K = 10 pairs fit
    with it, else about a tenth of the depth (one significant digit, at least one section)."""
    try:
        geometry = selectors.layer_geometry(campaign.layer)
    except DomainError:
        return None, DEFAULT_H_UM
    section_um = geometry.voxel_size_nm[0] / 1000
    sections = geometry.shape[0]
    largest = max_h_sections(sections, DEFAULT_K) * section_um
    if largest >= DEFAULT_H_UM:
        return sections * section_um, DEFAULT_H_UM
    tenth = sections * section_um / 10
    nice = float(f"{tenth:.1g}")
    return sections * section_um, max(min(nice, largest), section_um)


def _study_create(request: HttpRequest, campaign: ProofreadingCampaign) -> HttpResponse:
    back = reverse("stereology:campaign-studies", args=[campaign.id])
    try:
        n_pairs = int(request.POST.get("n_pairs") or 0)
        h_um = float(request.POST.get("h_um") or DEFAULT_H_UM)
        seed_text = request.POST.get("seed", "").strip()
        seed = int(seed_text) if seed_text else None
    except ValueError:
        messages.error(request, "K, h and the seed must be numbers.")
        return HttpResponseRedirect(back)
    raw_mask = request.POST.get("mask_layer", "")
    mask = None
    if raw_mask:
        mask = Layer.objects.filter(dataset_id=campaign.layer.dataset_id, id=raw_mask).first()
    try:
        study = services.study_create(
            signed_in_user(request),
            campaign,
            name=request.POST.get("name", ""),
            n_pairs=n_pairs,
            h_um=h_um,
            seed=seed,
            mask_layer=mask,
        )
    except DomainError as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(back)
    messages.success(request, f"Study {study.name!r} placed {study.n_pairs} disector pairs.")
    return HttpResponseRedirect(back)


@login_required
@require_safe
def study_page(request: HttpRequest, study_id: int) -> HttpResponse:
    """Count one study pair by pair (members of its campaign; 404 otherwise)."""
    study = selectors.studies_visible(request.user).filter(id=study_id).first()
    if study is None:
        raise Http404("No such disector study, or you are not a member of its campaign.")
    dataset = study.campaign.layer.dataset
    if not Dataset.objects.allows(request.user, VIEW, dataset):
        raise Http404("You may not see this study's dataset.")
    state: dict[str, Any] = build_viewer_state(dataset, request.build_absolute_uri("/")).to_json()
    api = f"/api/v1/stereology/studies/{study.id}/"
    config = {
        "studyId": study.id,
        "layer": study.campaign.layer.name,
        "csrfToken": get_token(request),
        "canMark": selectors.may_mark(study, request.user),
        "study": DisectorStudySerializer(study).data,
        "marks": DisectorMarkSerializer(
            selectors.marks_visible(study, request.user).filter(reviewer_id=request.user.pk),
            many=True,
        ).data,
        "countedPairs": selectors.counted_pairs(study, request.user),
        "estimateUrl": f"{api}estimate/",
    }
    context = {
        "study": study,
        "campaign": study.campaign,
        "dataset": dataset,
        "state": state,
        "config": config,
        "client_url": neuroglancer_client_url(),
    }
    return render(request, "stereology/study.html", context)
