"""Annotation API routes, included under /api/v1/."""

from django.urls import path

from webapp.annotation.api import (
    assist_views,
    label_image_views,
    label_mesh_views,
    label_views,
    painted_views,
    review_views,
    views,
)

CAMPAIGN = "annotation/campaigns/<int:campaign_id>/"
ASSIGNMENT = "annotation/assignments/<int:assignment_id>/"

urlpatterns = [
    path("annotation/campaigns/", views.CampaignListView.as_view(), name="api-annotation-list"),
    path(CAMPAIGN, views.CampaignDetailView.as_view(), name="api-annotation-detail"),
    path(f"{CAMPAIGN}members/", views.MemberListView.as_view(), name="api-annotation-members"),
    path(
        f"{CAMPAIGN}members/<int:member_id>/",
        views.MemberDetailView.as_view(),
        name="api-annotation-member",
    ),
    path(f"{CAMPAIGN}boxes/", views.BoxListView.as_view(), name="api-annotation-boxes"),
    path(
        f"{CAMPAIGN}boxes/<int:box_id>/", views.BoxDetailView.as_view(), name="api-annotation-box"
    ),
    path(
        f"{CAMPAIGN}boxes/<int:box_id>/flag/",
        views.BoxFlagView.as_view(),
        name="api-annotation-box-flag",
    ),
    path(f"{CAMPAIGN}coverage/", views.CoverageView.as_view(), name="api-annotation-coverage"),
    path(f"{CAMPAIGN}next/", views.NextTaskView.as_view(), name="api-annotation-next"),
    path(
        f"{CAMPAIGN}review/next/", views.NextReviewView.as_view(), name="api-annotation-review-next"
    ),
    path(
        f"{CAMPAIGN}assignments/",
        views.AssignmentListView.as_view(),
        name="api-annotation-assignments",
    ),
    path(f"{CAMPAIGN}audit/", views.AuditListView.as_view(), name="api-annotation-audit"),
    path(f"{CAMPAIGN}dashboard/", views.DashboardView.as_view(), name="api-annotation-dashboard"),
    path(
        f"{CAMPAIGN}dashboard.csv",
        views.DashboardCsvView.as_view(),
        name="api-annotation-dashboard-csv",
    ),
    path(ASSIGNMENT, views.AssignmentDetailView.as_view(), name="api-annotation-assignment"),
    path(
        f"{ASSIGNMENT}annotations/",
        views.AnnotationsView.as_view(),
        name="api-annotation-annotations",
    ),
    path(
        f"{ASSIGNMENT}revisions/", views.RevisionListView.as_view(), name="api-annotation-revisions"
    ),
    path(f"{ASSIGNMENT}restore/", views.RestoreView.as_view(), name="api-annotation-restore"),
    path(f"{ASSIGNMENT}labels/", label_views.LabelsView.as_view(), name="api-annotation-labels"),
    path(
        f"{ASSIGNMENT}labels/objects/",
        label_views.LabelObjectsView.as_view(),
        name="api-annotation-label-objects",
    ),
    path(
        f"{ASSIGNMENT}labels/image/",
        label_image_views.LabelImageView.as_view(),
        name="api-annotation-label-image",
    ),
    # Read-only files of a labels version for Neuroglancer (not API operations: no schema).
    path(
        f"{ASSIGNMENT}labels/v<int:version>/meshes/<path:path>",
        label_mesh_views.labels_mesh_file,
        name="api-annotation-labels-meshes",
    ),
    path(
        f"{ASSIGNMENT}labels/chunks/<str:key>",
        label_views.labels_chunk_blob,
        name="api-annotation-labels-chunk",
    ),
    path(
        f"{ASSIGNMENT}labels/fragments/<str:key>",
        label_mesh_views.labels_mesh_fragment,
        name="api-annotation-labels-fragment",
    ),
    path(
        f"{ASSIGNMENT}labels/v<int:version>/<path:path>",
        label_views.labels_zarr_file,
        name="api-annotation-labels-zarr",
    ),
    path(
        f"{ASSIGNMENT}assist/click/",
        assist_views.AssistClickView.as_view(),
        name="api-annotation-assist-click",
    ),
    path(
        f"{ASSIGNMENT}assist/proposals/",
        assist_views.AssistProposalsView.as_view(),
        name="api-annotation-assist-proposals",
    ),
    path(f"{ASSIGNMENT}activity/", views.ActivityView.as_view(), name="api-annotation-activity"),
    path(f"{ASSIGNMENT}skip/", views.SkipView.as_view(), name="api-annotation-skip"),
    path(f"{ASSIGNMENT}flag/", views.FlagView.as_view(), name="api-annotation-flag"),
    path(f"{ASSIGNMENT}submit/", views.SubmitView.as_view(), name="api-annotation-submit"),
    path(f"{ASSIGNMENT}approve/", views.ApproveView.as_view(), name="api-annotation-approve"),
    path(f"{ASSIGNMENT}reject/", views.RejectView.as_view(), name="api-annotation-reject"),
    # review: agreement, consensus, export
    path(
        f"{CAMPAIGN}agreement/",
        review_views.AgreementView.as_view(),
        name="api-annotation-agreement",
    ),
    path(
        f"{CAMPAIGN}boxes/<int:box_id>/agreement/",
        review_views.BoxAgreementView.as_view(),
        name="api-annotation-box-agreement",
    ),
    path(
        f"{CAMPAIGN}boxes/<int:box_id>/consensus/",
        review_views.ConsensusView.as_view(),
        name="api-annotation-consensus",
    ),
    # painted review: label agreement, consensus volume, accepted truth
    path(
        f"{CAMPAIGN}label-agreement/",
        painted_views.LabelAgreementView.as_view(),
        name="api-annotation-label-agreement",
    ),
    path(
        f"{CAMPAIGN}boxes/<int:box_id>/label-agreement/",
        painted_views.BoxLabelAgreementView.as_view(),
        name="api-annotation-box-label-agreement",
    ),
    path(
        f"{CAMPAIGN}boxes/<int:box_id>/label-consensus/",
        painted_views.BoxLabelConsensusView.as_view(),
        name="api-annotation-label-consensus",
    ),
    # Read-only files of a consensus volume for Neuroglancer (not API operations: no schema).
    path(
        f"{CAMPAIGN}boxes/<int:box_id>/label-consensus/<str:token>/<path:path>",
        painted_views.consensus_zarr_file,
        name="api-annotation-label-consensus-zarr",
    ),
    path(
        f"{CAMPAIGN}boxes/<int:box_id>/label-truth/",
        painted_views.BoxLabelTruthView.as_view(),
        name="api-annotation-label-truth",
    ),
    path(
        f"{CAMPAIGN}export.csv",
        review_views.ExportCsvView.as_view(),
        name="api-annotation-export-csv",
    ),
    path(
        f"{CAMPAIGN}export.json",
        review_views.ExportJsonView.as_view(),
        name="api-annotation-export-json",
    ),
    path(
        f"{CAMPAIGN}boxes.csv",
        review_views.BoxesCsvView.as_view(),
        name="api-annotation-boxes-csv",
    ),
    path(
        f"{CAMPAIGN}labels.zip",
        review_views.LabelsZipView.as_view(),
        name="api-annotation-labels-zip",
    ),
]
