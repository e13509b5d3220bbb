"""Several heads at once: semantic heads next to the instance heads, a multi-channel image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.box_table import Box
from pipeline.cli import main as cli_main
from pipeline.config import load_config
from pipeline.evaluation import semantic_dice
from pipeline.run import run_pipeline
from pipeline.synthetic import make_multitask_image
from pipeline.training import ClassWeights, masked_loss

HEADS = [
    {"name": "probability", "kind": "logits"},
    {"name": "distance", "kind": "linear"},
    {"name": "glomerulus", "kind": "logits"},
    {"name": "podocyte", "kind": "logits"},
]


def test_balanced_loss_gives_every_head_the_same_scale() -> None:
    """Each head's loss counts relative to a zero output's: at zero outputs every head weighs
    1, whatever its class weights or target scale; unbalanced, the small distance term and the
    rare class's weights set the heads' shares."""
    rare = torch.zeros(1, 1, 8, 8)
    rare[..., :2, :2] = 1.0
    outputs = {n: torch.zeros(1, 1, 8, 8) for n in ("common", "rare", "distance")}
    targets = {
        "common": (torch.rand(1, 1, 8, 8) > 0.5).float(),
        "rare": rare,
        "distance": torch.full((1, 1, 8, 8), 0.2),
    }
    kinds = {"common": "logits", "rare": "logits", "distance": "linear"}
    weights = {"common": ClassWeights(1.0, 1.0), "rare": ClassWeights(0.5, 20.0)}
    mask = torch.ones(1, 1, 8, 8)
    balanced = float(masked_loss(outputs, targets, mask, kinds, weights, balance=True))
    assert balanced == pytest.approx(3.0, rel=1e-5)
    alone = float(masked_loss({"distance": outputs["distance"]}, targets, mask, kinds, weights))
    summed = float(masked_loss(outputs, targets, mask, kinds, weights))
    assert alone == pytest.approx(0.04) and alone / summed < 0.03  # distance drowned out


def test_semantic_dice_per_box_and_pooled() -> None:
    truth = np.zeros((10, 10), np.uint8)
    truth[:5] = 1
    predicted = np.zeros((10, 10), np.float32)
    predicted[:5, :5] = 0.9
    table, scores = semantic_dice(
        predicted, truth, [Box("left", (0, 0), (10, 5)), Box("right", (0, 5), (10, 5))]
    )
    assert table["dice_pixel"].tolist() == [1.0, 0.0]
    assert scores["dice_pixel"] == pytest.approx(2 * 25 / (25 + 50))
    # Object Dice: in "left" one predicted object equals the one true object; in "right" the
    # true object has no match and nothing was predicted.
    assert table["dice_object"].tolist() == [1.0, 0.0]
    assert scores["dice_object_mean_over_boxes"] == 0.5


def test_semantic_object_dice_takes_connected_components_or_the_truths_own_ids() -> None:
    """Two touching true objects (ids 1 and 2) predicted as one blob: the pixels agree, the
    objects do not; a binary truth of the same blob is one object and matches."""
    truth = np.zeros((8, 16), np.uint8)
    truth[2:6, 2:8] = 1
    truth[2:6, 8:14] = 2
    predicted = (truth > 0).astype(np.float32)
    box = [Box("all", (0, 0), (8, 16))]
    _, scores = semantic_dice(predicted, truth, box)
    assert scores["dice_pixel"] == 1.0
    # Each true half's best match is the blob (Dice 2*24/(24+48) = 2/3), the blob's best match
    # is a half (2/3): object Dice 2/3.
    assert scores["dice_object_mean_over_boxes"] == pytest.approx(2 / 3)
    _, merged = semantic_dice(predicted, (truth > 0).astype(np.uint8), box)
    assert merged["dice_object_mean_over_boxes"] == 1.0


def test_three_channel_image_trains_semantic_and_instance_heads_end_to_end(tmp_path: Path) -> None:
    sample = make_multitask_image((96, 96), n_glomeruli=2, n_nuclei=30, seed=1)
    np.save(tmp_path / "image.npy", sample.image)
    np.save(tmp_path / "nuclei.npy", sample.nuclei)
    for name, mask in sample.masks.items():
        np.save(tmp_path / f"{name}.npy", mask)
    (tmp_path / "boxes.csv").write_text("name,x0,y0,x1,y1\ntop,0,0,96,48\nbottom,0,48,96,96\n")
    config = {
        "data": {
            "image": str(tmp_path / "image.npy"),
            "labels": str(tmp_path / "nuclei.npy"),
            "boxes": str(tmp_path / "boxes.csv"),
            "voxel_size": [250],
            "semantic": {n: str(tmp_path / f"{n}.npy") for n in sample.masks},
        },
        "model": {"dims": 2, "in_channels": 3, "width": 8, "depth": 1, "heads": HEADS},
        "training": {
            "seed": 2,  # learns in its first attempt (seeds 0 and 1 restart here)
            "patch_shape": [68],
            "lr": 3.0e-3,
            "batch_size": 2,
            "max_epochs": 25,
            "iterations_per_epoch": 10,
            "patience": 25,
            "clamp_nm": 1500.0,
            "num_threads": 1,
            "device": "cpu",
        },
        "predict": {"device": "cpu", "num_threads": 1},
        "segment": {"seed_threshold": 300.0, "block": 96},
        "evaluate": {"margin_um": 1.0},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    run_pipeline(load_config(path), out)
    heads = json.loads((out / "evaluation" / "summary.json").read_text())["heads"]
    assert set(heads) == {"instances", "glomerulus", "podocyte"}
    print({k: {m: round(v, 3) for m, v in s.items()} for k, s in heads.items()})
    # measured: glomerulus 0.98, podocyte 0.89, nuclei object Dice 0.94 (250 steps, ~25 s)
    assert heads["glomerulus"]["dice_pixel"] > 0.9
    assert heads["podocyte"]["dice_pixel"] > 0.7
    assert heads["glomerulus"]["dice_object"] > 0.8  # two glomeruli, found as two objects
    assert heads["instances"]["dice_object"] > 0.7

    argv = ["evaluate", "--pred", str(out / "segmentation.ome.zarr"), "--gt",
            str(tmp_path / "nuclei.npy"), "--boxes", str(tmp_path / "boxes.csv"), "--out",
            str(tmp_path / "eval"), "--margin-um", "0", "--semantic", "glomerulus",
            str(out / "prediction" / "glomerulus.ome.zarr"),
            str(tmp_path / "glomerulus.npy")]  # fmt: skip
    assert cli_main(argv) == 0
    report = json.loads((tmp_path / "eval" / "evaluation_summary.json").read_text())
    assert report["heads"]["glomerulus"]["dice_pixel"] == pytest.approx(
        heads["glomerulus"]["dice_pixel"]
    )
    assert report["heads"]["glomerulus"]["dice_object"] == pytest.approx(
        heads["glomerulus"]["dice_object"]
    )
