"""A block grid with context halos, padded block reads, and an executor-agnostic block runner.

Whole-volume steps split the volume into a grid of core blocks that tile it exactly; each block is
processed with a halo of context around its core (read with zero padding outside the volume) and
only its core is kept. ``run_blocks`` maps a function over blocks sequentially or on any
``concurrent.futures.Executor``-like object, so the same step runs in-process, on a process pool, or
on a Celery adapter that offers ``map`` or ``submit``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from pipeline.progress import ProgressCallback, no_progress

T = TypeVar("T")
R = TypeVar("R")

Region = tuple[slice, ...]


class ReadableArray(Protocol):
    """An array-like that can be sliced (numpy, zarr, memory-mapped .npy)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> Any: ...

    def __getitem__(self, key: Any) -> Any: ...


@dataclass(frozen=True)
class Block:
    """One block of a grid: its core (which tiles the volume) and its core plus halo.

    ``outer`` may reach outside the volume (negative starts, stops past the shape); read it with
    :func:`read_padded`.
    """

    index: int
    grid_index: tuple[int, ...]
    core: Region
    outer: Region

    @property
    def core_shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.core)

    @property
    def outer_shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.outer)

    @property
    def core_in_outer(self) -> Region:
        """Where the core lies inside an array read over ``outer``."""
        return tuple(
            slice(c.start - o.start, c.stop - o.start)
            for c, o in zip(self.core, self.outer, strict=True)
        )


def _as_tuple(value: int | Sequence[int], ndim: int, what: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * ndim
    out = tuple(int(v) for v in value)
    if len(out) != ndim:
        raise ValueError(f"{what} has {len(out)} values but the volume has {ndim} dimensions")
    return out


def grid_shape(shape: Sequence[int], block_shape: Sequence[int]) -> tuple[int, ...]:
    """Number of blocks along each axis."""
    return tuple(math.ceil(n / b) for n, b in zip(shape, block_shape, strict=True))


def iter_blocks(
    shape: Sequence[int], block_shape: int | Sequence[int], halo: int | Sequence[int] = 0
) -> Iterator[Block]:
    """Blocks covering ``shape`` exactly, in C order; the last block on an axis may be smaller."""
    return Grid.of(shape, block_shape, halo).blocks()


@dataclass(frozen=True)
class Grid:
    """The block grid of a volume: core blocks tiling ``shape`` and the halo read around each.

    A plan stores it (:meth:`to_dict`) so that any process can rebuild one block by its index.
    """

    shape: tuple[int, ...]
    block_shape: tuple[int, ...]
    halo: tuple[int, ...]

    @classmethod
    def of(
        cls, shape: Sequence[int], block_shape: int | Sequence[int], halo: int | Sequence[int] = 0
    ) -> Grid:
        ndim = len(shape)
        blocks = _as_tuple(block_shape, ndim, "block shape")
        halos = _as_tuple(halo, ndim, "halo")
        if any(b < 1 for b in blocks) or any(h < 0 for h in halos):
            raise ValueError("block sizes must be positive and halos non-negative")
        return cls(tuple(int(n) for n in shape), blocks, halos)

    @property
    def counts(self) -> tuple[int, ...]:
        """Blocks along each axis."""
        return grid_shape(self.shape, self.block_shape)

    @property
    def strides(self) -> tuple[int, ...]:
        """Index step to the next block along each axis (C order)."""
        counts = self.counts
        return tuple(math.prod(counts[axis + 1 :]) for axis in range(len(counts)))

    def __len__(self) -> int:
        return math.prod(self.counts)

    def block(self, index: int) -> Block:
        if not 0 <= index < len(self):
            raise IndexError(f"block {index} outside a grid of {len(self)}")
        grid_index = tuple(int(i) for i in np.unravel_index(index, self.counts))
        core = tuple(
            slice(i * b, min((i + 1) * b, n))
            for i, b, n in zip(grid_index, self.block_shape, self.shape, strict=True)
        )
        outer = tuple(slice(c.start - h, c.stop + h) for c, h in zip(core, self.halo, strict=True))
        return Block(index=index, grid_index=grid_index, core=core, outer=outer)

    def blocks(self) -> Iterator[Block]:
        return (self.block(i) for i in range(len(self)))

    def to_dict(self) -> dict[str, list[int]]:
        return {"shape": list(self.shape), "block": list(self.block_shape), "halo": list(self.halo)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grid:
        return cls.of(data["shape"], data["block"], data["halo"])


def read_padded(array: ReadableArray, region: Region, fill: float = 0) -> np.ndarray:
    """Read ``region`` of ``array``; the parts outside the array are ``fill``."""
    shape = tuple(s.stop - s.start for s in region)
    inside = tuple(
        slice(max(s.start, 0), min(s.stop, n)) for s, n in zip(region, array.shape, strict=True)
    )
    if any(s.stop <= s.start for s in inside):
        return np.full(shape, fill, dtype=array.dtype)
    data = np.asarray(array[inside])
    if data.shape == shape:
        return data
    out = np.full(shape, fill, dtype=data.dtype)
    out[
        tuple(
            slice(i.start - r.start, i.stop - r.start) for i, r in zip(inside, region, strict=True)
        )
    ] = data
    return out


def run_blocks(
    fn: Callable[[T], R],
    items: Iterable[T],
    executor: Any = None,
    *,
    progress: ProgressCallback = no_progress,
    stage: str = "blocks",
) -> list[R]:
    """``[fn(item) for item in items]``, in order, on ``executor`` when one is given.

    ``executor`` is anything with ``map(fn, items)`` (``concurrent.futures`` executors) or
    ``submit(fn, item)`` returning futures with ``result()``. With a process pool, ``fn`` and the
    items must pickle: use module-level functions (``functools.partial`` of one is fine).
    """
    work = list(items)
    total = len(work)
    progress(stage, 0, total)
    if executor is None:
        results_iter: Iterable[R] = map(fn, work)
    elif hasattr(executor, "map"):
        results_iter = executor.map(fn, work)
    elif hasattr(executor, "submit"):
        futures = [executor.submit(fn, item) for item in work]
        results_iter = (future.result() for future in futures)
    else:
        raise TypeError("executor must offer map(fn, items) or submit(fn, item)")
    results: list[R] = []
    for result in results_iter:
        results.append(result)
        progress(stage, len(results), total)
    return results
