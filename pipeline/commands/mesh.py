"""``python -m pipeline mesh LABELS_ZARR OUT_DIR``: precomputed meshes and morphometrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.empty_results import add_allow_empty_argument, report_empty, table_empty
from pipeline.progress import tqdm_progress

# Same as pipeline.meshing.DEFAULT_SIMPLIFY_RATIO and MESH_FORMATS; the command imports meshing
# only when it runs so that ``python -m pipeline --help`` stays fast.
DEFAULT_SIMPLIFY_RATIO = 0.05
MESH_FORMATS = ("multires", "legacy")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``mesh`` subcommand."""
    parser = subparsers.add_parser(
        "mesh",
        help="mesh every object of an OME-Zarr label image (Neuroglancer precomputed)",
        description="Write Neuroglancer precomputed meshes, segment properties and a "
        "morphometrics table (CSV + Parquet) for every object of a label image.",
    )
    parser.add_argument("labels", type=Path, help="OME-Zarr label image (NGFF 0.4 or 0.5)")
    parser.add_argument("out_dir", type=Path, help="output directory (replaced when done)")
    parser.add_argument("--level", type=int, default=0, help="pyramid level to mesh (default 0)")
    parser.add_argument(
        "--simplify-ratio",
        type=float,
        default=DEFAULT_SIMPLIFY_RATIO,
        help=f"fraction of faces kept for display (default {DEFAULT_SIMPLIFY_RATIO})",
    )
    parser.add_argument(
        "--format",
        choices=MESH_FORMATS,
        default=MESH_FORMATS[0],
        help="multires: sharded multi-resolution Draco meshes (default); legacy: a manifest "
        "and a fragment file per object",
    )
    add_allow_empty_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the meshes and print what was written."""
    from pipeline.meshing import build_meshes

    bar = tqdm_progress("block", {"meshing": "object"})

    def progress(stage: str, done: int, total: int) -> None:
        bar(stage, done, total)

    result = build_meshes(
        args.labels,
        args.out_dir,
        level=args.level,
        simplify_ratio=args.simplify_ratio,
        mesh_format=args.format,
        progress=progress,
    )
    print(f"{result.n_objects} objects meshed into {args.out_dir} ({result.properties_csv})")
    return report_empty([table_empty("mesh", result.n_objects)], args.allow_empty)
