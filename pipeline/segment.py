"""Whole-volume segmentation of a distance map, block by block, in bounded memory.

Pass 1 (one task per block, any executor): seeded watershed on the block plus a halo of context,
cropped to the core and numbered 1..n locally; the local labels are written into the output array,
and the labels on the slabs around the block's faces go to a small scratch file.
Merge (one task per block): for each face shared with the next block along an axis, the segments
whose footprints on the face slab have IoU >= the threshold are paired; ids are made unique by
offsetting each block's local ids by the running count of the blocks before it, and union-find over
the whole volume joins the pairs. Pass 2 (one task per block): each block's local labels are mapped
to consecutive final ids in place.

Peak memory is a few copies of one block plus its halo, plus one integer per segment; the volume
is never loaded. Labels are uint32: final ids are consecutive, so they are bounded by the number of
objects (4e9), and uint32 halves the storage and transfer of uint64.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import fastremap
import numpy as np
import zarr

from pipeline.block_merge import DEFAULT_IOU_THRESHOLD, UnionFind, consecutive_ids, face_matches
from pipeline.blocks import Block, ReadableArray, grid_shape, iter_blocks, run_blocks
from pipeline.errors import InvalidInputError
from pipeline.progress import ProgressCallback, no_progress
from pipeline.segment_params import smooth_sigma_voxels
from pipeline.watershed import DEFAULT_SEED_THRESHOLD_NM, seeded_watershed

LABEL_DTYPE = np.uint32
FALLBACK_HALO_VOXELS = 16
OUTPUT_CHUNK = 64


@dataclass(frozen=True)
class SegmentResult:
    """What :func:`segment_volume` wrote."""

    n_objects: int  # objects in the final label image
    n_merged: int  # block segments joined to another across a face
    n_segments: int  # segments found in the blocks before merging
    block_shape: tuple[int, ...]
    halo: tuple[int, ...]


@dataclass(frozen=True)
class _Job:
    """Everything a block task needs; pickles for process pools (zarr arrays pickle by store)."""

    distance: ReadableArray
    out: Any
    grid: tuple[int, ...]
    seed_threshold: float
    mask_threshold: float
    min_seed_voxels: int
    seed_dynamic: float
    smooth_sigma: tuple[float, ...]
    iou_threshold: float
    scratch: str


def default_halo(
    seed_threshold: float, voxel_size: Sequence[float] | None, ndim: int, smooth_nm: float = 0.0
) -> tuple[int, ...]:
    """Context per axis: twice the seed depth in voxels, so the seed of any object reaching into
    the core is inside the block (a convex object's seed lies within ``seed_threshold`` of every
    voxel of its surface; the factor 2 covers elongated shapes), plus the reach of the smoothing
    (4 sigma, as scipy truncates the Gaussian)."""
    if voxel_size is None:
        return (FALLBACK_HALO_VOXELS,) * ndim
    reach = 2 * seed_threshold + 4 * smooth_nm
    return tuple(max(1, math.ceil(reach / float(v))) for v in voxel_size)


def create_label_array(
    path: str | Path,
    shape: Sequence[int],
    *,
    chunks: Sequence[int],
    voxel_size: Sequence[float] | None = None,
    unit: str = "nanometer",
    name: str = "nuclei",
) -> zarr.Array[Any]:
    """Create an empty NGFF 0.5 label image (one level ``s0``, uint32) at ``path``.

    The caller fills ``s0``. Fails with :class:`InvalidInputError` if ``path`` exists.
    """
    # ome_zarr_io imports dask and pydantic models (seconds): only the writer pays for it.
    from pipeline.ome_zarr_io import create_single_level_image

    path = Path(path)
    if path.exists():
        raise InvalidInputError(f"{path}: output already exists")
    return create_single_level_image(
        path,
        shape,
        dtype=LABEL_DTYPE,
        chunks=chunks,
        voxel_size=voxel_size,
        unit=unit,
        name=name,
        label=True,
    )


def _face_slab(axis: int, start: int, region: tuple[slice, ...]) -> tuple[slice, ...]:
    slab = list(region)
    slab[axis] = slice(start, start + 2)
    return tuple(slab)


def _segment_block(job: _Job, block: Block) -> int:
    """Pass 1 for one block: write local labels 1..n to the core, save face slabs; returns n."""
    # Only the part inside the volume: smoothing then sees the volume's own edge, as on the whole.
    shape = tuple(int(n) for n in job.distance.shape)
    inside = tuple(
        slice(max(s.start, 0), min(s.stop, n)) for s, n in zip(block.outer, shape, strict=True)
    )
    where = tuple(
        slice(i.start - o.start, i.stop - o.start) for i, o in zip(inside, block.outer, strict=True)
    )
    distance = np.asarray(job.distance[inside]).astype(np.float32, copy=False)
    labels = np.zeros(tuple(s.stop - s.start for s in block.outer), dtype=LABEL_DTYPE)
    labels[where] = seeded_watershed(
        distance,
        seed_threshold=job.seed_threshold,
        mask_threshold=job.mask_threshold,
        min_seed_voxels=job.min_seed_voxels,
        smooth_sigma=job.smooth_sigma,
        seed_dynamic=job.seed_dynamic,
    )
    del distance
    inner = block.core_in_outer
    core = labels[inner]
    ids = fastremap.unique(core)
    ids = ids[ids != 0]
    lut = np.zeros(int(labels.max()) + 1, dtype=LABEL_DTYPE)
    lut[ids] = np.arange(1, ids.size + 1, dtype=LABEL_DTYPE)
    job.out[block.core] = lut[core]
    faces: dict[str, np.ndarray] = {}
    for axis, position in enumerate(block.grid_index):
        # The slabs are the core's first/last plane and the halo plane beyond it, seen from here;
        # halo segments absent from the core map to 0.
        if position > 0:
            faces[f"lower{axis}"] = lut[labels[_face_slab(axis, inner[axis].start - 1, inner)]]
        if position < job.grid[axis] - 1:
            faces[f"upper{axis}"] = lut[labels[_face_slab(axis, inner[axis].stop - 1, inner)]]
    np.savez(Path(job.scratch) / f"{block.index}.npz", **faces)  # type: ignore[arg-type]
    return int(ids.size)


def _merge_block_faces(job: _Job, item: tuple[Block, tuple[int, ...]]) -> np.ndarray:
    """Pairs of global ids to join across this block's upper faces (offsets per block given)."""
    block, offsets = item
    strides = [math.prod(job.grid[axis + 1 :]) for axis in range(len(job.grid))]
    pairs: list[np.ndarray] = []
    with np.load(Path(job.scratch) / f"{block.index}.npz") as own:
        for axis, position in enumerate(block.grid_index):
            if position >= job.grid[axis] - 1:
                continue
            neighbour = block.index + strides[axis]
            with np.load(Path(job.scratch) / f"{neighbour}.npz") as other:
                matches = face_matches(
                    own[f"upper{axis}"], other[f"lower{axis}"], job.iou_threshold
                )
            if matches.size:
                pairs.append(matches + np.array([offsets[0], offsets[1 + axis]], dtype=np.int64))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def _relabel_block(job: _Job, item: tuple[Block, np.ndarray]) -> None:
    """Pass 2 for one block: map local ids to final ids in place."""
    block, lut = item
    if lut.size > 1:
        local = np.asarray(job.out[block.core])
        job.out[block.core] = lut[local]


