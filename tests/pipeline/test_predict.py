"""Block-wise prediction: exact against whole-volume prediction, masks, resume, process pools,
and the train/predict command lines."""

from __future__ import annotations

import argparse
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from conftest import write_reference_ome_zarr

from pipeline.commands import predict as predict_command
from pipeline.commands import train as train_command
from pipeline.errors import InvalidInputError, PipelineError
from pipeline.model_io import LoadedModel, load_model, save_model
from pipeline.ome_zarr_io import open_multiscale
from pipeline.patches import read_normalised
from pipeline.predict import predict_volume
from pipeline.synthetic import make_nuclei_volume
from pipeline.torch_setup import inference_process_pool
from pipeline.unet import UNet, UNetConfig

VOXEL = (200.0, 200.0, 200.0)
CLAMP = 4000.0


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    torch.manual_seed(3)
    path = tmp_path / "model.pt"
    network = UNet(UNetConfig(width=2))
    for head in network.heads.values():  # untrained heads are zero: make the outputs vary
        torch.nn.init.normal_(head.weight, std=0.5)
    save_model(
        path, network, mean=100.0, std=20.0, voxel_size=VOXEL, metadata={"clamp_nm": CLAMP},
    )  # fmt: skip
    return path


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).normal(100, 20, (24, 20, 28)).astype(np.float32)


def _read(path: Path) -> np.ndarray:
    return np.asarray(zarr.open_array(str(path / "s0"), mode="r")[:])


def _whole_volume(
    model: LoadedModel, image: np.ndarray, flips: tuple[tuple[int, ...], ...] = ((),)
) -> tuple[np.ndarray, np.ndarray]:
    """The model applied once to the whole volume plus its margin (no blocks); the mean over
    ``flips`` (spatial axes mirrored in and back out)."""
    config = model.config
    out_shape = config.output_shape(config.valid_input_shape(image.shape))
    region = tuple(slice(-m, n + m) for n, m in zip(out_shape, config.margin, strict=True))
    x = torch.from_numpy(read_normalised(image, region, model.mean, model.std))[None, None]
    crop = tuple(slice(0, n) for n in image.shape)
    probability, distance = np.zeros(image.shape), np.zeros(image.shape)
    for axes in flips:
        with torch.inference_mode():
            out = model.model(torch.flip(x, [a + 2 for a in axes]) if axes else x)
        p = torch.sigmoid(out["probability"])[0, 0].numpy()
        d = out["distance"][0, 0].numpy()
        probability += np.flip(p, axes)[crop] / len(flips)
        distance += np.flip(d, axes)[crop] * model.clamp_nm / len(flips)
    return probability, distance


def test_blockwise_equals_whole_volume(model_path: Path, image: np.ndarray, tmp_path: Path) -> None:
    model = load_model(model_path, "cpu")
    result = predict_volume(model, image, tmp_path / "out", block_shape=(12, 8, 12))
    assert (result.blocks_done, result.blocks_skipped) == (2 * 3 * 3, 0)
    probability, distance = _whole_volume(model, image)
    np.testing.assert_allclose(_read(result.probability_path), probability, atol=1e-6)
    np.testing.assert_allclose(_read(result.distance_path), distance, atol=1e-2)
    assert probability.min() > 0.0 and probability.max() < 1.0
    assert probability.std() > 1e-3 and distance.std() > 1.0  # the comparison is not vacuous
    written = open_multiscale(result.distance_path)
    assert written.ngff_version == "0.5" and written.voxel_size == VOXEL
    assert written.unit == "nanometer" and written.axes == ("z", "y", "x")
    assert written.levels[0].chunks == (12, 8, 12) and written.levels[0].dtype == np.float32
    with pytest.raises(InvalidInputError, match="not a valid U-Net output"):
        predict_volume(model, image, tmp_path / "bad", block_shape=(10, 8, 12))


def test_flips_average_four_mirrored_predictions_block_by_block(
    model_path: Path, image: np.ndarray, tmp_path: Path
) -> None:
    """Test-time flips: block-wise prediction equals the whole volume's mean over the image as
    is and mirrored along y, x and both; it differs from the plain prediction; a rerun with
    other flips refuses the directory."""
    model = load_model(model_path, "cpu")
    result = predict_volume(model, image, tmp_path / "out", block_shape=(12, 8, 12), flips=True)
    probability, distance = _whole_volume(model, image, ((), (1,), (2,), (1, 2)))
    np.testing.assert_allclose(_read(result.probability_path), probability, atol=1e-6)
    np.testing.assert_allclose(_read(result.distance_path), distance, atol=1e-2)
    plain, _ = _whole_volume(model, image)
    assert np.abs(plain - probability).max() > 1e-3  # the flips changed something
    assert json.loads((tmp_path / "out" / "predict.json").read_text())["flips"] is True
    with pytest.raises(InvalidInputError, match="other parameters"):
        predict_volume(model, image, tmp_path / "out", block_shape=(12, 8, 12))  # 3D: off


