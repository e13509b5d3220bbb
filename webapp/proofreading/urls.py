"""Proofreading pages (the API is in api/urls.py)."""

from django.urls import path

from webapp.proofreading import gallery_views, views

app_name = "proofreading"

urlpatterns = [
    path("", views.campaign_list, name="campaign-list"),
    path("<int:campaign_id>/", views.queue_page, name="queue"),
    path("<int:campaign_id>/gallery/", gallery_views.gallery_page, name="gallery"),
]
