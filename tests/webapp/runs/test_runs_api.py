"""Starting runs through the API: who may, what is refused before anything is queued (unknown
preset, parameters out of range, no painted or approved ground truth, a second active run), what
the run records when it starts (the ground-truth snapshot with its held-out boxes), cancelling
a queued run, the presets, and that nothing is visible to those who may not see the dataset.

No worker runs here: the rows are created in a transaction that never commits, so no task is
sent (the integration tests run the runs)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from tests.runs_testdata import RUNS_API, client, retrain_campaign
from webapp.annotation import services as annotation_services
from webapp.annotation.models import AnnotationCampaign, Role
from webapp.core.jobs.models import JobStatus
from webapp.datasets.models import Visibility
from webapp.runs.models import PipelineRun

pytestmark = pytest.mark.django_db

API = RUNS_API


def start(user: Any, campaign: AnnotationCampaign, **body: Any) -> Any:
    return client(user).post(
        API, {"campaign": campaign.pk, "preset": "tiny", **body}, format="json"
    )


def test_a_manager_starts_a_run_on_a_snapshot_of_the_approved_boxes(
    who: dict[str, Any], campaign: AnnotationCampaign
) -> None:
    answer = start(who["manager"], campaign, params={"training.max_epochs": 2})
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert body["status"] == "queued" and body["preset"] == "tiny"
    assert body["dataset"] == campaign.dataset.slug and body["owner"] == "manager"
    assert [s["name"] for s in body["stages"]][:3] == ["export", "train", "predict"]
    assert {s["state"] for s in body["stages"]} == {"pending"}
    boxes = body["boxes"]
    assert len(boxes) == 5 and sum(b["held_out"] for b in boxes) == 1
    assert not boxes[0]["held_out"] and not boxes[-1]["held_out"]
    run = PipelineRun.objects.get(pk=body["id"])
    assert run.config["training"]["max_epochs"] == 2  # the override on the preset
    assert all(b["chunks"] for b in run.ground_truth["boxes"])
    # The owner of the dataset may start one too; the second active run is refused.
    again = start(who["owner"], campaign)
    assert again.status_code == 409 and "already" in again.json()["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"preset": "huge"}, "preset"),
        ({"params": {"training.max_epochs": 0}}, "between 1 and 1000"),
        ({"params": {"training.max_epochs": 2.5}}, "whole number"),
        ({"params": {"training.nonsense": 1}}, "Unknown parameter"),
    ],
)
def test_bad_parameters_are_refused_before_anything_is_queued(
    who: dict[str, Any], campaign: AnnotationCampaign, body: dict[str, Any], message: str
) -> None:
    answer = start(who["owner"], campaign, **body)
    assert answer.status_code == 400, answer.content
    assert message in str(answer.json())
    assert not PipelineRun.objects.exists()


def test_no_approved_painted_ground_truth_is_refused(who: dict[str, Any]) -> None:
    none_approved, _ = retrain_campaign(who, approved=0)
    answer = start(who["owner"], none_approved)
    assert answer.status_code == 400 and "approved painted ground truth" in answer.json()["message"]
    points, _ = retrain_campaign(who, approved=1, painted=False)
    answer = start(who["owner"], points)
    assert answer.status_code == 400 and "painted" in answer.json()["message"]
    assert not PipelineRun.objects.exists()


def test_who_may_start_see_and_cancel(who: dict[str, Any], campaign: AnnotationCampaign) -> None:
    # Annotators and reviewers see the campaign but may not start runs; others do not see it.
    for name in ("a1", "rv"):
        assert start(who[name], campaign).status_code == 403
    assert start(who["outsider"], campaign).status_code == 404  # not a member of the campaign
    assert client().post(API, {"campaign": campaign.pk}, format="json").status_code in (401, 403)
    run_id = start(who["manager"], campaign).json()["id"]
    # Runs are seen by whoever sees the (public) dataset; the owner and the starter cancel.
    assert client(who["outsider"]).get(f"{API}{run_id}/").status_code == 200
    assert client(who["a1"]).post(f"{API}{run_id}/cancel/").status_code == 403
    cancelled = client(who["manager"]).post(f"{API}{run_id}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == JobStatus.CANCELLED
    assert client(who["owner"]).post(f"{API}{run_id}/cancel/").status_code == 409
    # Another manager of the campaign cancels a run a fellow manager started; its message
    # names who may.
    co_manager = get_user_model().objects.create_user("co-manager")
    annotation_services.member_add(campaign, who["owner"], co_manager.username, Role.MANAGER)
    second = start(who["manager"], campaign).json()["id"]
    refused = client(who["a1"]).post(f"{API}{second}/cancel/")
    assert "a manager of its campaign" in refused.json()["message"]
    assert client(co_manager).post(f"{API}{second}/cancel/").status_code == 200
    # A private dataset's runs are invisible to outsiders (404, as if absent).
    campaign.dataset.visibility = Visibility.PRIVATE
    campaign.dataset.save()
    assert client(who["outsider"]).get(f"{API}{run_id}/").status_code == 404
    assert client(who["outsider"]).get(API).json()["count"] == 0
    assert client(who["owner"]).get(API, {"campaign": campaign.pk}).json()["count"] == 2


def test_presets_list_their_parameters() -> None:
    body = client().get(f"{API}presets/").json()
    assert {p["name"] for p in body["presets"]} >= {"standard", "tiny"}
    epochs = next(p for p in body["params"] if p["name"] == "training.max_epochs")
    assert (epochs["type"], epochs["low"]) == ("int", 1)
