"""Training that cannot fail silently: object F1 picks the checkpoint, rows reach the caller and
the run manifest, an unlearnable training restarts and then fails with what was seen.

Tiny 2D trainings (width 4, depth 1, 44^2 patches) on bright discs in noise, one thread: a
healthy one separates the discs within a few dozen steps; with an image of pure noise under the
same labels nothing can be learnt.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import cli
from pipeline.config import load_config
from pipeline.errors import PipelineError, TrainingFailedError
from pipeline.manifest import MANIFEST_NAME
from pipeline.model_io import load_model
from pipeline.run import run_pipeline
from pipeline.training import TrainConfig, TrainingBox, attempt_seed, train

VOXEL = (100.0, 100.0)
TRAINING: dict[str, Any] = {
    "patch_shape": [44, 44],  # output 28^2
    "batch_size": 2,
    "lr": 3e-3,
    "max_epochs": 5,
    "iterations_per_epoch": 10,
    "patience": 10,
    "val_fraction": 0.25,
    "clamp_nm": 1000.0,
    "augment": False,
    # The image is 0/1 plus noise: its mean and std give the tiny network a 4x larger contrast
    # than the 1-99.8 percentile range, so 50 steps suffice (these tests check the checks).
    "normalisation": {"method": "meanstd"},
    "num_threads": 1,
    "device": "cpu",
}
UNET = {"dims": 2, "width": 4, "depth": 1}


def discs(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Separate discs of radius 4.5-6.5 pixels on a jittered 16-pixel grid, ids 1..n."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ids = 0
    for cy in range(8, shape[0], 16):
        for cx in range(8, shape[1], 16):
            ids += 1
            y, x = cy + rng.uniform(-2, 2), cx + rng.uniform(-2, 2)
            labels[(yy - y) ** 2 + (xx - x) ** 2 <= rng.uniform(4.5, 6.5) ** 2] = ids
    return labels


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    labels = discs((128, 128), 0)
    rng = np.random.default_rng(1)
    return {
        "labels": labels,
        "image": ((labels > 0) + rng.normal(0, 0.3, labels.shape)).astype(np.float32),
        "noise": rng.normal(0, 1, labels.shape).astype(np.float32),
    }


def _boxes(image: np.ndarray, labels: np.ndarray) -> list[TrainingBox]:
    return [
        TrainingBox(image, labels, (y, x, y + 64, x + 64), f"b{y}-{x}")
        for y in (0, 64)
        for x in (0, 64)
    ]


def _config(**changes: Any) -> TrainConfig:
    values = {**TRAINING, **changes}
    values["unet"] = dict(UNET)
    values["voxel_size"] = VOXEL
    return TrainConfig.from_dict(values)


def test_healthy_training_keeps_the_best_f1_epoch_and_reports_every_row(
    data: dict[str, np.ndarray], tmp_path: Path
) -> None:
    rows: list[dict[str, float]] = []
    result = train(_boxes(data["image"], data["labels"]), _config(), tmp_path, metrics=rows.append)
    history = pd.read_csv(result.history_csv)
    assert result.attempts == 1 and not result.restarts and result.epochs == 5
    assert [r["epoch"] for r in rows] == history["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert [r["val_f1"] for r in rows] == pytest.approx(history["val_f1"].tolist())
    # Checked from epoch 3 on (waiting while the figures still rise), passed once, never failed.
    passed = history.loc[history["healthy"] == 1.0, "epoch"].tolist()
    assert len(passed) == 1 and passed[0] >= 3 and not (history["healthy"] == 0.0).any()
    # The kept epoch: an F1 within the tie band of the best, and no later epoch in the band
    # had a lower validation loss.
    band = history["val_f1"] >= history["val_f1"].max() - result.f1_tolerance
    assert 0 < result.f1_tolerance < 0.5
    best = history.loc[history["epoch"] == result.best_epoch].iloc[0]
    assert band[history["epoch"] == result.best_epoch].all()
    later = history[band & (history["epoch"] > result.best_epoch)]
    assert (later["val_loss"] >= best["val_loss"]).all()
    metadata = load_model(result.best_checkpoint, "cpu").metadata
    assert metadata["epoch"] == result.best_epoch == int(best["epoch"])
    assert metadata["val_f1"] == pytest.approx(best["val_f1"]) == pytest.approx(result.best_val_f1)
    assert result.best_val_f1 >= 0.8 and result.val_objects > 0
    for column in ("val_precision", "val_recall", "val_objects", "train_distance_p99_nm",
                   "val_probability_gap"):  # fmt: skip
        assert history[column].notna().all()
    # Discs of median radius ~560 nm: seeds at 0.3 r, which the distance head passes.
    assert 150 < result.seed_threshold_nm < 190
    assert history["val_distance_p99_nm"].max() > result.seed_threshold_nm
    assert result.history_png.read_bytes()[:4] == b"\x89PNG"


def test_training_that_cannot_learn_restarts_then_fails_saying_what_was_seen(
    data: dict[str, np.ndarray], tmp_path: Path
) -> None:
    config = _config(health_epochs=2, max_epochs=4, iterations_per_epoch=5, max_restarts=2)
    counts: list[int] = []
    with pytest.raises(TrainingFailedError) as failure:
        train(
            _boxes(data["noise"], data["labels"]), config, tmp_path,
            progress=lambda stage, done, total: counts.append(done),
        )  # fmt: skip
    # Each restart says at once that counting starts over: from 9 of the failed attempt's 10
    # steps (its epoch's last counts only once it passed its check) to 0, then 1.
    assert [counts[i - 1 : i + 2] for i, c in enumerate(counts) if c == 0] == [[9, 0, 1]] * 2
    assert isinstance(failure.value, PipelineError)  # so the CLI exits 2 with the message
    message = str(failure.value)
    assert "3 attempt(s)" in message
    for attempt in range(3):
        seed = attempt_seed(config.seed, attempt)
        assert f"attempt {attempt + 1} (seed {seed}, after epoch 2)" in message
    assert "below the seed threshold" in message and "median radius" in message
    assert "probability head barely separates" in message
    assert "more iterations" in message and "labels lie on the objects" in message
    assert "every object inside each training box is labelled" in message
    assert "voxel size (100 x 100 nm)" in message
    with (tmp_path / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(int(r["attempt"]), int(r["epoch"])) for r in rows] == [
        (0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)
    ]  # fmt: skip
    assert [r["healthy"] for r in rows if r["epoch"] == "2"] == ["0.0"] * 3
    assert all(float(r["train_probability_gap"]) < 0.1 for r in rows)


def _write_run(root: Path, data: dict[str, np.ndarray], image: str, epochs: int) -> Path:
    np.save(root / "image.npy", data[image])
    np.save(root / "labels.npy", data["labels"])
    pd.DataFrame(
        {"name": ["a", "b", "c", "d"], "x": [0, 64, 0, 64], "y": [0, 0, 64, 64],
         "w": [64] * 4, "h": [64] * 4}
    ).to_csv(root / "boxes.csv", index=False)  # fmt: skip
    config = {
        "data": {"image": "image.npy", "labels": "labels.npy", "boxes": "boxes.csv",
                 "voxel_size": list(VOXEL)},
        "model": UNET,
        "training": {**TRAINING, "max_epochs": epochs, "health_epochs": epochs - 1,
                     "max_restarts": 1},
    }  # fmt: skip
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_run_manifest_holds_each_epoch_and_a_failed_training_exits_2(
    data: dict[str, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good").mkdir()
    config = load_config(_write_run(tmp_path / "good", data, "image", epochs=5))
    result = run_pipeline(config, tmp_path / "good" / "out", steps=["train"])
    manifest = json.loads((tmp_path / "good" / "out" / MANIFEST_NAME).read_text())
    train_step = manifest["steps"]["train"]
    history = train_step["metrics"]["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]
    assert all(isinstance(row["val_f1"], float) for row in history)
    assert history[0]["healthy"] is None  # NaN -> null
    assert [row["healthy"] for row in history].count(1.0) == 1  # passed at epoch 4 or 5
    assert train_step["metrics"]["best_val_f1"] == max(row["val_f1"] for row in history)
    assert result.metrics["train.attempts"] == 1 and result.metrics["train.restarts"] == []

    (tmp_path / "bad").mkdir()
    path = _write_run(tmp_path / "bad", data, "noise", epochs=3)
    out = tmp_path / "bad" / "out"
    assert cli.main(["run", "--config", str(path), "--out", str(out), "--steps", "train"]) == 2
    assert "training failed: 2 attempt(s)" in capsys.readouterr().err
    failed = json.loads((out / MANIFEST_NAME).read_text())["steps"]["train"]
    assert failed["status"] == "failed" and "TrainingFailedError" in failed["error"]
    assert [r["attempt"] for r in failed["metrics"]["history"]] == [0, 0, 1, 1]
    assert not math.isnan(failed["metrics"]["history"][-1]["train_loss"])


def test_windows_stitch_into_the_box_and_nan_figures_are_not_judged() -> None:
    from pipeline.patches import tiling_windows
    from pipeline.training_health import HeadFigures, health_problems
    from pipeline.training_validation import BoxCanvas

    truth = np.arange(10 * 7, dtype=np.float32).reshape(10, 7)
    canvas = BoxCanvas(truth.shape)
    padded = np.pad(truth, 4, constant_values=-1)
    for start in tiling_windows(truth.shape, (4, 9)):  # x: one window wider than the box
        region = tuple(slice(s + 4, s + 4 + n) for s, n in zip(start, (4, 9), strict=True))
        canvas.paste(start, padded[region])
    np.testing.assert_array_equal(canvas.array, truth)

    assert health_problems({"training": HeadFigures()}, 100.0, 300.0) == []
    low = health_problems({"validation": HeadFigures(99.0, 0.5)}, 100.0, 300.0)
    assert len(low) == 1 and "reached only 99 nm" in low[0] and "validation" in low[0]


def test_a_failing_check_waits_only_while_the_training_figures_still_rise(
    data: dict[str, np.ndarray], tmp_path: Path
) -> None:
    from pipeline.training import Trainer

    trainer = Trainer(
        _boxes(data["image"], data["labels"]), _config(health_epochs=2, max_epochs=10), tmp_path
    )
    threshold = trainer.segment_params.seed_threshold_nm
    first = {"attempt": 0, "epoch": 1, "train_distance_p99_nm": 0.0, "train_probability_gap": 0.0}
    trainer.state.history.append(first)

    def row(distance: float, gap: float) -> dict[str, float]:
        return {"train_distance_p99_nm": distance, "train_probability_gap": gap}

    assert trainer._still_learning(row(0.6 * threshold, 0.0), epoch=2)  # rising distance
    assert trainer._still_learning(row(0.0, 0.05), epoch=3)  # rising probability gap
    assert not trainer._still_learning(row(0.1 * threshold, 0.01), epoch=2)  # stuck
    assert not trainer._still_learning(row(0.6 * threshold, 0.05), epoch=4)  # waited enough
