"""The managers' annotation pages: the campaign list (with the creation form), a campaign's
page (settings, members, boxes with their consensus to accept, the four ways to add boxes, the
coverage map, the ground truth's downloads), the boxes in the viewer, and the audit log.

Each page is a server-rendered frame plus a script that reads and writes through the API
(``frontend/src/pages/annotation_campaigns.ts``, ``annotation_campaign.ts``,
``annotation_audit.ts``). Campaign pages need a signed-in member of the campaign (404 for
anyone else, as the API); the audit log is the managers' (403 for other members).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from pipeline import task_boxes
from pipeline.errors import PipelineError
from webapp.annotation import selectors, services
from webapp.annotation.agreement import default_quorum
from webapp.annotation.coverage import (
    BOX_STATES,
    MAX_DRAWN,
    STATE_COLOURS,
    STATE_LABELS,
    boxes_layer_json,
    state_counts,
)
from webapp.annotation.instructions import instructions_html
from webapp.annotation.models import (
    AnnotationCampaign,
    AuditAction,
    CampaignMember,
    Role,
    default_box_size_um,
    default_label_schema,
)
from webapp.annotation.services import MAX_REDUNDANCY
from webapp.core import page_panels
from webapp.core.errors import InvalidRequest
from webapp.core.users import signed_in_user
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.viewer.neuroglancer_client import neuroglancer_client_url
from webapp.viewer.selectors import dataset_summary
from webapp.viewer.services import build_viewer_state
from webapp.viewer.state import layer_without_bounds

API = "/api/v1/annotation/campaigns/"
NOT_MEMBER = "No such annotation campaign, or you are not one of its members."


def _member_campaign(request: HttpRequest, campaign_id: int) -> AnnotationCampaign:
    campaign = selectors.campaigns_visible(request.user).filter(id=campaign_id).first()
    if campaign is None:
        raise Http404(NOT_MEMBER)
    return campaign


def _links(campaign_id: int) -> dict[str, str]:
    """The campaign's pages (some built by other pages of the app: next task, review,
    dashboard)."""
    base = f"/annotation/{campaign_id}/"
    return {
        "page": base,
        "next": f"{base}next/",
        "review": f"{base}review/",
        "dashboard": f"{base}dashboard/",
        "audit": f"{base}audit/",
        "viewer": f"{base}viewer/",
    }


def export_links(campaign_id: int, *, painted: bool = False) -> list[tuple[str, str]]:
    """The approved ground truth's downloads (managers and reviewers), as the review and
    campaign pages offer them; a painted campaign's also the label volumes for training."""
    api = f"{API}{campaign_id}/"
    links = [
        ("Ground truth CSV", f"{api}export.csv"),
        ("JSON", f"{api}export.json"),
        ("Boxes table", f"{api}boxes.csv"),
    ]
    if painted:
        links.append(("Painted labels for training (zip)", f"{api}labels.zip"))
    return links


def _owned_datasets(request: HttpRequest) -> list[dict[str, Any]]:
    """Datasets the caller may start campaigns on (theirs) with their image layers: those
    imported, not a model's probability map (an image layer derived from a segmentation)."""
    datasets = Dataset.objects.restrict(request.user, "change").order_by("name")
    layers = Layer.objects.filter(
        dataset__in=datasets, kind=LayerKind.IMAGE, source_layer__isnull=True
    ).order_by("id")
    by_dataset: dict[int, list[Layer]] = {}
    for layer in layers:
        by_dataset.setdefault(layer.dataset_id, []).append(layer)
    return [
        {
            "slug": d.slug,
            "name": d.name,
            "image_layers": [layer.name for layer in by_dataset[d.pk]],
            # Per image layer: the form follows the layer chosen (layers may differ in extent).
            "box_sizes_um": {layer.name: _suggested_box_size(layer) for layer in by_dataset[d.pk]},
        }
        for d in datasets
        if d.pk in by_dataset
    ]


def _suggested_box_size(layer: Layer) -> list[float]:
    """The form's first box size for an image layer (from its volume), or the campaign default
    where the layer's row has no usable geometry."""
    try:
        shape, voxel_um = services.layer_extent(layer)
        return task_boxes.suggested_box_size_um(voxel_um, shape)
    except (InvalidRequest, PipelineError):
        return default_box_size_um()


