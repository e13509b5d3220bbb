"""Whole-volume segmentation of a distance map, block by block, in bounded memory.

Planned first (:func:`plan_segment`, a :class:`SegmentPlan` that any process can load), then run
by an executor. Watershed (one task per block): seeded watershed on the block plus a halo of
context, cropped to the core and numbered 1..n locally into a scratch array; the labels on the slabs
around the block's faces go to a small scratch file. Merge (one task per block): for each face
shared with the next block along an axis, the segments whose footprints on the face slab have IoU >=
the threshold are paired; ids are made unique by offsetting each block's local ids by the running
count of the blocks before it, and union-find over the whole volume joins the pairs. Relabel (one
task per block): each block's local labels are mapped to consecutive final ids in the output.

Peak memory is a few copies of one block plus its halo, plus one integer per segment; the volume
is never loaded. Labels are uint32: final ids are consecutive, so they are bounded by the number of
objects (4e9), and uint32 halves the storage and transfer of uint64.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import fastremap
import numpy as np
import zarr

from pipeline.block_merge import DEFAULT_IOU_THRESHOLD, UnionFind, consecutive_ids, face_matches
from pipeline.blocks import Block, Grid, ReadableArray
from pipeline.errors import InvalidInputError
from pipeline.plan import (
    ArrayRef,
    BlockPlan,
    LocalExecutor,
    ref_from_dict,
    ref_to_dict,
    resolve,
    temp_name,
    write_atomic,
)
from pipeline.progress import ProgressCallback, no_progress
from pipeline.segment_params import smooth_sigma_voxels
from pipeline.watershed import DEFAULT_SEED_THRESHOLD_NM, seeded_watershed

LABEL_DTYPE = np.uint32
#: What a segmentation plan writes into its work directory.
WORK_ENTRIES = (
    "local.zarr", "faces", "counts", "pairs", "relabel", "offsets.npy", "final.npy",
    "summary.json", "plan.json", "plan-finished", "plan-cancelled", "plan-failed.json",
    "starts", "dispatch",
)  # fmt: skip
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


def _write_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` that a concurrent reader sees whole or not at all."""
    tmp = temp_name(path, ".npy")
    np.save(tmp, array)
    os.replace(tmp, path)


