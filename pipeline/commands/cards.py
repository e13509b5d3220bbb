"""``python -m pipeline cards IMAGE LABELS --out DIR``: proofreading gallery cards as PNGs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidInputError
from pipeline.progress import tqdm_progress

# Same as pipeline.gallery.CardStyle's defaults; gallery is imported only when the command runs
# so that ``python -m pipeline --help`` stays fast.
DEFAULT_TILE = 96
MAX_FAILURES_SHOWN = 10


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``cards`` subcommand."""
    parser = subparsers.add_parser(
        "cards",
        help="render proofreading gallery cards (PNG) of a label image's objects",
        description="Render one card per object: three orthogonal mid-slices of the image with "
        "the object's outline (its neighbours' dimmed) and a render of its mesh, written as "
        "OUT/<segment id>.png. Boxes come from a detections table, or are measured from the "
        "labels.",
    )
    parser.add_argument("image", type=Path, help="image: OME-Zarr (0.4/0.5), Zarr array or .npy")
    parser.add_argument("labels", type=Path, help="label image, same kinds (and geometry)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the PNGs")
    parser.add_argument(
        "--segments", type=int, nargs="+", default=None, help="segment ids (default: all)"
    )
    parser.add_argument(
        "--table",
        type=Path,
        default=None,
        help="detections/morphometrics table (CSV or Parquet, columns id, bbox_*, centroid_*); "
        "without it boxes are measured from the labels",
    )
    parser.add_argument(
        "--mesh-dir",
        type=Path,
        default=None,
        help="precomputed meshes of the labels (else marching cubes of each object)",
    )
    parser.add_argument(
        "--voxel-size",
        type=float,
        nargs="+",
        default=None,
        help="voxel size in nm (z y x, or one value), overriding the recorded one",
    )
    parser.add_argument(
        "--tile", type=int, default=DEFAULT_TILE, help=f"tile edge in pixels ({DEFAULT_TILE})"
    )
    parser.add_argument(
        "--window",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="contrast window for every card (default: each crop's 1-99.5 percentiles)",
    )
    parser.add_argument(
        "--skip-existing", action="store_true", help="keep cards already in the directory"
    )
    parser.set_defaults(func=run)


def _read_table(path: Path) -> Any:
    import pandas as pd

    if not path.is_file():
        raise InvalidInputError(f"table {path}: no such file")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"table {path.name} is not readable: {error}") from None


def run(args: argparse.Namespace) -> int:
    """Render the cards and print what was written."""
    from pipeline.gallery import (
        CardStyle,
        detections_from_labels,
        detections_from_table,
        open_card_source,
        render_cards,
    )

    style = CardStyle(tile=args.tile, window=tuple(args.window) if args.window else None)
    source = open_card_source(
        args.image, args.labels, mesh_dir=args.mesh_dir, voxel_size_nm=args.voxel_size
    )
    if args.table is not None:
        detections = detections_from_table(_read_table(args.table), args.segments)
    else:
        detections = detections_from_labels(source.labels, args.segments)
    result = render_cards(
        source, detections, args.out, style, skip_existing=args.skip_existing,
        progress=tqdm_progress("card"),
    )  # fmt: skip
    average = result.bytes_written / result.written / 1024 if result.written else 0.0
    print(
        f"{result.written} cards written to {result.out_dir} ({average:.1f} KB each, "
        f"{result.written / max(result.seconds, 1e-9):.1f} cards/s), {result.skipped} kept, "
        f"{len(result.failed)} failed"
    )
    for segment_id, message in list(result.failed.items())[:MAX_FAILURES_SHOWN]:
        print(f"segment {segment_id}: {message}", file=sys.stderr)
    return 2 if result.failed else 0
