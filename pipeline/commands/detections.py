"""``python -m pipeline detections LABELS OUT``: the detections table of a label image."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.empty_results import add_allow_empty_argument, report_empty, table_empty
from pipeline.errors import InvalidInputError
from pipeline.progress import tqdm_progress


def run(args: argparse.Namespace) -> int:
    """Measure every object block by block and write ``OUT.csv`` and ``OUT.parquet``."""
    from pipeline.detections import measure_detections_of_store
    from pipeline.morphometrics import write_table

    for path in (args.labels, args.image, args.meshes):
        if path is not None and not path.exists():
            raise InvalidInputError(f"{path} does not exist")
    table = measure_detections_of_store(
        args.labels, image_path=args.image, meshes_dir=args.meshes, progress=tqdm_progress("block")
    )
    csv_path, parquet_path = write_table(table, args.out)
    print(f"{len(table)} objects: {csv_path}, {parquet_path.name}")
    return report_empty([table_empty("detections", len(table))], args.allow_empty)


def register(subparsers: Any) -> None:
    """Add the ``detections`` subcommand."""
    parser = subparsers.add_parser(
        "detections",
        help="detections table of a label image (voxels and um, mean intensity), no meshing",
        description=(
            "Measure every object of an OME-Zarr label image block by block: voxels, volume "
            "(um^3), centroid and bounding box in voxels and um, the mean of IMAGE over the "
            "object (the pyramid level of the same shape), surface area and sphericity from the "
            "morphometrics a mesh build wrote in MESHES. Writes OUT.csv and OUT.parquet."
        ),
    )
    parser.add_argument("labels", type=Path, help="OME-Zarr label image (NGFF 0.4 or 0.5)")
    parser.add_argument("out", type=Path, help="output path without suffix")
    parser.add_argument("--image", type=Path, default=None, help="OME-Zarr image")
    parser.add_argument("--meshes", type=Path, default=None, help="mesh directory")
    add_allow_empty_argument(parser)
    parser.set_defaults(func=run)
