"""Datasets API routes, included under /api/v1/."""

from django.urls import path

from webapp.datasets.api import views

urlpatterns = [
    path("datasets/", views.DatasetListView.as_view(), name="api-dataset-list"),
    path("datasets/<slug:slug>/", views.DatasetDetailView.as_view(), name="api-dataset-detail"),
    path(
        "datasets/<slug:slug>/share-links/",
        views.ShareLinkListView.as_view(),
        name="api-share-link-list",
    ),
    path(
        "datasets/<slug:slug>/share-links/<int:link_id>/revoke/",
        views.ShareLinkRevokeView.as_view(),
        name="api-share-link-revoke",
    ),
    path(
        "datasets/<slug:slug>/layers/<str:layer_name>/meshes/",
        views.MeshesBuildView.as_view(),
        name="api-layer-meshes-build",
    ),
    path("imports/", views.ImportCreateView.as_view(), name="api-import-create"),
    path("jobs/", views.JobListView.as_view(), name="api-job-list"),
    path("jobs/<int:pk>/", views.JobDetailView.as_view(), name="api-job-detail"),
    path("jobs/<int:pk>/cancel/", views.JobCancelView.as_view(), name="api-job-cancel"),
]
