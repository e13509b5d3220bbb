"""Publication is all or nothing around its commit: a failure inside the transaction puts the
files back and leaves no version; once committed, a failure after it (the worker stopped, as a
benchmark that stopped its worker at the run's end did) leaves the published layer's files and
the model file where the version row says they are. The run's last log lines commit with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.manifest import Manifest
from pipeline.model_io import save_model
from pipeline.ome_zarr_io import create_single_level_image, open_spatial_level
from pipeline.run import SEGMENTATION_NAME
from pipeline.unet import UNet, UNetConfig
from tests.runs_testdata import people, retrain_campaign
from webapp.core.jobs.lifecycle import job_start
from webapp.detections.filters import FilterValues, layer_filter, layer_filter_values
from webapp.runs import layout, publish, selectors, services
from webapp.runs.models import ModelVersion, PipelineRun

pytestmark = pytest.mark.django_db


def finished_run() -> tuple[PipelineRun, Path, Any]:
    """A started run whose work directory holds what publication takes: the kept checkpoint
    (in the manifest) and a segmentation with one object."""
    who = people()
    campaign, _ = retrain_campaign(who, approved=2)
    run = services.run_start(who["owner"], campaign, preset="tiny")
    attempt = job_start(PipelineRun, run.pk)
    assert attempt is not None
    out = layout.out_dir(run.pk)
    checkpoint = out / "train" / "best.pt"
    checkpoint.parent.mkdir(parents=True)
    save_model(checkpoint, UNet(UNetConfig(width=2, depth=1)), mean=0, std=1,
               voxel_size=(200.0,) * 3, metadata={})  # fmt: skip
    manifest = Manifest.load_or_new(out)
    manifest.step("train").outputs["best_checkpoint"] = str(checkpoint)
    manifest.save()
    labels = create_single_level_image(
        out / SEGMENTATION_NAME, (16, 16, 16), dtype=np.uint32, chunks=(16, 16, 16),
        voxel_size=(200.0,) * 3, name="segmentation", label=True,
    )  # fmt: skip
    labels[4:8, 4:8, 4:8] = 7
    return PipelineRun.objects.get(pk=run.pk), out, attempt


@pytest.mark.django_db(transaction=True)  # a real commit, after which on_commit runs at once
def test_a_failure_after_the_commit_keeps_the_published_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run, out, attempt = finished_run()

    class Stopped:
        def send(self, **_: Any) -> None:
            raise SystemExit("the worker was stopped")

    monkeypatch.setattr(publish, "layers_changed", Stopped())
    with pytest.raises(SystemExit):
        publish.publish_run(run, out, attempt)
    version = ModelVersion.objects.get(run=run)
    # The run's last lines came with its success, in the same transaction.
    assert (
        PipelineRun.objects.get(pk=run.pk)
        .log.rstrip()
        .endswith("publish: model-v1, model v1 is the dataset's current model")
    )
    assert version.layer is not None
    assert layer_filter_values(version.layer).is_empty  # the run applied no filter
    published = open_spatial_level(run.dataset.root / version.layer.path, 0, what="labels")
    assert int(np.asarray(published.array[:]).max()) == 7
    assert publish.model_file(version).is_file()
    assert not (out / SEGMENTATION_NAME).exists()  # moved, not copied back


def test_a_failure_before_the_commit_puts_the_files_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run, out, attempt = finished_run()

    def refused(*_: Any, **__: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(publish, "job_succeed", refused)
    with pytest.raises(RuntimeError):
        publish.publish_run(run, out, attempt)
    assert not ModelVersion.objects.filter(run=run).exists()
    assert (out / SEGMENTATION_NAME).is_dir()
    assert not layout.model_dir(run.dataset_id, 1).exists()


@pytest.mark.django_db(transaction=True)
def test_the_runs_filter_becomes_the_published_layers_filter() -> None:
    """The thresholds the filter step applied (from proofreaders' verdicts, or fitted) are the
    published layer's filter: its detections table's flag and a proofreading campaign's
    selection start from them (without thresholds it has none: the test above)."""
    run, out, attempt = finished_run()
    manifest = Manifest.load_or_new(out)
    manifest.step("filter").metrics.update(
        {"method": "fixed", "t_volume": 2.5, "t_sphericity": 0.4, "objects": 1, "kept": 1}
    )
    manifest.save()
    layer = publish.publish_run(run, out, attempt)
    assert layer_filter_values(layer) == FilterValues(volume_min=2.5, sphericity_min=0.4)
    row = layer_filter(layer)
    assert row is not None and row.source == selectors.fitted_source(run.pk)
