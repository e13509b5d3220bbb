"""Proofreading API routes, included under /api/v1/."""

from django.urls import path

from webapp.proofreading.api import threshold_views, views

CAMPAIGN = "proofreading/campaigns/<int:campaign_id>/"

urlpatterns = [
    path("proofreading/campaigns/", views.CampaignListView.as_view(), name="api-proofreading-list"),
    path(CAMPAIGN, views.CampaignDetailView.as_view(), name="api-proofreading-detail"),
    path(f"{CAMPAIGN}members/", views.MemberListView.as_view(), name="api-proofreading-members"),
    path(
        f"{CAMPAIGN}members/<int:member_id>/",
        views.MemberDetailView.as_view(),
        name="api-proofreading-member",
    ),
    path(f"{CAMPAIGN}items/", views.ItemListView.as_view(), name="api-proofreading-items"),
    path(
        f"{CAMPAIGN}items/<int:item_id>/",
        views.ItemDetailView.as_view(),
        name="api-proofreading-item",
    ),
    path(f"{CAMPAIGN}next/", views.NextView.as_view(), name="api-proofreading-next"),
    path(f"{CAMPAIGN}verdicts/", views.VerdictListView.as_view(), name="api-proofreading-verdicts"),
    path(
        f"{CAMPAIGN}verdicts/bulk/",
        views.VerdictBulkView.as_view(),
        name="api-proofreading-verdicts-bulk",
    ),
    path(
        f"{CAMPAIGN}verdicts/<int:verdict_id>/",
        views.VerdictDetailView.as_view(),
        name="api-proofreading-verdict",
    ),
    path(f"{CAMPAIGN}undo/", views.UndoView.as_view(), name="api-proofreading-undo"),
    path(f"{CAMPAIGN}skip/", views.SkipView.as_view(), name="api-proofreading-skip"),
    path(f"{CAMPAIGN}flags/", views.FlagListView.as_view(), name="api-proofreading-flags"),
    path(f"{CAMPAIGN}history/", views.HistoryView.as_view(), name="api-proofreading-history"),
    path(f"{CAMPAIGN}missed/", views.MissedListView.as_view(), name="api-proofreading-missed"),
    path(
        f"{CAMPAIGN}missed/<int:missed_id>/",
        views.MissedDetailView.as_view(),
        name="api-proofreading-missed-point",
    ),
    path(
        f"{CAMPAIGN}missed.csv", views.MissedCsvView.as_view(), name="api-proofreading-missed-csv"
    ),
    path(f"{CAMPAIGN}agreement/", views.AgreementView.as_view(), name="api-proofreading-agreement"),
    path(f"{CAMPAIGN}dashboard/", views.DashboardView.as_view(), name="api-proofreading-dashboard"),
    path(
        f"{CAMPAIGN}dashboard.csv",
        views.DashboardCsvView.as_view(),
        name="api-proofreading-dashboard-csv",
    ),
    path(
        f"{CAMPAIGN}thresholds/",
        threshold_views.ThresholdDataView.as_view(),
        name="api-proofreading-thresholds",
    ),
    path(
        f"{CAMPAIGN}thresholds/fit/",
        threshold_views.ThresholdFitView.as_view(),
        name="api-proofreading-thresholds-fit",
    ),
    path(
        f"{CAMPAIGN}thresholds/filter/",
        threshold_views.ThresholdFilterView.as_view(),
        name="api-proofreading-thresholds-filter",
    ),
    path(
        f"{CAMPAIGN}export.<str:table_format>",
        views.ExportView.as_view(),
        name="api-proofreading-export",
    ),
]
