"""The review page: a reviewer's submitted tasks one at a time in the embedded Neuroglancer.

The page is the viewer page's Neuroglancer iframe with the dataset's default state
(``webapp.viewer.services.build_viewer_state``) and the campaign's API URLs; the page script
(frontend/src/pages/annotation_review.ts) asks ``review/next/`` for a task, opens the viewer at
its box with the annotator's annotations as a read-only annotation layer (and, with N >= 2, the
other annotators' work on the box as layers named by annotator), shows the box's agreement and
the task's history, and approves or rejects through the API (keys A, R, N), then loads the next
task without reloading the page. In a painted campaign it also lists the reviewed assignment's
painted objects with their morphometrics (``labels/objects/``), plotted as volume against
sphericity, each with a "show" that moves the viewer to it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.views.decorators.http import require_safe

from webapp.annotation import selectors
from webapp.annotation.views import export_links
from webapp.viewer.neuroglancer_client import neuroglancer_client_url
from webapp.viewer.services import build_viewer_state
from webapp.viewer.state import layer_without_bounds


def _reviewed_over(layer: dict[str, Any]) -> dict[str, Any]:
    """A dataset layer as the review page starts it: images shown, every other layer hidden."""
    if layer.get("type") == "image" or layer.get("archived"):
        return layer
    return {**layer, "visible": False}


@login_required
@require_safe
def review_page(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """The review queue of a campaign (its reviewers; 404 for non-members, 403 for members
    who do not review)."""
    campaign = selectors.campaigns_visible(request.user).filter(id=campaign_id).first()
    if campaign is None:
        raise Http404("No such annotation campaign, or you are not one of its members.")
    if not selectors.may(campaign, request.user, "review"):
        raise PermissionDenied("Only the campaign's reviewers review its tasks.")
    api = f"/api/v1/annotation/campaigns/{campaign.pk}/"
    state: dict[str, Any] = build_viewer_state(
        campaign.dataset, request.build_absolute_uri("/")
    ).to_json()
    # As on the task page: no volume outline over the reviewed box's edges, and the layer panel
    # (the segmentation's list of every object, a third of the viewer) closed. The dataset's
    # segmentations and detections start hidden (still in the layer list): drawn over the box
    # they were taken for the annotator's work.
    state["layers"] = [_reviewed_over(layer_without_bounds(la)) for la in state["layers"]]
    if "selectedLayer" in state:
        state["selectedLayer"]["visible"] = False
    may_report = selectors.may(campaign, request.user, "report")
    config = {
        "campaignId": campaign.pk,
        "redundancy": campaign.redundancy,
        "painted": campaign.painted,
        "csrfToken": get_token(request),
        "labelSchema": campaign.label_schema,
        "toleranceUm": campaign.match_tolerance_um,
        "nextUrl": f"{api}review/next/",
    }
    context = {
        "campaign": campaign,
        "dataset": campaign.dataset,
        "state": state,
        "config": config,
        "client_url": neuroglancer_client_url(),
        "may_report": may_report,
        "exports": export_links(campaign.pk, painted=campaign.painted),
        # A 2D image's painted objects have an area, no volume, surface or sphericity.
        "planar": campaign.image_layer.spatial_dims == 2,
    }
    return render(request, "annotation/review.html", context)
