"""The runs pages: a run's page (whoever sees the dataset; 404 otherwise; Cancel for the
dataset's owner and the run's starter only; the campaign linked for its members) and the
"Retrain" panel on a painted campaign's page (managers only, with the ground truth a run would
take: approved painted boxes and how many are held out).

No worker runs: runs are started in a transaction that never commits, so no task is sent."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from typing import Any

import numpy as np
import pytest
from django.test import Client
from django.utils import timezone

from pipeline.progress import TRAINING_STEPS
from tests.runs_testdata import retrain_campaign
from webapp.annotation.models import AnnotationCampaign
from webapp.core.jobs.models import JobStatus
from webapp.datasets.models import Visibility
from webapp.runs import selectors, services
from webapp.runs.models import PipelineRun
from webapp.runs.stages import part_stage

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(who: dict[str, Any], campaign: AnnotationCampaign) -> PipelineRun:
    return services.run_start(who["manager"], campaign, preset="tiny")


def as_user(user: Any = None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def json_script(html: str, element_id: str) -> Any:
    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html)
    assert found, f"no #{element_id} in the page"
    return json.loads(found.group(1))


def test_the_run_page_frames_the_run_for_its_script(
    who: dict[str, Any], campaign: AnnotationCampaign, run: PipelineRun
) -> None:
    answer = as_user(who["manager"]).get(f"/runs/{run.pk}/")
    assert answer.status_code == 200
    html = answer.content.decode()
    config = json_script(html, "run-config")
    assert config["runId"] == run.pk and config["runUrl"] == f"/api/v1/runs/{run.pk}/"
    assert config["dataset"] == campaign.dataset.slug
    assert config["viewerUrl"] == f"/datasets/{campaign.dataset.slug}/"
    assert config["stages"][:2] == ["export", "train"] and config["canCancel"] is True
    # Header: dataset, campaign (the manager is a member), preset, who started it, status.
    assert f'href="/annotation/{campaign.pk}/"' in html
    assert "tiny" in html and "manager" in html and 'id="run-status"' in html
    assert html.count('class="run-stage"') == 8
    assert 'id="run-cancel"' in html and "run.js" in html


@pytest.mark.parametrize(
    ("name", "can_cancel", "campaign_link"),
    [
        ("owner", True, True),  # the dataset's owner
        ("manager", True, True),  # who started it
        ("a1", False, True),  # an annotator of the campaign
        ("outsider", False, False),  # sees the public dataset, not the campaign
    ],
)
def test_who_may_cancel_and_who_gets_the_campaign_link(
    who: dict[str, Any],
    campaign: AnnotationCampaign,
    run: PipelineRun,
    name: str,
    can_cancel: bool,
    campaign_link: bool,
) -> None:
    html = as_user(who[name]).get(f"/runs/{run.pk}/").content.decode()
    assert json_script(html, "run-config")["canCancel"] is can_cancel
    assert ('id="run-cancel"' in html) is can_cancel
    assert (f'href="/annotation/{campaign.pk}/"' in html) is campaign_link
    assert campaign.name in html


def test_a_public_datasets_run_is_seen_anonymously_a_private_ones_is_404(
    who: dict[str, Any], campaign: AnnotationCampaign, run: PipelineRun
) -> None:
    answer = as_user().get(f"/runs/{run.pk}/")
    assert answer.status_code == 200
    assert json_script(answer.content.decode(), "run-config")["canCancel"] is False
    campaign.dataset.visibility = Visibility.PRIVATE
    campaign.dataset.save()
    assert as_user().get(f"/runs/{run.pk}/").status_code == 404
    assert as_user(who["outsider"]).get(f"/runs/{run.pk}/").status_code == 404
    assert as_user(who["owner"]).get(f"/runs/{run.pk}/").status_code == 200
    assert as_user(who["owner"]).get(f"/runs/{run.pk + 1000}/").status_code == 404
    assert as_user(who["owner"]).post(f"/runs/{run.pk}/").status_code == 405


def test_the_retrain_panel_is_for_managers_of_painted_campaigns(
    who: dict[str, Any], campaign: AnnotationCampaign
) -> None:
    for name in ("owner", "manager"):
        html = as_user(who[name]).get(f"/annotation/{campaign.pk}/").content.decode()
        panel = json_script(html, "retrain-config")
        # Five approved painted boxes, a fifth of them held out: what run_start snapshots.
        assert panel == {
            "campaignId": campaign.pk,
            "dataset": campaign.dataset.slug,
            "boxes": 5,
            "heldOut": 1,
            "training": 4,
            "error": "",
            "sameAsRun": None,  # no run trained on this ground truth yet
            "runsUrl": "/runs/",
            "models": [],  # none to fine-tune yet
            "verdicts": "none: the run keeps every object it segments",
        }
        assert 'id="retrain"' in html and "runs.css" in html
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))
        assert "Ground truth: 5 approved painted boxes; 1 held out for evaluation, 4 to train" in (
            text
        )
        assert "Filter from proofreading verdicts: none: the run keeps every object" in text
    for name in ("a1", "rv"):
        html = as_user(who[name]).get(f"/annotation/{campaign.pk}/").content.decode()
        assert 'id="retrain"' not in html and "retrain-config" not in html


def test_the_retrain_panel_counts_honestly(who: dict[str, Any]) -> None:
    none_approved, _ = retrain_campaign(who, approved=0)
    html = as_user(who["owner"]).get(f"/annotation/{none_approved.pk}/").content.decode()
    panel = json_script(html, "retrain-config")
    assert (panel["boxes"], panel["heldOut"]) == (0, 0)
    assert re.search(r'id="retrain-start"\s+disabled', html)
    assert "No approved painted ground truth yet" in html
    one, _ = retrain_campaign(who, approved=1)
    panel = json_script(
        as_user(who["owner"]).get(f"/annotation/{one.pk}/").content.decode(), "retrain-config"
    )
    assert (panel["boxes"], panel["heldOut"], panel["training"]) == (1, 0, 1)
    points, _ = retrain_campaign(who, approved=1, painted=False)
    html = as_user(who["owner"]).get(f"/annotation/{points.pk}/").content.decode()
    assert "retrain-config" not in html


def test_the_retrain_panel_says_when_a_run_already_trained_on_this_ground_truth(
    who: dict[str, Any],
) -> None:
    """Training is seeded: a succeeded run on the same approved boxes and labels versions would
    be trained again identically, and the panel says so (not while that run is unfinished)."""
    campaign, _ = retrain_campaign(who, approved=2)
    run = services.run_start(who["owner"], campaign, preset="tiny")
    url = f"/annotation/{campaign.pk}/"
    assert (
        json_script(as_user(who["owner"]).get(url).content.decode(), "retrain-config")["sameAsRun"]
        is None
    )  # queued, not succeeded
    PipelineRun.objects.filter(pk=run.pk).update(status=JobStatus.SUCCEEDED)
    html = as_user(who["owner"]).get(url).content.decode()
    assert json_script(html, "retrain-config")["sameAsRun"] == run.pk
    assert f'<a href="/runs/{run.pk}/">run {run.pk}</a> trained on' in html
    # Other labels (a new version of one box's truth): a new run would learn something else.
    boxes = [{**e, "version": e["version"] + 1} if i == 0 else e
             for i, e in enumerate(run.ground_truth["boxes"])]  # fmt: skip
    PipelineRun.objects.filter(pk=run.pk).update(ground_truth={**run.ground_truth, "boxes": boxes})
    html = as_user(who["owner"]).get(url).content.decode()
    assert json_script(html, "retrain-config")["sameAsRun"] is None and "retrain-same" not in html


def test_a_part_of_the_train_stage_counts_under_its_own_name(who: dict[str, Any]) -> None:
    """The training steps, then predicting the validation boxes and fitting the segmentation
    settings report counts of their own: the stage row names the part and reckons its ETA from
    that part's pace only, instead of a total that jumps from the training steps to the fit's."""
    campaign, _ = retrain_campaign(who, approved=2)
    run = services.run_start(who["owner"], campaign, preset="tiny")
    started = timezone.now().isoformat()
    PipelineRun.objects.filter(pk=run.pk).update(
        status=JobStatus.RUNNING, stage=part_stage("train", TRAINING_STEPS), done=100, total=150,
        attempts=1, worker="elsewhere",
        stages={**run.stages, "train": {
            "state": "running", "started": started,
            "pace": {"part": TRAINING_STEPS, "at": started, "done": 1},
        }},
    )  # fmt: skip
    run.refresh_from_db()
    (train,) = [s for s in selectors.run_stages(run) if s["name"] == "train"]
    assert (train["done"], train["total"], train["part"]) == (100, 150, TRAINING_STEPS)
    assert train["eta"] is not None
    PipelineRun.objects.filter(pk=run.pk).update(
        stage=part_stage("train", "fit segmentation"), done=45, total=189
    )
    run.refresh_from_db()
    (train,) = [s for s in selectors.run_stages(run) if s["name"] == "train"]
    assert (train["done"], train["total"], train["part"]) == (45, 189, "fit segmentation")
    assert train["eta"] is None
    # Publishing after the uncertainty cells: a part with no count (the bar does not go back
    # to the stage's "0 / 1" as if it had started over).
    PipelineRun.objects.filter(pk=run.pk).update(
        stage=part_stage("publish", "layers"), done=0, total=0,
        stages={**run.stages, "publish": {"state": "running", "started": started}},
    )  # fmt: skip
    run.refresh_from_db()
    (publish,) = [s for s in selectors.run_stages(run) if s["name"] == "publish"]
    assert (publish["done"], publish["total"], publish["part"], publish["eta"]) == (
        0, 0, "layers", None
    )  # fmt: skip


def test_segmentation_on_workers_shows_the_step_under_way_with_its_own_counts(
    who: dict[str, Any], campaign: AnnotationCampaign, run: PipelineRun
) -> None:
    """While workers run the segmentation plan, the stage row names its step (watershed, then
    merge, then relabel) with that step's counts, read from the plan's markers; a one-step
    plan (prediction) keeps its plain counts and ETA."""
    import zarr
    from scipy import ndimage

    from pipeline.plan import PACE_DIR, run_item, run_saved_item, save_plan
    from pipeline.run import SEGMENT_PLAN_DIR
    from pipeline.segment import plan_segment
    from webapp.runs import layout

    balls = np.zeros((16, 32, 32), bool)
    balls[8, 8, 8] = balls[8, 24, 24] = True
    distance = 1000.0 - ndimage.distance_transform_edt(~balls, sampling=200.0)
    source = layout.run_dir(run.pk) / "distance.zarr"
    stored = zarr.create_array(str(source), shape=balls.shape, chunks=(8, 16, 16), dtype="f4")
    stored[:] = distance.clip(0).astype(np.float32)
    plan = plan_segment(
        source, layout.run_dir(run.pk) / "labels.zarr", layout.out_dir(run.pk) / SEGMENT_PLAN_DIR,
        block_shape=(8, 16, 16), voxel_size=(200.0, 200.0, 200.0), seed_threshold=400.0,
    )  # fmt: skip
    save_plan(plan)
    started = timezone.now().isoformat()
    PipelineRun.objects.filter(pk=run.pk).update(
        status=JobStatus.RUNNING, stage="segment", attempts=1, worker="",
        stages={**run.stages, "segment": {"state": "running", "started": started}},
    )  # fmt: skip
    run.refresh_from_db()
    assert run.waits_on_workers

    def segment_row() -> dict[str, Any]:
        (row,) = [s for s in selectors.run_stages(run) if s["name"] == "segment"]
        return row

    watershed = plan.items("watershed")
    assert watershed == 8 and plan.items("merge") > 0
    row = segment_row()
    assert (row["part"], row["done"], row["total"], row["eta"]) == ("watershed", 0, 8, None)
    # As a worker runs them: the step's pace starts when its first item ends, not at its start.
    assert run_saved_item(plan.work, "watershed", 0)
    row = segment_row()
    assert (row["part"], row["done"], row["eta"]) == ("watershed", 1, None)
    for item in (1, 2):
        run_saved_item(plan.work, "watershed", item)

    def marks(started_s_ago: float, done_s_ago: float) -> None:
        now = time.time()
        for mark, ago in (("watershed.started", started_s_ago), ("watershed.done", done_s_ago)):
            os.utime(plan.work_dir / PACE_DIR / mark, (now - ago, now - ago))

    # The first item took 70 s and ended 60 s ago: the two since may have run beside it (two
    # workers), so no pace yet (it would say they took no time).
    marks(130, 60)
    row = segment_row()
    assert (row["done"], row["total"], row["eta"]) == (3, 8, None)
    # It took 5 s and ended a minute ago: 2 more in 60 s.
    marks(65, 60)
    left = (dt.datetime.fromisoformat(segment_row()["eta"]) - timezone.now()).total_seconds()
    assert 140 <= left <= 170  # 5 items at 30 s each (the stage's start, just now, says ~0)
    for item in range(3, watershed):
        run_item(plan, "watershed", item)
    plan.finish_step("watershed")
    row = segment_row()
    assert (row["part"], row["done"], row["total"]) == ("merge", 0, plan.items("merge"))


def test_the_parts_of_a_measure_step_count_under_their_own_names(run: PipelineRun) -> None:
    """Measuring reports the objects' statistics, then their meshes, each with its own total:
    the row's stage names each part and the log says when each began."""
    from webapp.runs.driver import StageReport

    written: list[tuple[str, int, int]] = []

    class Writer:
        job_id = run.pk

        def __call__(self, stage: str, done: int, total: int) -> None:
            written.append((stage, done, total))

    report = StageReport(Writer(), "measure")  # type: ignore[arg-type]
    report("measuring", 4, 4)
    report("meshing", 3, 120)
    report("measure", 1, 1)
    assert written == [
        ("measure \u00b7 measuring", 4, 4),
        ("measure \u00b7 meshing", 3, 120),
        ("measure", 1, 1),
    ]
    run.refresh_from_db()
    assert "measure: measuring (4)" in run.log and "measure: meshing (120)" in run.log


