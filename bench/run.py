"""Plans on Celery workers: the same prediction and segmentation with 1 and 2 worker processes.

    .venv/bin/python bench/run.py [--size 256] [--width 8] [--workers 1,2] [--keep DIR] [--services]
    .venv/bin/python bench/run.py --site [--size 256] [--workers 1,2] [--services]

The site runs a pipeline step as a saved plan (:mod:`pipeline.plan`) whose items Celery workers
take one by one (:mod:`webapp.core.jobs.plans`), so more worker processes, on this machine or on
others sharing ``DATA_ROOT``, make a step faster. This measures it on a synthetic nuclei volume
(``size``^3 voxels, 200 nm): U-Net prediction (untrained model of ``width``: weights do not change
the speed) and the seeded watershed on the ground truth's signed distance (an untrained model's
map has no nuclei; 64^3 blocks, ``--blocks-per-item`` of them per task, by default
``blocks_per_item_for``'s 8), each item on one thread, so a worker process is one core's worth.

The site's embedded configuration (SQLite, the file-system broker, no server) runs in a
temporary directory (``--services``: the environment's PostgreSQL and Redis); for each worker
count a real ``celery -A webapp worker --concurrency N`` runs both plans. The baseline, in the
same run: the same plans in this process (:class:`pipeline.plan.LocalExecutor`, one thread).
Prints wall times, the speed-up over one worker and the ratio to the in-process run.

``--site``: the same *site run* instead, as "Segment with a registered model" starts it
(``runs.services.run_start`` with a dataset and a model): predict, segment, merge, measure,
mesh, publish, with 1 and then 2 worker processes (``--concurrency``). The dataset is the
browser tests' synthetic nuclei (``size``^3, 200 nm); the model is trained first in this
process (the ``tiny`` preset's settings on four 64^3 boxes of the truth, about a minute) and
registered, so that prediction finds the nuclei and the later stages have objects to work on.
Prints each run's wall time from queueing to publication, its stages' seconds, the speed-up,
and whether the runs published the same labels.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

VOXEL = (200.0, 200.0, 200.0)
NUCLEI_PER_256 = 300


def _environment(root: Path, services: bool) -> dict[str, str]:
    """The embedded configuration in ``root``; with ``services``, the environment's
    DATABASE_URL and CELERY_BROKER_URL (PostgreSQL and Redis, as in production) are kept."""
    env = {
        k: v
        for k, v in os.environ.items()
        if services or not k.startswith(("CELERY_", "DATABASE_"))
    }
    env.update(
        ANNOTOME_VAR_DIR=str(root / "var"),
        DJANGO_SETTINGS_MODULE="webapp.settings.dev",
        ANNOTOME_BROKER_POLL_SECONDS="0.05",
    )
    return env


def django_here(root: Path, services: bool) -> dict[str, str]:
    """This process as a site process of the configuration in ``root`` (:func:`_environment`):
    its environment only, the database migrated, Django set up. Returns the environment (for
    the site's and workers' processes)."""
    env = _environment(root, services)
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    os.environ.update(env)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO_ROOT, env=env,
        check=True,
    )  # fmt: skip
    import django

    django.setup()
    return env


def _make_inputs(folder: Path, size: int, width: int) -> tuple[Path, Path, Path]:
    """The image (OME-Zarr), the truth's signed distance (Zarr) and an untrained model."""
    import edt
    import torch
    import zarr

    from pipeline.model_io import save_model
    from pipeline.ome_zarr_io import create_single_level_image
    from pipeline.synthetic import make_nuclei_volume
    from pipeline.unet import UNet, UNetConfig

    folder.mkdir(parents=True, exist_ok=True)
    n = max(1, round(NUCLEI_PER_256 * (size / 256) ** 3))
    image, labels = make_nuclei_volume((size, size, size), n, seed=0, voxel_size_nm=VOXEL[0])
    image_path = folder / "image.ome.zarr"
    stored = create_single_level_image(
        image_path,
        image.shape,
        dtype=image.dtype,
        chunks=(64, 64, 64),
        voxel_size=VOXEL,
        name="image",
    )
    stored[:] = image
    signed = edt.edt(labels, anisotropy=VOXEL, black_border=False) - edt.edt(
        labels == 0, anisotropy=VOXEL
    )
    distance_path = folder / "distance.zarr"
    distance = zarr.create_array(
        str(distance_path), shape=labels.shape, chunks=(64, 64, 64), dtype=np.float32
    )
    distance[:] = signed.astype(np.float32)
    torch.manual_seed(0)
    model_path = folder / "model.pt"
    save_model(
        model_path, UNet(UNetConfig(width=width)), mean=float(image.mean()),
        std=float(image.std()), voxel_size=VOXEL, metadata={"clamp_nm": 4000.0},
    )  # fmt: skip
    return image_path, distance_path, model_path


