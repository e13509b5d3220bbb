"""A run cancelled while Celery workers run one of its plans: the plan is stopped (items not
started skip) and the work directory stays until the plan's callback (``runs.advance``) comes,
since items still running write into it; the callback then removes it and publishes nothing.
A run cancelled between stages loses its directory at once."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.plan import PLAN_FILE, write_atomic
from tests.runs_testdata import people, retrain_campaign
from webapp.annotation.models import TaskBox
from webapp.core.jobs.models import JobStatus
from webapp.runs import layout, services
from webapp.runs.driver import advance
from webapp.runs.models import ModelVersion, PipelineRun

pytestmark = pytest.mark.django_db


def released_run(who: dict[str, Any], with_plan: bool) -> PipelineRun:
    """A run waiting on its workers (running, no holder), its prediction plan saved."""
    campaign, _ = retrain_campaign(who, approved=2)
    run = services.run_start(who["owner"], campaign, preset="tiny")
    PipelineRun.objects.filter(pk=run.pk).update(
        status=JobStatus.RUNNING, worker="", stage="predict", attempts=1
    )
    if with_plan:  # its state comes from the test (layout.plan_state)
        folder = layout.plan_dirs(run.pk)[0]
        folder.mkdir(parents=True)
        write_atomic(folder / PLAN_FILE, "{}")
    else:
        layout.out_dir(run.pk).mkdir(parents=True)
    run.refresh_from_db()
    return run


def test_a_run_cancelled_on_its_workers_is_cleaned_by_their_callback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    who = people()
    run = released_run(who, with_plan=True)
    states = {"state": "running"}
    monkeypatch.setattr(layout, "plan_state", lambda folder: SimpleNamespace(**states))
    cancelled = services.run_cancel(run, who["owner"])
    assert cancelled.status == JobStatus.CANCELLED
    plan_dir = layout.plan_dirs(run.pk)[0]
    assert (plan_dir / "plan-cancelled").exists()  # items not started will skip
    assert layout.run_dir(run.pk).exists()  # running items may still write into it
    states["state"] = "cancelled"
    advance(run.pk)  # the plan's callback
    assert not layout.run_dir(run.pk).exists()
    assert not ModelVersion.objects.exists()
    assert PipelineRun.objects.get(pk=run.pk).status == JobStatus.CANCELLED


def test_a_run_cancelled_between_stages_loses_its_files_at_once() -> None:
    who = people()
    run = released_run(who, with_plan=False)
    services.run_cancel(run, who["owner"])
    assert not layout.run_dir(run.pk).exists()


def test_a_run_failing_on_its_data_says_why_without_a_traceback() -> None:
    """A failure the data causes (here a box of the snapshot deleted before the export) ends the
    run with its message in the error and the log; no traceback reaches the run's log."""
    who = people()
    campaign, _ = retrain_campaign(who, approved=2)
    run = services.run_start(who["owner"], campaign, preset="tiny")
    TaskBox.objects.filter(pk=run.ground_truth["boxes"][0]["box"]).delete()
    advance(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED
    assert "was deleted since the run started" in run.error
    assert "failed: Box" in run.log and "Traceback" not in run.log
    assert not layout.run_dir(run.pk).exists()
