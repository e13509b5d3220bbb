"""Automatic retraining (off by default): a campaign's managers set "retrain every K newly
approved boxes"; each approval (or accepted ground truth) then checks, after its transaction
commits, whether the campaign has K more boxes with approved painted ground truth than its
latest run trained on, and starts a run as the manager who set it."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from webapp.annotation.label_exports import painted_ground_truth
from webapp.annotation.models import AnnotationCampaign, AssignmentState
from webapp.core.errors import DomainError, InvalidRequest, NotAllowed
from webapp.core.jobs.models import ACTIVE_STATUSES, JobStatus
from webapp.runs.models import AutoRetrain, PipelineRun
from webapp.runs.presets import preset_config

logger = logging.getLogger(__name__)

MAX_EVERY = 10_000


def auto_retrain_set(
    user: User,
    campaign: AnnotationCampaign,
    *,
    every: int,
    preset: str,
    params: dict[str, Any] | None = None,
) -> AutoRetrain:
    """Turn automatic retraining on (or change it): managers only; the preset and parameters
    are checked now, as a run's would be."""
    if not AnnotationCampaign.objects.allows(user, "change", campaign):
        raise NotAllowed("Only the campaign's managers can set automatic retraining.")
    if not campaign.painted:
        raise InvalidRequest("Retraining needs painted objects: this campaign marks points only.")
    if not 1 <= every <= MAX_EVERY:
        raise InvalidRequest(f"every must be between 1 and {MAX_EVERY} boxes.")
    preset_config(preset, params)
    policy, _ = AutoRetrain.objects.update_or_create(
        campaign=campaign,
        defaults={"every": every, "preset": preset, "params": dict(params or {}), "owner": user},
    )
    transaction.on_commit(partial(auto_retrain_check, campaign.pk))
    return policy


def auto_retrain_clear(user: User, campaign: AnnotationCampaign) -> None:
    if not AnnotationCampaign.objects.allows(user, "change", campaign):
        raise NotAllowed("Only the campaign's managers can set automatic retraining.")
    AutoRetrain.objects.filter(campaign=campaign).delete()


def boxes_since_last_run(campaign: AnnotationCampaign) -> tuple[int, int]:
    """(boxes with approved painted ground truth now, boxes the latest run trained on); a
    cancelled run does not count, a failed one does (so a failing setting is not retried at
    every approval: a manager starts the next run)."""
    approved = len(painted_ground_truth(campaign))
    last = (
        PipelineRun.objects.filter(campaign=campaign)
        .exclude(status=JobStatus.CANCELLED)
        .order_by("-created")
        .first()
    )
    trained = len((last.ground_truth or {}).get("boxes", [])) if last else 0
    return approved, trained


def auto_retrain_check(campaign_id: int) -> PipelineRun | None:
    """Start a run when the campaign's policy asks for one (module docstring); None otherwise.
    Never raises: a refused start is logged (the policy's owner may have lost the right)."""
    policy = (
        AutoRetrain.objects.select_related("campaign__dataset", "campaign__image_layer", "owner")
        .filter(campaign_id=campaign_id)
        .first()
    )
    if policy is None:
        return None
    campaign = policy.campaign
    if PipelineRun.objects.filter(campaign=campaign, status__in=ACTIVE_STATUSES).exists():
        return None
    from webapp.runs.services import run_start

    try:
        approved, trained = boxes_since_last_run(campaign)
        if approved - trained < policy.every:
            return None
        run = run_start(policy.owner, campaign, preset=policy.preset, params=policy.params)
    except DomainError as exc:
        logger.warning("campaign %s: automatic retraining not started: %s", campaign_id, exc)
        return None
    logger.info("campaign %s: automatic retraining started (run %s)", campaign_id, run.pk)
    return run


def on_assignment_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``post_save`` of an assignment: an approval may complete the next K boxes."""
    if instance.state == AssignmentState.APPROVED:
        _check_on_commit(instance.box.campaign_id)


def on_label_truth_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``post_save`` of a box's accepted ground truth: as an approval."""
    _check_on_commit(instance.box.campaign_id)


def _check_on_commit(campaign_id: int) -> None:
    if AutoRetrain.objects.filter(campaign_id=campaign_id).exists():
        transaction.on_commit(partial(auto_retrain_check, campaign_id))