def _plans(
    inputs: tuple[Path, Path, Path], out: Path, for_workers: bool, blocks_per_item: int
) -> list[Any]:
    from pipeline.predict import plan_predict
    from pipeline.segment import plan_segment

    image, distance, model = inputs
    predict = plan_predict(
        model, image, out / "prediction", num_threads=1, device="cpu", for_workers=for_workers
    )
    segment = plan_segment(
        distance, out / "labels.zarr", out / "segment-work", block_shape=64, voxel_size=VOXEL,
        seed_threshold=705.6, blocks_per_item=blocks_per_item,
    )  # fmt: skip
    return [predict, segment]


def _start_worker(env: dict[str, str], concurrency: int, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "celery", "-A", "webapp", "worker", "-l", "info",
        "--concurrency", str(concurrency), "--pool", "prefork",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", f"bench-{concurrency}@%h",
    ]  # fmt: skip
    handle = log.open("ab")
    proc = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while b" ready." not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the worker did not start; its log:\n{log.read_text()}")
        time.sleep(0.2)
    return proc


def _stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """Celery's warm shutdown (TERM to the main process: tasks still running finish, such as a
    run's last log lines after its publication committed); the whole group after 60 s."""
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=60)


def _on_workers(plans: list[Any]) -> list[float]:
    """Each plan on the workers, one after the other; seconds each."""
    from pipeline.plan import plan_state
    from webapp.core.jobs.plans import CeleryPlanExecutor

    times = []
    for plan in plans:
        start = time.perf_counter()
        CeleryPlanExecutor().execute(plan)
        while (state := plan_state(plan.work_dir)).state == "running":
            time.sleep(0.05)
        if state.state != "finished":
            raise SystemExit(f"{plan.kind} plan {state.state}: {state.error}")
        times.append(time.perf_counter() - start)
    return times


def _here(plans: list[Any]) -> list[float]:
    from pipeline.plan import LocalExecutor

    times = []
    for plan in plans:
        start = time.perf_counter()
        LocalExecutor().execute(plan)
        times.append(time.perf_counter() - start)
    return times


def _site_model(dataset: Any, folder: Path) -> Any:
    """A model trained here on four 64^3 boxes of the dataset's truth (the tiny preset's
    settings), registered as the dataset's version 1."""
    import pandas as pd
    from django.conf import settings

    from pipeline.config import parse_config
    from pipeline.run import run_pipeline
    from webapp.datasets.models import LayerKind
    from webapp.runs.models import ModelVersion

    folder.mkdir(parents=True, exist_ok=True)
    image = dataset.layers.get(kind=LayerKind.IMAGE)
    truth = dataset.layers.get(kind=LayerKind.SEGMENTATION)
    size = int(image.shape[-1])
    corners = [(0, 0, 0), (size - 64, size - 64, size - 64), (0, size - 64, 0), (size - 64, 0, 0)]
    table = folder / "boxes.csv"
    pd.DataFrame(
        [{"name": f"b{i}", "z": z, "y": y, "x": x, "d": 64, "h": 64, "w": 64}
         for i, (z, y, x) in enumerate(corners)]
    ).to_csv(table, index=False)  # fmt: skip
    config = parse_config(
        {
            "data": {"image": str(dataset.root / image.path),
                     "labels": str(dataset.root / truth.path), "boxes": str(table)},
            "model": {"width": 4},
            "training": {"seed": 0, "batch_size": 2, "max_epochs": 6, "iterations_per_epoch": 25,
                         "lr": 1e-2, "val_interval": 2, "max_val_patches": 2, "health_epochs": 0},
        },
        base=folder,
        source="bench",
    )  # fmt: skip
    result = run_pipeline(config, folder / "train", steps=["train"])
    target = Path(settings.DATA_ROOT) / "models" / f"dataset-{dataset.pk}" / "v1" / "model.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(Path(result.outputs["train.best_checkpoint"]).read_bytes())
    return ModelVersion.objects.create(
        dataset=dataset, number=1, path=str(target.relative_to(settings.DATA_ROOT)),
        params={"mode": "train"}, metrics={}, current=True,
    )  # fmt: skip


