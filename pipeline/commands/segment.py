"""``python -m pipeline segment DISTANCE OUT.zarr``: seeded watershed over a whole distance map."""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pipeline.block_merge import DEFAULT_IOU_THRESHOLD
from pipeline.errors import InvalidInputError
from pipeline.progress import tqdm_progress
from pipeline.segment import segment_volume
from pipeline.watershed import DEFAULT_SEED_THRESHOLD_NM


class NpyArray:
    """A ``.npy`` file read through a memory map opened lazily, so it pickles as its path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: np.ndarray | None = None
        self.shape: tuple[int, ...] = tuple(self.data.shape)
        self.dtype: np.dtype[Any] = self.data.dtype

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            self._data = np.load(self.path, mmap_mode="r")
        return self._data

    def __getitem__(self, key: Any) -> Any:
        return self.data[key]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}


def open_distance(path: Path) -> tuple[Any, tuple[float, ...] | None]:
    """The distance map at ``path`` (.npy, a zarr array, or an OME-Zarr image's first level) and
    its voxel size in nm when the file records one."""
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file or directory")
    if path.suffix == ".npy":
        try:
            return NpyArray(path), None
        except ValueError as exc:
            raise InvalidInputError(f"{path.name} is not a readable .npy file: {exc}")
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:
        raise InvalidInputError(f"{path.name} is neither a .npy file nor a Zarr store: {exc}")
    if isinstance(node, zarr.Array):
        return node, None
    from pipeline.ome_zarr_io import nanometres_per_unit, open_multiscale

    image = open_multiscale(path)
    if any(t != "space" for t in image.axis_types):
        raise InvalidInputError(f"{path.name}: axes {image.axes} are not all spatial")
    units = [nanometres_per_unit(u) for u in image.units]
    return image.levels[0], tuple(s * u for s, u in zip(image.scales[0], units, strict=True))


def run(args: argparse.Namespace) -> int:
    distance, recorded_voxel_size = open_distance(Path(args.distance))
    if len(distance.shape) not in (2, 3):
        raise InvalidInputError(
            f"{args.distance}: expected a 2D or 3D distance map, got shape {tuple(distance.shape)}"
        )
    ndim = len(distance.shape)
    voxel_size = tuple(args.voxel_size) if args.voxel_size else recorded_voxel_size
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
    return 0


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
    parser.set_defaults(func=run)
