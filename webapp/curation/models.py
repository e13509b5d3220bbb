"""Curation jobs (on the core job base): verdict properties syncs and curated-layer publications.

- ``verdict_properties``: rewrite a segmentation layer's segment properties with the verdict
  tags (queued when verdicts change; at most one queued per layer, so a burst of verdicts costs
  one rewrite after it; see ``services.verdict_properties_schedule``). No owner: the system runs it.
- ``publish``: a campaign manager's "publish curated layer": a new segmentation layer (labels,
  meshes, properties) of the campaign's accepted objects. ``result_layer`` once it exists.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models

from webapp.core.jobs.models import Job
from webapp.core.permissions import Owner, RestrictedQuerySet, Rules


class CurationKind(models.TextChoices):
    VERDICT_PROPERTIES = "verdict_properties", "Verdicts into segment properties"
    PUBLISH = "publish", "Publish curated layer"


class CurationJobQuerySet(RestrictedQuerySet["CurationJob"]):
    """Jobs are their starter's (and superusers'); "change" is cancelling."""

    rules: ClassVar[Rules] = {"view": (Owner("owner"),), "change": (Owner("owner"),)}


class CurationJob(Job):
    kind = models.CharField(max_length=20, choices=CurationKind.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="curation_jobs",
    )
    layer = models.ForeignKey(
        "datasets.Layer", on_delete=models.CASCADE, related_name="curation_jobs"
    )
    campaign = models.ForeignKey(
        "proofreading.ProofreadingCampaign",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="curation_jobs",
    )
    params = models.JSONField(default=dict, blank=True)
    result_layer = models.ForeignKey(
        "datasets.Layer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = CurationJobQuerySet.as_manager()

    class Meta(Job.Meta):
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["layer", "kind", "status"], name="curation_job_layer"),
            models.Index(fields=["campaign", "kind", "created"], name="curation_job_campaign"),
        ]
