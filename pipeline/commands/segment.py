"""``python -m pipeline segment DISTANCE OUT.zarr``: seeded watershed over a whole distance map.

Zero objects is a warning and exit status 3 unless ``--allow-empty``.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from pipeline.block_merge import DEFAULT_IOU_THRESHOLD
from pipeline.empty_results import add_allow_empty_argument, report_empty, segment_empty
from pipeline.errors import InvalidInputError
from pipeline.progress import tqdm_progress
from pipeline.segment import segment_volume
from pipeline.volumes import open_volume
from pipeline.watershed import DEFAULT_SEED_THRESHOLD_NM


def run(args: argparse.Namespace) -> int:
    volume = open_volume(Path(args.distance), what="distance map")
    distance = volume.array
    ndim = len(distance.shape)
    voxel_size = tuple(args.voxel_size) if args.voxel_size else volume.voxel_size
    for name, values in (
        ("--block", args.block),
        ("--voxel-size", voxel_size),
        ("--halo", args.halo),
    ):
        if values is not None and len(values) not in (1, ndim):
            raise InvalidInputError(f"{name} needs 1 or {ndim} values for a {ndim}D map")
    block = tuple(args.block) * (ndim if len(args.block) == 1 else 1)
    halo = None if args.halo is None else tuple(args.halo) * (ndim if len(args.halo) == 1 else 1)
    if voxel_size is not None and len(voxel_size) == 1:
        voxel_size = voxel_size * ndim
    executor = ProcessPoolExecutor(max_workers=args.workers) if args.workers > 1 else None
    try:
        result = segment_volume(
            distance,
            Path(args.out),
            block_shape=block,
            halo=halo,
            voxel_size=voxel_size,
            seed_threshold=args.seed_threshold,
            iou_threshold=args.iou,
            executor=executor,
            progress=tqdm_progress(),
            name=args.name,
        )
    finally:
        if executor is not None:
            executor.shutdown()
    print(
        f"{result.n_objects} objects ({result.n_segments} block segments, "
        f"{result.n_merged} merged across faces) written to {args.out}"
    )
    return report_empty([segment_empty(result.n_objects)], args.allow_empty)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="seeded watershed of a distance map, block by block, into an OME-Zarr label image",
        description=__doc__,
    )
    parser.add_argument("distance", help="distance map in nm: .npy, zarr array or OME-Zarr image")
    parser.add_argument("out", help="label image to create (NGFF 0.5 .zarr directory)")
    parser.add_argument("--block", type=int, nargs="+", default=[128], metavar="N")
    parser.add_argument(
        "--halo",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="context voxels per axis (default: 2 x seed threshold / voxel size)",
    )
    parser.add_argument("--seed-threshold", type=float, default=DEFAULT_SEED_THRESHOLD_NM)
    parser.add_argument("--iou", type=float, default=DEFAULT_IOU_THRESHOLD)
    parser.add_argument(
        "--voxel-size",
        type=float,
        nargs="+",
        default=None,
        metavar="NM",
        help="voxel size in nm, z y x (default: from the OME-Zarr metadata)",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--name", default="nuclei", help="label image name")
    add_allow_empty_argument(parser)
    parser.set_defaults(func=run)
