"""A run whose whole worker (main process and pool) is SIGKILLed while it trains: the run shows
as retrying, the broker gives its task to the restarted worker, a new attempt takes the run
over and trains again (its log says so), and the run publishes once (one model version, one
layer), leaving nothing in temporary space.
Real worker processes on the real broker (Redis in CI)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from celery_harness import LiveWorker, wait_for
from django.conf import settings as django_settings

from pipeline.progress import TRAINING_STEPS
from tests.runs_testdata import people, retrain_campaign, token_session
from webapp.datasets.models import Layer
from webapp.runs.models import ModelVersion, PipelineRun
from webapp.runs.stages import part_stage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Redis restores a dead worker's unacknowledged task after a lease; the workers' heartbeat
# runs every quarter of it, so a live run is never taken for dead.
LEASE_SECONDS = "4"
PAUSE = "{tmp_path}/pause-progress"
STEPS = part_stage("train", TRAINING_STEPS)  # the run's stage while it counts training steps


def _run_files() -> list[str]:
    return sorted(p.name for p in (Path(django_settings.DATA_ROOT) / "tmp").glob("run-*"))


@pytest.mark.worker_env(
    ANNOTOME_TEST_PROGRESS_PAUSE=PAUSE, ANNOTOME_JOB_LEASE_SECONDS=LEASE_SECONDS
)
def test_a_worker_killed_while_a_run_trains_is_replaced_and_the_run_publishes_once(
    celery_worker: LiveWorker, live_server: Any, settings: Any, tmp_path: Path
) -> None:
    settings.JOB_LEASE_SECONDS = float(LEASE_SECONDS)  # this process reads states with it
    who = people()
    campaign, _ = retrain_campaign(who, approved=3)
    api = token_session(who["owner"])
    base = f"{live_server.url}/api/v1"
    started = api.post(
        f"{base}/runs/", json={"campaign": campaign.pk, "preset": "tiny"}, timeout=30
    )
    assert started.status_code == 202, started.text
    url = f"{base}/runs/{started.json()['id']}/"
    run = PipelineRun.objects.get(pk=started.json()["id"])

    def training() -> bool:
        run.refresh_from_db()
        return run.stage == STEPS and run.done > 0

    wait_for(training, 180, "training to count steps", interval=0.1)
    pause = Path(PAUSE.format(tmp_path=tmp_path))
    pause.touch()  # the next step's report waits: the run is held in the middle of training
    time.sleep(1.5)
    run.refresh_from_db()
    held = run.done
    assert run.stage == STEPS and 0 < held < run.total, (run.stage, held, run.total)
    celery_worker.process.kill()
    wait_for(lambda: api.get(url, timeout=30).json()["state"] == "retrying", 10, "retrying")
    pause.unlink()
    celery_worker.restart()

    body: dict[str, Any] = wait_for(
        lambda: (b := api.get(url, timeout=30).json())["status"] in ("succeeded", "failed") and b,
        600, "the run to end", interval=0.5,
    )  # fmt: skip
    run.refresh_from_db()
    assert body["status"] == "succeeded", (body["error"], run.log[-3000:])
    # The second attempt took the run over from the lost one and said so; later attempts are
    # the run taking its row back after each plan its workers ran.
    assert "train: started again by attempt 2 (the worker running it was lost)" in run.log
    assert run.log.count("train: started") == 2 and run.log.count("train: done") == 1
    assert run.log.count("started again") == run.log.count("taken over") + 1 == 1
    assert run.stages["train"]["state"] == "done" and run.history  # trained again, to the end
    assert ModelVersion.objects.filter(run=run).count() == 1
    assert run.result_layer is not None and body["result_layer"] == run.result_layer.name
    assert Layer.objects.filter(dataset=campaign.dataset).count() > 1  # the image and more
    assert _run_files() == []
