"""Runs API routes, included under /api/v1/."""

from django.urls import path

from webapp.runs.api import views

urlpatterns = [
    path("runs/", views.RunListView.as_view(), name="api-runs"),
    path("runs/presets/", views.PresetsView.as_view(), name="api-run-presets"),
    path("runs/<int:pk>/", views.RunDetailView.as_view(), name="api-run"),
    path("runs/<int:pk>/cancel/", views.RunCancelView.as_view(), name="api-run-cancel"),
    path(
        "runs/auto-retrain/<int:campaign_id>/",
        views.AutoRetrainView.as_view(),
        name="api-run-auto-retrain",
    ),
    path("models/", views.ModelListView.as_view(), name="api-models"),
    path("models/<int:pk>/", views.ModelDetailView.as_view(), name="api-model"),
    path("models/<int:pk>/download/", views.ModelDownloadView.as_view(), name="api-model-download"),
    path("models/<int:pk>/current/", views.ModelCurrentView.as_view(), name="api-model-current"),
    path(
        "models/<int:pk>/suggestions/",
        views.ModelSuggestionsView.as_view(),
        name="api-model-suggestions",
    ),
    path(
        "models/<int:pk>/proofreading/",
        views.ModelProofreadingView.as_view(),
        name="api-model-proofreading",
    ),
]