def test_the_eta_counts_from_the_first_step_not_from_the_set_up(run: PipelineRun) -> None:
    """A training's set-up (reading the image, building patches) is no part of its pace: the
    first count of the step, and of each part, is recorded, and the ETA is reckoned from it."""
    from types import SimpleNamespace

    from webapp.runs.driver import StageReport

    class Writer:
        job_id = run.pk
        attempt = SimpleNamespace(number=1)

        def __call__(self, stage: str, done: int, total: int) -> None:
            pass

    PipelineRun.objects.filter(pk=run.pk).update(status=JobStatus.RUNNING, attempts=1)

    def pace() -> dict[str, Any] | None:
        return PipelineRun.objects.get(pk=run.pk).stages.get("train", {}).get("pace")

    report = StageReport(Writer(), "train", run)  # type: ignore[arg-type]
    report("train", 0, 110)
    assert pace() is None
    report("train", 1, 110)
    first = pace()
    assert first is not None and (first["part"], first["done"]) == ("", 1)
    report("train", 5, 110)  # recorded once per part ...
    assert pace() == first
    report("train", 2, 110)  # ... and again when counting starts over (a restarted training)
    again = pace()
    assert again is not None and again["done"] == 2 and again["at"] >= first["at"]
    report("fit segmentation", 3, 189)
    assert (pace() or {}).get("part") == "fit segmentation"
    # An attempt that lost the row (taken over: attempts moved on) writes nothing.
    PipelineRun.objects.filter(pk=run.pk).update(attempts=2)
    report("train", 1, 110)
    assert (pace() or {}).get("part") == "fit segmentation"

    now = timezone.now()
    an_hour_ago, ten_s_ago = (now - dt.timedelta(seconds=s) for s in (3600, 10))
    PipelineRun.objects.filter(pk=run.pk).update(
        status=JobStatus.RUNNING, stage="train", done=20, total=110, attempts=1,
        worker="elsewhere", stages={"train": {
            "state": "running", "started": an_hour_ago.isoformat(),
            "pace": {"part": "", "at": ten_s_ago.isoformat(), "done": 10}}},
    )  # fmt: skip
    run.refresh_from_db()

    def eta_in_seconds() -> float:
        (train,) = [s for s in selectors.run_stages(run) if s["name"] == "train"]
        return (dt.datetime.fromisoformat(train["eta"]) - now).total_seconds()

    # 10 steps in 10 s, 90 to go: about 90 s (from the stage's start: 20 in an hour, 4.5 h;
    # the bound leaves the selector ~10 s of a loaded machine after ``now``).
    assert 80 < eta_in_seconds() < 200
    PipelineRun.objects.filter(pk=run.pk).update(
        stage=part_stage("train", "fit segmentation"), done=15, total=25,
        stages={"train": {**run.stages["train"],
                          "pace": {"part": "fit segmentation", "at": ten_s_ago.isoformat(),
                                   "done": 5}}},
    )  # fmt: skip
    run.refresh_from_db()
    assert 5 < eta_in_seconds() < 60  # the part's own pace: 10 in 10 s, 10 to go


