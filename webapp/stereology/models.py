"""Physical-disector studies: how many objects the segmentation of a campaign's layer missed.

A ``DisectorStudy`` belongs to a proofreading campaign rather than directly to a segmentation
layer. The campaign already says who works on the layer and in which role (managers create
studies, reviewers and experts count, everyone else sees nothing), and which detections count
as "the segmentation" (the campaign's volume/sphericity filter, if any: a detection the filter
drops is missed as far as the results go). A study on a bare layer would need a second
membership model for the same people; a manager who wants a study without proofreading creates a
campaign and leaves its queue alone.

The study stores its plan (``pipeline.stereology.DisectorPlan.to_dict()``), drawn once with its
seed: K pairs of sections (reference, look-up h further along z). A reviewer's marks
(``DisectorMark``) are points on objects seen in a pair's reference section but not in its
look-up section, each matched to a detection when it is made. ``PairCount`` records which pairs
a reviewer has counted (marking in a pair counts it; "done" counts a pair with no marks as
Q- = 0), so the estimate uses exactly the disectors each reviewer looked at.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.db import models

from webapp.core.permissions import RestrictedByParent


class StudyQuerySet(RestrictedByParent["DisectorStudy"]):
    """A study is its campaign's: members see it, managers change and delete it."""

    parent_field = "campaign"
    parent_actions = {"view": "view", "change": "change", "delete": "delete", "report": "report"}


class DisectorStudy(models.Model):
    campaign = models.ForeignKey(
        "proofreading.ProofreadingCampaign",
        on_delete=models.CASCADE,
        related_name="disector_studies",
    )
    name = models.CharField(max_length=200)
    # A segmentation layer of the same dataset whose non-zero voxels are the region (optional).
    mask_layer = models.ForeignKey(
        "datasets.Layer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    n_pairs = models.PositiveIntegerField()
    h_um_requested = models.FloatField(
        help_text="h as asked for (um); the plan rounds it to sections"
    )
    seed = models.BigIntegerField()
    tolerance_um = models.FloatField(default=0.0)
    plan = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    objects = StudyQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name_plural = "disector studies"

    def __str__(self) -> str:
        return self.name

    @property
    def pairs(self) -> list[dict[str, Any]]:
        return list(self.plan.get("pairs", []))


class PairCount(models.Model):
    """Reviewer ``reviewer`` has counted pair ``pair`` of ``study`` (its Q- is their marks)."""

    study = models.ForeignKey(DisectorStudy, on_delete=models.CASCADE, related_name="counts")
    pair = models.PositiveIntegerField()
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "pair", "reviewer"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "pair", "reviewer"], name="unique_disector_pair_count"
            )
        ]


class DisectorMark(models.Model):
    """A point (voxels of the layer, z y x, voxel centres at integers) on an object seen in the
    pair's reference section and not in its look-up section, with the detection it matched."""

    study = models.ForeignKey(DisectorStudy, on_delete=models.CASCADE, related_name="marks")
    pair = models.PositiveIntegerField()
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    z = models.FloatField()
    y = models.FloatField()
    x = models.FloatField()
    # As in proofreading items: no constraint, a rebuild may drop the detection (segment_id stays).
    detection = models.ForeignKey(
        "detections.Detection",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    segment_id = models.BigIntegerField(null=True, blank=True)
    # pipeline.stereology.MatchKind, or "filtered" (a segment the campaign's filter leaves out).
    match = models.CharField(max_length=12)
    distance_um = models.FloatField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "pair", "id"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["study", "reviewer", "pair"], name="disector_mark_reviewer")
        ]

    @property
    def matched(self) -> bool:
        return self.segment_id is not None and self.match != "filtered"
