"""Detections as Neuroglancer points: write 100,000 points, seconds and peak memory.

    .venv/bin/python bench/annotation_points.py [--points 100000] [--repeats 3] [--limit 500]
        [--no-baseline]

One command: a synthetic detections table (``--points`` objects at random centroids in a
400 x 1000 x 1000 volume of 400 x 250 x 250 nm voxels, with volume and sphericity) is written
as a precomputed point annotation source by ``pipeline.annotation_points.write_detection_points``
(the writer a detections build runs), ``--repeats`` times, each in a fresh spawned process that
reports its wall time and memory: the peak RSS (``VmHWM``) and the RSS just before writing, so
their difference is what writing cost. The baseline, measured in the same run, is the
neuroglancer wheel's own ``AnnotationWriter`` on the same points (one spatial cell, one file
per point in each id index). The run also reads the written source back to check it: every
point once over the spatial levels, no cell above ``--limit``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

SHAPE = (400, 1000, 1000)
VOXEL_NM = (400.0, 250.0, 250.0)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _table(n: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "segment_id": np.arange(1, n + 1, dtype=np.int64),
            "centroid_z": rng.uniform(0, SHAPE[0] - 1, n),
            "centroid_y": rng.uniform(0, SHAPE[1] - 1, n),
            "centroid_x": rng.uniform(0, SHAPE[2] - 1, n),
            "volume": rng.uniform(1, 100, n),
            "sphericity": rng.uniform(0.4, 1.0, n),
        }
    )


def _child_ours(n: int, limit: int, out_dir: str, queue: Any) -> None:
    from pipeline.annotation_points import write_detection_points
    from pipeline.detections import Geometry

    table = _table(n)
    before = _status_kb("VmRSS")
    start = time.perf_counter()
    result = write_detection_points(
        table, Path(out_dir), Geometry(VOXEL_NM), shape=SHAPE, limit=limit
    )
    seconds = time.perf_counter() - start
    levels = [(level.cells, level.limit, level.points) for level in result.levels]
    queue.put((seconds, before / 1024, _status_kb("VmHWM") / 1024, levels))


def _child_wheel(n: int, out_dir: str, queue: Any) -> None:
    from neuroglancer import coordinate_space, viewer_state, write_annotations

    table = _table(n)
    before = _status_kb("VmRSS")
    start = time.perf_counter()
    space = coordinate_space.CoordinateSpace(
        names=["x", "y", "z"], units="m", scales=[v / 1e9 for v in VOXEL_NM[::-1]]
    )
    props = [
        viewer_state.AnnotationPropertySpec(id="volume", type="float32"),
        viewer_state.AnnotationPropertySpec(id="sphericity", type="float32"),
    ]
    writer = write_annotations.AnnotationWriter(
        space, "point", relationships=["segment_id"], properties=props
    )
    xyz = table[["centroid_x", "centroid_y", "centroid_z"]].to_numpy()
    for row, (sid, volume, spher) in enumerate(
        table[["segment_id", "volume", "sphericity"]].itertuples(index=False)
    ):
        writer.add_point(xyz[row], id=int(sid), volume=volume, sphericity=spher, segment_id=sid)
    writer.write(out_dir)
    seconds = time.perf_counter() - start
    queue.put((seconds, before / 1024, _status_kb("VmHWM") / 1024, None))


def _run(target: Any, *args: Any) -> Any:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get(timeout=1800)
    process.join()
    return result


def _files(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _check(path: Path, n: int, limit: int) -> str:
    """Every point once over the spatial levels, no cell above the limit."""
    import numpy as np

    from pipeline.annotation_points import read_points_info, record_dtype

    info = read_points_info(path)
    record = record_dtype(len(info["properties"]))
    seen, most = [], 0
    for spatial in info["spatial"]:
        for file in (path / spatial["key"]).iterdir():
            data = file.read_bytes()
            count = int(np.frombuffer(data, "<u8", 1)[0])
            most = max(most, count)
            seen.append(np.frombuffer(data, "<u8", count, 8 + count * record.itemsize))
    ids = np.concatenate(seen)
    ok = len(ids) == n == len(np.unique(ids)) and most <= limit
    return f"{'ok' if ok else 'FAILED'}: {len(ids):,} points in the cells, fullest cell {most}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--no-baseline", action="store_true", help="skip the wheel's writer")
    args = parser.parse_args()
    n = args.points
    scratch = Path(tempfile.mkdtemp(prefix="bench-points-"))
    try:
        runs = []
        for i in range(args.repeats):
            runs.append(_run(_child_ours, n, args.limit, str(scratch / f"ours-{i}")))
        seconds = [r[0] for r in runs]
        files, size = _files(scratch / "ours-0")
        print(f"{n:,} points, {args.limit} at most per cell, {args.repeats} runs")
        print(
            "| writer | seconds (median) | peak RSS MB | RSS before MB | writing MB | files | MB |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        peak = max(r[2] for r in runs)
        before = statistics.median(r[1] for r in runs)
        median = statistics.median(seconds)
        print(
            f"| annotation_points | {median:.2f} | {peak:.0f} | {before:.0f} | "
            f"{peak - before:.0f} | {files:,} | {size / 2**20:.1f} |"
        )
        if not args.no_baseline:
            wheel = _run(_child_wheel, n, str(scratch / "wheel"))
            wfiles, wsize = _files(scratch / "wheel")
            print(
                f"| neuroglancer AnnotationWriter (baseline) | {wheel[0]:.2f} | {wheel[2]:.0f} | "
                f"{wheel[1]:.0f} | {wheel[2] - wheel[1]:.0f} | {wfiles:,} | {wsize / 2**20:.1f} |"
            )
            print(f"speed-up over the baseline: {wheel[0] / median:.1f}x")
        levels = ", ".join(f"{c} cells <= {lim} ({p:,})" for c, lim, p in runs[0][3])
        print(f"levels: {levels}")
        print(f"runs (s): {', '.join(f'{t:.2f}' for t in seconds)}")
        print(f"check: {_check(scratch / 'ours-0', n, args.limit)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
