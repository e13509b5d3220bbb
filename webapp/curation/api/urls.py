"""Curation API routes, included under /api/v1/."""

from django.urls import path

from webapp.curation.api import views

urlpatterns = [
    path(
        "curation/campaigns/<int:campaign_id>/publish/",
        views.PublishView.as_view(),
        name="api-curation-publish",
    ),
    path("curation/jobs/<int:pk>/", views.CurationJobDetailView.as_view(), name="api-curation-job"),
    path(
        "curation/jobs/<int:pk>/cancel/",
        views.CurationJobCancelView.as_view(),
        name="api-curation-job-cancel",
    ),
]
