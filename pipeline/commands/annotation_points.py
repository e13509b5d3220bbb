"""``python -m pipeline annotation-points TABLE LABELS OUT``: detections as Neuroglancer points."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidInputError


def run(args: argparse.Namespace) -> int:
    """Write the points of a detections table as a precomputed annotation source."""
    import pandas as pd

    from pipeline.annotation_points import DEFAULT_LIMIT, write_detection_points_of_store

    for path in (args.table, args.labels):
        if not path.exists():
            raise InvalidInputError(f"{path} does not exist")
    try:
        table = (
            pd.read_parquet(args.table)
            if args.table.suffix == ".parquet"
            else pd.read_csv(args.table)
        )
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read the table {args.table.name}: {exc}") from None
    result = write_detection_points_of_store(
        table,
        args.labels,
        args.out,
        limit=DEFAULT_LIMIT if args.limit is None else args.limit,
        seed=args.seed,
    )
    levels = ", ".join(f"{level.cells} x <= {level.limit}" for level in result.levels)
    print(f"{result.n_points} points in {len(result.levels)} levels ({levels}): {result.path}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``annotation-points`` subcommand."""
    parser = subparsers.add_parser(
        "annotation-points",
        help="detections table as Neuroglancer precomputed point annotations",
        description=(
            "Write every detection of TABLE (CSV or Parquet, as `detections` writes it) as a "
            "point at its centroid, with its volume and sphericity and its segment id as the "
            "segment_id relationship, in Neuroglancer's precomputed annotation format with a "
            "multi-level spatial index (at most LIMIT points per cell) and sharded id indexes. "
            "LABELS (the OME-Zarr label image the table measures) gives the voxel size, origin "
            "and bounds. OUT is replaced as a whole."
        ),
    )
    parser.add_argument("table", type=Path, help="detections table (.csv or .parquet)")
    parser.add_argument("labels", type=Path, help="OME-Zarr label image of the table")
    parser.add_argument("out", type=Path, help="output directory (the annotation source)")
    parser.add_argument(
        "--limit", type=int, default=None, help="most points per spatial-index cell (500)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsampling")
    parser.set_defaults(func=run)
