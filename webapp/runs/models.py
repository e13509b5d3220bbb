"""Pipeline runs (on the core job base) and the model versions they register.

A run trains the pipeline on a snapshot of an annotation campaign's approved painted ground truth
(some boxes held out for evaluation), predicts and segments the dataset's image on the Celery
workers, measures, fits the filter, evaluates on the held-out boxes, and publishes a new
segmentation layer with meshes and a model version. Its row is the truth about it: status,
stage, per-stage progress, the training curves as they come, metrics, outputs and error.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from webapp.core.jobs.models import Job, JobState, JobStatus
from webapp.core.permissions import Principal, RestrictedByParent, RestrictedQuerySet, principal_of
from webapp.core.users import AnyUser

#: The stages of a run, in order (``PipelineRun.stage`` names the one running).
STAGES: tuple[str, ...] = (
    "export",
    "train",
    "predict",
    "segment",
    "measure",
    "filter",
    "evaluate",
    "publish",
)


class PipelineRunQuerySet(RestrictedByParent["PipelineRun"]):
    """Whoever may see the dataset sees its runs; its owner, whoever started a run and the
    managers of the campaign it trains on may cancel it ("change")."""

    parent_field = "dataset"
    parent_actions: ClassVar[dict[str, str]] = {"view": "view", "change": "change"}

    def restrict(
        self, user: AnyUser | Principal | None, action: str = "view"
    ) -> RestrictedQuerySet[PipelineRun]:
        allowed = super().restrict(user, action)
        principal = user if isinstance(user, Principal) else principal_of(user)
        if action != "change" or principal.is_superuser or not principal.is_authenticated:
            return allowed
        from webapp.annotation.models import CampaignMember, Role

        assert principal.user_id is not None  # authenticated
        managed = CampaignMember.objects.filter(user_id=principal.user_id, role=Role.MANAGER)
        mine = self.filter(
            Q(owner_id=principal.user_id) | Q(campaign_id__in=managed.values("campaign_id"))
        ).filter(dataset__in=super().restrict(user, "view").values("dataset"))
        return self.filter(Q(pk__in=allowed.values("pk")) | Q(pk__in=mine.values("pk")))


class PipelineRun(Job):
    """One retraining run (see the module docstring)."""

    dataset = models.ForeignKey(
        "datasets.Dataset", on_delete=models.CASCADE, related_name="pipeline_runs"
    )
    image_layer = models.ForeignKey(
        "datasets.Layer", on_delete=models.CASCADE, related_name="pipeline_runs"
    )
    campaign = models.ForeignKey(
        "annotation.AnnotationCampaign",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pipeline_runs",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pipeline_runs",
    )
    preset = models.CharField(max_length=50)
    # The overrides given when starting, and the pipeline configuration they made (paths
    # relative to the run's work directory).
    params = models.JSONField(default=dict, blank=True)
    config = models.JSONField(default=dict, blank=True)
    # What it trains on: per box its id, name, source and version; which boxes are held out
    # (all of them when it trains nothing; none without a campaign).
    ground_truth = models.JSONField(default=dict, blank=True)
    # The model it fine-tunes, or segments with (``mode``).
    parent = models.ForeignKey(
        "runs.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
    )
    # {stage: {"state": pending|running|done|skipped, "done": n, "total": n, "seconds": s}}
    stages = models.JSONField(default=dict, blank=True)
    # Training curves: one row per epoch (train and validation losses, validation F1...).
    history = models.JSONField(default=list, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    result_layer = models.ForeignKey(
        "datasets.Layer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = PipelineRunQuerySet.as_manager()

    class Meta(Job.Meta):
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["dataset", "created"], name="run_dataset_created"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.dataset_id}"

    @property
    def mode(self) -> str:
        """``train`` (from scratch), ``fine-tune`` (from ``parent``'s weights) or ``predict``
        (segments with ``parent``, trains nothing): what its configuration says."""
        if (self.config.get("model") or {}).get("path"):
            return "predict"
        if (self.config.get("training") or {}).get("init_model"):
            return "fine-tune"
        return "train"

    @property
    def waits_on_workers(self) -> bool:
        """Released: no process holds the row while Celery workers run a plan of it."""
        return self.status == JobStatus.RUNNING and not self.worker

    @property
    def state(self) -> str:
        """As the job base's, but a released run is running (its workers are), not retrying."""
        if self.waits_on_workers:
            return str(JobState.RUNNING)
        return super().state


class ModelVersionQuerySet(RestrictedByParent["ModelVersion"]):
    """Model versions are seen with their dataset."""

    parent_field = "dataset"
    parent_actions: ClassVar[dict[str, str]] = {"view": "view", "change": "change"}


class ModelVersion(models.Model):
    """A trained model: its file, the run that made it, its parameters and fitted settings,
    its metrics on the held-out boxes. Numbered per dataset."""

    dataset = models.ForeignKey(
        "datasets.Dataset", on_delete=models.CASCADE, related_name="model_versions"
    )
    number = models.PositiveIntegerField()
    run = models.OneToOneField(
        PipelineRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="model"
    )
    # The model file, relative to DATA_ROOT.
    path = models.CharField(max_length=500)
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    layer = models.ForeignKey(
        "datasets.Layer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The dataset's current model (at most one): what "Suggest next boxes" and the painting
    # editor's model assistance use (``publish.current_decision`` says when a new one takes over).
    current = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="unique_model_number"),
            models.UniqueConstraint(
                fields=["dataset"], condition=Q(current=True), name="one_current_model"
            ),
        ]

    def __str__(self) -> str:
        return f"model v{self.number} of {self.dataset_id}"


class AutoRetrainQuerySet(RestrictedByParent["AutoRetrain"]):
    """A campaign's automatic retraining is seen by its members and set by its managers."""

    parent_field = "campaign"
    parent_actions: ClassVar[dict[str, str]] = {"view": "view", "change": "change"}


class AutoRetrain(models.Model):
    """Retrain a campaign automatically each time ``every`` more boxes have approved painted
    ground truth than its latest run trained on (no row: off, the default). Runs are started
    as ``owner`` (the manager who set it) with ``preset`` and ``params``."""

    campaign = models.OneToOneField(
        "annotation.AnnotationCampaign", on_delete=models.CASCADE, related_name="auto_retrain"
    )
    every = models.PositiveIntegerField()
    preset = models.CharField(max_length=50)
    params = models.JSONField(default=dict, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="auto_retrains"
    )
    updated = models.DateTimeField(auto_now=True)

    objects = AutoRetrainQuerySet.as_manager()
