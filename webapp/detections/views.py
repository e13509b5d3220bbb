"""Detections pages: a layer's table, sorted and paged in the browser (detections_table.js)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from webapp.core.errors import NotFound
from webapp.detections.selectors import layer_for_detections, table_status

FILTER_COLUMNS = (
    "volume",
    "surface_area",
    "sphericity",
    "mean_intensity",
    "mean_probability",
    "voxels",
    "segment_id",
)


@require_safe
def detections_table_page(request: HttpRequest, slug: str, layer_name: str) -> HttpResponse:
    """The table page of a segmentation layer the visitor may see (404 otherwise)."""
    try:
        dataset, layer = layer_for_detections(request.user, slug, layer_name)
    except NotFound as exc:
        raise Http404(str(exc))
    kwargs = {"slug": dataset.slug, "layer_name": layer.name}
    planar = layer.spatial_dims == 2  # a 2D image's objects: an area, no surface or sphericity
    columns = [c for c in FILTER_COLUMNS if not (planar and c in ("surface_area", "sphericity"))]
    return render(
        request,
        "detections/table.html",
        {
            "dataset": dataset,
            "layer": layer,
            "status": table_status(layer),
            "api_url": reverse("api-detections-list", kwargs=kwargs),
            "csv_url": reverse("api-detections-export", kwargs={**kwargs, "table_format": "csv"}),
            "parquet_url": reverse(
                "api-detections-export", kwargs={**kwargs, "table_format": "parquet"}
            ),
            "meshes_url": reverse("api-detections-meshes-zip", kwargs=kwargs),
            "planar": planar,
            "filter_columns": columns,
        },
    )