@login_required
@require_safe
def campaign_list(request: HttpRequest) -> HttpResponse:
    """The caller's campaigns (``?dataset=<slug>``: one dataset's) with their roles and boxes
    by state, and the creation form (which POSTs to the API)."""
    queryset = selectors.campaigns_visible(request.user).order_by("-created", "-id")
    dataset = request.GET.get("dataset", "")[:100]
    if dataset:
        queryset = queryset.filter(dataset__slug=dataset)
    campaigns = list(queryset)
    counts = state_counts(campaigns)
    roles: dict[int, list[str]] = {}
    for member in CampaignMember.objects.filter(
        campaign__in=[c.pk for c in campaigns], user_id=signed_in_user(request).pk
    ):
        roles.setdefault(member.campaign_id, []).append(member.role)
    rows = []
    for campaign in campaigns:
        mine = sorted(roles.get(campaign.pk, []))
        count = counts.get(campaign.pk, {})
        if request.user.is_superuser:
            mine = sorted({*mine, *Role.values})
        rows.append(
            {
                "campaign": campaign,
                "roles": mine,
                "counts": count,
                "chips": [
                    (STATE_LABELS[s], STATE_COLOURS[s], count[s])
                    for s in BOX_STATES
                    if count.get(s)
                ],
                "links": _links(campaign.pk),
                "annotator": Role.ANNOTATOR in mine,
                "reviewer": Role.REVIEWER in mine,
                "reporter": Role.MANAGER in mine or Role.REVIEWER in mine,
            }
        )
    datasets = _owned_datasets(request)
    config = {
        "apiUrl": API,
        "datasets": datasets,
        "dataset": dataset,
        "defaultSchema": default_label_schema(),
        "defaultBoxSizeUm": default_box_size_um(),
        "maxRedundancy": MAX_REDUNDANCY,
        "roles": list(Role.values),
        "pageUrl": "/annotation/",
    }
    context = {
        "rows": rows,
        "dataset": dataset,
        "datasets": datasets,
        "states": [(s, STATE_LABELS[s], STATE_COLOURS[s]) for s in BOX_STATES],
        "config": config,
        "csrf": get_token(request),
    }
    return render(request, "annotation/campaign_list.html", context)