def test_mask_skips_blocks_and_rerun_resumes(model_path: Path, tmp_path: Path) -> None:
    image = np.random.default_rng(1).normal(100, 20, (24, 24, 24)).astype(np.float32)
    mask = np.zeros((6, 6, 6), np.uint8)  # a coarser tissue mask: 4 image voxels per mask voxel
    mask[1, 1, 1] = 1  # inside the first 12^3 block only
    out = tmp_path / "out"
    first = predict_volume(model_path, image, out, block_shape=(12, 12, 12), mask=mask)
    assert (first.blocks_done, first.blocks_skipped, first.blocks_resumed) == (1, 7, 0)
    probability, distance = _read(first.probability_path), _read(first.distance_path)
    assert (probability[12:, :, :] == 0).all() and (distance[12:, :, :] == -CLAMP).all()
    assert (probability[:12, :12, :12] > 0).all()

    again = predict_volume(model_path, image, out, block_shape=(12, 12, 12), mask=mask)
    assert (again.blocks_done, again.blocks_skipped, again.blocks_resumed) == (0, 7, 1)
    (out / "done" / "0").unlink()  # as if the run had died before finishing block 0
    redo = predict_volume(model_path, image, out, block_shape=(12, 12, 12), mask=mask)
    assert redo.blocks_done == 1
    np.testing.assert_array_equal(_read(redo.probability_path), probability)
    with pytest.raises(InvalidInputError, match="other parameters"):
        predict_volume(model_path, image, out, block_shape=(8, 8, 8))


def test_process_pool_equals_sequential(
    model_path: Path, image: np.ndarray, tmp_path: Path
) -> None:
    sequential = predict_volume(model_path, image, tmp_path / "seq", block_shape=(12, 8, 12))
    with inference_process_pool(2) as pool:
        pooled = predict_volume(
            model_path, image, tmp_path / "pool", block_shape=(12, 8, 12), executor=pool,
            batch_size=2, num_threads=1,
        )  # fmt: skip
    assert pooled.blocks_done == sequential.blocks_done == 18
    # Other thread counts and batch sizes sum in another order: float32 rounding only.
    np.testing.assert_allclose(
        _read(pooled.probability_path), _read(sequential.probability_path), atol=1e-5
    )
    np.testing.assert_allclose(
        _read(pooled.distance_path),
        _read(sequential.distance_path),
        atol=0.05,  # nm
    )
    fork_pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    with fork_pool, pytest.raises(InvalidInputError, match="inference_process_pool"):
        predict_volume(model_path, image, tmp_path / "fork", executor=fork_pool)


def test_ome_zarr_input_gives_voxel_size_and_same_result(
    model_path: Path, image: np.ndarray, tmp_path: Path
) -> None:
    store = write_reference_ome_zarr(
        tmp_path / "image.ome.zarr", image, {}, version="0.5",
        scale={"z": 0.4, "y": 0.2, "x": 0.2},
    )  # fmt: skip
    from_zarr = predict_volume(model_path, store, tmp_path / "a", block_shape=(12, 8, 12))
    from_array = predict_volume(model_path, image, tmp_path / "b", block_shape=(12, 8, 12))
    assert open_multiscale(from_zarr.probability_path).voxel_size == pytest.approx((400, 200, 200))
    np.testing.assert_allclose(
        _read(from_zarr.probability_path), _read(from_array.probability_path)
    )


def _main(argv: list[str]) -> int:
    """Like ``pipeline.cli.main``, with the train and predict commands."""
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers(required=True)
    train_command.register(subparsers)
    predict_command.register(subparsers)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except PipelineError:
        return 2


def test_train_and_predict_command_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
        "training: {patch_shape: [52], batch_size: 1, max_epochs: 1, iterations_per_epoch: 1,\n"
        "           device: cpu, max_val_patches: 1}\n"
    )
    # One step learns nothing: no validation object, so --allow-empty (else exit 3).
    train_argv = ["train", "--config", str(config), "--out", str(tmp_path / "model")]
    assert _main([*train_argv, "--allow-empty"]) == 0
    model = load_model(tmp_path / "model" / "best.pt")
    assert model.voxel_size == VOXEL and model.metadata["val_boxes"] in (["a"], ["b"])
    assert model.segment_params is not None and model.segment_params.source == "fitted"
    assert (tmp_path / "model" / "segment_fit.csv").is_file()  # the settings tried after training
    out = tmp_path / "pred"
    argv = ["predict", "--model", str(tmp_path / "model" / "best.pt"), str(tmp_path / "image.npy"),
            str(out), "--block", "12"]  # fmt: skip
    assert _main(argv) == 3  # a model trained one step forms no seed: a warning, exit 3
    assert _main([*argv, "--allow-empty"]) == 0
    assert _read(out / "distance.ome.zarr").shape == image.shape
    assert "(percentiles 1 and 99.8 of this image)" in capsys.readouterr().out
    # predict.json names the model file, so that `segment` finds its fitted settings.
    recorded = json.loads((out / "predict.json").read_text())["model"]
    assert recorded == str((tmp_path / "model" / "best.pt").resolve())

    config.write_text(config.read_text().replace("width: 2", "width: 2, wdith: 3"))
    assert _main(["train", "--config", str(config), "--out", str(tmp_path / "m2")]) == 2
    (tmp_path / "boxes.csv").write_text("x,y,z,w,h,d\n0,0,0,10,10,10\n")
    np.save(tmp_path / "labels.npy", np.zeros_like(labels))
    config.write_text(config.read_text().replace(", wdith: 3", ""))
    assert _main(["train", "--config", str(config), "--out", str(tmp_path / "m3")]) == 2
    assert _main(["predict", "--model", str(tmp_path / "missing.pt"), "x.npy", str(out)]) == 2
