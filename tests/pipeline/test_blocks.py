"""Block grid, padded reads and the executor-agnostic block runner."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import zarr

from pipeline.blocks import iter_blocks, read_padded, run_blocks


@pytest.mark.parametrize(
    ("shape", "block"), [((10, 7, 13), (4, 4, 5)), ((8, 8, 8), (8, 8, 8)), ((9, 5), (2, 5))]
)
def test_grid_covers_the_volume_exactly_once(
    shape: tuple[int, ...], block: tuple[int, ...]
) -> None:
    coverage = np.zeros(shape, dtype=np.int32)
    blocks = list(iter_blocks(shape, block, halo=2))
    for b in blocks:
        coverage[b.core] += 1
        assert all(0 < n <= m for n, m in zip(b.core_shape, block, strict=True))
        assert b.outer_shape == tuple(n + 4 for n in b.core_shape)
    assert (coverage == 1).all()
    assert [b.index for b in blocks] == list(range(len(blocks)))
    expected = int(np.prod([-(-n // m) for n, m in zip(shape, block, strict=True)]))
    assert len(blocks) == expected


def test_halo_read_pads_with_zeros_outside_and_reads_inside(tmp_path: Any) -> None:
    volume = np.arange(1, 6 * 7 * 8 + 1, dtype=np.float32).reshape(6, 7, 8)
    stored = zarr.create_array(
        str(tmp_path / "v.zarr"), shape=volume.shape, chunks=(3, 3, 3), dtype=volume.dtype
    )
    stored[:] = volume
    padded = np.pad(volume, 2)
    for source in (volume, stored):
        for b in iter_blocks(volume.shape, (4, 4, 4), halo=2):
            read = read_padded(source, b.outer)
            window = tuple(slice(s.start + 2, s.stop + 2) for s in b.outer)
            np.testing.assert_array_equal(read, padded[window])
            np.testing.assert_array_equal(read[b.core_in_outer], volume[b.core])
    fully_outside = read_padded(volume, (slice(10, 12), slice(0, 2), slice(0, 2)))
    assert fully_outside.shape == (2, 2, 2) and not fully_outside.any()


def _square(x: int) -> int:
    return x * x


class SubmitOnly:
    """An executor offering only ``submit`` (as a Celery adapter might)."""

    def submit(self, fn: Any, item: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(item))
        return future


def test_run_blocks_same_results_in_order_on_every_executor() -> None:
    expected = [x * x for x in range(20)]
    reports: list[tuple[str, int, int]] = []
    assert (
        run_blocks(_square, range(20), progress=lambda *r: reports.append(r), stage="sq")
        == expected
    )
    assert reports[0] == ("sq", 0, 20) and reports[-1] == ("sq", 20, 20)
    with ThreadPoolExecutor(max_workers=3) as pool:
        assert run_blocks(_square, range(20), pool) == expected
    assert run_blocks(_square, range(20), SubmitOnly()) == expected
    with pytest.raises(TypeError):
        run_blocks(_square, range(3), object())