@login_required
@require_safe
def campaign_page(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """Settings, members, boxes and the coverage map (members); managers add and remove
    members, add boxes and clear flags."""
    from webapp.proofreading.models import MissedObject, ProofreadingCampaign

    campaign = _member_campaign(request, campaign_id)
    roles = selectors.roles_of(campaign, request.user)
    manager = Role.MANAGER in roles
    members = list(
        CampaignMember.objects.filter(campaign=campaign)
        .select_related("user")
        .order_by("user__username", "role")
    )
    masks = list(
        Layer.objects.filter(dataset=campaign.dataset, kind=LayerKind.SEGMENTATION)
        .order_by("name")
        .values_list("name", flat=True)
    )
    proofreading: list[dict[str, Any]] = []
    if manager:
        for source in (
            ProofreadingCampaign.objects.restrict(request.user, "view")
            .filter(layer__dataset=campaign.dataset)
            .order_by("-id")
        ):
            n = MissedObject.objects.filter(campaign=source).count()
            proofreading.append({"id": source.pk, "name": source.name, "missed": n})
    api = f"{API}{campaign.pk}/"
    config = {
        "campaignId": campaign.pk,
        "campaignUrl": api,
        "manager": manager,
        "redundancy": campaign.redundancy,
        "quorum": default_quorum(campaign),
        "painted": campaign.painted,
        "states": {s: {"label": STATE_LABELS[s], "colour": STATE_COLOURS[s]} for s in BOX_STATES},
        "maxDrawn": MAX_DRAWN,
    }
    counts = state_counts([campaign]).get(campaign.pk, {})
    context = {
        "campaign": campaign,
        "instructions": instructions_html(campaign.instructions),
        "dataset": campaign.dataset,
        "shape": [int(n) for n in campaign.geometry.get("shape", [])],
        # Six significant digits: 0.1 um read 0.09999999999999999 (nm divided by 1000).
        "voxel_um": [f"{float(v):.6g}" for v in campaign.geometry.get("voxel_size_um", [])],
        "box_um": [f"{float(v):.6g}" for v in campaign.box_size_um or []],
        "roles": roles,
        "manager": manager,
        "members": members,
        "role_choices": Role.choices,
        "masks": masks,
        "proofreading": proofreading,
        "counts": counts,
        "states": [(s, STATE_LABELS[s], STATE_COLOURS[s], counts.get(s, 0)) for s in BOX_STATES],
        "links": _links(campaign.pk),
        "annotator": Role.ANNOTATOR in roles,
        "reviewer": Role.REVIEWER in roles,
        "reporter": manager or Role.REVIEWER in roles,
        "exports": export_links(campaign.pk, painted=campaign.painted),
        "config": config,
        # The runs app's "Retrain" panel: managers of painted campaigns.
        # Panels of the apps above (the runs app's Retrain panel): core.page_panels.
        "panels": page_panels.panels("annotation.campaign", campaign=campaign, manager=manager),
        "csrf": get_token(request),
    }
    return render(request, "annotation/campaign.html", context)


@login_required
@require_safe
def boxes_viewer(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """The dataset's viewer with the campaign's boxes as an annotation layer "task boxes"
    (members). The layer is Neuroglancer local annotations: what one draws in it is not saved
    anywhere."""
    campaign = _member_campaign(request, campaign_id)
    dataset = campaign.dataset
    base_url = request.build_absolute_uri("/")
    default_state = build_viewer_state(dataset, base_url)
    state: dict[str, Any] = default_state.to_json()
    layer, total = boxes_layer_json(campaign, list(state["dimensions"]))
    # The dataset's layers without their yellow volume outline: it lay on the boxes' edges on the
    # volume's faces and hid their state colours (as on the task page).
    state["layers"] = [layer_without_bounds(la) for la in state["layers"]] + [layer]
    state["selectedLayer"] = {"layer": layer["name"], "visible": False}
    shown = len(layer["annotations"])
    error = (
        f"The campaign has {total:,} boxes; the first {shown:,} are shown." if shown < total else ""
    )
    config = {
        "saveUrl": f"/api/v1/datasets/{dataset.slug}/states/",
        "shareToken": None,
        "csrfToken": get_token(request),
        "stateKey": "",
    }
    context = {
        "dataset": dataset,
        "summary": dataset_summary(dataset),
        "legend": default_state.layers,
        "state": state,
        "config": config,
        "error": error,
        "client_url": neuroglancer_client_url(),
        "share_token": None,
        "can_share": False,
        "share_links_url": "",
        "annotation_campaign": campaign,
        "annotation_boxes": total,
        "annotation_page": reverse("annotation:campaign", args=[campaign.pk]),
        # The boxes' colours (their state's, as on the coverage map), named under the note.
        "annotation_states": [(STATE_LABELS[s], STATE_COLOURS[s]) for s in BOX_STATES],
    }
    return render(request, "viewer/dataset_viewer.html", context)


AUDIT_GROUPS = sorted({value.split(".")[0] for value in AuditAction.values})


@login_required
@require_safe
def audit_page(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """The campaign's audit log (managers), filterable by action group, user and box."""
    campaign = _member_campaign(request, campaign_id)
    if not selectors.may(campaign, request.user, "audit"):
        raise PermissionDenied("Only the campaign's managers can read its audit log.")
    users = sorted(
        set(
            CampaignMember.objects.filter(campaign=campaign).values_list(
                "user__username", flat=True
            )
        )
    )
    config = {
        "campaignId": campaign.pk,
        "auditUrl": f"{API}{campaign.pk}/audit/",
        "pageSize": 50,
    }
    context = {
        "campaign": campaign,
        "dataset": campaign.dataset,
        "groups": AUDIT_GROUPS,
        "actions": AuditAction.choices,
        "users": users,
        "links": _links(campaign.pk),
        "config": config,
    }
    return render(request, "annotation/audit.html", context)
