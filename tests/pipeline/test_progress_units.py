"""Progress bars name what they count (steps, blocks, objects), not "chunk" or "it"."""

from __future__ import annotations

import re
from pathlib import Path

import edt
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.progress import PIPELINE_STAGE_UNITS, TRAINING_STEPS, tqdm_progress
from pipeline.synthetic import make_nuclei_volume, make_sphere_labels


def _rate_units(stderr: str) -> set[str]:
    """The units in tqdm's rates: ``12.3block/s`` or ``1.20s/step`` (``?block/s`` at first)."""
    per_second = re.findall(r"[\d?.]+([a-z]+)/s\b", stderr)
    seconds_per = re.findall(r"[\d.]+s/([a-z]+)\b", stderr)
    return set(per_second) | set(seconds_per)


def test_each_stage_gets_its_unit(capsys: pytest.CaptureFixture[str]) -> None:
    report = tqdm_progress("block", {TRAINING_STEPS: "step", "meshing": "object"})
    report(TRAINING_STEPS, 2, 2)
    report("watershed", 3, 3)
    report("meshing", 5, 5)
    assert _rate_units(capsys.readouterr().err) == {"step", "block", "object"}
    assert PIPELINE_STAGE_UNITS[TRAINING_STEPS] == "step"
    assert PIPELINE_STAGE_UNITS["fit segmentation"] == "setting"


def test_segment_bars_count_blocks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels, _, _ = make_sphere_labels((16, 32, 32), 4, radius_voxels=(4.0, 6.0), seed=1)
    np.save(tmp_path / "d.npy", (edt.edt(labels) * 200.0).astype(np.float32))
    argv = ["segment", str(tmp_path / "d.npy"), str(tmp_path / "l.zarr"), "--block", "8", "16"]
    assert main([*argv, "16", "--voxel-size", "200", "--seed-threshold", "400"]) == 0
    err = capsys.readouterr().err
    assert "watershed" in err and _rate_units(err) == {"block"}


def test_train_bar_counts_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, labels = make_nuclei_volume((24, 40, 40), 6, seed=2, voxel_size_nm=200.0)
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "labels.npy", labels)
    (tmp_path / "boxes.csv").write_text(
        "name,z0,y0,x0,z1,y1,x1\na,0,0,0,24,20,40\nb,0,20,0,24,40,40\n"
    )
    config = tmp_path / "train.yaml"
    config.write_text(
        "data: {image: image.npy, labels: labels.npy, boxes: boxes.csv, voxel_size: [200]}\n"
        "model: {width: 2}\n"
        "training: {patch_shape: [52], batch_size: 1, max_epochs: 1, iterations_per_epoch: 2,\n"
        "           device: cpu, max_val_patches: 1, num_threads: 1}\n"
    )
    argv = ["train", "--config", str(config), "--out", str(tmp_path / "model"), "--allow-empty"]
    assert main(argv) == 0  # --allow-empty: a tiny training may segment nothing (exit 3)
    err = capsys.readouterr().err
    units = _rate_units(err)
    assert "step" in units and "chunk" not in err and "it" not in units
    if "fit segmentation" in err:  # the train command then fits the watershed's settings
        assert "setting" in units