def _check_output(out: Any, shape: tuple[int, ...], block_shape: tuple[int, ...]) -> None:
    if tuple(out.shape) != shape:
        raise InvalidInputError(f"output shape {tuple(out.shape)} differs from input {shape}")
    if not np.issubdtype(np.dtype(out.dtype), np.unsignedinteger):
        raise InvalidInputError(f"output must have an unsigned integer dtype, not {out.dtype}")
    write_unit = getattr(out, "shards", None) or getattr(out, "chunks", None)
    if write_unit is not None and any(
        b % c and b < n for b, c, n in zip(block_shape, write_unit, shape, strict=True)
    ):
        # Blocks written concurrently must not share a chunk.
        raise InvalidInputError(
            f"block shape {block_shape} is not a multiple of the output chunks {tuple(write_unit)}"
        )


def segment_volume(
    distance: ReadableArray,
    out: Any,
    *,
    block_shape: int | Sequence[int] = 128,
    halo: int | Sequence[int] | None = None,
    voxel_size: Sequence[float] | None = None,
    seed_threshold: float = DEFAULT_SEED_THRESHOLD_NM,
    mask_threshold: float = 0.0,
    min_seed_voxels: int = 0,
    smooth_nm: float = 0.0,
    seed_dynamic_nm: float = 0.0,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    executor: Any = None,
    scratch_dir: str | Path | None = None,
    progress: ProgressCallback = no_progress,
    name: str = "nuclei",
) -> SegmentResult:
    """Segment a (z, y, x) or (y, x) distance map (nm) block by block into a label image.

    ``out`` is a writable array of the same shape (zarr, whose chunks divide the block shape, or
    numpy when no process pool is used) or a path where an NGFF 0.5 label image is created.
    ``halo`` defaults to :func:`default_halo`. ``executor`` runs the per-block tasks (see
    :func:`pipeline.blocks.run_blocks`); ``scratch_dir`` holds the face slabs (a temporary
    directory by default; it must be shared with the workers).
    """
    shape = tuple(int(n) for n in distance.shape)
    ndim = len(shape)
    if ndim not in (2, 3):
        raise InvalidInputError(f"distance map must be 2D or 3D, got shape {shape}")
    blocks_shape = (block_shape,) * ndim if isinstance(block_shape, int) else tuple(block_shape)
    if len(blocks_shape) != ndim:
        raise InvalidInputError(f"block shape {blocks_shape} does not match the map's {ndim}D")
    if halo is None:
        halos = default_halo(seed_threshold, voxel_size, ndim, smooth_nm)
    else:
        halos = (halo,) * ndim if isinstance(halo, int) else tuple(halo)
    if len(halos) != ndim or min(halos) < 1:
        raise InvalidInputError(f"halo {halos}: need one value of at least 1 voxel per axis")
    if smooth_nm < 0 or (smooth_nm > 0 and voxel_size is None):
        raise InvalidInputError("smoothing needs a non-negative smooth_nm and the voxel size")
    smooth_sigma = (
        smooth_sigma_voxels(smooth_nm, voxel_size) if voxel_size is not None else (0.0,) * ndim
    )
    if isinstance(out, str | Path):
        chunks = tuple(OUTPUT_CHUNK if b % OUTPUT_CHUNK == 0 else b for b in blocks_shape)
        chunks = tuple(min(c, n) for c, n in zip(chunks, shape, strict=True))
        out = create_label_array(out, shape, chunks=chunks, voxel_size=voxel_size, name=name)
    _check_output(out, shape, blocks_shape)
    if isinstance(out, np.ndarray) and isinstance(executor, ProcessPoolExecutor):
        raise InvalidInputError("a process pool cannot write into an in-memory output array")

    blocks = list(iter_blocks(shape, blocks_shape, halos))
    grid = grid_shape(shape, blocks_shape)
    scratch_context: contextlib.AbstractContextManager[str | Path] = (
        contextlib.nullcontext(scratch_dir)
        if scratch_dir is not None
        else tempfile.TemporaryDirectory(prefix="segment-faces-")
    )
    with scratch_context as scratch_name:
        scratch = Path(scratch_name)
        scratch.mkdir(parents=True, exist_ok=True)
        job = _Job(
            distance=distance,
            out=out,
            grid=grid,
            seed_threshold=seed_threshold,
            mask_threshold=mask_threshold,
            min_seed_voxels=min_seed_voxels,
            seed_dynamic=seed_dynamic_nm,
            smooth_sigma=smooth_sigma,
            iou_threshold=iou_threshold,
            scratch=str(scratch),
        )
        counts = run_blocks(
            partial(_segment_block, job), blocks, executor, progress=progress, stage="watershed"
        )
        offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        n_segments = int(offsets[-1])
        strides = [math.prod(grid[axis + 1 :]) for axis in range(ndim)]
        merge_items = [
            (
                block,
                (
                    int(offsets[block.index]),
                    *(int(offsets[min(block.index + s, len(blocks) - 1)]) for s in strides),
                ),
            )
            for block in blocks
        ]
        pair_lists = run_blocks(
            partial(_merge_block_faces, job),
            merge_items,
            executor,
            progress=progress,
            stage="merge",
        )
    union_find = UnionFind(n_segments)
    n_merged = sum(union_find.union_pairs(pairs) for pairs in pair_lists)
    final, n_objects = consecutive_ids(union_find.roots())
    relabel_items = [
        (
            block,
            np.concatenate(
                [
                    np.zeros(1, LABEL_DTYPE),
                    final[offsets[block.index] + 1 : offsets[block.index + 1] + 1],
                ]
            ),
        )
        for block in blocks
    ]
    run_blocks(
        partial(_relabel_block, job), relabel_items, executor, progress=progress, stage="relabel"
    )
    return SegmentResult(
        n_objects=n_objects,
        n_merged=n_merged,
        n_segments=n_segments,
        block_shape=blocks_shape,
        halo=halos,
    )
