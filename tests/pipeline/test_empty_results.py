"""Stages that produce nothing warn and exit 3 in the CLI, unless --allow-empty says it is fine."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import cli
from pipeline.empty_results import EXIT_EMPTY, report_empty, run_empty
from pipeline.model_io import save_model
from pipeline.predict import predict_volume
from pipeline.unet import UNet, UNetConfig

REPO = Path(__file__).resolve().parents[2]
VOXEL = ("400", "400", "400")


def _segment(*args: str) -> subprocess.CompletedProcess[str]:
    # The real entry point, as a user runs it: the exit status is what scripts see.
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "segment", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_segment_of_an_all_negative_distance_map_exits_3_unless_allowed(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.full((8, 16, 16), -300.0, np.float32))
    args = [str(tmp_path / "d.npy"), "--block", "8", "--voxel-size", *VOXEL]
    empty = _segment(*args[:1], str(tmp_path / "a.zarr"), *args[1:])
    assert empty.returncode == EXIT_EMPTY, empty.stderr
    assert "warning: segment: no seed formed" in empty.stderr
    assert "--allow-empty" in empty.stderr and "0 objects" in empty.stdout
    allowed = _segment(*args[:1], str(tmp_path / "b.zarr"), *args[1:], "--allow-empty")
    assert allowed.returncode == 0, allowed.stderr
    assert "warning: segment: no seed formed" in allowed.stderr  # still said, but not an error


def test_measure_and_detections_of_an_empty_label_image_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.segment import create_label_array

    labels = tmp_path / "labels.ome.zarr"
    create_label_array(labels, (8, 16, 16), chunks=(8, 16, 16), voxel_size=(400.0,) * 3)
    assert cli.main(["measure", str(labels), str(tmp_path / "m")]) == EXIT_EMPTY
    assert "warning: measure: zero objects" in capsys.readouterr().err
    assert cli.main(["measure", str(labels), str(tmp_path / "m2"), "--allow-empty"]) == 0
    assert cli.main(["detections", str(labels), str(tmp_path / "d")]) == EXIT_EMPTY
    assert "warning: detections: zero objects" in capsys.readouterr().err
    assert cli.main(["mesh", str(labels), str(tmp_path / "meshes")]) == EXIT_EMPTY
    assert "warning: mesh: zero objects" in capsys.readouterr().err
    assert cli.main(["mesh", str(labels), str(tmp_path / "meshes2"), "--allow-empty"]) == 0


def test_parents_without_any_child_inside_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Children and parents that never overlap (e.g. two label images of other regions)."""
    parents = np.zeros((32, 32), np.uint32)
    parents[2:12, 2:12] = 1
    children = np.zeros((32, 32), np.uint32)
    children[20:24, 20:24] = 1
    np.save(tmp_path / "parents.npy", parents)
    np.save(tmp_path / "children.npy", children)
    args = ["parents", str(tmp_path / "children.npy"), str(tmp_path / "parents.npy")]
    size = ["--voxel-size", "500", "500", "--stereology", "none"]
    assert cli.main([*args, str(tmp_path / "out"), *size]) == EXIT_EMPTY
    err = capsys.readouterr().err
    assert "warning: parents: no child lies inside any parent (1 outside every parent)" in err
    assert cli.main([*args, str(tmp_path / "out2"), *size, "--allow-empty"]) == 0


def test_predict_records_the_distance_maximum_and_the_cli_flags_a_map_without_seeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    network = UNet(UNetConfig(width=2, depth=1))  # untrained: heads are zero, distance 0 nm
    model = tmp_path / "model.pt"
    save_model(model, network, mean=0.0, std=1.0, voxel_size=(400.0,) * 3, metadata={})
    image = np.random.default_rng(0).normal(0, 1, (8, 16, 16)).astype(np.float32)
    result = predict_volume(model, image, tmp_path / "p", block_shape=(8, 8, 8), device="cpu")
    assert result.distance_max_nm == 0.0
    resumed = predict_volume(model, image, tmp_path / "p", block_shape=(8, 8, 8), device="cpu")
    assert resumed.blocks_resumed == 4 and resumed.distance_max_nm == 0.0
    np.save(tmp_path / "image.npy", image)
    argv = ["predict", "--model", str(model), str(tmp_path / "image.npy"), "--device", "cpu"]
    assert cli.main([*argv, str(tmp_path / "q")]) == EXIT_EMPTY
    err = capsys.readouterr().err
    assert "never exceeds the seed threshold (0 nm at most vs 705.6 nm)" in err
    assert cli.main([*argv, str(tmp_path / "r"), "--seed-threshold", "-1"]) == 0
    assert cli.main([*argv, str(tmp_path / "s"), "--allow-empty"]) == 0


def test_run_metrics_name_each_empty_stage() -> None:
    healthy = {"segment.objects": 5, "measure.objects": 5, "train.val_objects": 3.0}
    assert run_empty(healthy) == []
    collapsed = {
        "train.val_objects": 0.0,
        "predict.distance_max_nm": 198.0,
        "segment.seed_threshold_nm": 705.6,
        "segment.objects": 0,
        "measure.objects": 0,
    }
    found = run_empty(collapsed)
    assert [w.split(":")[0] for w in found] == ["train", "predict", "segment"]
    stream = io.StringIO()
    assert report_empty(found, allow_empty=False, stream=stream) == EXIT_EMPTY
    assert stream.getvalue().count("warning:") == 3
    assert report_empty(found, allow_empty=True, stream=io.StringIO()) == 0
