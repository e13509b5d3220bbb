"""Isotropic vs anisotropic U-Net pooling on synthetic nuclei with z voxels ``--ratio`` times xy.

    .venv/bin/python bench/anisotropy.py [--ratio 3] [--seeds 1] [--first-seed 0] [--steps 250]
                                         [--width 4] [--lr 3e-3] [--window-um 6] [--edge 128]
                                         [--threads 1]

Two synthetic nuclei volumes (``pipeline.synthetic.make_nuclei_volume``, 250 nm isotropic,
``--edge`` voxels a side, touching nuclei of ~3 um radius) are subsampled along z by ``--ratio``
(voxels ``(ratio * 250, 250, 250)`` nm, as a confocal stack). A U-Net is trained briefly on the
first and applied to the second, once with the published 2x2x2 pooling and 3x3x3 kernels at every
level (``model.anisotropy: off``) and once with the pooling and kernels chosen from the voxel size
(``pipeline.anisotropy``: nnU-Net's rule). Each gets the smallest valid patch whose output covers
``--window-um`` along every axis (the loss sees the same tissue per step; the isotropic network
needs more input context along z for it), the same steps, learning rate and seed; the
heads' health check (restarts from new seeds) is off, so collapsed runs show as such.
Segmentation: seeded watershed with the settings derived from the training ground truth
(``pipeline.segment_params``). Printed per network: pooling, receptive margin (voxels and um),
patch, seconds per step, final training loss, the largest predicted distance (seeds need the
seed threshold), and object F1 (IoU >= 0.5) on the test volume; the
F1 of the test volume's own ground-truth distance map is the ceiling. CPU only, one process.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import fastremap
import numpy as np
import zarr

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pipeline.anisotropy import anisotropic_unet_config  # noqa: E402
from pipeline.evaluation import detection_scores, match_objects  # noqa: E402
from pipeline.model_io import load_model  # noqa: E402
from pipeline.predict import predict_volume  # noqa: E402
from pipeline.segment_params import (  # noqa: E402
    SegmentParams,
    derive_segment_params,
    smooth_sigma_voxels,
)
from pipeline.synthetic import make_nuclei_volume  # noqa: E402
from pipeline.targets import instance_targets  # noqa: E402
from pipeline.training import TrainConfig, TrainingBox, train  # noqa: E402
from pipeline.unet import UNetConfig  # noqa: E402
from pipeline.watershed import seeded_watershed  # noqa: E402

XY_NM = 250.0


def volume(edge: int, ratio: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n = round(40 * (edge / 96) ** 3)  # about the density of the tests' 96^3 volume
    image, labels = make_nuclei_volume((edge, edge, edge), n, seed=seed, voxel_size_nm=XY_NM)
    sub, _ = fastremap.renumber(np.ascontiguousarray(labels[::ratio]), preserve_zero=True)
    return np.ascontiguousarray(image[::ratio]), sub


def object_f1(distance: np.ndarray, labels: np.ndarray, params: SegmentParams,
              voxel: tuple[float, ...]) -> tuple[float, int]:  # fmt: skip
    segmented = seeded_watershed(
        distance,
        seed_threshold=params.seed_threshold_nm,
        min_seed_voxels=params.min_seed_voxels,
        smooth_sigma=smooth_sigma_voxels(params.smooth_nm, voxel),
        seed_dynamic=params.seed_dynamic_nm,
    )
    tp = len(match_objects(segmented, labels, 0.5).matched_a)
    f1 = detection_scores(tp, int(segmented.max()) - tp, int(labels.max()) - tp)[2]
    return f1, int(segmented.max())


def run_one(
    name: str, unet: UNetConfig, args: argparse.Namespace, voxel: tuple[float, ...],
    train_volume: tuple[np.ndarray, np.ndarray], test_volume: tuple[np.ndarray, np.ndarray],
    params: SegmentParams, seed: int, work: Path,
) -> dict[str, object]:  # fmt: skip
    # The same physical output window for both (the loss sees the same tissue per step).
    window = tuple(math.ceil(args.window_um * 1000.0 / v) for v in voxel)
    patch = unet.valid_input_shape(window)
    steps_per_epoch = max(1, args.steps // 5)
    config = TrainConfig(
        unet=unet, patch_shape=patch, voxel_size=voxel, batch_size=2, lr=args.lr,
        max_epochs=math.ceil(args.steps / steps_per_epoch), iterations_per_epoch=steps_per_epoch,
        patience=100, max_val_patches=4, clamp_nm=params.clamp_nm, num_threads=args.threads,
        device="cpu", seed=seed, health_epochs=0,
    )  # fmt: skip
    image, labels = train_volume
    box = (0, 0, 0, *image.shape)
    out = work / f"{name}-{seed}"
    started = time.perf_counter()
    result = train([TrainingBox(image, labels, box, "train")], config, out)
    seconds = time.perf_counter() - started
    with (out / "history.csv").open() as handle:
        last_loss = float(list(csv.DictReader(handle))[-1]["train_loss"])
    model = load_model(result.best_checkpoint, "cpu")
    test_image, test_labels = test_volume
    predicted = predict_volume(model, test_image, out / "prediction", num_threads=args.threads)
    distance = np.asarray(zarr.open_array(str(predicted.distance_path / "s0"), mode="r")[:])
    margin = unet.margin
    f1, objects = object_f1(distance, test_labels, params, voxel)
    return {
        "network": name,
        "pool": "/".join("".join(map(str, p)) for p in unet.pools),
        "margin": "x".join(map(str, margin)),
        "margin_um": "x".join(f"{m * v / 1000:.1f}" for m, v in zip(margin, voxel, strict=True)),
        "patch": "x".join(map(str, patch)),
        "s_per_step": seconds / (config.max_epochs * steps_per_epoch),
        "loss": last_loss,
        "f1": f1,
        "objects": objects,
        "max_nm": float(distance.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratio", type=int, default=3, help="z voxel / xy voxel (default 3)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds (default 1)")
    parser.add_argument("--first-seed", type=int, default=0, help="first training seed")
    parser.add_argument("--steps", type=int, default=250, help="training steps (default 250)")
    parser.add_argument("--width", type=int, default=4, help="U-Net width (default 4)")
    parser.add_argument("--edge", type=int, default=128, help="isotropic edge before subsampling")
    parser.add_argument("--window-um", type=float, default=6.0, help="output window (um)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    voxel = (args.ratio * XY_NM, XY_NM, XY_NM)
    train_volume = volume(args.edge, args.ratio, seed=100)
    test_volume = volume(args.edge, args.ratio, seed=101)
    params = derive_segment_params([train_volume[1]], voxel)
    _, truth = instance_targets(test_volume[1], voxel, params.clamp_nm)
    ceiling, _ = object_f1(truth, test_volume[1], params, voxel)
    print(
        f"z:xy {args.ratio}, voxels {voxel} nm, train/test {train_volume[0].shape} with "
        f"{int(train_volume[1].max())}/{int(test_volume[1].max())} nuclei, {args.steps} steps, "
        f"width {args.width}; seed threshold {params.seed_threshold_nm:.0f} nm; "
        f"F1 of the ground-truth distance: {ceiling:.3f}"
    )
    base = UNetConfig(width=args.width)
    networks = {
        "isotropic": base,
        "anisotropic": anisotropic_unet_config(base, voxel),
    }
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for name, unet in networks.items():
                row = run_one(name, unet, args, voxel, train_volume, test_volume, params, seed,
                              Path(tmp))  # fmt: skip
                row["seed"] = seed
                rows.append(row)
                print(
                    f"  seed {seed} {name:11s} pool {row['pool']:11s} margin {row['margin']:8s} "
                    f"({row['margin_um']} um) patch {row['patch']:10s} "
                    f"{row['s_per_step']:.2f} s/step loss {row['loss']:.3f} "
                    f"max distance {row['max_nm']:.0f} nm, {row['objects']} objects, "
                    f"F1 {row['f1']:.3f}",
                    flush=True,
                )
    print("\nnetwork      F1 mean  F1 min  s/step")
    for name in networks:
        mine = [r for r in rows if r["network"] == name]
        f1 = [float(str(r["f1"])) for r in mine]
        step = statistics.median(float(str(r["s_per_step"])) for r in mine)
        print(f"{name:11s}  {statistics.mean(f1):7.3f}  {min(f1):6.3f}  {step:6.2f}")


if __name__ == "__main__":
    main()
