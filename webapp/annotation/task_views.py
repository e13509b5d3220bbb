"""The annotator's task page and "take the next task".

``/annotation/task/<assignment id>/`` is the proofreading queue's pattern: Neuroglancer in a
same-origin iframe, the campaign's image layer from ``viewer.services.build_viewer_state`` (no
other layer), the task and API URLs in a JSON script, and
``frontend/src/pages/annotation_task.ts`` (code in ``frontend/src/annotation_task/``) drawing the
box, dimming the outside and saving the local annotation layer through the API as it changes.
The annotations are never put in the page's URL: the page loads them from the API.

Who may open it: the assignment's annotator (editable while in progress or rejected), and the
campaign's reviewers and managers (read-only); anyone else gets 404, an anonymous visitor the
login page. ``/annotation/<campaign id>/next/`` takes the signed-in annotator's next task
(``services.next_task``, as the API's ``next/``) and redirects to its page.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe

from webapp.annotation import assist, selectors, services
from webapp.annotation.api import label_views
from webapp.annotation.api.serializers import AssignmentSerializer
from webapp.annotation.instructions import instructions_html
from webapp.annotation.models import AnnotationCampaign, Assignment
from webapp.core.errors import DomainError
from webapp.core.users import signed_in_user
from webapp.viewer.neuroglancer_client import neuroglancer_client_url
from webapp.viewer.services import build_viewer_state

NO_TASK = "No such task, or you may not open it."


def _image_layers(state: dict[str, Any], layer_name: str) -> list[dict[str, Any]]:
    """The campaign's image layer (one entry per channel of a multichannel image), then the
    dataset's detections as read-only point layers for context (hidden: a click in the layer
    list shows them; loaded by area from their spatial index). Their links to segmentation
    layers are dropped: the task page shows no segmentation layer."""
    layers: list[dict[str, Any]] = state.get("layers", [])
    images = [
        la
        for la in layers
        if la.get("type") == "image"
        and (la["name"] == layer_name or la["name"].startswith(f"{layer_name} c"))
    ]
    points = [
        {k: v for k, v in la.items() if k != "linkedSegmentationLayer"}
        for la in layers
        if la.get("type") == "annotation" and la["name"].endswith(" detections")
    ]
    return images + points


def _may_edit(assignment: Assignment, request: HttpRequest) -> bool:
    return bool(
        assignment.annotator_id == request.user.pk
        and assignment.state in services.EDITABLE
        and assignment.box.campaign.state == "open"
    )


@login_required
@require_safe
def task_page(request: HttpRequest, assignment_id: int) -> HttpResponse:
    """One task: the viewer at the box and the task panel."""
    assignment = (
        selectors.assignments_visible(request.user)
        .select_related("box__campaign__dataset", "box__campaign__image_layer")
        .filter(pk=assignment_id)
        .first()
    )
    if assignment is None:
        raise Http404(NO_TASK)
    campaign = assignment.box.campaign
    roles = selectors.roles_of(campaign, request.user)
    is_annotator = assignment.annotator_id == request.user.pk
    if not is_annotator and not ({"manager", "reviewer"} & set(roles)):
        raise Http404(NO_TASK)
    dataset = campaign.dataset
    base = build_viewer_state(dataset, request.build_absolute_uri("/")).to_json()
    layer_name = campaign.image_layer.name
    state: dict[str, Any] = {
        **base,
        "layers": _image_layers(base, layer_name),
        "selectedLayer": {"layer": "annotations", "visible": True},
    }
    box = assignment.box
    config = {
        "assignmentId": assignment.pk,
        "campaignId": campaign.pk,
        "csrfToken": get_token(request),
        "editable": _may_edit(assignment, request),
        "isAnnotator": is_annotator,
        "painted": campaign.painted,
        "assignment": AssignmentSerializer(assignment).data,
        "box": {"name": box.name, "start": list(box.start), "size": list(box.size)},
        "labelSchema": campaign.label_schema,
        "geometry": campaign.geometry,
        "imageLayer": layer_name,
        "nextUrl": reverse("annotation:next", args=[campaign.pk]),
        "reservedKeys": "nsfu",
        # The labels save's provenance field, once the server takes it (issue 10's assistance).
        "labelsProvenance": "provenance" in label_views.FIELDS,
        "planar": campaign.image_layer.spatial_dims == 2,
    }
    context = {
        "assignment": assignment,
        "campaign": campaign,
        "dataset": dataset,
        "box": box,
        "instructions": instructions_html(campaign.instructions),
        "state": state,
        "config": config,
        "client_url": neuroglancer_client_url(),
        "assist_source": assist_source(assignment) if campaign.painted else "",
    }
    return render(request, "annotation/task.html", context)


def assist_source(assignment: Assignment) -> str:
    """What the assistance grows objects from, said before the annotator asks."""
    model = assist.box_model(assignment)
    if model is None:
        return "Proposals come from the image (a watershed): this dataset has no model yet."
    if model.segmentation is not None:
        return f"Proposals come from {model.name}, the dataset's current model."
    return (
        f"Proposals come from {model.name}, the dataset's current model: Propose all applies "
        "it to the box; a click grows an object from the image."
    )


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def next_task(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """Take the signed-in annotator's next task and open it; "nothing left" when none is."""
    campaign: AnnotationCampaign | None = (
        selectors.campaigns_visible(request.user).filter(pk=campaign_id).first()
    )
    if campaign is None:
        raise Http404("No such campaign, or you are not one of its members.")
    try:
        row = services.next_task(campaign, signed_in_user(request))
    except DomainError as exc:
        context = {"campaign": campaign, "message": str(exc)}
        return render(request, "annotation/task_none.html", context, status=exc.status_code)
    if row is None:
        message = (
            "Nothing left for you in this campaign: every box you may take is done or taken."
            if campaign.boxes.exists()
            else "This campaign has no boxes yet: its managers add them on the campaign's page "
            "(Add boxes: tile, sample, upload a CSV)."
        )
        context = {"campaign": campaign, "message": message}
        return render(request, "annotation/task_none.html", context)
    return HttpResponseRedirect(reverse("annotation:task", args=[row.pk]))
