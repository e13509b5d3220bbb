"""Annotation pages (the API is in api/urls.py)."""

from django.urls import URLPattern, path

from webapp.annotation import review_views

app_name = "annotation"

urlpatterns: list[URLPattern] = [
    # review
    path("<int:campaign_id>/review/", review_views.review_page, name="review"),
]
