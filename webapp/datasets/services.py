"""Writes on datasets, share links and jobs; each runs in a transaction and checks permission.

Imports (``imports``) and mesh builds (``meshes_jobs``) live in their own modules and are
re-exported here, so callers use ``webapp.datasets.services`` for every dataset write.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from webapp.accounts.models import Team
from webapp.core.jobs.lifecycle import job_cancel as _job_row_cancel
from webapp.datasets.import_publish import slug_unique
from webapp.datasets.imports import import_job_create, import_job_run
from webapp.datasets.meshes_jobs import meshes_build_run, meshes_build_start
from webapp.datasets.models import Dataset, DatasetJob, ShareLink, Visibility
from webapp.datasets.services_errors import (
    Conflict,
    ImportRejected,
    InvalidRequest,
    NotAllowed,
    ServiceError,
)

__all__ = [
    "Conflict",
    "ImportRejected",
    "InvalidRequest",
    "NotAllowed",
    "ServiceError",
    "dataset_delete",
    "dataset_update",
    "import_job_create",
    "import_job_run",
    "job_cancel",
    "meshes_build_run",
    "meshes_build_start",
    "share_link_create",
    "share_link_revoke",
    "slug_unique",
]

logger = logging.getLogger(__name__)

DATASET_EDITABLE_FIELDS = frozenset({"name", "description", "visibility", "team"})


def _require(dataset: Dataset, user: User, action: str, doing: str) -> None:
    if not Dataset.objects.allows(user, action, dataset):
        raise NotAllowed(f"Only the dataset's owner can {doing}.")


def dataset_update(dataset: Dataset, user: User, **fields: Any) -> Dataset:
    """Change name, description, visibility or team (``team`` a Team, its id or None)."""
    _require(dataset, user, "change", "change it")
    unknown = set(fields) - DATASET_EDITABLE_FIELDS
    if unknown:
        raise InvalidRequest(f"These fields cannot be changed: {', '.join(sorted(unknown))}.")
    if "name" in fields:
        name = (fields["name"] or "").strip()
        if not name or len(name) > 200:
            raise InvalidRequest("The name must have 1 to 200 characters.")
        dataset.name = name
    if "description" in fields:
        dataset.description = fields["description"] or ""
    if "visibility" in fields:
        if fields["visibility"] not in Visibility.values:
            raise InvalidRequest(
                f"Unknown visibility {fields['visibility']!r}: use one of "
                f"{', '.join(Visibility.values)}."
            )
        dataset.visibility = fields["visibility"]
    if "team" in fields:
        team = fields["team"]
        if team is not None and not isinstance(team, Team):
            team = Team.objects.filter(id=team).first()
            if team is None:
                raise InvalidRequest("That team does not exist.")
        if team is not None and not (user.is_superuser or team.members.filter(id=user.id).exists()):
            raise NotAllowed("You can only share a dataset with a team you belong to.")
        dataset.team = team
    if dataset.visibility == Visibility.TEAM and dataset.team_id is None:
        raise InvalidRequest("Choose a team for a dataset with visibility 'team'.")
    with transaction.atomic():
        dataset.save()
    return dataset


def dataset_delete(dataset: Dataset, user: User) -> None:
    """Delete the dataset, its layers, links and jobs, and its files under DATA_ROOT.

    Files of a store registered in place are not touched: only the link to it is removed.
    """
    _require(dataset, user, "delete", "delete it")
    root = dataset.root
    datasets_dir = (Path(settings.DATA_ROOT) / "datasets").resolve()
    trash: Path | None = None
    if os.path.lexists(root) and root.resolve().parent == datasets_dir:
        # Move aside first so the files vanish with the row, then delete after commit.
        trash = Path(settings.DATA_ROOT) / "tmp" / f"deleted-{dataset.slug}-{uuid.uuid4().hex}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.rename(root, trash)
    try:
        with transaction.atomic():
            dataset.delete()
    except BaseException:
        if trash is not None:
            os.rename(trash, root)
        raise
    if trash is not None:
        moved = trash
        transaction.on_commit(lambda: shutil.rmtree(moved, ignore_errors=True))


def share_link_create(
    dataset: Dataset,
    user: User,
    label: str = "",
    expires_at: dt.datetime | None = None,
) -> ShareLink:
    """A new revocable link giving read access to ``dataset`` (owner only)."""
    _require(dataset, user, "share", "share it by link")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidRequest("The expiry date must be in the future.")
    with transaction.atomic():
        return ShareLink.objects.create(
            dataset=dataset, created_by=user, label=(label or "")[:200], expires_at=expires_at
        )


def share_link_revoke(link: ShareLink, user: User) -> ShareLink:
    """Revoke ``link`` now (owner only); revoking twice keeps the first time."""
    _require(link.dataset, user, "share", "revoke its links")
    with transaction.atomic():
        if link.revoked_at is None:
            link.revoked_at = timezone.now()
            link.save(update_fields=["revoked_at"])
    return link


def job_cancel(job: DatasetJob, user: User) -> DatasetJob:
    """Cancel a queued or running job; the running task stops at its next progress write."""
    if not DatasetJob.objects.allows(user, "change", job):
        raise NotAllowed("Only the job's owner can cancel it.")
    with transaction.atomic():
        cancelled = _job_row_cancel(job)
        if not cancelled:
            raise Conflict(f"The job has already ended ({job.status}).")
        if job.celery_task_id:
            task_id = job.celery_task_id
            transaction.on_commit(lambda: _revoke(task_id))
    return job


def _revoke(task_id: str) -> None:
    """Tell workers to drop the task if it is still queued; the row stays the truth."""
    try:
        from webapp.celery import app

        app.control.revoke(task_id)
    except Exception:  # a broker without broadcast: the task sees the cancelled row
        logger.warning("could not revoke Celery task %s", task_id, exc_info=True)
