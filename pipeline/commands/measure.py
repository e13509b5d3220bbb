"""``python -m pipeline measure LABELS_ZARR OUT_DIR``: detections table and meshes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.empty_results import add_allow_empty_argument, report_empty, table_empty
from pipeline.errors import InvalidInputError
from pipeline.progress import tqdm_progress

# Same as pipeline.meshing.DEFAULT_SIMPLIFY_RATIO; meshing is imported only when the command runs.
DEFAULT_SIMPLIFY_RATIO = 0.05


def run(args: argparse.Namespace) -> int:
    """Measure, mesh, flag, and print a summary."""
    from pipeline.measure import measure_labels

    if (args.t_volume is None) != (args.t_sphericity is None):
        raise InvalidInputError("give both --t-volume and --t-sphericity, or neither")
    if not args.labels.exists():
        raise InvalidInputError(f"{args.labels} does not exist")
    result = measure_labels(
        args.labels,
        args.out_dir,
        t_volume=args.t_volume,
        t_sphericity=args.t_sphericity,
        simplify_ratio=args.simplify_ratio,
        progress=tqdm_progress("block", {"meshing": "object"}),
    )
    print(
        f"{result.n_objects} objects measured, {result.n_kept} kept: "
        f"{result.detections_csv}, {result.detections_parquet.name}, meshes in {result.meshes_dir}"
    )
    return report_empty([table_empty("measure", result.n_objects)], args.allow_empty)


def register(subparsers: Any) -> None:
    """Add the ``measure`` subcommand."""
    parser = subparsers.add_parser(
        "measure",
        help="detections table (morphometrics + filter flag) and meshes of a label image",
        description=(
            "Measure every object of an OME-Zarr label image (voxels, volume in um^3, surface in "
            "um^2, sphericity, centroid, bounding box), flag those kept by the volume/sphericity "
            "filter, and write detections.csv/.parquet plus precomputed meshes under OUT_DIR."
        ),
    )
    parser.add_argument("labels", type=Path, help="OME-Zarr label image (NGFF 0.4 or 0.5)")
    parser.add_argument("out_dir", type=Path, help="output directory")
    parser.add_argument("--t-volume", type=float, default=None, help="volume threshold, um^3")
    parser.add_argument("--t-sphericity", type=float, default=None, help="sphericity threshold")
    parser.add_argument(
        "--simplify-ratio",
        type=float,
        default=DEFAULT_SIMPLIFY_RATIO,
        help=f"fraction of mesh faces kept for display (default {DEFAULT_SIMPLIFY_RATIO})",
    )
    add_allow_empty_argument(parser)
    parser.set_defaults(func=run)
