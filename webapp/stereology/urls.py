"""Stereology pages (the API is in api/urls.py)."""

from django.urls import path

from webapp.stereology import views

app_name = "stereology"

urlpatterns = [
    path("campaigns/<int:campaign_id>/", views.campaign_studies, name="campaign-studies"),
    path("<int:study_id>/", views.study_page, name="study"),
]
