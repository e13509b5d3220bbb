"""``python -m pipeline predict --model MODEL.pt IMAGE OUT_DIR``: probability and distance maps.

IMAGE is anything :func:`pipeline.volumes.open_volume` reads (OME-Zarr with ``--level``, TIFF,
``.npy``, HDF5 ``file.h5:/dataset``); OUT_DIR receives
``probability.ome.zarr`` and ``distance.ome.zarr``. A rerun into the same OUT_DIR resumes.
A distance map that never exceeds the seed threshold (``--seed-threshold``, default: the model's
recorded segmentation settings, else the published 705.6 nm) is a warning and exit status 3
unless ``--allow-empty``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pipeline.empty_results import add_allow_empty_argument, predict_empty, report_empty
from pipeline.errors import InvalidInputError


def model_seed_threshold(metadata: dict[str, Any]) -> float:
    """The seed threshold (nm) the model's metadata records, else the published default."""
    from pipeline.watershed import DEFAULT_SEED_THRESHOLD_NM

    params = metadata.get("segment_params")
    if isinstance(params, dict) and isinstance(params.get("seed_threshold_nm"), int | float):
        return float(params["seed_threshold_nm"])
    return DEFAULT_SEED_THRESHOLD_NM


def run(args: argparse.Namespace) -> int:
    from pipeline.model_io import load_model
    from pipeline.predict import predict_volume
    from pipeline.progress import tqdm_progress
    from pipeline.torch_setup import inference_process_pool
    from pipeline.volumes import open_volume

    model = load_model(Path(args.model), args.device)
    voxel_size = tuple(args.voxel_size) if args.voxel_size else None
    volume = open_volume(Path(args.image), args.level, voxel_size, "image")
    image, recorded = volume.array, volume.voxel_size
    ndim = len(image.shape)
    mask = open_volume(Path(args.mask), 0, None, "mask").array if args.mask else None
    block = None
    if args.block:
        if len(args.block) not in (1, ndim):
            raise InvalidInputError(f"--block needs 1 or {ndim} values for a {ndim}D image")
        block = tuple(args.block) * (ndim if len(args.block) == 1 else 1)
    if args.workers < 1:
        raise InvalidInputError("--workers must be at least 1")
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    executor = inference_process_pool(args.workers) if args.workers > 1 else None
    try:
        result = predict_volume(
            Path(args.model) if executor is not None else model,
            image,
            Path(args.out_dir),
            block_shape=block,
            mask=mask,
            voxel_size=recorded,
            executor=executor,
            batch_size=args.batch_size,
            compile=args.compile,
            num_threads=threads,
            device=args.device,
            flips=args.flips,
            progress=tqdm_progress("batch"),
        )
    finally:
        if executor is not None:
            executor.shutdown()
    if result.scaling is not None:
        normalisation = model.normalisation
        how = (
            "the training image's mean and std"
            if normalisation.method == "meanstd"
            else "percentiles {:g} and {:g} of this image".format(*normalisation.percentiles)
        )
        print(
            f"intensities normalised as (x - {result.scaling.offset:.6g}) / "
            f"{result.scaling.scale:.6g} ({how})"
        )
    print(
        f"{result.blocks_done} blocks predicted, {result.blocks_skipped} outside the mask, "
        f"{result.blocks_resumed} already done (block {result.block_shape}); "
        f"written to {args.out_dir}"
    )
    threshold = (
        args.seed_threshold
        if args.seed_threshold is not None
        else model_seed_threshold(model.metadata)
    )
    return report_empty([predict_empty(result.distance_max_nm, threshold)], args.allow_empty)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict probability and distance maps block by block", description=__doc__
    )
    parser.add_argument("--model", required=True, help="model file written by train")
    parser.add_argument(
        "image", help="OME-Zarr, TIFF, .npy or file.h5:/dataset; (z, y, x) or (y, x)"
    )
    parser.add_argument("out_dir", help="output directory (resumed if it holds a prediction)")
    parser.add_argument("--level", type=int, default=0, help="OME-Zarr pyramid level")
    parser.add_argument(
        "--block", type=int, nargs="+", default=None, metavar="N",
        help="output block per axis, a valid U-Net output size (default ~128)",
    )  # fmt: skip
    parser.add_argument("--mask", default=None, help="tissue mask (same or coarser grid)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    parser.add_argument("--batch-size", type=int, default=1, help="blocks per forward pass")
    parser.add_argument("--compile", action="store_true", help="torch.compile (CPU ~1.5x)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument(
        "--flips", action=argparse.BooleanOptionalAction, default=None,
        help="average the prediction over mirrored copies along y and x (4x the work; "
        "default: on for 2D models, off for 3D)",
    )  # fmt: skip
    parser.add_argument(
        "--voxel-size", type=float, nargs="+", default=None, metavar="NM",
        help="voxel size in nm (default: from the OME-Zarr, else the model's)",
    )  # fmt: skip
    parser.add_argument(
        "--seed-threshold", type=float, default=None, metavar="NM",
        help="seed threshold the empty-map check uses (default: the model's, else 705.6)",
    )  # fmt: skip
    add_allow_empty_argument(parser)
    parser.set_defaults(func=run)
