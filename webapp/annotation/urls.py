"""Annotation pages (the API is in api/urls.py)."""

from django.urls import URLPattern, path

from webapp.annotation import review_views, task_views

app_name = "annotation"

urlpatterns: list[URLPattern] = [
    # The annotator's task page (task_views.py)
    path("task/<int:assignment_id>/", task_views.task_page, name="task"),
    path("<int:campaign_id>/next/", task_views.next_task, name="next"),
    # review
    path("<int:campaign_id>/review/", review_views.review_page, name="review"),
]
