"""``python -m pipeline synth OUT_DIR``: a synthetic nuclei volume as two NumPy files."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``synth`` subcommand."""
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic nuclei volume (image.npy, labels.npy)",
        description="Write a seeded synthetic X-ray-nanotomography-like nuclei volume and its "
        "instance labels as NumPy files, ready for the convert command.",
    )
    parser.add_argument("out_dir", type=Path, help="directory for image.npy and labels.npy")
    parser.add_argument(
        "--shape", type=int, nargs=3, default=[256, 256, 256], metavar=("Z", "Y", "X")
    )
    parser.add_argument("--nuclei", type=int, default=300, help="number of nuclei to place")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--voxel-size", type=float, default=200.0, help="voxel size in nm")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Make the volume and save it."""
    import numpy as np

    from pipeline.synthetic import make_nuclei_volume

    shape = (int(args.shape[0]), int(args.shape[1]), int(args.shape[2]))
    image, labels = make_nuclei_volume(shape, args.nuclei, args.seed, args.voxel_size)
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "image.npy", image)
    np.save(out_dir / "labels.npy", labels)
    print(f"{int(labels.max())} nuclei, shape {shape}, written to {out_dir}")
    return 0
