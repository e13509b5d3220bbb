"""Painted-label blob GC: only blobs no stored version names go, young ones stay, and the folders
of deleted campaigns are removed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from annotation_testdata import painted_campaign
from django.core.management import call_command

from pipeline.label_store import labels_read
from webapp.annotation import selectors, services
from webapp.annotation.label_gc import annotation_root, labels_gc
from webapp.annotation.models import AnnotationCampaign

pytestmark = pytest.mark.django_db

CHUNK = (10, 64, 64)


def _chunk(value: int) -> np.ndarray:
    out = np.zeros(CHUNK, np.uint32)
    out[2:8, 10 : 20 + value, 10:30] = value
    return out


def _blob_files(campaign: AnnotationCampaign) -> set[str]:
    root = selectors.label_blobs_root(campaign.pk)
    return {p.name for p in root.rglob("*") if p.is_file()}


def test_gc_keeps_every_version_and_removes_only_old_orphans(people: dict[str, Any]) -> None:
    campaign = painted_campaign(people, (20, 256, 256), [4.0, 25.6, 25.6], [0.0, 0.0, 0.0])
    task = services.next_task(campaign, people["a1"])
    assert task is not None
    services.labels_save(task, people["a1"], 0, {(0, 0, 0): _chunk(1)})
    services.labels_save(task, people["a1"], 1, {(0, 0, 0): _chunk(2)})  # v1's blob stays live
    orphan = selectors.label_blobs(campaign.pk).put(b"a save that lost its race")
    assert orphan in _blob_files(campaign) and len(_blob_files(campaign)) == 3

    assert labels_gc(campaign.pk).blobs_removed == 0  # the orphan is younger than an hour
    assert labels_gc(campaign.pk, min_age_s=0).blobs_removed == 1
    assert orphan not in _blob_files(campaign) and len(_blob_files(campaign)) == 2
    task.refresh_from_db()
    for version, value in ((1, 1), (2, 2)):
        labels = selectors.labels_at(task, version)
        whole = labels_read(labels.blobs, labels.geometry, labels.chunks)
        assert (whole[:10, :64, :64] == _chunk(value)).all()


def test_gc_command_removes_the_folders_of_deleted_campaigns(people: dict[str, Any]) -> None:
    campaign = painted_campaign(people, (20, 256, 256), [4.0, 25.6, 25.6], [0.0, 0.0, 0.0])
    kept = painted_campaign(people, (20, 256, 256), [4.0, 25.6, 25.6], [0.0, 0.0, 0.0])
    for row in (campaign, kept):
        selectors.label_blobs(row.pk).put(b"x")
    gone = selectors.label_blobs_root(campaign.pk).parent
    campaign.delete()
    out = io.StringIO()
    call_command("annotation_labels_gc", "--min-age", "3600", stdout=out)
    assert "1 folders of deleted campaigns removed" in out.getvalue()
    assert not gone.exists() and selectors.label_blobs_root(kept.pk).is_dir()
    assert Path(annotation_root()).is_dir()


def test_a_labels_save_queues_the_campaign_gc_at_most_hourly(
    people: dict[str, Any], monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    from django.core.cache import cache

    from webapp.annotation import tasks

    queued: list[int] = []
    monkeypatch.setattr(tasks.labels_gc_task, "delay", queued.append)
    campaign = painted_campaign(people, (20, 256, 256), [4.0, 25.6, 25.6], [0.0, 0.0, 0.0])
    cache.delete(f"annotation:labels-gc:{campaign.pk}")
    task = services.next_task(campaign, people["a1"])
    assert task is not None
    with django_capture_on_commit_callbacks(execute=True):
        services.labels_save(task, people["a1"], 0, {(0, 0, 0): _chunk(1)})
    with django_capture_on_commit_callbacks(execute=True):
        services.labels_save(task, people["a1"], 1, {(0, 0, 0): _chunk(2)})
    assert queued == [campaign.pk]
    assert tasks.labels_gc_task.run(campaign.pk) == 0  # nothing unreferenced
