"""``load_demo_campaign``: the demo's painted campaign comes with approved boxes painted with the
demo's true labels, managed by the demo admin, so Retrain works on a fresh site at once."""

from __future__ import annotations

from io import StringIO
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command

from pipeline.ome_zarr_io import open_multiscale
from webapp.annotation.label_exports import painted_ground_truth
from webapp.annotation.models import AnnotationCampaign
from webapp.annotation.selectors import labels_at
from webapp.runs.services import run_start

pytestmark = pytest.mark.django_db


def call(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_the_demo_campaign_is_ready_to_retrain(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call("load_demo", "--shape", "64", "64", "128", "--nuclei", "8", "--seed", "1")
    call("ensure_demo_admin")
    out = call("load_demo_campaign")
    campaign = AnnotationCampaign.objects.get(name="Demo nuclei (painted)")
    assert f"/annotation/{campaign.pk}/" in out and campaign.painted
    assert campaign.boxes.count() == 2  # 64^3 boxes
    truths = painted_ground_truth(campaign)
    assert len(truths) == 2  # both approved (six at most)
    labels = open_multiscale(campaign.dataset.root / "image.ome.zarr/labels/nuclei").levels[0]
    for truth in truths:
        box = truth.box
        painted = labels_at(truth.assignment, truth.assignment.version)
        assert painted.chunks and truth.source == "approved"
        region = tuple(slice(a, a + n) for a, n in zip(box.start, box.size, strict=True))
        from pipeline.label_store import labels_read

        got = labels_read(painted.blobs, painted.geometry, painted.chunks)
        np.testing.assert_array_equal(got, np.asarray(labels[region]))
    admin = campaign.created_by
    assert admin is not None and admin.username == "admin"
    run = run_start(admin, campaign, preset="tiny")
    assert [b["held_out"] for b in run.ground_truth["boxes"]].count(True) == 1
    again = call("load_demo_campaign", "--if-absent")
    assert "already present" in again
    assert AnnotationCampaign.objects.filter(name="Demo nuclei (painted)").count() == 1
