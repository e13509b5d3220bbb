"""Which segmentation settings ``run`` and ``segment`` use: the model's fitted ones by default,
derived from the ground truth for older models, the X-ray preset on request, single overrides.

The map is the true signed distance of large touching balls (radius 16 voxels of 100 nm) plus
voxel noise: the published preset (705.6 nm seeds, no smoothing, no minimum seed) splits the
balls into many noise seeds, while the settings fitted on it find every ball.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pipeline import cli
from pipeline.config import load_config
from pipeline.errors import InvalidInputError
from pipeline.importers import convert_to_ome_zarr
from pipeline.manifest import MANIFEST_NAME
from pipeline.model_io import record_segment_params, save_model
from pipeline.ome_zarr_io import create_single_level_image
from pipeline.run import run_pipeline
from pipeline.segment_fit import BoxPrediction, fit_segment_params
from pipeline.segment_params import SegmentParams, derive_segment_params
from pipeline.targets import instance_targets
from pipeline.unet import UNet, UNetConfig
from tests.pipeline.test_segment_fit import touching_balls

VOXEL = (100.0, 100.0, 100.0)
RADIUS = 16


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Image and labels (OME-Zarr), a boxes CSV, the noisy map, and a model with fitted params."""
    root = tmp_path_factory.mktemp("choice")
    labels = touching_balls(RADIUS, 2, 0)
    _, distance = instance_targets(labels, VOXEL, 4000.0)
    noise = np.random.default_rng(5).normal(0.0, 0.08 * RADIUS * VOXEL[0], labels.shape)
    distance = (distance + noise).astype(np.float32)
    np.save(root / "image.npy", (labels > 0).astype(np.float32))
    np.save(root / "labels.npy", labels)
    np.save(root / "distance.npy", distance)
    convert_to_ome_zarr(
        root / "image.npy", root, voxel_size=VOXEL, unit="nanometer",
        labels={"nuclei": root / "labels.npy"}, chunk=32,
    )  # fmt: skip
    z, y, x = labels.shape
    (root / "boxes.csv").write_text(f"name,x,y,z,w,h,d\nall,0,0,0,{x},{y},{z}\n")
    box = tuple(slice(0, n) for n in labels.shape)
    start = derive_segment_params([labels], VOXEL)
    fitted, fit = fit_segment_params([BoxPrediction(distance, box)], [labels], VOXEL, start)
    assert fit.f1 == 1.0
    model = root / "fitted.pt"
    save_model(model, UNet(UNetConfig(width=2, depth=1)), mean=0.0, std=1.0, voxel_size=VOXEL,
               metadata={"clamp_nm": start.clamp_nm})  # fmt: skip
    record_segment_params(model, fitted, fit.summary())
    plain = root / "plain.pt"
    save_model(plain, UNet(UNetConfig(width=2, depth=1)), mean=0.0, std=1.0, voxel_size=VOXEL,
               metadata={"clamp_nm": start.clamp_nm})  # fmt: skip
    return {
        "root": root, "labels": labels, "distance": distance, "fitted": fitted, "model": model,
        "plain": plain, "n": int(labels.max()),
    }  # fmt: skip


class NoisyOracle:
    """Stands in for pipeline.predict: writes the noisy distance map."""

    def __init__(self, distance: np.ndarray) -> None:
        self.distance = distance

    def predict_volume(self, model: Path, image: Any, out_dir: Path, **kwargs: Any) -> Any:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, array in (("probability", self.distance > 0), ("distance", self.distance)):
            target = create_single_level_image(
                out_dir / f"{name}.ome.zarr", array.shape, dtype=np.float32, chunks=(32, 32, 32),
                voxel_size=VOXEL, name=name,
            )  # fmt: skip
            target[:] = array.astype(np.float32)
        return types.SimpleNamespace(
            blocks_done=1,
            blocks_skipped=0,
            blocks_resumed=0,
            block_shape=self.distance.shape,
            distance_max_nm=float(self.distance.max()),
        )


def _run(tmp_path: Path, data: dict[str, Any], model: Path, segment: dict[str, Any]) -> Any:
    root = data["root"]
    config = {
        "data": {
            "image": str(root / "image.ome.zarr"),
            "labels": str(root / "image.ome.zarr" / "labels" / "nuclei"),
            "boxes": str(root / "boxes.csv"),
        },
        "model": {"path": str(model), "width": 2, "depth": 1},
        "segment": {"block": 32, **segment},
    }
    path = tmp_path / f"run{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(config))
    out = path.with_suffix("")
    result = run_pipeline(load_config(path), out, steps=["predict", "segment"])
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    return result, manifest["steps"]["segment"]["metrics"]


