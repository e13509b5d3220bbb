"""Active learning: held-out F1 after adding K boxes chosen by the model's uncertainty, against
K boxes chosen at random, same budget.

    .venv/bin/python bench/active_learning.py [--seeds 3] [--first-seed 0] [--start 3] [--add 3]
                                              [--box 32] [--max-epochs 12] [--threads 2]
                                              [--out DIR]

Data: the accuracy benchmark's ``fluorescence`` set (synthetic nuclei drawn as a hard,
fluorescence-like image: brightness varying fourfold, no dark line between touching nuclei,
z blur, few photons; a training and a separate test image, 64 x 128 x 128 at 200 nm). The
training image is tiled into ``--box``-voxel boxes, the campaign's task boxes.

Per seed: ``--start`` boxes drawn at random train model M0 (the pipeline's defaults, training
capped at ``--max-epochs``, no health check: a weak model is expected here). M0 predicts and
segments the training image; ``pipeline.suggest`` ranks the other boxes two ways: by voxel
uncertainty (mean binary entropy of the foreground probability) and by odd objects (M0's objects
below half or above twice their median volume, fragments and merges, counted by centroid:
``odd_object_scores``). Three models are then trained from scratch with the same seed and
budget: on the start boxes plus the ``--add`` top boxes of each ranking, and plus ``--add`` boxes
drawn at random among the same candidates. Each model segments the test image; objects
match at IoU >= 0.5. M0's F1 is the baseline of the run. Prints one row per seed, then the mean
F1 of each arm, the mean gain of uncertainty over random and how many seeds it won; writes
``active_learning.csv`` to ``--out``.

``--criteria``: a cheaper question first: does a criterion point at the boxes M0 gets wrong?
Per seed, M0 (as above) predicts and segments the training image; every candidate box gets M0's
object errors there (false positives plus missed objects against the truth, objects clipped to
the box, IoU >= 0.5) and a score per criterion: ``entropy`` (the site's: mean voxel entropy),
``disagreement`` (share of voxels where the probability head says foreground, p > 0.5, and the
distance head says background, d <= 0, or the reverse), ``core entropy`` (mean entropy over the
voxels the distance head puts more than two voxels from any boundary: the confusion that is not
boundary blur), ``odd sizes`` (M0's objects in the box smaller than half or larger than twice
the median volume of its whole segmentation: fragments and merges), ``objects`` (how many M0
found there) and ``random``. Printed per criterion: Spearman's rho between score and errors,
and the errors inside its top ``--add`` boxes against the best possible (the boxes with the most
errors) and the mean of random picks. No further training.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from accuracy import Pair, _nuclei, _write, object_f1  # noqa: E402

from pipeline.config import parse_config  # noqa: E402
from pipeline.evaluation import match_objects  # noqa: E402
from pipeline.run import (  # noqa: E402
    DISTANCE_NAME,
    PREDICTION_DIR,
    PROBABILITY_NAME,
    SEGMENTATION_NAME,
    run_pipeline,
)
from pipeline.suggest import (  # noqa: E402
    cells_of_map,
    odd_object_scores,
    odd_objects,
    suggest_boxes,
    voxel_entropy,
)
from pipeline.task_boxes import TaskBox, tile_boxes  # noqa: E402
from pipeline.volumes import open_volume  # noqa: E402


def box_table(path: Path, boxes: list[TaskBox]) -> Path:
    rows = [
        {"name": b.name, "x": b.start[2], "y": b.start[1], "z": b.start[0],
         "w": b.size[2], "h": b.size[1], "d": b.size[0]}
        for b in boxes
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def train(root: Path, work: Path, boxes: list[TaskBox], seed: int, args: Any) -> tuple[str, float]:
    """Train on ``boxes`` of the training image; the model file and seconds."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    table = box_table(work / "boxes.csv", boxes)
    data = {
        "image": str(root / "image.ome.zarr"),
        "labels": str(root / "image.ome.zarr" / "labels" / "truth"),
        "boxes": str(table),
    }
    # No health check: a few boxes and epochs are meant to give a weak model, not a failure.
    training = {
        "seed": seed, "num_threads": args.threads, "max_epochs": args.max_epochs,
        "health_epochs": 0,
    }  # fmt: skip
    config = parse_config({"data": data, "training": training}, base=work, source="bench")
    started = time.perf_counter()
    result = run_pipeline(config, work / "run", steps=["train"])
    return str(result.outputs["train.best_checkpoint"]), time.perf_counter() - started


def apply(model: str, image_root: Path, work: Path, steps: list[str]) -> Path:
    config = parse_config(
        {"data": {"image": str(image_root / "image.ome.zarr")}, "model": {"path": model}},
        base=work,
        source="bench",
    )
    run_pipeline(config, work, steps=steps)
    return work


def f1_on_test(model: str, pair: Pair, test_root: Path, work: Path) -> float:
    out = apply(model, test_root, work, ["predict", "segment"])
    pred = np.asarray(open_volume(out / SEGMENTATION_NAME, 0, None).array[:])
    return object_f1(pred, pair.test_labels)


