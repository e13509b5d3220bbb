"""Automatic retraining (off by default): managers set "every K newly approved boxes" through
the API; each approval queues a check after its commit, which starts a run as the manager once K
more boxes have approved painted ground truth than the latest run trained on, and not while a
run is active."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.runs_testdata import approve_next, people, retrain_campaign
from webapp.core.jobs.models import JobStatus
from webapp.runs.auto_retrain import auto_retrain_check
from webapp.runs.models import PipelineRun

pytestmark = pytest.mark.django_db


def client(user: Any = None) -> APIClient:
    api = APIClient()
    if user is not None:
        api.force_authenticate(user)
    return api


def url(campaign: Any) -> str:
    return f"/api/v1/runs/auto-retrain/{campaign.pk}/"


def test_managers_set_it_members_read_it_others_do_not_see_it() -> None:
    who = people()
    campaign, _ = retrain_campaign(who, approved=1)
    body = client(who["a1"]).get(url(campaign)).json()
    assert body["enabled"] is False and (body["approved_boxes"], body["trained_boxes"]) == (1, 0)
    setting = {"every": 3, "preset": "tiny", "params": {"training.max_epochs": 2}}
    assert client(who["a1"]).put(url(campaign), setting, format="json").status_code == 403
    assert client(who["outsider"]).get(url(campaign)).status_code == 404
    for bad, message in (
        ({**setting, "preset": "huge"}, "preset"),
        ({**setting, "every": 0}, "every"),
        ({**setting, "params": {"training.max_epochs": 0}}, "between"),
    ):
        answer = client(who["manager"]).put(url(campaign), bad, format="json")
        assert answer.status_code == 400 and message in str(answer.json()), answer.json()
    answer = client(who["manager"]).put(url(campaign), setting, format="json")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["enabled"], body["every"], body["owner"]) == (True, 3, "manager")
    off = client(who["owner"]).delete(url(campaign)).json()
    assert (off["enabled"], off["every"], off["preset"]) == (False, None, None)
    # OPTIONS describes the PUT form (DRF asks for the object: the URL's campaign).
    assert client(who["manager"]).options(url(campaign)).status_code == 200


def test_every_k_approved_boxes_start_a_run(django_capture_on_commit_callbacks: Any) -> None:
    who = people()
    campaign, labels = retrain_campaign(who, approved=1)
    setting = {"every": 2, "preset": "tiny"}
    assert client(who["manager"]).put(url(campaign), setting, format="json").status_code == 200
    assert auto_retrain_check(campaign.pk) is None  # 1 approved box: not yet
    with django_capture_on_commit_callbacks() as callbacks:
        approve_next(campaign, who, labels)
    checks = [c for c in callbacks if isinstance(c, partial) and c.func is auto_retrain_check]
    assert checks and checks[0].args == (campaign.pk,)  # each approval asks after its commit
    run = auto_retrain_check(campaign.pk)
    assert run is not None and run.owner == who["manager"] and run.preset == "tiny"
    assert len(run.ground_truth["boxes"]) == 2
    assert auto_retrain_check(campaign.pk) is None  # one run at a time
    PipelineRun.objects.filter(pk=run.pk).update(status=JobStatus.SUCCEEDED)
    approve_next(campaign, who, labels)
    assert auto_retrain_check(campaign.pk) is None  # 3 approved, the last run had 2
    approve_next(campaign, who, labels)
    second = auto_retrain_check(campaign.pk)
    assert second is not None and len(second.ground_truth["boxes"]) == 4
    assert PipelineRun.objects.count() == 2
