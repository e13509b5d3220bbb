"""A training set of several images in several formats (OME-Zarr, HDF5, TIFF, .npy)."""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import yaml

from pipeline.commands import train as train_command
from pipeline.config import load_config
from pipeline.errors import InvalidInputError, PipelineError
from pipeline.importers import convert_to_ome_zarr
from pipeline.model_io import load_model
from pipeline.run import run_pipeline
from pipeline.synthetic import make_nuclei_volume
from pipeline.training_set import training_boxes, training_images_read
from pipeline.volumes import open_volume

SHAPE = (16, 32, 32)
TINY = {"patch_shape": [44], "batch_size": 1, "max_epochs": 1, "iterations_per_epoch": 1}
TINY_RUN = {**TINY, "device": "cpu", "max_val_patches": 1, "num_threads": 1}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same kind of nuclei in three files: OME-Zarr (200 nm), HDF5 (300 nm), TIFF (.npy
    labels, 250 nm), each with a box table of its own form."""
    root = tmp_path_factory.mktemp("images")
    for k, (voxel, name) in enumerate(((200.0, "a"), (300.0, "b"), (250.0, "c"))):
        image, labels = make_nuclei_volume(SHAPE, 4, seed=k, voxel_size_nm=400.0)
        np.save(root / f"{name}_labels.npy", labels)
        if name == "a":
            np.save(root / "a.npy", image)
            convert_to_ome_zarr(
                root / "a.npy",
                root / "a",
                voxel_size=(voxel,) * 3,
                unit="nm",
                labels={"nuclei": root / "a_labels.npy"},
            )
        elif name == "b":
            with h5py.File(root / "b.h5", "w") as f:
                f.create_dataset("volume/raw", data=image).attrs["element_size_um"] = [0.3] * 3
                f.create_dataset("volume/labels", data=labels)
        else:
            tifffile.imwrite(root / "c.tif", image)
    (root / "a.csv").write_text("name,x,y,z,w,h,d\nleft,0,0,0,16,32,16\nright,16,0,0,16,32,16\n")
    (root / "b.csv").write_text("name,x0,y0,z0,x1,y1,z1\nall,0,0,0,32,32,16\n")
    (root / "c.csv").write_text("name,x_nm,y_nm,z_nm,w_nm,h_nm,d_nm\nall,0,0,0,8000,8000,4000\n")
    return root


def entries(root: Path) -> list[dict[str, object]]:
    return [
        {
            "image": str(root / "a" / "image.ome.zarr"),
            "labels": str(root / "a" / "image.ome.zarr" / "labels" / "nuclei"),
            "boxes": str(root / "a.csv"),
        },
        {
            "image": str(root / "b.h5") + ":/volume/raw",
            "labels": str(root / "b.h5") + ":volume/labels",
            "boxes": str(root / "b.csv"),
        },
        {
            "image": str(root / "c.tif"),
            "labels": str(root / "c_labels.npy"),
            "boxes": str(root / "c.csv"),
            "voxel_size": [250],
        },
    ]


def test_hdf5_and_tiff_volumes_open_lazily_with_their_voxel_size(images: Path) -> None:
    h5 = open_volume(images / "b.h5:/volume/raw")
    assert h5.voxel_size == pytest.approx((300.0,) * 3) and h5.array.shape == SHAPE
    assert np.asarray(h5.array[2:4, 5, :]).shape == (2, 32)
    tif = open_volume(images / "c.tif")
    assert tif.array.shape == SHAPE and np.asarray(tif.array[1, 2:5]).shape == (3, 32)
    with pytest.raises(InvalidInputError, match="holds 2 datasets"):
        open_volume(images / "b.h5")
    with pytest.raises(InvalidInputError, match="no dataset 'volume/nothing'"):
        open_volume(images / "b.h5:volume/nothing")


def test_config_lists_images_and_checks_every_table_at_load(images: Path, tmp_path: Path) -> None:
    data = {
        "data": {"image": str(images / "c.tif"), "voxel_size": [250], "images": entries(images)},
        "model": {"width": 2, "depth": 1},
        "training": TINY_RUN,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    assert len(config.training_images()) == 3
    boxes, voxel = training_boxes(config.training_images())
    assert [b.name for b in boxes] == ["a/left", "a/right", "b/all", "c/all"]
    assert [b.voxel_size for b in boxes] == [(200.0,) * 3] * 2 + [(300.0,) * 3, (250.0,) * 3]
    assert boxes[3].box == (0, 0, 0, 16, 32, 32) and voxel == (200.0,) * 3

    data["data"]["images"][1]["boxes"] = str(images / "a.csv")  # type: ignore[index]
    (tmp_path / "bad.csv").write_text("name,x,y,z,w,h,d\nbig,0,0,0,33,8,8\n")
    data["data"]["images"][2]["boxes"] = str(tmp_path / "bad.csv")  # type: ignore[index]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InvalidInputError, match=r"data\.images\[2\]\.boxes: .*bad\.csv: line 2"):
        load_config(path)
    data["data"]["images"][2]["labels"] = str(images / "a" / "image.ome.zarr")  # type: ignore[index]
    data["data"]["images"][2]["boxes"] = str(images / "c.csv")  # type: ignore[index]
    np.save(tmp_path / "small.npy", np.zeros((4, 4, 4), np.uint8))
    data["data"]["images"][2]["labels"] = str(tmp_path / "small.npy")  # type: ignore[index]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InvalidInputError, match=r"data\.images\[2\]\.labels: .*shape"):
        load_config(path)


def test_run_trains_on_a_list_of_images(images: Path, tmp_path: Path) -> None:
    data = {
        "data": {"image": str(images / "c.tif"), "voxel_size": [250], "images": entries(images)},
        "model": {"width": 2, "depth": 1},
        "training": TINY_RUN,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run_pipeline(load_config(path), tmp_path / "out", steps=["train"])
    model = load_model(Path(result.outputs["train.best_checkpoint"]))
    names = model.metadata["train_boxes"] + model.metadata["val_boxes"]
    assert sorted(names) == ["a/left", "a/right", "b/all", "c/all"]


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    train_command.register(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except PipelineError:
        return 2


def test_train_command_takes_triples_or_a_yaml_list(images: Path, tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"image": str(images / "c.tif"), "voxel_size": [250]},
                "model": {"width": 2, "depth": 1},
                "training": TINY_RUN,
            }
        )
    )
    # one step trains nothing useful: --allow-empty accepts a model that finds no object
    argv = ["train", "--config", str(config), "--out", str(tmp_path / "m1"), "--allow-empty"]
    for entry in entries(images)[:2]:
        argv += ["--image", str(entry["image"]), "--labels", str(entry["labels"])]
        argv += ["--boxes", str(entry["boxes"])]
    assert _main(argv) == 0
    model = load_model(tmp_path / "m1" / "best.pt")
    assert sorted(model.metadata["train_boxes"] + model.metadata["val_boxes"]) == [
        "a/left",
        "a/right",
        "b/all",
    ]
    listing = tmp_path / "images.yaml"
    listing.write_text(yaml.safe_dump(entries(images)[1:]))
    assert [e.voxel_size for e in training_images_read(listing)] == [None, (250.0,)]
    argv = [
        "train",
        "--config",
        str(config),
        "--images",
        str(listing),
        "--out",
        str(tmp_path / "m2"),
        "--allow-empty",
    ]
    assert _main(argv) == 0
    assert load_model(tmp_path / "m2" / "best.pt").metadata["train_boxes"]
    assert _main(["train", "--image", "x.npy", "--labels", "y.npy"]) == 2


def test_multichannel_images_open_channels_first(tmp_path: Path) -> None:
    image = np.random.default_rng(0).random((3, 20, 30)).astype(np.float32)
    np.save(tmp_path / "a.npy", image)
    convert_to_ome_zarr(tmp_path / "a.npy", tmp_path / "o", voxel_size=(250.0,) * 2, axes="cyx")
    zarr_volume = open_volume(tmp_path / "o" / "image.ome.zarr", channels=3)
    assert zarr_volume.array.shape == (3, 20, 30) and zarr_volume.voxel_size == (250.0, 250.0)
    np.testing.assert_allclose(zarr_volume.array[:, 2:5, 3:9], image[:, 2:5, 3:9])
    npy = open_volume(tmp_path / "a.npy", voxel_size=(250.0,), channels=3)
    assert npy.voxel_size == (250.0, 250.0)
    with pytest.raises(InvalidInputError, match="expected 2 channels first"):
        open_volume(tmp_path / "a.npy", channels=2)