@dataclass
class StartModel:
    """M0 of a seed: the random start boxes, the candidates left, the model and its output
    over the training image (predicted and segmented)."""

    start: list[TaskBox]
    rest: list[TaskBox]
    rng: np.random.Generator
    model: str
    seconds: float
    out: Path


def start_model(pair: Pair, train_root: Path, work: Path, seed: int, args: Any) -> StartModel:
    tiles = tile_boxes(pair.train_image.shape, (args.box,) * 3)
    rng = np.random.default_rng(seed)
    order = [tiles[int(i)] for i in rng.permutation(len(tiles))]
    start, rest = order[: args.start], order[args.start :]
    model, seconds = train(train_root, work / "m0", start, seed, args)
    out = apply(model, train_root, work / "m0-apply", ["predict", "segment"])
    return StartModel(start, rest, rng, model, seconds, out)


def one_seed(pair: Pair, roots: tuple[Path, Path], work: Path, seed: int, args: Any) -> dict:
    train_root, test_root = roots
    m = start_model(pair, train_root, work, seed, args)
    start, rest, m0, s0, predicted = m.start, m.rest, m.model, m.seconds, m.out
    cells = cells_of_map(predicted / PREDICTION_DIR / PROBABILITY_NAME)

    def odd() -> list[TaskBox]:
        segmentation = np.asarray(open_volume(predicted / SEGMENTATION_NAME, 0, None).array[:])
        ids, volumes = np.unique(segmentation[segmentation != 0], return_counts=True)
        centroids = ndimage.center_of_mass(segmentation > 0, segmentation, ids) if ids.size else []
        scores = odd_object_scores(centroids, odd_objects(volumes), rest)
        return [rest[int(i)] for i in np.argsort(-scores, kind="stable")[: args.add]]

    choose = {
        "uncertainty": lambda: [s.box for s in suggest_boxes(cells, rest, args.add)],
        "spread": lambda: [s.box for s in suggest_boxes(cells, rest, args.add, spread_from=start)],
        "odd": odd,
        "random": lambda: rest[: args.add],  # ``rest`` is already in a random order
    }
    row: dict[str, Any] = {"seed": seed, "f1_start": f1_on_test(m0, pair, test_root, work / "t0")}
    for arm in args.arms:
        extra = choose[arm]()
        model, seconds = train(train_root, work / arm, start + extra, seed, args)
        row[f"f1_{arm}"] = f1_on_test(model, pair, test_root, work / f"t-{arm}")
        row[f"{arm}_boxes"] = " ".join(b.name for b in extra)
        row[f"{arm}_train_s"] = seconds
        row[f"objects_{arm}"] = int(sum(_objects(pair.train_labels, b) for b in extra))
    row["start_train_s"] = s0
    return row


ARMS = ("uncertainty", "spread", "odd", "random")
ARM_NAMES = {
    "uncertainty": "uncertain (mean entropy)",
    "spread": "uncertain and spread out",
    "odd": "odd sizes",
}
CRITERIA = ("entropy", "disagreement", "core entropy", "odd sizes", "objects", "random")


def box_errors(pred: np.ndarray, truth: np.ndarray) -> int:
    """M0's object errors in a box: its unmatched objects plus the missed true ones."""
    matching = match_objects(pred, truth, 0.5)
    n_pred = len(np.unique(pred[pred != 0]))
    n_true = len(np.unique(truth[truth != 0]))
    return (n_pred - len(matching.matched_a)) + (n_true - len(matching.matched_a))


