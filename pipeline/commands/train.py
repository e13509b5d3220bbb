"""``python -m pipeline train --config CONFIG``: train the U-Net on ground-truth boxes.

The config (YAML or TOML, see :mod:`pipeline.config`) names the image and the instance labels
(OME-Zarr, or ``.npy`` with ``data.voxel_size``), a boxes CSV (``z0,y0,x0,z1,y1,x1`` or the
published ``x,y,z,w,h,d``), the ``model`` architecture and the ``training`` parameters.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import InvalidInputError


def read_boxes(
    path: Path, shape: tuple[int, ...], voxel_size: tuple[float, ...] | None = None
) -> list[tuple[str, tuple[int, ...]]]:
    """(name, (starts..., stops...)) per row of a box table (:mod:`pipeline.box_table`)."""
    from pipeline.box_table import box_table_read

    return [(b.name, b.corners) for b in box_table_read(path, shape=shape, voxel_size=voxel_size)]


def run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.progress import tqdm_progress
    from pipeline.training import TrainingBox, train
    from pipeline.volumes import open_volume

    config = load_config(args.config)
    data = config.data
    if data.labels is None or data.boxes is None:
        raise InvalidInputError("training needs data.labels and data.boxes in the config")
    image_volume = open_volume(data.image, data.level, data.voxel_size, "image")
    image, voxel_size = image_volume.array, image_volume.voxel_size
    labels = open_volume(data.labels, data.level, None, "labels").array
    shape = tuple(int(n) for n in image.shape)
    if voxel_size is None:
        raise InvalidInputError("data.voxel_size (nm) is needed for .npy images")
    if len(shape) != config.model.unet.dims:
        raise InvalidInputError(
            f"image shape {shape} is not {config.model.unet.dims}D as the model section says"
        )
    if tuple(labels.shape) != shape:
        raise InvalidInputError(f"labels shape {tuple(labels.shape)} differs from image {shape}")
    boxes = read_boxes(data.boxes, shape, tuple(voxel_size))
    ndim = len(shape)
    if not any(
        np.any(np.asarray(labels[tuple(slice(b[i], b[ndim + i]) for i in range(ndim))]))
        for _, b in boxes
    ):
        raise InvalidInputError("empty ground truth: no labelled voxel in any box")
    out = Path(args.out) if args.out else (config.out or Path(".")) / "model"
    result = train(
        [TrainingBox(image, labels, box, name) for name, box in boxes],
        config.train_config(tuple(voxel_size)),
        out,
        resume=args.resume,
        progress=tqdm_progress(),
    )
    print(
        f"{result.epochs} epochs, best validation loss {result.best_val_loss:.4g}; "
        f"model {result.best_checkpoint}, history {result.history_csv}"
    )
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train", help="train the U-Net on ground-truth boxes", description=__doc__
    )
    parser.add_argument("--config", required=True, type=Path, help="YAML or TOML config file")
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: OUT/model)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.set_defaults(func=run)
