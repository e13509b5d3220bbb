"""Datasets, their layers, share links and background jobs.

Files of a dataset live under ``Dataset.root`` (``DATA_ROOT/datasets/<slug>`` by default); a
layer's ``path`` is relative to that root and is also its URL path under ``/data/<slug>/``.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from pipeline.units import DEFAULT_UNIT
from webapp.core.jobs.models import Job, JobState, JobStatus
from webapp.core.permissions import (
    FieldIs,
    Owner,
    RestrictedByParent,
    RestrictedQuerySet,
    Rules,
    TeamMember,
)

__all__ = [
    "Dataset",
    "DatasetJob",
    "JobKind",
    "JobState",
    "JobStatus",
    "Layer",
    "LayerKind",
    "ShareLink",
    "Visibility",
]


class Visibility(models.TextChoices):
    PRIVATE = "private", "Private"
    TEAM = "team", "Team"
    PUBLIC = "public", "Public"


class DatasetQuerySet(RestrictedQuerySet["Dataset"]):
    """``Dataset.objects.restrict(user, action)``: the one rule of who may see and change a dataset.

    View: public datasets for anyone, own datasets, and team datasets for their team's members.
    Change, delete, share (by link): the owner. Superusers may do everything. The data-serving
    access check (``data_access``) reads the same rule on cached facts.
    """

    rules: ClassVar[Rules] = {
        "view": (
            FieldIs("visibility", Visibility.PUBLIC),
            Owner("owner"),
            TeamMember("team", when=(("visibility", Visibility.TEAM),)),
        ),
        "change": (Owner("owner"),),
        "delete": (Owner("owner"),),
        "share": (Owner("owner"),),
    }


class Dataset(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="datasets"
    )
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="datasets"
    )
    visibility = models.CharField(
        max_length=10, choices=Visibility.choices, default=Visibility.PRIVATE
    )
    # Absolute directory holding the dataset's stores; empty means DATA_ROOT/datasets/<slug>.
    root_dir = models.CharField(max_length=1000, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = DatasetQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def root(self) -> Path:
        if self.root_dir:
            return Path(self.root_dir)
        return Path(settings.DATA_ROOT) / "datasets" / self.slug


class LayerKind(models.TextChoices):
    IMAGE = "image", "Image"
    SEGMENTATION = "segmentation", "Segmentation"
    MESH = "mesh", "Mesh"


class Layer(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="layers")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=LayerKind.choices)
    # Path of the store relative to the dataset root, e.g. "image.ome.zarr",
    # "image.ome.zarr/labels/nuclei" or "meshes/nuclei".
    path = models.CharField(max_length=500)
    ngff_version = models.CharField(max_length=10, blank=True)  # "0.4", "0.5"; "" for meshes
    shape = models.JSONField(default=list)  # full-resolution shape, axis order as `axes`
    axes = models.JSONField(default=list)  # e.g. ["c", "z", "y", "x"]
    dtype = models.CharField(max_length=20, blank=True)
    voxel_size = models.JSONField(default=list)  # spatial axes only, order z, y, x
    unit = models.CharField(max_length=30, default=DEFAULT_UNIT)
    channels = models.PositiveIntegerField(default=1)
    levels = models.PositiveIntegerField(default=1)
    contrast_min = models.FloatField(null=True, blank=True)
    contrast_max = models.FloatField(null=True, blank=True)
    # A mesh layer points at the segmentation whose objects it draws.
    source_layer = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="derived_layers"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "name"], name="unique_layer_name_per_dataset"
            )
        ]

    def __str__(self) -> str:
        return f"{self.dataset.slug}/{self.name}"

    @property
    def spatial_dims(self) -> int:
        """2 for a 2D image (no z axis: campaigns give it a depth of one voxel), else 3."""
        return 2 if self.axes and "z" not in self.axes else 3


def new_share_token() -> str:
    return secrets.token_urlsafe(24)


def share_link_is_active(
    revoked_at: datetime | None, expires_at: datetime | None, now: datetime
) -> bool:
    """A link works until it is revoked or its expiry time has come."""
    return revoked_at is None and (expires_at is None or expires_at > now)


class ShareLinkQuerySet(RestrictedByParent["ShareLink"]):
    """A dataset's links are its owner's business: every action needs "share" on the dataset."""

    parent_field = "dataset"
    parent_actions = {"view": "share", "change": "share", "delete": "share"}

    def active(self, now: datetime | None = None) -> ShareLinkQuerySet:
        """Links that grant access now (:func:`share_link_is_active` as a filter)."""
        now = now or timezone.now()
        return self.filter(
            Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        )


class ShareLink(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="share_links")
    token = models.CharField(max_length=64, unique=True, default=new_share_token)
    label = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="share_links"
    )
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ShareLinkQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]

    def is_active(self, now: datetime | None = None) -> bool:
        return share_link_is_active(self.revoked_at, self.expires_at, now or timezone.now())


class JobKind(models.TextChoices):
    IMPORT = "import", "Import"
    MESHES = "meshes", "Build meshes"


class DatasetJobQuerySet(RestrictedQuerySet["DatasetJob"]):
    """Jobs are private to whoever started them (and superusers); "change" is cancelling."""

    rules: ClassVar[Rules] = {"view": (Owner("owner"),), "change": (Owner("owner"),)}


class DatasetJob(Job):
    """An import or mesh build (see ``webapp.core.jobs``): the row is the truth about it."""

    kind = models.CharField(max_length=20, choices=JobKind.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="dataset_jobs"
    )
    dataset = models.ForeignKey(
        Dataset, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    params = models.JSONField(default=dict)

    objects = DatasetJobQuerySet.as_manager()

    class Meta(Job.Meta):
        pass
