"""Detections API routes, included under /api/v1/."""

from django.urls import path

from webapp.detections.api import card_views, views

LAYER = "datasets/<slug:slug>/layers/<str:layer_name>/detections/"

urlpatterns = [
    path(
        "datasets/<slug:slug>/detections/",
        views.DatasetTablesView.as_view(),
        name="api-dataset-detections",
    ),
    path(LAYER, views.DetectionListView.as_view(), name="api-detections-list"),
    path(f"{LAYER}table/", views.DetectionTableView.as_view(), name="api-detections-table"),
    path(
        f"{LAYER}export.<str:table_format>",
        views.DetectionExportView.as_view(),
        name="api-detections-export",
    ),
    path(
        f"{LAYER}meshes.zip",
        views.DetectionMeshesZipView.as_view(),
        name="api-detections-meshes-zip",
    ),
    path(
        f"{LAYER}<int:segment_id>/",
        views.DetectionDetailView.as_view(),
        name="api-detection-detail",
    ),
    path(f"{LAYER}cards/", card_views.CardBuildView.as_view(), name="api-detections-cards"),
    path(f"{LAYER}cards/page/", card_views.CardPageView.as_view(), name="api-detections-card-page"),
    path(
        f"{LAYER}<int:segment_id>/card.png",
        card_views.DetectionCardView.as_view(),
        name="api-detection-card",
    ),
    path(
        f"{LAYER}<int:segment_id>/mesh.<str:file_format>",
        views.DetectionMeshView.as_view(),
        name="api-detection-mesh",
    ),
]