def _site_runs(env: dict[str, str], counts: list[int], root: Path, size: int) -> None:
    """The same site run with each worker count (module docstring)."""
    from django.contrib.auth import get_user_model

    from tests.browser.nuclei_dataset import build_nuclei_dataset
    from webapp.runs import services
    from webapp.runs.models import STAGES, ModelVersion, PipelineRun

    owner = get_user_model().objects.create_user("bench-owner")
    t0 = time.perf_counter()
    n = max(1, round(NUCLEI_PER_256 * (size / 256) ** 3))
    dataset = build_nuclei_dataset(owner, slug="bench-run", shape=(size,) * 3, n_nuclei=n)
    model = _site_model(dataset, root / "model")
    print(f"dataset {size}^3 with {n} nuclei and a model trained in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    rows: list[tuple[str, float, dict[str, float], int]] = []
    for count in counts:
        proc = _start_worker(env, count, root / f"site-worker-{count}.log")
        try:
            start = time.perf_counter()
            run = services.run_start(owner, None, preset="standard", dataset=dataset, model=model)
            while (run := PipelineRun.objects.get(pk=run.pk)).is_active:
                time.sleep(0.2)
            wall = time.perf_counter() - start
        finally:
            _stop_worker(proc)
        if run.status != "succeeded":
            raise SystemExit(f"the run {run.status}: {run.error}\n{run.log[-2000:]}")
        version = ModelVersion.objects.get(run=run)
        seconds = {s: float((run.stages.get(s) or {}).get("seconds") or 0) for s in STAGES}
        rows.append((f"{count} worker process{'es' if count > 1 else ''}", wall, seconds,
                     version.pk))  # fmt: skip
        print(f"  {rows[-1][0]}: {wall:.1f} s", flush=True)
    shown = [s for s in STAGES if any(r[2][s] >= 0.05 for r in rows)]
    print(f"\n{'':22} {'wall s':>8} {'vs 1':>6}  " + " ".join(f"{s:>9}" for s in shown))
    for name, wall, seconds, _ in rows:
        print(f"{name:22} {wall:8.1f} {rows[0][1] / wall:5.2f}x  "
              + " ".join(f"{seconds[s]:9.1f}" for s in shown))  # fmt: skip
    from pipeline.ome_zarr_io import open_spatial_level

    stores = []
    for *_, version_id in rows:
        layer = ModelVersion.objects.get(pk=version_id).layer
        assert layer is not None
        stores.append(np.asarray(open_spatial_level(dataset.root / layer.path, 0).array[:]))
    same = all(np.array_equal(stores[0], other) for other in stores[1:])
    print(f"\nsame labels published by every run: {same}; objects: {len(np.unique(stores[0])) - 1}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="edge of the volume in voxels")
    parser.add_argument("--width", type=int, default=8, help="U-Net width (untrained)")
    parser.add_argument("--workers", default="1,2", help="worker process counts to compare")
    parser.add_argument("--keep", type=Path, help="keep the files here (default: a temp dir)")
    parser.add_argument(
        "--blocks-per-item", type=int, default=None,
        help="segmentation blocks (64^3) per task (default: blocks_per_item_for, 8)",
    )  # fmt: skip
    parser.add_argument(
        "--services", action="store_true",
        help="use DATABASE_URL and CELERY_BROKER_URL from the environment (migrated here)",
    )  # fmt: skip
    parser.add_argument(
        "--site", action="store_true", help="a whole site run per worker count (see above)"
    )
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",")]
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-run-"))
    env = django_here(root, args.services)
    from django.conf import settings

    import webapp.celery  # noqa: F401  (the app the executor sends with)

    if args.site:
        _site_runs(env, counts, root, args.size)
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
        return
    data = Path(settings.DATA_ROOT) / "bench"
    t0 = time.perf_counter()
    inputs = _make_inputs(data / "inputs", args.size, args.width)
    broker = settings.CELERY_BROKER_URL.split("://", 1)[0]
    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(f"{args.size}^3 voxels, U-Net width {args.width}; broker {broker}, database "
          f"{database}; inputs in {time.perf_counter() - t0:.0f} s under {root}")  # fmt: skip

    from pipeline.segment import blocks_per_item_for

    per_item = args.blocks_per_item or blocks_per_item_for((64, 64, 64))
    print(f"segmentation: 64^3 blocks, {per_item} per task")
    here = _here(_plans(inputs, data / "here", False, per_item))
    rows = [("in this process, 1 thread", here)]
    for n in counts:
        proc = _start_worker(env, n, root / f"worker-{n}.log")
        try:
            rows.append((f"{n} worker process{'es' if n > 1 else ''}", _on_workers(
                _plans(inputs, data / f"workers-{n}", True, per_item))))  # fmt: skip
        finally:
            _stop_worker(proc)

    one = next((t for name, t in rows if name.startswith("1 worker")), None)
    print(f"\n{'':28} {'predict s':>10} {'segment s':>10} {'total s':>9} "
          f"{'vs 1 worker':>12} {'vs here':>8}")  # fmt: skip
    for name, (predict, segment) in rows:
        total = predict + segment
        speed_up = f"{sum(one) / total:.2f}x" if one else "-"
        print(f"{name:28} {predict:10.1f} {segment:10.1f} {total:9.1f} {speed_up:>12} "
              f"{sum(here) / total:7.2f}x")  # fmt: skip
    labels = [np.asarray(__import__("zarr").open_array(
        str(data / name / "labels.zarr" / "s0"), mode="r")[:])
        for name in ["here", *(f"workers-{n}" for n in counts)]]  # fmt: skip
    same = all(np.array_equal(labels[0], other) for other in labels[1:])
    print(f"\nlabels identical across runs: {same}; objects: {len(np.unique(labels[0])) - 1}")
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
