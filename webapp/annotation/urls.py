"""Annotation pages (the API is in api/urls.py)."""

from django.urls import URLPattern, path

from webapp.annotation import report_views, review_views, task_views, views

app_name = "annotation"

urlpatterns: list[URLPattern] = [
    # The annotator's task page (task_views.py)
    path("task/<int:assignment_id>/", task_views.task_page, name="task"),
    path("<int:campaign_id>/next/", task_views.next_task, name="next"),
    # review
    path("<int:campaign_id>/review/", review_views.review_page, name="review"),
    # The managers' pages (views.py).
    path("", views.campaign_list, name="campaign-list"),
    path("<int:campaign_id>/", views.campaign_page, name="campaign"),
    path("<int:campaign_id>/viewer/", views.boxes_viewer, name="boxes-viewer"),
    path("<int:campaign_id>/audit/", views.audit_page, name="audit"),
    # the dashboard (report_views.py)
    path("<int:campaign_id>/dashboard/", report_views.dashboard_page, name="dashboard"),
]
