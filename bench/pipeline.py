"""Whole-pipeline benchmark: predict, segment, measure+mesh on a synthetic nuclei volume.

    .venv/bin/python bench/pipeline.py [--size 512] [--width 16] [--model PATH] [--compile]
                                       [--block N] [--seg-block 128] [--workers N] [--skip-predict]

The image (size^3 voxels, 200 nm) is written chunk-wise as OME-Zarr from tiles of
``make_nuclei_volume`` (at most 256^3 at a time, so generating it needs bounded memory), with
the ground truth's signed distance alongside. Each stage then runs in its own spawned process,
which reports its time and its peak RSS (``ru_maxrss``), so the peaks are the pipeline's, not the
generator's:

- predict: U-Net probability + distance, block by block (untrained default model unless
  ``--model``; weights do not change the speed), eager as in the default configuration; with
  ``--compile`` (torch.compile) the compilation is done on a warm-up block first and reported
  separately. ``--skip-predict`` leaves inference out, for a memory check of the later stages on
  a volume too large to run inference on here in reasonable time (block-wise inference needs the
  same memory at any volume size).
- segment: seeded watershed + face-IoU merge + relabel (process pool of ``--workers``).
- measure: per-object statistics, meshes, simplification, detections table.

An untrained model's distance map has no nuclei in it, so unless ``--model`` is given the
post-processing stages run on the ground truth's signed distance (same size, realistic object
count). The U-Net's GFLOP/s (convolution FLOPs counted from the architecture) is compared with a
plain channels-last conv3d (width*factor channels in and out) measured in the same run.
Targets (2 cores): U-Net >= 60 % of the conv3d rate; post-inference <= 0.5 x inference;
peak RSS < 4 GB.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

VOXEL_NM = 200.0
TILE = 256
NUCLEI_PER_256 = 300  # as in DESIGN.md's post-processing measurements
CHUNK = 64


def rss_mb(usage: int) -> float:
    return usage / 1024.0  # ru_maxrss is in KiB on Linux


def unet_conv_flops(config: Any, input_shape: tuple[int, ...]) -> int:
    """Multiply-add FLOPs (2 per MAC) of every convolution of the U-Net for one input."""
    n = np.array(input_shape, dtype=np.int64)
    cin = config.in_channels
    flops = 0
    skips = []

    def block(c_in: int, c_out: int, shape: Any) -> tuple[int, Any]:
        total = 0
        for i in range(2):
            shape = shape - 2
            total += 2 * (c_in if i == 0 else c_out) * c_out * 27 * int(np.prod(shape))
        return total, shape

    for level in range(config.depth):
        f, n = block(cin, config.channels(level), n)
        flops += f
        skips.append(n)
        cin = config.channels(level)
        n = n // 2
    f, n = block(cin, config.channels(config.depth), n)
    flops += f
    for level in reversed(range(config.depth)):
        flops += 2 * config.channels(level + 1) * config.channels(level) * int(np.prod(n))
        n = n * 2
        f, n = block(2 * config.channels(level), config.channels(level), n)
        flops += f
    flops += 2 * config.channels(0) * len(config.heads) * int(np.prod(n))
    return flops


def conv3d_gflops(channels: int, edge: int, threads: int, repeats: int = 5) -> float:
    """GFLOP/s of one plain 3x3x3 conv3d (channels -> channels), channels_last_3d, eager."""
    import torch

    torch.set_num_threads(threads)
    conv = torch.nn.Conv3d(channels, channels, 3).to(memory_format=torch.channels_last_3d).eval()
    x = torch.randn(1, channels, edge, edge, edge).to(memory_format=torch.channels_last_3d)
    flops = 2 * channels * channels * 27 * (edge - 2) ** 3
    times = []
    with torch.inference_mode():
        conv(x)
        for _ in range(repeats):
            start = time.perf_counter()
            conv(x)
            times.append(time.perf_counter() - start)
    return flops / float(np.median(times)) / 1e9


def generate(root: Path, size: int, seed: int) -> tuple[Path, Path, int]:
    """Write image.ome.zarr and truth_distance.ome.zarr tile by tile; return paths and nuclei."""
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    from pipeline.synthetic import make_nuclei_volume
    from pipeline.targets import instance_targets

    shape = (size, size, size)
    tile = min(TILE, size)
    arrays = {}
    for name, dtype, fill in (("image", np.uint16, 0), ("truth_distance", np.float32, -4000.0)):
        group = zarr.open_group(str(root / f"{name}.ome.zarr"), mode="w-", zarr_format=3)
        arrays[name] = group.create_array(
            name="s0",
            shape=shape,
            dtype=dtype,
            chunks=(CHUNK,) * 3,
            dimension_names=("z", "y", "x"),
            fill_value=fill,
        )
        datasets = [
            {
                "path": "s0",
                "coordinateTransformations": [{"type": "scale", "scale": [VOXEL_NM] * 3}],
            }
        ]
        axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
        write_multiscales_metadata(group, datasets=datasets, fmt=FormatV05(), axes=axes, name=name)
    n_nuclei = round(NUCLEI_PER_256 * (tile / 256) ** 3)
    total = 0
    starts = range(0, size, tile)
    for index, (z, y, x) in enumerate((z, y, x) for z in starts for y in starts for x in starts):
        image, labels = make_nuclei_volume((tile,) * 3, n_nuclei, seed + index, VOXEL_NM)
        _, distance = instance_targets(labels, (VOXEL_NM,) * 3)
        region = tuple(slice(a, min(a + tile, size)) for a in (z, y, x))
        crop = tuple(slice(0, r.stop - r.start) for r in region)
        arrays["image"][region] = image[crop]
        arrays["truth_distance"][region] = distance[crop]
        total += int(labels.max())
        del image, labels, distance
    return root / "image.ome.zarr", root / "truth_distance.ome.zarr", total


def own_peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Unlike ``ru_maxrss``, which Linux carries over fork and
    exec, it starts afresh in a spawned process, so a stage is not charged its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # not Linux


def _stage(fn: Callable[..., dict[str, Any]], args: tuple[Any, ...], queue: Any) -> None:
    try:
        result = fn(*args)
        result["rss_mb"] = own_peak_rss_mb()
        queue.put(result)
    except BaseException as exc:  # report, do not hang the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


def in_process(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` in a fresh spawned process; return its result with its peak RSS."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_stage, args=(fn, args, queue))
    process.start()
    result: dict[str, Any] = queue.get()
    process.join()
    if "error" in result:
        raise SystemExit(f"stage {fn.__name__} failed: {result['error']}")
    return result


def stage_predict(
    model_path: str, image_path: str, out_dir: str, block: int | None, compile: bool, threads: int
) -> dict[str, Any]:
    from pipeline.model_io import load_model
    from pipeline.ome_zarr_io import open_multiscale
    from pipeline.predict import default_block_shape, predict_volume
    from pipeline.torch_setup import configure_threads

    configure_threads(threads)
    loaded = load_model(Path(model_path), "auto")
    image = open_multiscale(Path(image_path)).levels[0]
    shape = tuple(int(n) for n in image.shape)
    block_shape = (
        default_block_shape(loaded, shape)
        if block is None
        else loaded.config.output_shape(loaded.config.valid_input_shape((block,) * 3))
    )

    def run(volume: Any, name: str) -> tuple[Any, float]:
        start = time.perf_counter()
        result = predict_volume(
            loaded,
            volume,
            Path(out_dir) / name,
            block_shape=block_shape,
            compile=compile,
            voxel_size=(VOXEL_NM,) * 3,
        )
        return result, time.perf_counter() - start

    # Warm-up on one block-sized volume: compilation (if any) and allocator growth.
    warm_image = np.asarray(
        image[tuple(slice(0, min(b, n)) for b, n in zip(block_shape, shape, strict=True))]
    )
    _, warm_seconds = run(warm_image, "warmup")
    result, seconds = run(image, "prediction")
    margin = loaded.config.margin
    block_input = tuple(b + 2 * m for b, m in zip(block_shape, margin, strict=True))
    flops = unet_conv_flops(loaded.config, block_input) * result.blocks_done
    return {
        "seconds": seconds,
        "warmup_seconds": warm_seconds,
        "blocks": result.blocks_done,
        "block_shape": block_shape,
        "gflops": flops / 1e9,
        "flop_per_output_voxel": unet_conv_flops(loaded.config, block_input)
        / math.prod(block_shape),
        "channels": loaded.config.channels(1),
        "level1_edge": (block_input[0] - 4) // 2,
    }


def stage_segment(distance_path: str, out_path: str, block: int, workers: int) -> dict[str, Any]:
    from concurrent.futures import ProcessPoolExecutor

    from pipeline.ome_zarr_io import open_multiscale
    from pipeline.segment import segment_volume

    distance = open_multiscale(Path(distance_path)).levels[0]
    executor = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    start = time.perf_counter()
    try:
        result = segment_volume(
            distance,
            Path(out_path),
            block_shape=block,
            voxel_size=(VOXEL_NM,) * 3,
            executor=executor,
        )
    finally:
        if executor is not None:
            executor.shutdown()
    seconds = time.perf_counter() - start
    # The pool's processes run alongside this one: charge each the largest child's peak (an
    # upper bound, their peaks need not coincide).
    children = rss_mb(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"seconds": seconds, "objects": result.n_objects, "pool_mb": workers * children}


def stage_measure(labels_path: str, out_dir: str) -> dict[str, Any]:
    from pipeline.measure import measure_labels

    start = time.perf_counter()
    result = measure_labels(Path(labels_path), Path(out_dir))
    return {"seconds": time.perf_counter() - start, "objects": result.n_objects}


def save_untrained_model(path: Path, width: int) -> None:
    import torch

    from pipeline.model_io import save_model
    from pipeline.unet import UNet, UNetConfig

    torch.manual_seed(0)
    model = UNet(UNetConfig(width=width))
    for head in model.heads.values():  # untrained heads are zero; give the outputs some spread
        torch.nn.init.normal_(head.weight, std=0.5)
    save_model(
        path, model, mean=0.0, std=1.0, voxel_size=(VOXEL_NM,) * 3, metadata={"clamp_nm": 4000.0}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="volume edge in voxels")
    parser.add_argument("--width", type=int, default=16, help="U-Net width (untrained model)")
    parser.add_argument("--model", type=Path, default=None, help="a trained model file")
    parser.add_argument("--block", type=int, default=None, help="prediction output block edge")
    parser.add_argument("--seg-block", type=int, default=128, help="watershed block edge")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--compile", action="store_true", help="torch.compile (default: eager)")
    parser.add_argument(
        "--skip-predict", action="store_true", help="only segment + measure (memory check)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep the files")
    args = parser.parse_args()
    if args.skip_predict and args.model is not None:
        parser.error("--skip-predict runs on the ground truth's distance: drop --model")
    threads = os.cpu_count() or 1
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        image_path, truth_path, n_nuclei = generate(root, args.size, args.seed)
        generate_s = time.perf_counter() - t
        voxels = args.size**3
        print(
            f"volume {args.size}^3 = {voxels:.3g} voxels, {n_nuclei} nuclei "
            f"(generated in {generate_s:.0f} s)",
            flush=True,
        )
        predict: dict[str, Any] | None = None
        if not args.skip_predict:
            model_path = args.model or root / "untrained.pt"
            if args.model is None:
                save_untrained_model(model_path, args.width)
            predict = in_process(
                stage_predict,
                str(model_path),
                str(image_path),
                str(root),
                args.block,
                args.compile,
                threads,
            )
            report_stage("predict", predict["seconds"], voxels, predict["rss_mb"])
        distance_path = root / "prediction" / "distance.ome.zarr" if args.model else truth_path
        segment = in_process(
            stage_segment,
            str(distance_path),
            str(root / "labels.ome.zarr"),
            args.seg_block,
            args.workers,
        )
        segment["rss_mb"] += segment.pop("pool_mb")  # parent + pool workers
        report_stage("segment", segment["seconds"], voxels, segment["rss_mb"])
        measure = in_process(stage_measure, str(root / "labels.ome.zarr"), str(root / "measured"))
        report_stage("measure+mesh", measure["seconds"], voxels, measure["rss_mb"])
        conv = (
            conv3d_gflops(predict["channels"], min(predict["level1_edge"], 96), threads)
            if predict is not None
            else None
        )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    summarise(args, voxels, threads, predict, segment, measure, conv)


def report_stage(name: str, seconds: float, voxels: int, rss: float) -> None:
    """One line as each stage ends, so a long run shows where it is."""
    print(f"  {name}: {seconds:.1f} s, {voxels / seconds:.3g} voxels/s, peak {rss:.0f} MB",
          flush=True)  # fmt: skip


def summarise(
    args: argparse.Namespace,
    voxels: int,
    threads: int,
    predict: dict[str, Any] | None,
    segment: dict[str, Any],
    measure: dict[str, Any],
    conv: float | None,
) -> None:
    """The table of stages and the ratios against the targets."""
    post = segment["seconds"] + measure["seconds"]
    stages = [segment, measure] if predict is None else [predict, segment, measure]
    total = sum(stage["seconds"] for stage in stages)
    peak = max(stage["rss_mb"] for stage in stages)
    generator_gb = rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
    # image, distance, labels (+ probability when predicted)
    data_gb = voxels * (2 + 4 + 4 + (4 if predict is not None else 0)) / 1e9
    rows = []
    if predict is not None:
        rows.append(
            (
                "predict",
                predict["seconds"],
                f"{predict['blocks']} blocks of "
                f"{'x'.join(map(str, predict['block_shape']))}, warm-up/compile "
                f"{predict['warmup_seconds']:.1f} s",
                predict["rss_mb"],
            )
        )
    rows += [
        (
            "segment",
            segment["seconds"],
            f"{segment['objects']} objects, {args.workers} workers (memory: parent + "
            f"{args.workers} x the largest worker)",
            segment["rss_mb"],
        ),
        ("measure+mesh", measure["seconds"], f"{measure['objects']} objects", measure["rss_mb"]),
        ("whole run", total, "the stages above", peak),
    ]
    print(f"\n{'stage':<14}{'seconds':>10}{'voxels/s':>12}{'peak RSS MB':>13}  notes")
    for name, seconds, note, rss in rows:
        print(f"{name:<14}{seconds:>10.1f}{voxels / seconds:>12.3g}{rss:>13.0f}  {note}")
    source = "model's prediction" if args.model else "ground-truth distance"
    print(f"\npost-processing ran on the {source}")
    if predict is not None and conv is not None:
        unet_rate = predict["gflops"] / predict["seconds"]
        print(
            f"U-Net: {predict['flop_per_output_voxel']:.3g} FLOP per output voxel, "
            f"{unet_rate:.1f} GFLOP/s ({'torch.compile' if args.compile else 'eager'})"
        )
        print(
            f"plain conv3d {predict['channels']}->{predict['channels']} channels_last_3d: "
            f"{conv:.1f} GFLOP/s"
        )
        print(f"U-Net / conv3d rate: {unet_rate / conv:.2f}   (target >= 0.60)")
        print(
            f"post-inference / inference time: {post / predict['seconds']:.2f}   (target <= 0.50)"
        )
    else:
        print("inference skipped (--skip-predict): no U-Net rate, no post/inference ratio")
    print(
        f"peak RSS {peak / 1024:.2f} GB over stages (target < 4 GB); arrays processed "
        f"{data_gb:.2f} GB; generator process {generator_gb:.2f} GB"
    )
    print(
        f"whole run {voxels / total:.3g} voxels/s on {threads} cores "
        f"(published pipeline: ~5.4e5 voxels/s on a cluster of 12-core nodes)"
    )


if __name__ == "__main__":
    main()
