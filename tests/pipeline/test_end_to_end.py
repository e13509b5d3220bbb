"""End to end: train a small U-Net on one synthetic nuclei volume, segment a held-out one.

Both volumes come from ``make_nuclei_volume`` (touching, irregular nuclei with texture, blur,
drift and noise) with different seeds. Training and inference go through ``run_pipeline`` and
its config, as a user would: a first run trains on the training volume, a second run uses the
trained model file on the held-out volume (predict, seeded watershed at the default 705.6 nm,
measure and mesh, filter, evaluate on the whole volume as one box with no margin).

Sizes are chosen for a CPU test of about two minutes: 300 nm voxels (nuclei 5-15 voxels in
radius), the published architecture (two downsamplings, valid convolutions) at width 4 (receptive
field 41 voxels, 12.3 um) trained for 900 steps of two 68^3 patches (output 28^3, 8.4 um) at lr
3e-3 (100-step warm-up, cosine decay, gradient clipping), and the distance target clamped at 1500
nm: the network only needs to see how far the nearest border is, up to the clamp, which it learns
much faster than a 4 um clamp. Voxels within 1 um of a contact between two nuclei weigh 5x in the
loss (``contact_weight``): they are a small share of all voxels, and the distance dip there is
what gives touching nuclei one seed each. The seed threshold and dynamic are those fitted after
training (recorded with the model); smoothing and seed size as below.

Until 2026-12-07 the test ran at 200 nm voxels with 84^3 patches (output 44^3, 8.8 um: the same
physical output per step for 1.9x the voxels): 292 s alone on two threads and 855-1,296 s in the
suite, where it was the longest test and set the suite's length; F1 0.950, 0.980, 0.990, 1.000
with training seeds 0-3 (600 steps there fell below 0.9 with two seeds of four). At 300 nm it
trains in 125-160 s alone on two threads. Held-out F1 of five training seeds (0-4) by smoothing:
300 nm (one voxel) 0.980 0.980 0.915 0.879 0.867 (merged touching nuclei); **150 nm 0.970 0.943
0.980 0.947 0.936** (the test's); none 0.942 0.917 0.990 0.990 0.958 (split nuclei). Earlier:
300 steps of a one-level width-8 network passed only with some seeds (0.74-0.97); without the
cosine decay seed 2 gave 0.87; with the U-Net's heads initialised like the other layers, seed 5
on volumes 3, 4 never learnt (F1 0).

Segmentation smooths the predicted distance with a 150 nm (half a voxel) Gaussian and drops seeds
of fewer than 8 voxels (0.22 um^3): the small network's distance map is noisy at the voxel scale,
and without these, noise maxima above the threshold split nuclei and thin noisy ridges across
contacts join the seeds of touching nuclei; more smoothing merges them instead (above). The
published volume filter (4 um^3, half the smallest nucleus the generator makes: radii 1.6 x 1.2 x
0.96 um, 7.7 um^3) then runs as usual.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.config import load_config
from pipeline.importers import convert_to_ome_zarr
from pipeline.run import run_pipeline
from pipeline.synthetic import make_nuclei_volume

VOXEL = 300.0
CLAMP = 1500.0
SHAPE = (64, 88, 88)
NUCLEI = 50
TRAIN_SEED, TEST_SEED = 1, 2
UNET = {"width": 4, "depth": 2}
TRAINING = {
    "patch_shape": [68, 68, 68],  # output 28^3 (8.4 um)
    "batch_size": 2,
    "lr": 3e-3,
    "warmup_steps": 100,
    "lr_schedule": "cosine",
    "grad_clip_norm": 1.0,
    "max_epochs": 45,
    "iterations_per_epoch": 20,
    "patience": 15,
    "seed": 0,
    "augment": True,
    "clamp_nm": CLAMP,
    "contact_weight": 4.0,
    "contact_nm": 1000.0,
    # Keep the loss-selected checkpoint this test was tuned with. Measured with object-F1
    # selection (val_interval 1, at 200 nm voxels): the one validation box is a 26-voxel slab
    # holding 13 cut nuclei and the derived seed threshold (~750 nm) sits at the small network's
    # output range, so validation F1 swung 0-0.92 between epochs; epoch 14 (0.917) was kept and
    # the held-out F1 fell to 0.706 (with loss selection: 0.969).
    "val_interval": 0,
    # Two threads: their waits sleep (pipeline/__init__.py), so the second takes a free core and
    # costs nothing when there is none (bench/threads.py); the scheduler also gives the test two
    # shares of a loaded machine instead of one (with one thread it passed pytest's 900 s limit
    # under the suite's three processes). Seeds 0-4 at two threads: F1 in the module docstring.
    "num_threads": 2,
    "device": "cpu",
}
SEGMENT = {"block": 64, "smooth_nm": 150.0, "min_seed_voxels": 8}
MIN_F1 = 0.9
MIN_VOLUME_UM3 = 4.0


def make_dataset(root: Path, seed: int) -> tuple[Path, int]:
    """An OME-Zarr image with its labels, and a boxes CSV covering the whole volume."""
    image, labels = make_nuclei_volume(SHAPE, NUCLEI, seed=seed, voxel_size_nm=VOXEL)
    root.mkdir(parents=True)
    np.save(root / "image.npy", image)
    np.save(root / "labels.npy", labels)
    convert_to_ome_zarr(root / "image.npy", root, voxel_size=(VOXEL,) * 3, unit="nanometer",
                        labels={"nuclei": root / "labels.npy"}, chunk=32)  # fmt: skip
    z, y, x = SHAPE
    pd.DataFrame({"name": ["all"], "x": [0], "y": [0], "z": [0], "w": [x], "h": [y], "d": [z]}
                 ).to_csv(root / "boxes.csv", index=False)  # fmt: skip
    return root, int(labels.max())


def write_config(path: Path, data_root: Path, **sections: Any) -> Path:
    config = {
        "data": {
            "image": str(data_root / "image.ome.zarr"),
            "labels": str(data_root / "image.ome.zarr" / "labels" / "nuclei"),
            "boxes": str(data_root / "boxes.csv"),
        },
        **sections,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
# 855-1,296 s in CI beside the suite's other processes at 200 nm voxels (2026-12-07), near or
# past the suite's 900 s: this test keeps a limit of its own.
@pytest.mark.timeout(1500)
def test_small_unet_trained_on_cpu_segments_held_out_nuclei(tmp_path: Path) -> None:
    train_root, _ = make_dataset(tmp_path / "train_data", TRAIN_SEED)
    test_root, n_test = make_dataset(tmp_path / "test_data", TEST_SEED)
    assert n_test >= 30

    started = time.perf_counter()
    train_config = load_config(
        write_config(tmp_path / "train.yaml", train_root, model=UNET, training=TRAINING)
    )
    trained = run_pipeline(train_config, tmp_path / "train_run", steps=["train"])
    train_seconds = time.perf_counter() - started
    model_path = Path(trained.outputs["train.best_checkpoint"])
    assert model_path.is_file()
    history = pd.read_csv(model_path.parent / "history.csv")
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]

    started = time.perf_counter()
    apply_config = load_config(
        write_config(
            tmp_path / "apply.yaml",
            test_root,
            model={"path": str(model_path), **UNET},
            predict={"device": "cpu"},
            segment=SEGMENT,
            filter={"method": "fixed", "t_volume": MIN_VOLUME_UM3, "t_sphericity": 0.0},
            evaluate={"margin_um": 0.0},
        )
    )
    result = run_pipeline(apply_config, tmp_path / "apply_run")
    apply_seconds = time.perf_counter() - started
    assert result.ran == ["predict", "segment", "measure", "filter", "evaluate"]
    metrics = result.metrics
    print(
        f"\nend-to-end: train {train_seconds:.0f} s ({int(history['epoch'].iloc[-1])} epochs), "
        f"apply {apply_seconds:.0f} s; {n_test} true nuclei, {metrics['segment.objects']} found, "
        f"{metrics['filter.kept']} kept; before the filter F1 {metrics['evaluate.all_f1']:.3f}, "
        f"after: precision {metrics['evaluate.filtered_precision']:.3f} recall "
        f"{metrics['evaluate.filtered_recall']:.3f} F1 {metrics['evaluate.filtered_f1']:.3f}"
    )
    assert metrics["evaluate.filtered_f1"] >= MIN_F1
    detections = pd.read_parquet(tmp_path / "apply_run" / "detections.parquet")
    assert len(detections) == metrics["segment.objects"]
    # Sphericity is a shape measure of objects, not of specks a few voxels across, whose mesh
    # encloses less than their voxels: one of 6 voxels, one voxel thick on a block face
    # (2026-12-05, 200 nm voxels: sphericity 3.36); one of 12 voxels, 0.32 um^3 (2026-12-07,
    # 300 nm: 1.18). Objects are those of at least 1 um^3 (a quarter of the volume filter's
    # 4 um^3, 37 voxels here); the filter drops the rest.
    objects = detections["volume"] >= MIN_VOLUME_UM3 / 4
    assert detections.loc[objects, "sphericity"].between(0.3, 1.05).all()
    assert objects.sum() >= len(detections) - 2 and not detections.loc[~objects, "kept"].any()