@dataclass(frozen=True)
class SegmentPlan(BlockPlan):
    """Seeded watershed per block, face matching, union-find and relabelling, as three steps.

    ``watershed`` writes each block's local labels 1..n to a scratch Zarr array (never to the
    output), its face slabs and its count; ``merge`` pairs segments across each block's upper
    faces; ``relabel`` writes final ids to the output. Every item only reads what an earlier step
    finished and writes its own files, so an item run twice gives the same bytes: a worker killed
    mid-run is recovered by running the plan again.
    """

    kind: ClassVar[str] = "segment"
    steps: ClassVar[tuple[str, ...]] = ("watershed", "merge", "relabel")

    distance: Any  # array-like, or an ArrayRef
    out: Any  # writable array, or a writable ArrayRef
    grid: Grid
    seed_threshold: float
    mask_threshold: float
    min_seed_voxels: int
    seed_dynamic: float
    smooth_sigma: tuple[float, ...]
    iou_threshold: float
    work: str
    local: Any = None  # the local labels in memory (an in-memory output); else local.zarr
    # Consecutive blocks per item: a Celery task costs tens of ms of messaging, so small blocks
    # go to workers a few at a time.
    blocks_per_item: int = 1

    # --- files in the work directory -------------------------------------------------------

    def _path(self, *parts: str) -> Path:
        return Path(self.work, *parts)

    def _local(self) -> Any:
        if self.local is not None:
            return self.local
        return ArrayRef(str(self._path("local.zarr")), writable=True).open()

    def prepare(self) -> None:
        """Create the scratch array and folders in an empty work directory."""
        import zarr

        earlier = [name for name in WORK_ENTRIES if self._path(name).exists()]
        if earlier:
            raise InvalidInputError(
                f"{self.work} holds an earlier segmentation's files ({', '.join(earlier)}): use "
                "an empty directory, or load its saved plan to resume it"
            )
        for folder in ("faces", "counts", "pairs", "relabel"):
            self._path(folder).mkdir(parents=True, exist_ok=True)
        if self.local is None:
            zarr.create_array(
                str(self._path("local.zarr")), shape=self.grid.shape,
                chunks=self.grid.block_shape, dtype=LABEL_DTYPE, fill_value=0,
            )  # fmt: skip

    # --- the plan protocol -------------------------------------------------------------------

    @property
    def work_dir(self) -> Path:
        return Path(self.work)

    def _blocks_of(self, item: int) -> range:
        k = self.blocks_per_item
        return range(item * k, min((item + 1) * k, len(self.grid)))

    def items(self, step: str) -> int:
        return -(-len(self.grid) // self.blocks_per_item)

    def _block_done(self, step: str, index: int) -> bool:
        marker = {"watershed": ("counts", str(index)), "merge": ("pairs", f"{index}.npy")}.get(
            step, ("relabel", str(index))
        )
        return self._path(*marker).exists()

    def is_done(self, step: str, item: int) -> bool:
        return all(self._block_done(step, i) for i in self._blocks_of(item))

    def run_item(self, step: str, item: int) -> None:
        run = {"watershed": self._watershed, "merge": self._merge, "relabel": self._relabel}.get(
            step
        )
        if run is None:
            raise KeyError(f"segment plan has no step {step!r}")
        for index in self._blocks_of(item):
            if not self._block_done(step, index):  # a resumed item: its finished blocks stay
                run(self.grid.block(index))

    def finish_step(self, step: str) -> None:
        if step == "watershed":
            counts = [int(self._path("counts", str(i)).read_text()) for i in range(len(self.grid))]
            offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
            _write_npy(self._path("offsets.npy"), offsets)
        elif step == "merge":
            offsets = np.load(self._path("offsets.npy"))
            union_find = UnionFind(int(offsets[-1]))
            n_merged = sum(
                union_find.union_pairs(np.load(self._path("pairs", f"{i}.npy")))
                for i in range(len(self.grid))
            )
            final, n_objects = consecutive_ids(union_find.roots())
            _write_npy(self._path("final.npy"), final)
            summary = {"objects": n_objects, "merged": n_merged, "segments": int(offsets[-1])}
            write_atomic(self._path("summary.json"), json.dumps(summary))

    def summary(self) -> dict[str, int]:
        """Objects, merged segments and block segments (after the merge step)."""
        data: dict[str, int] = json.loads(self._path("summary.json").read_text())
        return data

    # --- the steps ---------------------------------------------------------------------------

    def _watershed(self, block: Block) -> None:
        """Local labels 1..n of the block's core to scratch, face slabs, then the count."""
        distance_array = resolve(self.distance)
        # Only the part inside the volume: smoothing then sees the volume's own edge, as on the
        # whole.
        inside = tuple(
            slice(max(s.start, 0), min(s.stop, n))
            for s, n in zip(block.outer, self.grid.shape, strict=True)
        )
        where = tuple(
            slice(i.start - o.start, i.stop - o.start)
            for i, o in zip(inside, block.outer, strict=True)
        )
        distance = np.asarray(distance_array[inside]).astype(np.float32, copy=False)
        labels = np.zeros(block.outer_shape, dtype=LABEL_DTYPE)
        labels[where] = seeded_watershed(
            distance,
            seed_threshold=self.seed_threshold,
            mask_threshold=self.mask_threshold,
            min_seed_voxels=self.min_seed_voxels,
            smooth_sigma=self.smooth_sigma,
            seed_dynamic=self.seed_dynamic,
        )
        del distance
        inner = block.core_in_outer
        core = labels[inner]
        ids = fastremap.unique(core)
        ids = ids[ids != 0]
        lut = np.zeros(int(labels.max()) + 1, dtype=LABEL_DTYPE)
        lut[ids] = np.arange(1, ids.size + 1, dtype=LABEL_DTYPE)
        self._local()[block.core] = lut[core]
        faces: dict[str, np.ndarray] = {}
        counts = self.grid.counts
        for axis, position in enumerate(block.grid_index):
            # The slabs are the core's first/last plane and the halo plane beyond it, seen from
            # here; halo segments absent from the core map to 0.
            if position > 0:
                faces[f"lower{axis}"] = lut[labels[_face_slab(axis, inner[axis].start - 1, inner)]]
            if position < counts[axis] - 1:
                faces[f"upper{axis}"] = lut[labels[_face_slab(axis, inner[axis].stop - 1, inner)]]
        target = self._path("faces", f"{block.index}.npz")
        tmp = temp_name(target, ".npz")
        np.savez(tmp, **faces)  # type: ignore[arg-type]
        os.replace(tmp, target)
        write_atomic(self._path("counts", str(block.index)), str(int(ids.size)))

    def _merge(self, block: Block) -> None:
        """Pairs of global ids to join across the block's upper faces."""
        offsets = np.load(self._path("offsets.npy"), mmap_mode="r")
        pairs: list[np.ndarray] = []
        with np.load(self._path("faces", f"{block.index}.npz")) as own:
            for axis, position in enumerate(block.grid_index):
                if position >= self.grid.counts[axis] - 1:
                    continue
                neighbour = block.index + self.grid.strides[axis]
                with np.load(self._path("faces", f"{neighbour}.npz")) as other:
                    matches = face_matches(
                        own[f"upper{axis}"], other[f"lower{axis}"], self.iou_threshold
                    )
                if matches.size:
                    shift = np.array([offsets[block.index], offsets[neighbour]], dtype=np.int64)
                    pairs.append(matches + shift)
        found = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
        _write_npy(self._path("pairs", f"{block.index}.npy"), found)

    def _relabel(self, block: Block) -> None:
        """The block's final ids, read through the merged lookup, into the output."""
        offsets = np.load(self._path("offsets.npy"), mmap_mode="r")
        final = np.load(self._path("final.npy"), mmap_mode="r")
        lut = np.concatenate(
            [
                np.zeros(1, LABEL_DTYPE),
                final[offsets[block.index] + 1 : offsets[block.index + 1] + 1],
            ]
        )
        local = np.asarray(self._local()[block.core])
        resolve(self.out)[block.core] = lut[local]
        write_atomic(self._path("relabel", str(block.index)), "")

    # --- persistence -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "distance": ref_to_dict(self.distance, "distance map"),
            "out": ref_to_dict(self.out, "output label array"),
            "grid": self.grid.to_dict(),
            "seed_threshold": self.seed_threshold,
            "mask_threshold": self.mask_threshold,
            "min_seed_voxels": self.min_seed_voxels,
            "seed_dynamic": self.seed_dynamic,
            "smooth_sigma": list(self.smooth_sigma),
            "iou_threshold": self.iou_threshold,
            "work": self.work,
            "blocks_per_item": self.blocks_per_item,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmentPlan:
        return cls(
            distance=ref_from_dict(data["distance"]),
            out=ref_from_dict(data["out"]),
            grid=Grid.from_dict(data["grid"]),
            seed_threshold=float(data["seed_threshold"]),
            mask_threshold=float(data["mask_threshold"]),
            min_seed_voxels=int(data["min_seed_voxels"]),
            seed_dynamic=float(data["seed_dynamic"]),
            smooth_sigma=tuple(float(v) for v in data["smooth_sigma"]),
            iou_threshold=float(data["iou_threshold"]),
            work=str(data["work"]),
            blocks_per_item=int(data.get("blocks_per_item", 1)),
        )


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


#: Voxels an item of a plan run by workers should cover at least (128^3: ~0.1 s of watershed).
ITEM_VOXELS = 128**3


def blocks_per_item_for(block_shape: Sequence[int]) -> int:
    """Blocks per item so that one item covers about :data:`ITEM_VOXELS`: a task's messaging
    then stays small beside its work (measured in ``bench/run.py``)."""
    return max(1, ITEM_VOXELS // math.prod(int(b) for b in block_shape))


def plan_segment(
    distance: ReadableArray | ArrayRef | Path,
    out: Any,
    work_dir: str | Path,
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
    name: str = "nuclei",
    blocks_per_item: int = 1,
) -> SegmentPlan:
    """Check the inputs, create the output and the work directory, and plan the segmentation.

    A ``distance`` given as a path (or :class:`ArrayRef`) and an ``out`` given as a path give a
    plan that :func:`pipeline.plan.save_plan` can hand to other processes; ``blocks_per_item``
    consecutive blocks make one item (see :func:`blocks_per_item_for`).
    """
    if blocks_per_item < 1:
        raise InvalidInputError(f"blocks_per_item must be at least 1, not {blocks_per_item}")
    if isinstance(distance, str | Path):
        distance = ArrayRef(str(distance))
    shape = tuple(int(n) for n in resolve(distance).shape)
    ndim = len(shape)
    if ndim not in (2, 3):
        raise InvalidInputError(f"distance map must be 2D or 3D, got shape {shape}")
    blocks_shape = (block_shape,) * ndim if isinstance(block_shape, int) else tuple(block_shape)
    if len(blocks_shape) != ndim:
        raise InvalidInputError(f"block shape {blocks_shape} does not match the map's {ndim}D")
    if min(blocks_shape) < 1:
        raise InvalidInputError(f"block shape {blocks_shape}: sizes must be positive")
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
        create_label_array(out, shape, chunks=chunks, voxel_size=voxel_size, name=name)
        out = ArrayRef(str(Path(out) / "s0"), writable=True)
    _check_output(resolve(out), shape, blocks_shape)
    # An output in RAM gets its local labels in RAM; a memory-mapped or Zarr one on disk.
    in_memory = isinstance(out, np.ndarray) and not isinstance(out, np.memmap)
    plan = SegmentPlan(
        distance=distance,
        out=out,
        grid=Grid.of(shape, blocks_shape, halos),
        seed_threshold=float(seed_threshold),
        mask_threshold=float(mask_threshold),
        min_seed_voxels=int(min_seed_voxels),
        seed_dynamic=float(seed_dynamic_nm),
        smooth_sigma=tuple(float(s) for s in smooth_sigma),
        iou_threshold=float(iou_threshold),
        work=str(Path(work_dir).resolve()),
        local=np.zeros(shape, LABEL_DTYPE) if in_memory else None,
        blocks_per_item=int(blocks_per_item),
    )
    plan.prepare()
    return plan


def segment_volume(
    distance: ReadableArray | ArrayRef | Path,
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

    Plans with :func:`plan_segment` and runs the plan here (:class:`pipeline.plan.LocalExecutor`).
    ``out`` is a writable array of the same shape (zarr, whose chunks divide the block shape, or
    numpy when no process pool is used) or a path where an NGFF 0.5 label image is created.
    ``halo`` defaults to :func:`default_halo`. ``executor`` runs the per-block tasks (see
    :func:`pipeline.blocks.run_blocks`); ``scratch_dir`` is the plan's work directory (the local
    labels and face slabs, which an earlier call's are replaced by; by default a temporary
    directory beside a file output, else in the system's temporary directory; it must be
    shared with the workers). Resuming an interrupted plan is :func:`pipeline.plan.load_plan`'s.
    """
    if isinstance(out, np.ndarray) and isinstance(executor, ProcessPoolExecutor):
        raise InvalidInputError("a process pool cannot write into an in-memory output array")
    if scratch_dir is not None:
        for name in WORK_ENTRIES:  # an earlier call's files: this call starts afresh
            entry = Path(scratch_dir) / name
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
    # The scratch holds the local labels (as large as the output, compressed): next to a file
    # output rather than in /tmp.
    beside = Path(out).resolve().parent if isinstance(out, str | Path) else None
    if beside is not None:
        beside.mkdir(parents=True, exist_ok=True)
    scratch_context: contextlib.AbstractContextManager[str | Path] = (
        contextlib.nullcontext(scratch_dir)
        if scratch_dir is not None
        else tempfile.TemporaryDirectory(prefix=".segment-plan-", dir=beside)
    )
    with scratch_context as work:
        plan = plan_segment(
            distance, out, work,
            block_shape=block_shape, halo=halo, voxel_size=voxel_size,
            seed_threshold=seed_threshold, mask_threshold=mask_threshold,
            min_seed_voxels=min_seed_voxels, smooth_nm=smooth_nm,
            seed_dynamic_nm=seed_dynamic_nm, iou_threshold=iou_threshold, name=name,
        )  # fmt: skip
        LocalExecutor(executor).execute(plan, progress)
        summary = plan.summary()
    return SegmentResult(
        n_objects=summary["objects"],
        n_merged=summary["merged"],
        n_segments=summary["segments"],
        block_shape=plan.grid.block_shape,
        halo=plan.grid.halo,
    )
