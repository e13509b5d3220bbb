"""Detections table benchmark: build a 100,000-object table on PostgreSQL, then time API pages.

    .venv/bin/python bench/detections.py [--cells 40 50 50] [--repeats 25] [--limit 100]
        [--database-url postgres://postgres@127.0.0.1:5432/annotome_bench_detections] [--keep]

One command, one run, everything in a scratch database (dropped and created; dropped again at
the end unless ``--keep``) and a temporary data directory:

1. A synthetic layer: a grid of ``cells`` boxes of varying sizes (100,000 by default, 50 M
   voxels of uint32 labels and uint16 image, written chunk by chunk as OME-Zarr 0.5), and a mesh
   directory holding only ``morphometrics.parquet`` with made-up surface areas (so the table has
   areas and sphericities without meshing 100,000 objects).
2. The build job (``detections_build_run``: blockwise measurement with mean intensities, then
   the upsert of every row in one transaction) in a fresh process, which reports its wall time
   and peak RSS; each step runs in its own spawned process, so the peaks are the build's.
3. API pages through Django's full stack (test client, a signed-in owner of the private
   dataset: sessions, permissions, DRF, pagination with its COUNT, serialization), for several
   sort/filter combinations: median and p95 per page. The baseline, measured in the same run,
   is the bare SQL of the same page (the ORM's SELECT, executed and fetched with a cursor), so
   the ratio is what the API adds to the database's own work. The goal is < 200 ms per page.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

VOXEL_NM = (400.0, 250.0, 250.0)
CELL = (6, 12, 12)  # each object is a box of 2-5 x 3-11 x 3-11 voxels in its own cell
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/annotome_bench_detections"
GOAL_MS = 200.0

CASES: list[tuple[str, dict[str, str]]] = [
    ("default order (segment_id)", {}),
    ("ordering=-volume", {"ordering": "-volume"}),
    ("ordering=sphericity, offset 50,000", {"ordering": "sphericity", "offset": "50000"}),
    ("ordering=-segment_id, offset 99,000", {"ordering": "-segment_id", "offset": "99000"}),
    (
        "volume range + ordering=-sphericity",
        {"volume_min": "0.5", "volume_max": "1.5", "ordering": "-sphericity"},
    ),
    (
        "sphericity_min + ordering=centroid_z_um",
        {"sphericity_min": "0.8", "ordering": "centroid_z_um"},
    ),
    ("region (1/8 of the volume) + ordering=volume", {"region": "", "ordering": "volume"}),
    (
        "intensity + area ranges + ordering=-surface_area, offset 1,000",
        {
            "mean_intensity_min": "200",
            "surface_area_max": "30",
            "ordering": "-surface_area",
            "offset": "1000",
        },
    ),
]


def _django(database_url: str, data_root: Path) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["ANNOTOME_DATA_ROOT"] = str(data_root)
    os.environ["DJANGO_SETTINGS_MODULE"] = "webapp.settings.dev"
    import django

    django.setup()


def _recreate_database(url: str, *, drop_only: bool = False) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


# --- 1. the synthetic layer (in a child process) -------------------------------------------


def _box_sizes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return 2 + ids % 4, 3 + (ids // 4) % 9, 3 + (ids // 36) % 9


def write_layer(dataset_dir: Path, cells: tuple[int, int, int]) -> int:
    from pipeline.ome_zarr_io import create_single_level_image

    shape = tuple(c * n for c, n in zip(CELL, cells, strict=True))
    chunks = (60, 60, 60)  # whole cells per chunk: each chunk is written once
    image = create_single_level_image(
        dataset_dir / "image.ome.zarr", shape, dtype="uint16", chunks=chunks,
        voxel_size=VOXEL_NM, name="image",
    )  # fmt: skip
    labels = create_single_level_image(
        dataset_dir / "labels.ome.zarr", shape, dtype="uint32", chunks=chunks,
        voxel_size=VOXEL_NM, name="nuclei", label=True,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    x = np.arange(shape[2])[None, None, :]
    for z0 in range(0, shape[0], chunks[0]):
        for y0 in range(0, shape[1], 2 * chunks[1]):
            z = np.arange(z0, min(z0 + chunks[0], shape[0]))[:, None, None]
            y = np.arange(y0, min(y0 + 2 * chunks[1], shape[1]))[None, :, None]
            ids = (z // CELL[0]) * cells[1] * cells[2] + (y // CELL[1]) * cells[2] + x // CELL[2]
            ids = ids + 1
            bz, by, bx = _box_sizes(ids)
            inside = (z % CELL[0] < bz) & (y % CELL[1] < by) & (x % CELL[2] < bx)
            region = (slice(z0, z0 + z.shape[0]), slice(y0, y0 + y.shape[1]))
            labels[region] = np.where(inside, ids, 0).astype(np.uint32)
            noise = rng.normal(100, 10, inside.shape)
            image[region] = (noise + inside * (ids % 997)).clip(0, 65535).astype(np.uint16)
    n = int(np.prod(cells))
    import pandas as pd

    mesh_dir = dataset_dir / "meshes" / "nuclei"
    mesh_dir.mkdir(parents=True)
    ids = np.arange(1, n + 1)
    bz, by, bx = _box_sizes(ids)
    dims = np.stack([bz * VOXEL_NM[0], by * VOXEL_NM[1], bx * VOXEL_NM[2]], axis=1) / 1000
    area = 2 * (dims[:, 0] * dims[:, 1] + dims[:, 1] * dims[:, 2] + dims[:, 0] * dims[:, 2])
    area *= rng.uniform(0.8, 1.0, n)  # rounded corners
    pd.DataFrame({"id": ids, "surface_area": area}).to_parquet(mesh_dir / "morphometrics.parquet")
    return n


def _child_write(dataset_dir: str, cells: tuple[int, int, int], out: Any) -> None:
    start = time.perf_counter()
    n = write_layer(Path(dataset_dir), cells)
    out.put((n, time.perf_counter() - start))


# --- 2. the build (in a child process) ------------------------------------------------------


def _child_build(database_url: str, data_root: str, build_id: int, out: Any) -> None:
    _django(database_url, Path(data_root))
    from webapp.detections.builds import detections_build_run

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    stages: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        stages.setdefault(stage, time.perf_counter() - start)

    build = detections_build_run(build_id, progress=progress)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.put((build.status, build.error, seconds, stages, before / 1024, peak / 1024))


def _run_child(target: Any, *args: Any) -> Any:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, out))
    process.start()
    result = out.get()
    process.join()
    return result


# --- 3. pages ---------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def measure_pages(layer: Any, owner: Any, repeats: int, limit: int) -> list[dict[str, Any]]:
    from django.db import connection
    from django.test import Client

    from webapp.detections.selectors import DetectionQuery, detections_of_layer

    client = Client()
    client.force_login(owner)
    base = f"/api/v1/datasets/{layer.dataset.slug}/layers/{layer.name}/detections/"
    shape = [c * n for c, n in zip(CELL, layer.shape_cells, strict=True)]
    region = ",".join(str(v) for v in [0, 0, 0, shape[0] // 2, shape[1] // 2, shape[2] // 2])
    rows = []
    for label, case in CASES:
        params = dict(case)
        if "region" in params:
            params["region"] = region
        offset = int(params.pop("offset", "0"))
        query_params = {**params, "limit": str(limit), "offset": str(offset)}
        url = f"{base}?{urlencode(query_params)}"
        query = DetectionQuery.from_params(params)
        page = detections_of_layer(layer, query)[offset : offset + limit]
        sql, sql_params = page.query.sql_with_params()
        api_ms: list[float] = []
        sql_ms: list[float] = []
        count = 0
        for i in range(repeats + 2):
            start = time.perf_counter()
            response = client.get(url)
            elapsed = (time.perf_counter() - start) * 1000
            assert response.status_code == 200, (label, response.content[:300])
            count = response.json()["count"]
            start = time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute(sql, sql_params)
                fetched = cursor.fetchall()
            sql_elapsed = (time.perf_counter() - start) * 1000
            if i >= 2:  # warm-up
                api_ms.append(elapsed)
                sql_ms.append(sql_elapsed)
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {sql}", sql_params)
            plan = [line for (line,) in cursor.fetchall()]
        scans = [p.strip().removeprefix("->  ").split("  (")[0] for p in plan if "Scan" in p]
        rows.append(
            {
                "case": label,
                "count": count,
                "page_rows": len(fetched),
                "api_p50": statistics.median(api_ms),
                "api_p95": _percentile(api_ms, 95),
                "sql_p50": statistics.median(sql_ms),
                "sql_p95": _percentile(sql_ms, 95),
                "plan": "; ".join(scans[:2]),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cells", nargs=3, type=int, default=[40, 50, 50], metavar=("Z", "Y", "X"))
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--limit", type=int, default=100, help="page size")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--keep", action="store_true", help="keep the database and the files")
    args = parser.parse_args()
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("the benchmark needs PostgreSQL (--database-url postgres://...)")
    cells = tuple(args.cells)
    scratch = Path(tempfile.mkdtemp(prefix="bench-detections-"))
    data_root = scratch / "data"
    dataset_dir = data_root / "datasets" / "bench"
    dataset_dir.mkdir(parents=True)
    _recreate_database(args.database_url)
    try:
        n, seconds = _run_child(_child_write, str(dataset_dir), cells)
        shape = [c * k for c, k in zip(CELL, cells, strict=True)]
        whole_mb = int(np.prod(shape)) * 6 / 1e6
        print(f"layer: {n:,} objects, {shape} voxels ({whole_mb:,.0f} MB of labels + image "
              f"held whole), written in {seconds:.1f} s")  # fmt: skip

        _django(args.database_url, data_root)
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.db import connection

        from webapp.datasets.models import Dataset, Layer, LayerKind
        from webapp.detections.models import Detection, DetectionBuild

        call_command("migrate", verbosity=0)
        owner = get_user_model().objects.create_user("bench", password="bench-pass-123")
        dataset = Dataset.objects.create(name="Bench", slug="bench", owner=owner)
        common = {
            "dataset": dataset,
            "shape": shape,
            "axes": ["z", "y", "x"],
            "voxel_size": list(VOXEL_NM),
        }
        Layer.objects.create(name="image", kind=LayerKind.IMAGE, path="image.ome.zarr", **common)
        layer = Layer.objects.create(
            name="nuclei", kind=LayerKind.SEGMENTATION, path="labels.ome.zarr", **common
        )
        Layer.objects.create(
            name="nuclei-meshes", kind=LayerKind.MESH, path="meshes/nuclei", source_layer=layer,
            **common,
        )  # fmt: skip
        build = DetectionBuild.objects.create(layer=layer, owner=owner, reason="command")
        connection.close()  # the child writes; this process reads afterwards
        status, error, seconds, stages, rss_before, rss_peak = _run_child(
            _child_build, args.database_url, str(data_root), build.id
        )
        if status != "succeeded":
            print(f"build {status}: {error}")
            return 1
        saving = seconds - stages.get("saving", seconds)
        # The build writes the detections as Neuroglancer points between measuring and saving.
        measuring = stages.get("annotation points", stages.get("saving", seconds))
        points = stages.get("saving", seconds) - measuring
        print(
            f"build: {seconds:.1f} s (measuring {measuring:.1f} s, points {points:.1f} s, "
            f"writing {saving:.1f} s: {n / max(saving, 1e-9):,.0f} rows/s), peak RSS "
            f"{rss_peak:.0f} MB (Django + libraries at start: {rss_before:.0f} MB)"
        )
        assert Detection.objects.filter(layer=layer).count() == n
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE detections_detection")
        layer.shape_cells = cells  # type: ignore[attr-defined]
        rows = measure_pages(layer, owner, args.repeats, args.limit)
        print(f"\nAPI pages of {args.limit} rows, {args.repeats} repeats; baseline: the page's "
              "bare SQL (SELECT, fetched) in the same run")  # fmt: skip
        header = (
            f"{'case':<62} {'matches':>8} {'API p50':>8} {'API p95':>8} {'SQL p50':>8} {'ratio':>6}"
        )
        print(header)
        print("-" * len(header))
        worst = 0.0
        for r in rows:
            worst = max(worst, r["api_p95"])
            ratio = r["api_p50"] / max(r["sql_p50"], 1e-6)
            print(f"{r['case']:<62} {r['count']:>8,} {r['api_p50']:>6.1f}ms {r['api_p95']:>6.1f}ms "
                  f"{r['sql_p50']:>6.1f}ms {ratio:>5.1f}x")  # fmt: skip
        print("\nplans (first scans of the page query):")
        for r in rows:
            print(f"  {r['case']}: {r['plan']}")
        verdict = "met" if worst < GOAL_MS else "MISSED"
        print(f"\ngoal: every page < {GOAL_MS:.0f} ms at p95: {verdict} (worst p95 {worst:.1f} ms)")
        connection.close()
        return 0 if worst < GOAL_MS else 2
    finally:
        if not args.keep:
            try:
                from django.db import connections

                connections.close_all()
            except Exception:
                pass
            _recreate_database(args.database_url, drop_only=True)
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"kept: {args.database_url} and {scratch}")


if __name__ == "__main__":
    sys.exit(main())
