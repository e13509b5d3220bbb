"""Annotation pages (the API is in api/urls.py)."""

from django.urls import URLPattern, path

from webapp.annotation import report_views

app_name = "annotation"

urlpatterns: list[URLPattern] = [
    # the dashboard (report_views.py)
    path("<int:campaign_id>/dashboard/", report_views.dashboard_page, name="dashboard"),
]
