"""``python -m pipeline curate LABELS OUT --keep ...``: labels and meshes of only some objects."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidInputError
from pipeline.progress import tqdm_progress


def _read_ids(spec: str) -> list[int]:
    """Ids from ``1,2,3`` or from a file (``@path``: one id per line, or CSV with a first
    column of ids and an optional header)."""
    text = Path(spec[1:]).read_text() if spec.startswith("@") else spec.replace(",", "\n")
    ids: list[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        field = line.split(",", 1)[0].strip()
        if not field:
            continue
        try:
            ids.append(int(field))
        except ValueError:
            if n == 1:
                continue  # a header
            raise InvalidInputError(f"line {n} of the ids is not an integer: {field[:40]!r}")
    return ids


def run(args: argparse.Namespace) -> int:
    from pipeline.curate import curate

    if not args.labels.exists():
        raise InvalidInputError(f"{args.labels} does not exist")
    if (args.meshes is None) != (args.meshes_out is None):
        raise InvalidInputError("--meshes and --meshes-out go together")
    result = curate(
        args.labels,
        args.out,
        _read_ids(args.keep),
        meshes=args.meshes,
        meshes_out=args.meshes_out,
        progress=tqdm_progress("block", {"meshes": "object"}),
    )
    print(
        f"kept {len(result.kept_ids)} ids: {result.blocks_written} of {result.blocks_total} "
        f"blocks written to {args.out}, {result.meshes_copied} meshes copied"
    )
    return 0


def register(subparsers: Any) -> None:
    """Add the ``curate`` subcommand."""
    parser = subparsers.add_parser(
        "curate",
        help="copy a label image (and its meshes) keeping only the listed objects",
        description=(
            "Write a copy of an OME-Zarr label image (every pyramid level, same metadata) where "
            "every id not in --keep is 0, block by block with bounded memory; with --meshes, "
            "copy the kept objects' precomputed meshes and segment properties too."
        ),
    )
    parser.add_argument("labels", type=Path, help="OME-Zarr label image (NGFF 0.4 or 0.5)")
    parser.add_argument("out", type=Path, help="output label image (must not exist)")
    parser.add_argument(
        "--keep", required=True, help="ids to keep: '1,2,3' or '@file' (one per line or CSV)"
    )
    parser.add_argument("--meshes", type=Path, default=None, help="precomputed mesh directory")
    parser.add_argument("--meshes-out", type=Path, default=None, help="output mesh directory")
    parser.set_defaults(func=run)
