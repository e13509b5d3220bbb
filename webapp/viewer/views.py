"""Dataset list, viewer pages and thumbnails. Logic lives in services/selectors/thumbnails."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.db.models import Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from webapp.core import page_panels
from webapp.datasets.models import Dataset, LayerKind
from webapp.viewer.neuroglancer_client import neuroglancer_client_url
from webapp.viewer.selectors import (
    dataset_summaries_for,
    dataset_summary,
    saved_state_for,
    viewer_dataset,
)
from webapp.viewer.services import build_viewer_state, rebase_state_sources
from webapp.viewer.thumbnails import thumbnail_path


@require_safe
def dataset_list(request: HttpRequest) -> HttpResponse:
    """Cards for the datasets the visitor may see."""
    return render(
        request, "viewer/dataset_list.html", {"summaries": dataset_summaries_for(request.user)}
    )


@require_safe
def dataset_viewer(request: HttpRequest, slug: str) -> HttpResponse:
    """Neuroglancer on one dataset, for users allowed to see it."""
    dataset = viewer_dataset(slug, request.user)
    if dataset is None:
        raise Http404("No such dataset, or you may not see it.")
    return _render_viewer(request, dataset, share_token=None)


@require_safe
def shared_dataset_viewer(request: HttpRequest, token: str, slug: str) -> HttpResponse:
    """The same viewer through a share link: no login, data read through the link's URLs."""
    dataset = viewer_dataset(slug, request.user, share_token=token)
    if dataset is None:
        raise Http404("This share link does not exist, was revoked or has expired.")
    return _render_viewer(request, dataset, share_token=token)


def _render_viewer(request: HttpRequest, dataset: Dataset, share_token: str | None) -> HttpResponse:
    base_url = request.build_absolute_uri("/")
    error = ""
    status = 200
    # ``?show=<segmentation layer>``: that layer alone among the segmentations (a publication's
    # "open in the viewer"); ``?show=a,b``: those layers (the model comparison's "compare in
    # viewer"). A name the dataset does not have gets the default view.
    shown_alone = Q(kind=LayerKind.SEGMENTATION) | Q(kind=LayerKind.MESH, source_layer=None)
    candidates = set(dataset.layers.filter(shown_alone).values_list("name", flat=True))
    show = shown_layer_names(request.GET.get("show", ""), candidates)
    missing = [name for name in show if name not in candidates]
    if missing:
        error = (
            f"This dataset has no segmentation layer named {missing[0][:64]!r}; "
            "showing the default view."
        )
        status = 404
        show = []
    default_state = build_viewer_state(dataset, base_url, share_token, show=show or None)
    state: dict[str, Any] = default_state.to_json()
    key = request.GET.get("state", "")
    if key:
        saved = saved_state_for(dataset, key)
        if saved is None:
            error = "This saved view does not exist for this dataset; showing the default view."
            status = 404
        else:
            state = rebase_state_sources(saved.state, dataset, base_url, share_token)
    # Share links are the owner's business (and a superuser's); never offered through a link.
    can_share = share_token is None and Dataset.objects.allows(request.user, "share", dataset)
    config = {
        "saveUrl": f"/api/v1/datasets/{dataset.slug}/states/",
        "shareToken": share_token,
        "csrfToken": get_token(request),
        "stateKey": key if status == 200 else "",
    }
    context = {
        "dataset": dataset,
        "summary": dataset_summary(dataset),
        "legend": default_state.layers,
        "state": state,
        "config": config,
        "error": error,
        "client_url": neuroglancer_client_url(),
        "share_token": share_token,
        "can_share": can_share,
        "share_links_url": f"/api/v1/datasets/{dataset.slug}/share-links/",
        # The model versions' comparison (``runs``), once a run has published one; for the
        # owner always: where a new model is trained from (its painted campaigns).
        "models_url": (
            reverse("runs:models", args=[dataset.slug])
            if share_token is None and (dataset.model_versions.exists() or can_share)
            else ""
        ),
        # Actions of the apps above (the runs app's "Retrain"): core.page_panels; none through
        # a share link.
        "panels": (
            page_panels.panels("viewer.toolbar", dataset=dataset, user=request.user)
            if share_token is None
            else []
        ),
    }
    return render(request, "viewer/dataset_viewer.html", context, status=status)


def shown_layer_names(value: str, names: Collection[str]) -> list[str]:
    """The layers ``?show=`` names: one layer's name (which may hold a comma), else a
    comma-separated list of names (blanks and repeats dropped, order kept)."""
    if not value or value in names:
        return [value] if value else []
    return list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))


@require_safe
def dataset_thumbnail(request: HttpRequest, slug: str) -> FileResponse:
    """PNG thumbnail, rendered on first request and cached beside the data."""
    dataset = viewer_dataset(slug, request.user)
    if dataset is None:
        raise Http404("No such dataset, or you may not see it.")
    path = thumbnail_path(dataset)
    if path is None:
        raise Http404("This dataset has no image to draw a thumbnail from.")
    response = FileResponse(path.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=300"
    return response
