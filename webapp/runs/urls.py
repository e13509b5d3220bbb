"""Runs pages (the API is in api/urls.py)."""

from django.urls import URLPattern, path

from webapp.runs import views

app_name = "runs"

urlpatterns: list[URLPattern] = [
    path("runs/<int:run_id>/", views.run_page, name="run"),
    path("datasets/<slug:slug>/models/", views.models_page, name="models"),
]
