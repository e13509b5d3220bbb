"""Dataset pages (include under "datasets/", before the viewer's "datasets/<slug>/")."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from pipeline.units import space_units_common_first
from webapp.datasets.models import Visibility

app_name = "datasets"


@login_required
def import_page(request: HttpRequest) -> HttpResponse:
    """The upload form; the work happens in import.js through /api/v1/imports/ and /jobs/."""
    units = space_units_common_first()
    return render(
        request,
        "datasets/import.html",
        {
            "max_upload_bytes": settings.MAX_UPLOAD_BYTES,
            "units": [(u, u) for u in units],
            "visibilities": Visibility.choices,
        },
    )


urlpatterns = [path("import/", import_page, name="import")]
