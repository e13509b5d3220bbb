"""Viewer pages and the Neuroglancer client with the stub endpoints it calls."""

from django.urls import path, re_path

from webapp.viewer import events, neuroglancer_client, views

app_name = "viewer"

urlpatterns = [
    path("", views.dataset_list, name="dataset-list"),
    path("datasets/<slug:slug>/", views.dataset_viewer, name="dataset-viewer"),
    path("datasets/<slug:slug>/thumbnail.png", views.dataset_thumbnail, name="dataset-thumbnail"),
    path(
        "s/<str:token>/datasets/<slug:slug>/",
        views.shared_dataset_viewer,
        name="shared-dataset-viewer",
    ),
    path(
        "neuroglancer/v/<str:token>/",
        neuroglancer_client.client_file,
        name="neuroglancer-client",
    ),
    re_path(
        r"^neuroglancer/v/(?P<token>[^/]+)/(?P<path>[A-Za-z0-9_\-][A-Za-z0-9_\-.]*)$",
        neuroglancer_client.client_file,
        name="neuroglancer-client-file",
    ),
    path("neuroglancer/events/<str:token>", events.events, name="neuroglancer-events"),
    path("neuroglancer/state/<str:token>", events.generation_stub, name="neuroglancer-state"),
    path("neuroglancer/action/<str:token>", events.generation_stub, name="neuroglancer-action"),
    path(
        "neuroglancer/credentials/<str:token>",
        events.generation_stub,
        name="neuroglancer-credentials",
    ),
    path(
        "neuroglancer/volume_response/<str:token>",
        events.generation_stub,
        name="neuroglancer-volume-response",
    ),
    path(
        "neuroglancer/volume_response/<str:token>/<path:rest>",
        events.generation_stub,
        name="neuroglancer-volume-response-part",
    ),
]