def criteria_scores(
    probability: np.ndarray,
    distance: np.ndarray,
    segmentation: np.ndarray,
    odd: np.ndarray,
    voxel_nm: float,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Each criterion's score of one box from the model's maps and segmentation there (module
    docstring); ``odd``: the ids of objects whose whole volume is odd."""
    entropy = voxel_entropy(probability)
    core = np.abs(distance) > 2 * voxel_nm
    ids = np.unique(segmentation[segmentation != 0])
    return {
        "entropy": float(entropy.mean()),
        "disagreement": float(np.mean((probability > 0.5) != (distance > 0))),
        "core entropy": float(entropy[core].mean()) if core.any() else 0.0,
        "odd sizes": float(np.isin(ids, odd).sum()),
        "objects": float(len(ids)),
        "random": float(rng.random()),
    }


def criteria_seed(pair: Pair, roots: tuple[Path, Path], work: Path, seed: int, args: Any) -> dict:
    """Train M0, segment the training image, score the candidate boxes (``--criteria``)."""
    from scipy.stats import spearmanr

    m = start_model(pair, roots[0], work, seed, args)
    rest, rng, out = m.rest, m.rng, m.out
    probability = np.asarray(open_volume(out / PREDICTION_DIR / PROBABILITY_NAME, 0, None).array[:])
    distance = np.asarray(open_volume(out / PREDICTION_DIR / DISTANCE_NAME, 0, None).array[:])
    segmentation = np.asarray(open_volume(out / SEGMENTATION_NAME, 0, None).array[:])
    voxel_nm = float(min(pair.voxel_size))
    # Odd sizes: objects whose whole volume is below half or above twice the median of M0's
    # segmentation (fragments and merges).
    every, volumes = np.unique(segmentation[segmentation != 0], return_counts=True)
    median = float(np.median(volumes)) if volumes.size else 1.0
    odd = every[(volumes < 0.5 * median) | (volumes > 2.0 * median)]
    errors, scores = [], {c: [] for c in CRITERIA}
    for box in rest:
        region = tuple(slice(a, a + n) for a, n in zip(box.start, box.size, strict=True))
        errors.append(box_errors(segmentation[region], pair.train_labels[region]))
        for name, value in criteria_scores(
            probability[region], distance[region], segmentation[region], odd, voxel_nm, rng
        ).items():
            scores[name].append(value)
    errors_array = np.asarray(errors, dtype=float)
    k = args.add
    row: dict[str, Any] = {
        "seed": seed,
        "boxes": len(rest),
        "errors": int(errors_array.sum()),
        "best_top_k": float(np.sort(errors_array)[::-1][:k].sum()),
        "random_top_k": float(errors_array.mean() * k),
    }
    for name in CRITERIA:
        values = np.asarray(scores[name])
        top = np.argsort(-values, kind="stable")[:k]
        rho = spearmanr(values, errors_array).statistic
        row[f"rho {name}"] = float(rho) if np.isfinite(rho) else 0.0
        row[f"top_k {name}"] = float(errors_array[top].sum())
    return row


def criteria_report(rows: list[dict]) -> None:
    table = pd.DataFrame(rows)
    best, random = table["best_top_k"].mean(), table["random_top_k"].mean()
    print(f"\n{'criterion':14} {'rho':>6} {'errors in top K':>16}  (best {best:.1f}, "
          f"random {random:.1f}; means over {len(table)} seeds)")  # fmt: skip
    for name in CRITERIA:
        print(f"{name:14} {table[f'rho {name}'].mean():6.2f} {table[f'top_k {name}'].mean():16.1f}")


def _objects(labels: np.ndarray, box: TaskBox) -> int:
    region = labels[tuple(slice(s, s + n) for s, n in zip(box.start, box.size, strict=True))]
    return len(np.unique(region[region != 0]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=3, help="random boxes M0 trains on")
    parser.add_argument("--add", type=int, default=3, help="boxes each arm adds (the budget)")
    parser.add_argument("--box", type=int, default=32, help="box edge, voxels")
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--criteria", action="store_true", help="score criteria against M0's errors only"
    )
    parser.add_argument(
        "--arms", default="uncertainty,odd,random",
        help=f"comma-separated, of {', '.join(ARMS)}: how each arm picks its boxes",
    )  # fmt: skip
    args = parser.parse_args()
    args.arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; known: {', '.join(ARMS)}")
    pair = _nuclei(hard=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="annotome-al-") as tmp:
        roots = (Path(tmp) / "train_data", Path(tmp) / "test_data")
        _write(roots[0], pair.train_image, pair.train_labels, pair.voxel_size)
        _write(roots[1], pair.test_image, pair.test_labels, pair.voxel_size)
        print(
            f"fluorescence set {pair.train_image.shape}, boxes of {args.box}^3, start "
            f"{args.start} random boxes, +{args.add} per arm, max {args.max_epochs} epochs"
        )
        if args.criteria:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                row = criteria_seed(pair, roots, Path(tmp) / f"seed{seed}", seed, args)
                rows.append(row)
                print(
                    f"seed {seed}: {row['boxes']} candidate boxes, {row['errors']} errors; rho "
                    + ", ".join(f"{c} {row[f'rho {c}']:+.2f}" for c in CRITERIA),
                    flush=True,
                )
            criteria_report(rows)
            if args.out is not None:
                args.out.mkdir(parents=True, exist_ok=True)
                pd.DataFrame(rows).to_csv(args.out / "criteria.csv", index=False)
            return 0
        print(
            f"{'seed':>4} {'M0 F1':>7} " + " ".join(f"{'+' + a:>12}" for a in args.arms)
            + "  (objects in the added boxes, same order)"
        )  # fmt: skip
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            row = one_seed(pair, roots, Path(tmp) / f"seed{seed}", seed, args)
            rows.append(row)
            print(
                f"{seed:>4} {row['f1_start']:>7.3f} "
                + " ".join(f"{row[f'f1_{a}']:>12.3f}" for a in args.arms)
                + f"  ({', '.join(str(row[f'objects_{a}']) for a in args.arms)})",
                flush=True,
            )
    table = pd.DataFrame(rows)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "active_learning.csv", index=False)
    if "random" not in args.arms:
        return 0
    random = table["f1_random"]
    print(f"mean F1: start {table['f1_start'].mean():.3f}, +random {random.mean():.3f}")
    for arm, name in ARM_NAMES.items():
        if arm not in args.arms:
            continue
        gain = table[f"f1_{arm}"] - random
        print(
            f"  +{name}: {table[f'f1_{arm}'].mean():.3f}, gain over random {gain.mean():+.3f} "
            f"(won {int((gain > 0).sum())} of {len(gain)} seeds; ratio "
            f"{table[f'f1_{arm}'].mean() / max(random.mean(), 1e-9):.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
