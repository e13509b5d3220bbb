"""``python -m pipeline convert``: write an input volume as an OME-Zarr 0.5 pyramid."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidInputError
from pipeline.progress import no_progress, tqdm_progress


def _parse_labels(items: list[str] | None) -> dict[str, Path]:
    labels: dict[str, Path] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InvalidInputError(f"--labels expects NAME=PATH, got {item!r}")
        if name in labels:
            raise InvalidInputError(f"label name {name!r} is given twice")
        labels[name] = Path(path)
    return labels


def run(args: argparse.Namespace) -> int:
    """Convert, print a summary, return the exit code."""
    # Imported here so that `python -m pipeline --help` does not load zarr, dask and ome-zarr.
    from pipeline.importers import convert_to_ome_zarr
    from pipeline.layout import IMAGE_STORE

    result = convert_to_ome_zarr(
        args.input,
        args.out_dir,
        voxel_size=tuple(args.voxel_size) if args.voxel_size else None,
        unit=args.unit,
        labels=_parse_labels(args.labels),
        chunk=args.chunk,
        max_voxels=args.max_voxels,
        axes=args.axes,
        progress=no_progress if args.quiet else tqdm_progress("tile"),
    )
    image = result.image
    size = " x ".join(f"{v:g}" for v in image.voxel_size)
    print(f"wrote {args.out_dir / IMAGE_STORE} (OME-Zarr {image.ngff_version})")
    print(f"  image: shape {image.shape} axes {''.join(image.axes)} {image.dtype}")
    print(f"         voxel {size} {image.unit}, {image.levels} levels, contrast {image.contrast}")
    for name, label in result.labels.items():
        print(f"  labels/{name}: shape {label.shape} {label.dtype}, {label.levels} levels")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``convert`` subcommand."""
    parser = subparsers.add_parser(
        "convert",
        help="convert TIFF/OME-TIFF/.npy/OME-Zarr to an OME-Zarr 0.5 pyramid",
        description=(
            "Write OUT_DIR/image.ome.zarr (NGFF 0.5, Zarr v3) from a TIFF or OME-TIFF stack, "
            "a NumPy .npy file or an OME-Zarr 0.4/0.5 directory, chunk by chunk."
        ),
    )
    parser.add_argument("input", type=Path, help="input file or OME-Zarr directory")
    parser.add_argument("out_dir", type=Path, help="dataset directory to write into")
    parser.add_argument(
        "--voxel-size",
        type=float,
        nargs="+",
        metavar="SIZE",
        help="voxel size Z Y X (2D: Y X); default: from the input's metadata",
    )
    parser.add_argument("--unit", help="unit of the voxel size (default nanometer)")
    parser.add_argument(
        "--labels",
        action="append",
        metavar="NAME=PATH",
        help="a label image to add under labels/NAME (repeatable)",
    )
    parser.add_argument("--chunk", type=int, default=64, help="chunk edge (3D; 2D uses 4x)")
    parser.add_argument("--axes", help="axes of a TIFF/.npy input, e.g. cyx or zyx")
    parser.add_argument("--max-voxels", type=int, help="refuse inputs with more voxels")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
