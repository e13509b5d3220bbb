"""Detections pages (included under "datasets/", before the viewer's "datasets/<slug>/")."""

from django.urls import path

from webapp.detections import views

app_name = "detections"

urlpatterns = [
    path(
        "<slug:slug>/detections/<str:layer_name>/",
        views.detections_table_page,
        name="table",
    )
]
