"""``python -m pipeline train``: train the U-Net on ground-truth boxes of one or more images.

The training set is, in order of precedence: ``--image/--labels/--boxes`` triples (repeat them
for several images), a YAML list of ``{image, labels, boxes, voxel_size?, semantic?}`` entries
(``--images``), or the config's ``data.images`` (or ``data.image/labels/boxes``). Images and
labels are any format :func:`pipeline.volumes.open_volume` reads (OME-Zarr, TIFF, ``.npy``,
``file.h5:/dataset``); box tables are :mod:`pipeline.box_table` tables. The ``model`` and
``training`` sections come from ``--config`` (YAML or TOML, see :mod:`pipeline.config`); without
one, the defaults for the images' dimensions.
A training whose every attempt fails the health check exits 2 with what was seen and what to
try; a kept model that segments no object in the validation boxes is a warning and exit 3
unless ``--allow-empty``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from pipeline.empty_results import add_allow_empty_argument, report_empty, validation_empty
from pipeline.errors import InvalidInputError


def read_boxes(
    path: Path, shape: tuple[int, ...], voxel_size: tuple[float, ...] | None = None
) -> list[tuple[str, tuple[int, ...]]]:
    """(name, (starts..., stops...)) per row of a box table (:mod:`pipeline.box_table`)."""
    from pipeline.box_table import box_table_read

    return [(b.name, b.corners) for b in box_table_read(path, shape=shape, voxel_size=voxel_size)]


def _cli_images(args: argparse.Namespace) -> list[Any]:
    from pipeline.config import TrainingImage
    from pipeline.training_set import training_images_read

    triples = [args.image or [], args.labels or [], args.boxes or []]
    if any(triples):
        if len({len(t) for t in triples}) != 1:
            raise InvalidInputError(
                "give --image, --labels and --boxes once per training image "
                f"(got {len(triples[0])}, {len(triples[1])} and {len(triples[2])})"
            )
        voxel = tuple(args.voxel_size) if args.voxel_size else None
        return [
            TrainingImage(Path(i), Path(lab), Path(b), voxel)
            for i, lab, b in zip(*triples, strict=True)
        ]
    if args.images:
        return training_images_read(args.images)
    return []


def run(args: argparse.Namespace) -> int:
    from pipeline.config import TrainingImage, load_config
    from pipeline.progress import PIPELINE_STAGE_UNITS, tqdm_progress
    from pipeline.training import train
    from pipeline.training_auto import choose_train_config
    from pipeline.training_set import training_boxes
    from pipeline.unet import UNetConfig
    from pipeline.volumes import open_volume

    config = load_config(args.config) if args.config else None
    images: list[TrainingImage] = _cli_images(args)
    if not images and config is not None:
        images = config.training_images()
    if not images:
        raise InvalidInputError(
            "no training images: give --image/--labels/--boxes, --images, or a config with "
            "data.labels and data.boxes (or data.images)"
        )
    if config is not None:
        unet_base = config.model.unet
        unet_keys: tuple[str, ...] | None = config.model.unet_keys
        given = dict(config.training)
        anisotropy = config.model.anisotropy
    else:
        first = open_volume(images[0].image, images[0].level, images[0].voxel_size, "image")
        unet_base = UNetConfig(dims=len(first.array.shape))
        unet_keys, given, anisotropy = ("dims",), {}, "auto"
    boxes, voxel_size = training_boxes(images, channels=unet_base.in_channels)
    spatial = len(boxes[0].box) // 2
    if spatial != unet_base.dims:
        raise InvalidInputError(f"the images are {spatial}D but the model is {unet_base.dims}D")
    train_config = choose_train_config(
        unet_base, unet_keys, given, voxel_size=voxel_size, boxes=boxes, anisotropy=anisotropy
    )
    out = Path(args.out) if args.out else ((config.out if config else None) or Path(".")) / "model"
    result = train(boxes, train_config, out, resume=args.resume, progress=tqdm_progress("step"))
    f1 = "" if math.isnan(result.best_val_f1) else f", object F1 {result.best_val_f1:.3f}"
    restarts = f" after {len(result.restarts)} restart(s)" if result.restarts else ""
    print(
        f"{len(images)} image(s), {len(boxes)} boxes: {result.epochs} epochs{restarts}; kept "
        f"epoch {result.best_epoch}: validation loss {result.best_val_loss:.4g}{f1}; "
        f"model {result.best_checkpoint}, "
        f"history {result.history_csv}"
    )
    from pipeline.commands.run import describe_fit
    from pipeline.run import fit_and_record

    recorded = fit_and_record(
        result.best_checkpoint,
        boxes,
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
    parser.add_argument("--config", type=Path, default=None, help="YAML or TOML config file")
    parser.add_argument(
        "--image", action="append", help="a training image (repeat with --labels and --boxes)"
    )
    parser.add_argument("--labels", action="append", help="its instance labels")
    parser.add_argument("--boxes", action="append", help="its box table (CSV)")
    parser.add_argument(
        "--voxel-size", type=float, nargs="+", metavar="NM", help="voxel size of --image inputs"
    )
    parser.add_argument(
        "--images", type=Path, default=None, help="YAML list of {image, labels, boxes} entries"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: OUT/model)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    add_allow_empty_argument(parser)
    parser.set_defaults(func=run)
