"""``python -m pipeline label-export VOLUME OUT``: a version of a box's labels as OME-Zarr."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidInputError


def run(args: argparse.Namespace) -> int:
    from pipeline.label_volume import LabelVolume

    volume = LabelVolume.open(args.volume)
    if args.list:
        for number in volume.log.numbers():
            version = volume.version(number)
            restored = (
                "" if version.restored_from is None else f", restores {version.restored_from}"
            )
            print(
                f"version {number}: based on {version.based_on}, {len(version.changed)} chunks "
                f"changed, {len(version.chunks)} of {volume.geometry.chunk_count} stored{restored}"
            )
        return 0
    if args.out is None:
        raise InvalidInputError("give the output path OUT, or --list")
    version = volume.version(args.version)
    path = volume.export(args.out, version.number, name=args.name, zarr_format=args.zarr_format)
    print(
        f"version {version.number} ({len(version.chunks)} chunks) written to {path} "
        f"at {volume.geometry.origin_nm} nm"
    )
    return 0


def register(subparsers: Any) -> None:
    """Add the ``label-export`` subcommand."""
    parser = subparsers.add_parser(
        "label-export",
        help="write a version of a versioned label volume as an OME-Zarr label image",
        description=(
            "Write one version (default: the current one) of a box's versioned label volume "
            "(pipeline.label_volume) as an OME-Zarr label image at the box's physical position: "
            "NGFF 0.5 on Zarr v3, or 0.4 on Zarr v2; --list prints the versions instead."
        ),
    )
    parser.add_argument("volume", type=Path, help="the label volume's directory")
    parser.add_argument("out", type=Path, nargs="?", help="output store (must not exist)")
    parser.add_argument("--version", type=int, default=None, help="version number")
    parser.add_argument("--name", default="labels", help="name in the multiscales metadata")
    parser.add_argument("--zarr-format", type=int, choices=(2, 3), default=3)
    parser.add_argument("--list", action="store_true", help="list the versions")
    parser.set_defaults(func=run)
