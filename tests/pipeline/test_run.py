"""The pipeline run: step chaining, skipping up-to-date steps, resuming, manifest, CLI errors.

Most tests replace prediction by an oracle that writes the ground truth's signed distance, so
the steps after it work on a meaningful map in well under a second; one test runs the real
training and prediction with a tiny U-Net.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
import zarr

from pipeline import cli
from pipeline.config import load_config
from pipeline.errors import InvalidInputError
from pipeline.importers import convert_to_ome_zarr
from pipeline.manifest import MANIFEST_NAME
from pipeline.model_io import model_segment_params, save_model
from pipeline.ome_zarr_io import ArrayRegions, write_pyramid
from pipeline.run import SEGMENT_PLAN_DIR, SEGMENTATION_NAME, run_pipeline
from pipeline.segment import create_label_array
from pipeline.synthetic import make_nuclei_volume
from pipeline.targets import instance_targets
from pipeline.unet import UNet, UNetConfig

VOXEL = 400.0
SHAPE = (40, 56, 56)
TINY_UNET = {"width": 2, "depth": 1}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic OME-Zarr image with ground-truth labels, two boxes and a tiny model file."""
    root = tmp_path_factory.mktemp("dataset")
    image, labels = make_nuclei_volume(SHAPE, 12, seed=3, voxel_size_nm=VOXEL)
    np.save(root / "image.npy", image)
    np.save(root / "labels.npy", labels)
    np.save(root / "empty.npy", np.zeros_like(labels))
    np.save(root / "flat.npy", image[0])
    convert_to_ome_zarr(
        root / "image.npy",
        root / "ds",
        voxel_size=(VOXEL,) * 3,
        unit="nanometer",
        labels={"nuclei": root / "labels.npy", "empty": root / "empty.npy"},
        chunk=32,
    )
    convert_to_ome_zarr(root / "flat.npy", root / "flat", voxel_size=(VOXEL,) * 2, unit="nm")
    pd.DataFrame(
        {
            "name": ["a", "b"],
            "x": [0, 0],
            "y": [0, 28],
            "z": [0, 0],
            "w": [56, 56],
            "h": [28, 28],
            "d": [40, 40],
        }
    ).to_csv(root / "boxes.csv", index=False)
    torch_model = UNet(UNetConfig(**TINY_UNET))  # type: ignore[arg-type]
    save_model(
        root / "tiny.pt", torch_model, mean=0.0, std=1.0, voxel_size=(VOXEL,) * 3, metadata={}
    )
    return root


def write_config(folder: Path, dataset: Path, **sections: Any) -> Path:
    data: dict[str, Any] = {
        "data": {
            "image": str(dataset / "ds" / "image.ome.zarr"),
            "labels": str(dataset / "ds" / "image.ome.zarr" / "labels" / "nuclei"),
            "boxes": str(dataset / "boxes.csv"),
        },
        "model": {"path": str(dataset / "tiny.pt"), **TINY_UNET},
        "segment": {"block": 32},
        "filter": {"method": "ground_truth", "folds": 2},
        "evaluate": {"margin_um": 2.0},
    }
    for name, value in sections.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = {**data.get(name, {}), **value}
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class OraclePredict:
    """Stands in for pipeline.predict: writes the true signed distance (and foreground)."""

    def __init__(self, labels: np.ndarray, fail_first: bool = False) -> None:
        self.labels = labels
        self.fail_first = fail_first
        self.calls: list[bool] = []  # whether each call found earlier outputs (a resume)

    def predict_volume(self, model: Path, image: Any, out_dir: Path, **kwargs: Any) -> Any:
        self.calls.append(out_dir.exists())
        out_dir.mkdir(parents=True, exist_ok=True)
        if self.fail_first and len(self.calls) == 1:
            raise RuntimeError("killed mid-prediction")
        foreground, distance = instance_targets(self.labels, (VOXEL,) * 3)
        for name, array in (("probability", foreground), ("distance", distance)):
            path = out_dir / f"{name}.ome.zarr"
            if path.exists():
                continue
            source = ArrayRegions(array, (0, 1, 2), np.dtype(np.float32), (32, 32, 32))
            write_pyramid(
                source,
                zarr.open_group(str(path), mode="w-", zarr_format=3),
                axes=("z", "y", "x"),
                voxel_size=(VOXEL,) * 3,
                unit="nanometer",
                plan=[],
                chunk=32,
                name=name,
            )
        return types.SimpleNamespace(
            blocks_done=1,
            blocks_skipped=0,
            blocks_resumed=0,
            block_shape=(40, 56, 56),
            distance_max_nm=float(distance.max()),
        )