def test_run_uses_the_models_params_then_ground_truth_then_preset_on_request(
    tmp_path: Path, data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pipeline.predict", NoisyOracle(data["distance"]))
    fitted: SegmentParams = data["fitted"]
    _, metrics = _run(tmp_path, data, data["model"], {})
    assert (
        metrics["params"]["source"] == "fitted"
        and "recorded in model" in metrics["params"]["reason"]
    )
    assert metrics["params"]["seed_threshold_nm"] == fitted.seed_threshold_nm
    assert metrics["objects"] == data["n"]
    _, metrics = _run(tmp_path, data, data["plain"], {})
    assert metrics["params"]["source"] == "derived" and metrics["objects"] >= 1
    _, metrics = _run(tmp_path, data, data["model"], {"preset": "xray-nuclei"})
    assert metrics["params"]["source"] == "preset:xray-nuclei"
    assert metrics["params"]["seed_threshold_nm"] == 705.6
    assert metrics["objects"] > 2 * data["n"]  # noise maxima become objects
    result, metrics = _run(tmp_path, data, data["model"], {"min_seed_voxels": 0})
    assert metrics["params"]["overrides"] == ["min_seed_voxels"]
    assert metrics["params"]["min_seed_voxels"] == 0
    assert metrics["params"]["smooth_nm"] == fitted.smooth_nm
    assert result.metrics["segment.params"] == metrics["params"]


def test_unknown_preset_is_rejected_when_the_config_is_read(
    tmp_path: Path, data: dict[str, Any]
) -> None:
    path = tmp_path / "bad.yaml"
    image = str(data["root"] / "image.ome.zarr")
    path.write_text(yaml.safe_dump({"data": {"image": image}, "segment": {"preset": "confocal"}}))
    with pytest.raises(InvalidInputError, match=r"segment\.preset: unknown preset 'confocal'"):
        load_config(path)


def test_segment_cli_honours_model_preset_and_single_values(
    tmp_path: Path, data: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root: Path = data["root"]
    voxel = ["--voxel-size", "100"]
    distance = str(root / "distance.npy")

    def segment(name: str, *options: str) -> tuple[int, str]:
        code = cli.main(["segment", distance, str(tmp_path / name), *voxel, *options])
        return code, capsys.readouterr().out

    code, out = segment("a.zarr", "--model", str(data["model"]))
    assert code == 0 and "recorded in model fitted.pt" in out
    assert out.splitlines()[-1].startswith(f"{data['n']} objects")
    code, out = segment("b.zarr", "--preset", "xray-nuclei")
    assert code == 0 and "seeds at 705.6 nm, peak dynamic 0.0 nm, smoothing 0.0 nm" in out
    assert int(out.splitlines()[-1].split()[0]) > 2 * data["n"]
    fitted: SegmentParams = data["fitted"]
    code, out = segment(
        "c.zarr", "--preset", "xray-nuclei", "--smooth-nm", str(fitted.smooth_nm),
        "--min-seed-voxels", str(fitted.min_seed_voxels), "--seed-threshold",
        str(fitted.seed_threshold_nm), "--seed-dynamic-nm", str(fitted.seed_dynamic_nm),
    )  # fmt: skip
    explicit = "set explicitly: seed_threshold_nm, smooth_nm, min_seed_voxels, seed_dynamic_nm"
    assert code == 0 and explicit in out
    assert out.splitlines()[-1].startswith(f"{data['n']} objects")
    # Without --model, the model named in predict.json next to the map is used.
    folder = tmp_path / "prediction"
    folder.mkdir()
    np.save(folder / "distance.npy", data["distance"])
    (folder / "predict.json").write_text(json.dumps({"model": str(data["model"])}))
    code = cli.main(["segment", str(folder / "distance.npy"), str(tmp_path / "d.zarr"), *voxel])
    out = capsys.readouterr().out
    assert code == 0 and "recorded in model fitted.pt" in out
    code = cli.main(["segment", distance, str(tmp_path / "e.zarr"), "--model", "nope.pt"])
    assert code == 2 and "no model file" in capsys.readouterr().err
