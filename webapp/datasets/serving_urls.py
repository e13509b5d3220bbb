"""Data URLs for Neuroglancer and nginx's access check (see webapp.datasets.serving)."""

from django.urls import path

from webapp.datasets import serving

urlpatterns = [
    path("data/<slug:slug>/<path:path>", serving.data_file, name="data-file"),
    path(
        "s/<str:token>/data/<slug:slug>/<path:path>",
        serving.shared_data_file,
        name="shared-data-file",
    ),
    path("internal/data-auth", serving.data_auth, name="data-auth"),
]
