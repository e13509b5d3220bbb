"""Dataset pages (include under "datasets/", before the viewer's "datasets/<slug>/")."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from pipeline.units import COMMON_SPACE_UNITS, UNIT_SYMBOLS, space_units_common_first
from webapp.datasets.models import Visibility

app_name = "datasets"


@login_required
def import_page(request: HttpRequest) -> HttpResponse:
    """The upload form; the work happens in import.js through /api/v1/imports/ and /jobs/."""
    others = space_units_common_first()[len(COMMON_SPACE_UNITS) :]
    return render(
        request,
        "datasets/import.html",
        {
            "max_upload_bytes": settings.MAX_UPLOAD_BYTES,
            # Microscopy's few units first and named with their symbols; NGFF's other spatial
            # units (yoctometre to parsec, and the imperial ones) in a group of their own.
            "unit_groups": [
                ("Microscopy", [(u, f"{u} ({UNIT_SYMBOLS[u]})") for u in COMMON_SPACE_UNITS]),
                ("Other OME-NGFF units", [(u, u) for u in others]),
            ],
            "visibilities": Visibility.choices,
        },
    )


urlpatterns = [path("import/", import_page, name="import")]