@pytest.fixture
def oracle(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> OraclePredict:
    fake = OraclePredict(np.load(dataset / "labels.npy"))
    monkeypatch.setitem(sys.modules, "pipeline.predict", fake)
    return fake


def test_run_chains_every_step_and_reruns_only_what_changed(
    tmp_path: Path, dataset: Path, oracle: OraclePredict
) -> None:
    out = tmp_path / "run"
    config = load_config(write_config(tmp_path, dataset))
    result = run_pipeline(config, out)
    assert result.ran == ["predict", "segment", "measure", "filter", "evaluate"]
    assert result.skipped == ["train"]  # a model file was given
    n_true = int(np.load(dataset / "labels.npy").max())
    assert result.metrics["segment.objects"] == n_true
    assert result.metrics["evaluate.all_f1"] >= 0.95
    assert result.metrics["evaluate.filtered_f1"] >= 0.95
    detections = pd.read_parquet(out / "detections.parquet")
    assert len(detections) == n_true and detections["kept"].dtype == bool
    assert (out / "detections.csv").is_file() and (out / "meshes" / "info").is_file()
    thresholds = json.loads((out / "filter" / "thresholds.json").read_text())
    assert thresholds["method"] == "ground_truth" and thresholds["labelled_tp"] >= n_true - 1
    summary = json.loads((out / "evaluation" / "summary.json").read_text())
    assert summary["all"]["f1"] == result.metrics["evaluate.all_f1"]
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["inputs"]["image"]["kind"] == "directory"
    assert manifest["inputs"]["boxes"]["sha256"]
    assert manifest["parameters"]["segment"]["block"] == [32]
    assert manifest["environment"]["packages"]["numpy"] == np.__version__
    assert {s: manifest["steps"][s]["status"] for s in result.ran} == dict.fromkeys(
        result.ran, "done"
    )
    assert all(manifest["steps"][s]["seconds"] >= 0 for s in result.ran)

    again = run_pipeline(config, out)
    assert again.ran == [] and again.metrics == result.metrics
    assert oracle.calls == [False]

    changed = load_config(write_config(tmp_path, dataset, segment={"iou_threshold": 0.5}))
    third = run_pipeline(changed, out)
    assert third.ran == ["segment", "measure", "filter", "evaluate"]
    assert "predict" in third.skipped and len(oracle.calls) == 1

    only_eval = run_pipeline(changed, out, steps=["evaluate"])
    assert only_eval.ran == [] and only_eval.skipped == ["evaluate"]


def test_chosen_steps_need_upstream_outputs(tmp_path: Path, dataset: Path, oracle: Any) -> None:
    config = load_config(write_config(tmp_path, dataset))
    with pytest.raises(InvalidInputError, match="step 'predict' is not selected"):
        run_pipeline(config, tmp_path / "fresh", steps=["segment"])
    partial = run_pipeline(config, tmp_path / "part", steps=["predict", "segment"])
    assert partial.ran == ["predict", "segment"]
    assert not (tmp_path / "part" / "detections.csv").exists()


def test_interrupted_step_resumes_without_wiping(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = OraclePredict(np.load(dataset / "labels.npy"), fail_first=True)
    monkeypatch.setitem(sys.modules, "pipeline.predict", fake)
    config = load_config(write_config(tmp_path, dataset, filter={"method": "none"}))
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="killed"):
        run_pipeline(config, out, steps=["predict"])
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["steps"]["predict"]["status"] == "failed"
    assert "killed mid-prediction" in manifest["steps"]["predict"]["error"]
    result = run_pipeline(config, out, steps=["predict", "segment", "measure", "filter"])
    assert fake.calls == [False, True]  # the second call found the partial outputs
    assert result.ran == ["predict", "segment", "measure", "filter"]
    assert pd.read_parquet(out / "detections.parquet")["kept"].all()


def test_real_training_and_prediction_with_a_tiny_unet(tmp_path: Path, dataset: Path) -> None:
    training = {
        "patch_shape": [28, 28, 28],
        "batch_size": 1,
        "max_epochs": 1,
        "iterations_per_epoch": 2,
        "augment": False,
        "num_threads": 1,
        "device": "cpu",
    }
    model = {"path": None, **TINY_UNET}
    path = write_config(tmp_path, dataset, training=training, model=model)
    data = yaml.safe_load(path.read_text())
    data["model"].pop("path")
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    out = tmp_path / "run"
    result = run_pipeline(config, out, steps=["train", "predict"])
    assert result.ran == ["train", "predict"]
    assert Path(result.outputs["train.best_checkpoint"]).is_file()
    fitted = model_segment_params(Path(result.outputs["train.best_checkpoint"]))
    assert fitted is not None and fitted.source == "fitted"  # fitted on the validation box
    assert result.metrics["train.segment_params"] == fitted.to_dict()
    # The validation box holds few objects: the training box is fitted on too.
    assert sorted(result.metrics["train.segment_fit"]["boxes"]) == ["a", "b"]
    assert (out / "model" / "segment_fit.csv").is_file()
    distance = zarr.open_array(str(out / "prediction" / "distance.ome.zarr" / "s0"), mode="r")
    assert distance.shape == SHAPE and np.isfinite(distance[:]).all()
    assert run_pipeline(config, out, steps=["train", "predict"]).ran == []


def test_measure_command_writes_flagged_detections(tmp_path: Path, dataset: Path) -> None:
    labels = np.load(dataset / "labels.npy")
    array = create_label_array(
        tmp_path / "labels.ome.zarr", labels.shape, chunks=(32, 32, 32), voxel_size=(VOXEL,) * 3
    )
    array[:] = labels
    out = tmp_path / "measured"
    code = run_cli(
        [
            "measure",
            str(tmp_path / "labels.ome.zarr"),
            str(out),
            "--t-volume",
            "20",
            "--t-sphericity",
            "0.5",
        ]
    )
    assert code == 0
    table = pd.read_csv(out / "detections.csv")
    assert list(table.columns[:5]) == ["id", "voxels", "volume", "surface_area", "sphericity"]
    assert len(table) == int(labels.max())
    expected = (table["volume"] >= 20) & (table["sphericity"] >= 0.5)
    assert table["kept"].tolist() == expected.tolist()
    assert 0 < expected.sum() < len(table) or expected.all()
    np.testing.assert_allclose(table["volume"], table["voxels"] * (VOXEL / 1000) ** 3)
    assert pd.read_parquet(out / "detections.parquet").equals(table)
    assert (out / "meshes" / "segment_properties" / "info").is_file()
    assert run_cli(["measure", str(tmp_path / "labels.ome.zarr"), str(out), "--t-volume", "1"]) == 2


def run_cli(argv: list[str]) -> int:
    modules = [
        *cli.COMMAND_MODULES,
        *(m for m in ("run", "measure") if m not in cli.COMMAND_MODULES),
    ]
    original = cli.COMMAND_MODULES
    cli.COMMAND_MODULES = modules
    try:
        return cli.main(argv)
    finally:
        cli.COMMAND_MODULES = original


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"data": {"image": "{d}/boxes.csv"}}, "no OME-Zarr directory"),
        ({"data": {"image": "{d}/flat/image.ome.zarr"}}, "2D but the table has z columns"),
        ({"data": {"labels": "{d}/ds/image.ome.zarr/labels/empty"}}, "empty ground truth"),
        ({"data": {"image": "{d}/nothing.ome.zarr"}}, "data.image"),
        ({"segment": {"blocks": 3}}, "unknown key(s) blocks"),
    ],
)
def test_run_command_rejects_bad_configs_with_exit_2(
    tmp_path: Path,
    dataset: Path,
    sections: dict[str, Any],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for section in sections.values():
        for key, value in section.items():
            if isinstance(value, str):
                section[key] = value.format(d=dataset)
    path = write_config(tmp_path, dataset, **sections)
    assert run_cli(["run", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_run_command_rejects_unknown_steps(
    tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, dataset)
    assert run_cli(["run", "--config", str(path), "--steps", "predict,mesh"]) == 2
    assert "unknown step(s) mesh" in capsys.readouterr().err


def test_an_interrupted_segmentation_resumes_its_plan(
    tmp_path: Path, dataset: Path, oracle: OraclePredict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed in the relabel step, a rerun finishes only the blocks left; same labels as an
    uninterrupted run, and the plan's scratch is gone after."""
    from pipeline.segment import SegmentPlan

    config = load_config(write_config(tmp_path, dataset))
    clean = run_pipeline(config, tmp_path / "clean", steps=["predict", "segment"])
    expected = np.asarray(zarr.open_array(str(tmp_path / "clean" / SEGMENTATION_NAME / "s0"))[:])
    relabelled: list[int] = []
    original = SegmentPlan._relabel

    def dies_at_block_3(plan: SegmentPlan, block: Any) -> None:
        if block.index == 3 and not relabelled.count(-1):
            relabelled.append(-1)
            raise RuntimeError("killed mid-relabel")
        relabelled.append(block.index)
        original(plan, block)

    monkeypatch.setattr(SegmentPlan, "_relabel", dies_at_block_3)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="killed mid-relabel"):
        run_pipeline(config, out, steps=["predict", "segment"])
    assert relabelled == [0, 1, 2, -1] and (out / SEGMENT_PLAN_DIR / "plan.json").is_file()
    result = run_pipeline(config, out, steps=["predict", "segment"])
    assert result.ran == ["segment"]
    assert relabelled[4:] == [3, 4, 5, 6, 7]  # 2 x 2 x 2 blocks; 0-2 were not done again
    assert result.metrics["segment.objects"] == clean.metrics["segment.objects"] > 3
    labels = np.asarray(zarr.open_array(str(out / SEGMENTATION_NAME / "s0"))[:])
    np.testing.assert_array_equal(labels, expected)
    assert not (out / SEGMENT_PLAN_DIR).exists()


class DeferredExecutor:
    """An executor that returns at once, as Celery's does: the test runs the plan later."""

    waits = False

    def __init__(self) -> None:
        self.plans: list[Any] = []

    def execute(self, plan: Any, progress: Any = None) -> None:
        from pipeline.plan import save_plan

        save_plan(plan)
        self.plans.append(plan.work_dir)


def test_a_run_whose_plans_run_elsewhere_waits_and_goes_on(tmp_path: Path, dataset: Path) -> None:
    """With ``plans`` an executor that returns before the plan ran, ``run_pipeline`` returns
    ``waiting`` (the step stays running in the manifest) and, called again once the plan ran,
    goes on; a call while it runs queues nothing new. Same labels as a run in one process."""
    from pipeline.manifest import Manifest
    from pipeline.plan import LocalExecutor, load_plan, mark_finished

    config = load_config(write_config(tmp_path, dataset))
    steps = ["predict", "segment", "measure"]
    local = run_pipeline(config, tmp_path / "local", steps=steps)
    deferred = DeferredExecutor()
    out = tmp_path / "deferred"
    waited = []
    for _ in range(4):
        result = run_pipeline(config, out, steps=steps, plans=deferred)
        if result.waiting is None:
            break
        waited.append(result.waiting)
        assert Manifest.load_or_new(out).step(result.waiting).status == "running"
        again = run_pipeline(config, out, steps=steps, plans=deferred)  # a duplicate delivery
        assert again.waiting == result.waiting
        work = deferred.plans[-1]
        LocalExecutor().execute(load_plan(work))
        mark_finished(work)
    assert waited == ["predict", "segment"] and result.ran == ["segment", "measure"]
    for name in ("probability", "distance"):
        expected = zarr.open_array(
            str(tmp_path / "local" / "prediction" / f"{name}.ome.zarr" / "s0")
        )
        got = zarr.open_array(str(out / "prediction" / f"{name}.ome.zarr" / "s0"))
        np.testing.assert_array_equal(np.asarray(got[:]), np.asarray(expected[:]))
    expected = np.asarray(zarr.open_array(str(tmp_path / "local" / SEGMENTATION_NAME / "s0"))[:])
    labels = np.asarray(zarr.open_array(str(out / SEGMENTATION_NAME / "s0"))[:])
    np.testing.assert_array_equal(labels, expected)
    assert result.metrics["measure.objects"] == local.metrics["measure.objects"]
    assert not (out / SEGMENT_PLAN_DIR).exists()


def test_a_failed_plan_fails_its_step(tmp_path: Path, dataset: Path) -> None:
    from pipeline.plan import PlanFailed, record_failure

    config = load_config(write_config(tmp_path, dataset))
    deferred = DeferredExecutor()
    out = tmp_path / "run"
    assert run_pipeline(config, out, steps=["predict"], plans=deferred).waiting == "predict"
    record_failure(deferred.plans[-1], "predict 0", "out of memory")
    with pytest.raises(PlanFailed, match="predict 0: out of memory"):
        run_pipeline(config, out, steps=["predict"], plans=deferred)
