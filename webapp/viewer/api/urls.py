from django.urls import path

from webapp.viewer.api.views import SavedStateDetailView, SavedStateListView

urlpatterns = [
    path(
        "datasets/<slug:slug>/states/",
        SavedStateListView.as_view(),
        name="viewer-saved-state-list",
    ),
    path(
        "datasets/<slug:slug>/states/<str:key>/",
        SavedStateDetailView.as_view(),
        name="viewer-saved-state-detail",
    ),
]
