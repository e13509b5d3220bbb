"""Meshes of painted labels: a 128^3 box of 50 objects, meshed first, then after one object changed.

    .venv/bin/python bench/label_meshes.py [--side 128] [--objects 50] [--repeats 3]

One command, in a temporary directory removed afterwards. A box of ``--side``^3 voxels
(chunks of 64^3, voxels of 200 x 100 x 100 nm, the origin off zero) holds ``--objects``
disjoint balls (``pipeline.synthetic.make_sphere_labels``, radius 6-11 voxels), saved as
version 1 of a ``LabelVolume``. Measured, each ``--repeats`` times on a fresh cache:

- first: ``pipeline.label_meshes.version_meshes`` of version 1 with an empty cache (every object
  meshed: zmesh, Taubin smoothing, simplification, fragments, manifests, segment properties);
- cached: the same call again (the version's directory exists: what every later request costs);
- one changed: version 2, where one ball grew by 2 voxels, with version 1's cache in place
  (that object meshed, the 49 others reused by their content key);
- baseline, in the same run: version 2 meshed from an empty cache (what a cache per version
  without per-object reuse would cost).

The ratio first / one changed is what the per-object cache buys a save.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pipeline.label_meshes import version_meshes  # noqa: E402
from pipeline.label_store import ChunkIndex, LabelGeometry  # noqa: E402
from pipeline.label_volume import LabelVolume  # noqa: E402
from pipeline.synthetic import make_sphere_labels  # noqa: E402


def _timed(volume: LabelVolume, chunks: Mapping[ChunkIndex, str], cache: Path) -> float:
    """Seconds to get the mesh source of the version with ``chunks`` through ``cache``."""
    start = time.perf_counter()
    version_meshes(volume.blobs, volume.geometry, chunks, cache)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    side = args.side
    geometry = LabelGeometry(
        shape=(side, side, side),
        chunk=(64, 64, 64),
        voxel_size_nm=(200.0, 100.0, 100.0),
        start=(40, 300, 500),
        image_origin_nm=(1000.0, 2000.0, 3000.0),
    )
    labels, centres, radii = make_sphere_labels(
        geometry.shape, args.objects, radius_voxels=(6.0, 11.0), gap_voxels=3.0, seed=4
    )
    n = int(labels.max())
    grown = labels.copy()
    zz, yy, xx = np.indices(labels.shape)
    c, r = centres[0], radii[0] + 2.0
    ball = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r**2
    grown[ball & (labels == 0)] = 1
    with tempfile.TemporaryDirectory(prefix="bench-label-meshes-") as tmp:
        root = Path(tmp)
        volume = LabelVolume.create(root / "labels", geometry, durable=False)
        whole = {i: labels[geometry.chunk_slices(i)] for i in geometry.chunk_indices()}
        v1 = volume.save(0, whole)
        changed = {
            i: grown[geometry.chunk_slices(i)]
            for i in geometry.chunk_indices()
            if (grown[geometry.chunk_slices(i)] != labels[geometry.chunk_slices(i)]).any()
        }
        v2 = volume.save(v1.number, changed)
        times: dict[str, list[float]] = {"first": [], "cached": [], "changed": [], "baseline": []}
        meshed_after_change: tuple[int, ...] = ()
        for repeat in range(args.repeats):
            cache = root / f"cache-{repeat}"
            times["first"].append(_timed(volume, v1.chunks, cache))
            times["cached"].append(_timed(volume, v1.chunks, cache))
            start = time.perf_counter()
            result = version_meshes(volume.blobs, geometry, v2.chunks, cache)
            times["changed"].append(time.perf_counter() - start)
            meshed_after_change = result.meshed
            cold = root / f"cold-{repeat}"
            times["baseline"].append(_timed(volume, v2.chunks, cold))
            shutil.rmtree(cache)
            shutil.rmtree(cold)
    print(
        f"box {side}^3 voxels, {n} objects, chunks 64^3 ({len(v1.chunks)} painted), "
        f"{len(changed)} chunk(s) changed by growing object 1; {args.repeats} repeats"
    )
    print(f"objects meshed after the change: {list(meshed_after_change)}")
    first = statistics.median(times["first"])
    print(f"{'what':<44} {'median s':>9} {'min s':>8} {'max s':>8} {'first / this':>13}")
    rows = [
        ("first meshing of version 1 (empty cache)", "first"),
        ("version 1 again (cached)", "cached"),
        ("version 2, one object changed (v1 cached)", "changed"),
        ("baseline: version 2 from an empty cache", "baseline"),
    ]
    for label, key in rows:
        values = times[key]
        median = statistics.median(values)
        print(
            f"{label:<44} {median:9.3f} {min(values):8.3f} {max(values):8.3f} "
            f"{first / median:13.1f}"
        )


if __name__ == "__main__":
    main()
