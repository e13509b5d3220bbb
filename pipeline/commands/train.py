"""``python -m pipeline train --config CONFIG``: train the U-Net on ground-truth boxes.

The config (YAML or TOML, see :mod:`pipeline.config`) names the image and the instance labels
(OME-Zarr, or ``.npy`` with ``data.voxel_size``), a boxes CSV (``z0,y0,x0,z1,y1,x1`` or the
published ``x,y,z,w,h,d``), the ``model`` architecture and the ``training`` parameters.
A training whose every attempt fails the health check exits 2 with what was seen and what to
try; a kept model that segments no object in the validation boxes is a warning and exit 3
unless ``--allow-empty``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.empty_results import add_allow_empty_argument, report_empty, validation_empty
from pipeline.errors import InvalidInputError

CORNER_COLUMNS = {3: ("z0", "y0", "x0", "z1", "y1", "x1"), 2: ("y0", "x0", "y1", "x1")}
NAME_COLUMNS = ("name", "box", "box_name", "bbox_ID", "id")


def read_boxes(path: Path, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """(name, (starts..., stops...)) per row: corner columns, or the published x,y,z,w,h,d."""
    ndim = len(shape)
    try:
        table = pd.read_csv(path, encoding="utf-8-sig")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path.name}: cannot read the boxes table ({exc})")
    corners = CORNER_COLUMNS[ndim]
    boxes: list[tuple[str, tuple[int, ...]]] = []
    if all(c in table.columns for c in corners):
        name_col = next((c for c in NAME_COLUMNS if c in table.columns), None)
        for i, row in table.iterrows():
            name = str(row[name_col]) if name_col else f"box{i}"
            boxes.append((name, tuple(int(row[c]) for c in corners)))
    else:
        from pipeline.evaluation import boxes_read_csv

        for row_box in boxes_read_csv(path, ndim=ndim):
            stops = tuple(s + n for s, n in zip(row_box.start, row_box.size, strict=True))
            boxes.append((row_box.name, (*row_box.start, *stops)))
    if not boxes:
        raise InvalidInputError(f"{path.name}: the boxes table has no rows")
    for name, box in boxes:
        starts, stops = box[:ndim], box[ndim:]
        if any(not 0 <= a < b <= n for a, b, n in zip(starts, stops, shape, strict=True)):
            raise InvalidInputError(f"{path.name}: box {name} {box} is empty or outside {shape}")
    return boxes


def run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.progress import PIPELINE_STAGE_UNITS, tqdm_progress
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
    boxes = read_boxes(data.boxes, shape)
    ndim = len(shape)
    if not any(
        np.any(np.asarray(labels[tuple(slice(b[i], b[ndim + i]) for i in range(ndim))]))
        for _, b in boxes
    ):
        raise InvalidInputError("empty ground truth: no labelled voxel in any box")
    out = Path(args.out) if args.out else (config.out or Path(".")) / "model"
    training_boxes = [TrainingBox(image, labels, box, name) for name, box in boxes]
    train_config = config.train_config(tuple(voxel_size))
    result = train(
        training_boxes, train_config, out, resume=args.resume, progress=tqdm_progress("step")
    )
    f1 = "" if math.isnan(result.best_val_f1) else f", object F1 {result.best_val_f1:.3f}"
    restarts = f" after {len(result.restarts)} restart(s)" if result.restarts else ""
    print(
        f"{result.epochs} epochs{restarts}; kept epoch {result.best_epoch}: validation loss "
        f"{result.best_val_loss:.4g}{f1}; model {result.best_checkpoint}, "
        f"history {result.history_csv}"
    )
    from pipeline.commands.run import describe_fit
    from pipeline.run import fit_and_record

    recorded = fit_and_record(
        result.best_checkpoint,
        training_boxes,
        train_config,
        tqdm_progress("step", PIPELINE_STAGE_UNITS),
    )
    print(describe_fit(recorded["segment_fit"]))
    for restart in result.restarts:
        print(f"restarted after attempt {restart.attempt + 1}: {'; '.join(restart.problems)}")
    return report_empty([validation_empty(result.val_objects)], args.allow_empty)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train", help="train the U-Net on ground-truth boxes", description=__doc__
    )
    parser.add_argument("--config", required=True, type=Path, help="YAML or TOML config file")
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: OUT/model)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    add_allow_empty_argument(parser)
    parser.set_defaults(func=run)
