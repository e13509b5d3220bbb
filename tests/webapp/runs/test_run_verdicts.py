"""Proofreading verdicts feed the next run: a run started on a dataset whose earlier version
was proofread filters its objects with the thresholds fitted on the final verdicts, records
which campaign and how many verdicts in its snapshot, and says so on the Retrain panel, the run
page and in the API. No worker runs here (``tests/browser/test_run_page.py`` runs one)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from pipeline.thresholds import fit_thresholds_from_verdicts
from tests.runs_testdata import RUNS_API, client
from tests.webapp.proofreading.proofreading_testdata import (
    SegmentationLayerFactory,
    campaign_with,
    synthetic_frame,
    table_with,
)
from webapp.annotation.models import AnnotationCampaign
from webapp.proofreading.models import CampaignItem, ItemStatus, ProofreadingCampaign
from webapp.proofreading.thresholds import verdict_table
from webapp.proofreading.verdict_sets import threshold_classes
from webapp.runs.models import PipelineRun
from webapp.runs.verdicts import MIN_VERDICTS

pytestmark = pytest.mark.django_db

# Twelve detections: eight true (volume 10-17, round), two small round false positives, two
# large flat ones; the filter that keeps every true one rejects all four false ones.
VOLUMES = [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 2.0, 3.0, 12.0, 12.0]
SPHERICITY = [0.9] * 10 + [0.4, 0.5]
VERDICTS = ["tp"] * 6 + ["tp_distortion"] * 2 + ["fp"] * 4


def proofread(campaign: AnnotationCampaign, owner: Any, decided: int) -> ProofreadingCampaign:
    """A proofreading campaign on a segmentation layer of ``campaign``'s dataset, its first
    ``decided`` items given their final verdicts."""
    layer = SegmentationLayerFactory(dataset=campaign.dataset, name="model-v1")
    frame = synthetic_frame(len(VOLUMES))
    frame["volume"], frame["sphericity"] = VOLUMES, SPHERICITY
    table_with(layer, frame)
    proofreading = campaign_with(layer, owner, seed=1)
    for segment_id, verdict in list(enumerate(VERDICTS, start=1))[:decided]:
        CampaignItem.objects.filter(campaign=proofreading, segment_id=segment_id).update(
            status=ItemStatus.DECIDED, verdict=verdict, verdict_source="first_round"
        )
    return proofreading


def test_a_run_filters_with_the_thresholds_fitted_on_the_verdicts(
    who: dict[str, Any], campaign: AnnotationCampaign
) -> None:
    proofreading = proofread(campaign, who["owner"], decided=len(VERDICTS))
    expected = fit_thresholds_from_verdicts(
        verdict_table(proofreading), classes=threshold_classes(proofreading.verdict_set)
    )
    # The Retrain panel says so before the start.
    page = Client()
    page.force_login(who["owner"])
    html = page.get(f"/annotation/{campaign.pk}/").content.decode()
    assert f"the run fits it on the 12 decided items of \u201c{proofreading.name}\u201d" in html
    answer = client(who["owner"]).post(
        RUNS_API, {"campaign": campaign.pk, "preset": "tiny"}, format="json"
    )
    assert answer.status_code == 202, answer.content
    run = PipelineRun.objects.get(pk=answer.json()["id"])
    assert run.config["filter"] == {
        "method": "fixed",
        "t_volume": expected.t_volume,
        "t_sphericity": expected.t_sphericity,
    }
    verdicts = answer.json()["verdicts"]
    assert (verdicts["campaign"], verdicts["verdicts"]) == (proofreading.pk, 12)
    assert (verdicts["t_volume"], verdicts["t_sphericity"]) == (
        expected.t_volume,
        expected.t_sphericity,
    )
    assert run.ground_truth["verdicts"] == verdicts
    # Every true positive kept, the flat false ones rejected (the k-fold minimum keeps the
    # small round ones here): the fit's own scores.
    assert expected.t_sphericity > 0.5 and expected.scores is not None
    assert verdicts["recall"] == 1.0 and verdicts["precision"] == expected.scores.precision
    run_page = page.get(f"/runs/{run.pk}/").content.decode()
    assert "12 verdicts of" in run_page and "sphericity 0.90" in run_page


def test_too_few_verdicts_or_an_explicit_filter_leave_the_run_alone(
    who: dict[str, Any], campaign: AnnotationCampaign
) -> None:
    proofread(campaign, who["owner"], decided=MIN_VERDICTS - 1)
    answer = client(who["owner"]).post(
        RUNS_API, {"campaign": campaign.pk, "preset": "tiny"}, format="json"
    )
    assert answer.status_code == 202, answer.content
    run = PipelineRun.objects.get(pk=answer.json()["id"])
    assert answer.json()["verdicts"] is None and run.ground_truth["verdicts"] is None
    assert "filter" not in run.config
    page = Client()
    page.force_login(who["owner"])
    assert (
        "none: the run keeps every object it segments"
        in page.get(f"/runs/{run.pk}/").content.decode()
    )
