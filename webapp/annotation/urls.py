"""Annotation pages (the API is in api/urls.py)."""

from django.urls import URLPattern, path  # noqa: F401

app_name = "annotation"

urlpatterns: list[URLPattern] = []
