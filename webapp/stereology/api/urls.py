"""Stereology API routes, included under /api/v1/."""

from django.urls import path

from webapp.stereology.api import views

STUDY = "stereology/studies/<int:study_id>/"

urlpatterns = [
    path("stereology/studies/", views.StudyListView.as_view(), name="api-stereology-studies"),
    path(STUDY, views.StudyDetailView.as_view(), name="api-stereology-study"),
    path(f"{STUDY}marks/", views.MarkListView.as_view(), name="api-stereology-marks"),
    path(
        f"{STUDY}marks/<int:mark_id>/", views.MarkDetailView.as_view(), name="api-stereology-mark"
    ),
    path(
        f"{STUDY}pairs/<int:pair>/counted/",
        views.PairCountedView.as_view(),
        name="api-stereology-pair-counted",
    ),
    path(f"{STUDY}estimate/", views.EstimateView.as_view(), name="api-stereology-estimate"),
]