def test_a_rescued_run_starts_its_own_stage_again_and_leaves_a_plan_stage_running(
    run: PipelineRun,
) -> None:
    """After its worker was lost, the attempt that takes a run over does a stage it runs itself
    again (its start and pace reset, the log says so), lets the workers' plan of another stage
    go on where it stands, and writes nothing once it no longer holds the row."""
    from pipeline.plan import PLAN_FILE
    from webapp.core.jobs.lifecycle import Attempt
    from webapp.runs import layout
    from webapp.runs.driver import _restarted

    old = "2026-01-01T00:00:00+00:00"
    pace = {"part": "", "at": old, "done": 3}
    plan = layout.saved_plan  # a saved prediction plan: its folder and plan file
    folder = layout.out_dir(run.pk) / layout.PLAN_OF_STAGE["predict"]
    folder.mkdir(parents=True)
    (folder / PLAN_FILE).write_text("{}")
    assert plan(run.pk, "predict") == folder and plan(run.pk, "train") is None
    stages = {
        "export": {"state": "done", "started": old},
        "train": {"state": "running", "started": old, "pace": pace},
        "predict": {"state": "running", "started": old},
    }
    PipelineRun.objects.filter(pk=run.pk).update(
        status=JobStatus.RUNNING, attempts=2, stages=stages
    )
    run.refresh_from_db()
    _restarted(run, Attempt(run.pk, 2, took_over=True, rescued=True))
    run.refresh_from_db()
    assert run.stages["train"]["started"] > old and "pace" not in run.stages["train"]
    assert run.stages["predict"] == stages["predict"] and run.stages["export"] == stages["export"]
    assert "train: started again by attempt 2 (the worker running it was lost)" in run.log
    assert "predict: taken over by attempt 2" in run.log

    PipelineRun.objects.filter(pk=run.pk).update(attempts=3, stages=stages, log="")
    run.refresh_from_db()
    _restarted(run, Attempt(run.pk, 2, took_over=True, rescued=True))  # a stale attempt
    run.refresh_from_db()
    assert run.stages["train"] == stages["train"] and "started again" not in run.log
