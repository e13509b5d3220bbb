"""Accuracy benchmark: object F1 of the pipeline's default, automatic settings on varied data.

    .venv/bin/python bench/accuracy.py [--seeds 5] [--first-seed 0] [--sets nuclei,small,...]
                                       [--threads 2]
                                       [--max-epochs N] [--out DIR]
                                       [--set training.KEY=VALUE ...] [--keep-maps]
                                       [--compare-flips]

Public data only. Each set is a training image with its ground truth and a held-out test image:

- ``nuclei``: synthetic touching, irregular nuclei (``make_nuclei_volume``), 200 nm voxels;
- ``small`` / ``large``: the same generator at 400 nm and 100 nm voxels, so the objects are half
  or twice as many voxels across (the published absolute seed threshold fits only one scale);
- ``fluorescence``: the same nuclei drawn as a harder, fluorescence-like image: brightness varying
  fourfold between nuclei, no dark line where they touch, z blurred twice as much as xy, few
  photons, an uneven background (the X-ray-like images are easy for the classical baseline);
- ``session``: as ``fluorescence``, with the test image three times brighter than the training
  one (another microscope session);
- ``anisotropic``: ``fluorescence`` generated at 200 nm and every third z slice kept (z:xy 3, as
  in confocal stacks);
- ``touching``: ``fluorescence`` with twice as many nuclei in the same volume, most touching;
- ``dsb2018``: the real 2D fluorescence nuclei image (BBBC038, from the stardist wheel, BSD-3):
  the whole 512 x 512 image of ``../shared/data/dsb2018_2d`` when present, else the repository's
  256 x 256 crop in ``tests/data/dsb2018_2d``; the left 5/8 of the columns train, the rest test.

Per set and training seed the pipeline runs as a user runs it: ``train`` with a config that gives
only the data, the seed and the thread count (every other setting is the pipeline's default, as
a user who knows nothing of it gets), then ``predict`` and ``segment`` on the test image with the
trained model's defaults. Objects are matched at IoU >= 0.5 over the whole test image. A run whose
F1 is below 0.05 counts as collapsed; a training error counts as a failure and is printed. The
classical baseline (smoothing, Otsu, distance-transform peaks, watershed:
``pipeline.assist.classical_labels``) runs on the same test images in the same run. ``--max-epochs``
caps training for a quick look (the figures are then not the defaults'); ``--set
training.contact_weight=4`` (repeatable, a YAML value) changes one setting, to compare a
candidate default against the current one. Each run's ``history.csv`` (the per-epoch losses and
validation F1) is kept as ``<set>_seed<N>_history.csv`` in ``--out``; with ``--keep-maps`` also
the test image's predicted distance map and its truth (``<set>_seed<N>_distance.npy``,
``<set>_truth.npy``), the fitted settings (``<set>_seed<N>_segment.json``) and the model
(``<set>_seed<N>_model.pt``), to try other post-processing on trained models without training
again. ``--compare-flips``: each trained model is also fitted and applied the other way round
for test-time flips (``predict.flips``: on by default in 2D, off in 3D), so the two are
compared on the same weights (columns ``f1_flips_on``, ``f1_flips_off``).
Prints one row per set (F1 mean and minimum, collapsed runs, training seconds, baseline F1 and
the ratio) and writes ``accuracy.csv`` (every run) and ``summary.csv`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.assist import classical_labels  # noqa: E402
from pipeline.config import parse_config  # noqa: E402
from pipeline.evaluation import detection_scores, match_objects  # noqa: E402
from pipeline.importers import convert_to_ome_zarr  # noqa: E402
from pipeline.model_io import load_model  # noqa: E402
from pipeline.run import SEGMENTATION_NAME, run_pipeline  # noqa: E402
from pipeline.synthetic import make_nuclei_volume  # noqa: E402
from pipeline.volumes import open_volume  # noqa: E402

COLLAPSED_F1 = 0.05
SHAPE = (64, 128, 128)
NUCLEI = 35


@dataclass(frozen=True)
class Pair:
    """Training and test images (with their instance labels) of one set, and the voxel size."""

    train_image: np.ndarray
    train_labels: np.ndarray
    test_image: np.ndarray
    test_labels: np.ndarray
    voxel_size: tuple[float, ...]


def _render_hard(labels: np.ndarray, seed: int, gain: float = 1.0) -> np.ndarray:
    """A harder, fluorescence-like image of ``labels``: nuclei of very different brightness, no
    dark line where they touch, blur along z twice that in xy, few photons, uneven background."""
    rng = np.random.default_rng(seed)
    n = int(labels.max())
    brightness = np.concatenate([[0.0], rng.uniform(0.25, 1.0, n)]).astype(np.float32)
    texture = ndimage.gaussian_filter(rng.standard_normal(labels.shape).astype(np.float32), 1.5)
    texture /= texture.std() + 1e-6
    image = brightness[labels] * (0.85 + 0.12 * texture)
    ramp = np.linspace(0.05, 0.2, labels.shape[-1], dtype=np.float32)
    image += ramp
    image = ndimage.gaussian_filter(image, (2.0, 1.0, 1.0)[-labels.ndim :])
    counts = rng.poisson(np.clip(image * gain, 0, None) * 40.0).astype(np.float32)
    counts += rng.standard_normal(labels.shape).astype(np.float32) * 3.0 + 20.0
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)


def _nuclei(
    voxel_nm: float = 200.0, n: int = NUCLEI, shape: tuple[int, ...] = SHAPE, hard: bool = False,
    test_gain: float = 1.0,
) -> Pair:  # fmt: skip
    a = make_nuclei_volume(shape, n, seed=1, voxel_size_nm=voxel_nm)  # type: ignore[arg-type]
    b = make_nuclei_volume(shape, n, seed=2, voxel_size_nm=voxel_nm)  # type: ignore[arg-type]
    if not hard:
        return Pair(a[0], a[1], b[0], b[1], (voxel_nm,) * 3)
    return Pair(
        _render_hard(a[1], 1), a[1], _render_hard(b[1], 2, test_gain), b[1], (voxel_nm,) * 3
    )


def _anisotropic() -> Pair:
    """Generated at 200 nm with z blurred, then every third z slice kept (z:xy 3)."""
    iso = _nuclei(200.0, NUCLEI, (3 * SHAPE[0], SHAPE[1], SHAPE[2]), hard=True)
    k = slice(None, None, 3)
    return Pair(
        iso.train_image[k], iso.train_labels[k], iso.test_image[k], iso.test_labels[k],
        (600.0, 200.0, 200.0),
    )  # fmt: skip


def _dsb2018() -> Pair:
    """The whole 512 x 512 image from ``../shared/data`` when present, else the repository's
    256 x 256 crop; the left 5/8 of the columns train, the rest test."""
    import tifffile

    candidates = [
        (ROOT.parent / "shared/data/dsb2018_2d", "img2d.tif", "mask2d.tif"),
        (ROOT / "tests/data/dsb2018_2d", "img2d_crop.tif", "mask2d_crop.tif"),
    ]
    for folder, image_name, mask_name in candidates:
        if (folder / image_name).is_file():
            image = np.asarray(tifffile.imread(folder / image_name))
            labels = np.asarray(tifffile.imread(folder / mask_name)).astype(np.uint32)
            cut = image.shape[1] * 5 // 8
            return Pair(
                image[:, :cut], labels[:, :cut], image[:, cut:], labels[:, cut:], (1000.0, 1000.0)
            )
    raise FileNotFoundError("dsb2018_2d not found in ../shared/data or tests/data")


SETS: dict[str, Callable[[], Pair]] = {
    "nuclei": _nuclei,
    "small": lambda: _nuclei(400.0),
    "large": lambda: _nuclei(100.0, NUCLEI // 3),
    "fluorescence": lambda: _nuclei(200.0, hard=True),
    "session": lambda: _nuclei(200.0, hard=True, test_gain=3.0),
    "anisotropic": _anisotropic,
    "touching": lambda: _nuclei(200.0, 2 * NUCLEI, hard=True),
    "dsb2018": _dsb2018,
}


def object_f1(pred: np.ndarray, truth: np.ndarray) -> float:
    matching = match_objects(pred, truth, 0.5)
    tp = len(matching.matched_a)
    n_pred = len(np.unique(pred[pred != 0]))
    n_true = len(np.unique(truth[truth != 0]))
    return detection_scores(tp, n_pred - tp, n_true - tp)[2]


def _write(root: Path, image: np.ndarray, labels: np.ndarray, voxel: tuple[float, ...]) -> None:
    root.mkdir(parents=True)
    np.save(root / "image.npy", image)
    np.save(root / "labels.npy", labels)
    convert_to_ome_zarr(
        root / "image.npy", root, voxel_size=voxel, unit="nanometer",
        labels={"truth": root / "labels.npy"}, chunk=64,
    )  # fmt: skip
    shape = image.shape
    columns = {"name": ["all"], "x": [0], "y": [0], "w": [shape[-1]], "h": [shape[-2]]}
    if image.ndim == 3:
        columns.update({"z": [0], "d": [shape[0]]})
    pd.DataFrame(columns).to_csv(root / "boxes.csv", index=False)


def _data_section(root: Path) -> dict[str, Any]:
    return {
        "image": str(root / "image.ome.zarr"),
        "labels": str(root / "image.ome.zarr" / "labels" / "truth"),
        "boxes": str(root / "boxes.csv"),
    }


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``section.key=value`` items (value read as YAML) as nested config sections."""
    sections: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in ("training", "model", "segment"):
            raise ValueError(f"--set {item!r}: expected training|model|segment.KEY=VALUE")
        sections.setdefault(section, {})[name] = yaml.safe_load(value)
    return sections


FLIPS_KEYS = ("f1_flips_on", "f1_flips_off")


def run_one(
    pair: Pair,
    work: Path,
    seed: int,
    threads: int,
    max_epochs: int | None,
    overrides: dict[str, dict[str, Any]] | None = None,
    keep: Path | None = None,
    keep_maps: bool = False,
    compare_flips: bool = False,
) -> dict[str, Any]:
    """Train with the defaults and this seed, segment the test image; F1 and seconds."""
    train_root, test_root = work / "train_data", work / "test_data"
    if not train_root.exists():
        _write(train_root, pair.train_image, pair.train_labels, pair.voxel_size)
        _write(test_root, pair.test_image, pair.test_labels, pair.voxel_size)
    run_dir = work / f"seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    sections = {k: dict(v) for k, v in (overrides or {}).items()}
    training = sections.setdefault("training", {})
    training.update({"seed": seed, "num_threads": threads})
    if max_epochs is not None:
        training["max_epochs"] = max_epochs
    started = time.perf_counter()
    config = parse_config(
        {"data": _data_section(train_root), **sections}, base=work, source="bench"
    )
    trained = run_pipeline(config, run_dir / "train", steps=["train"])
    train_seconds = time.perf_counter() - started
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)  # a folder removed while the bench ran
        for history in (run_dir / "train").rglob("history.csv"):
            shutil.copyfile(history, keep / f"{work.name}_seed{seed}_history.csv")
    model = trained.outputs["train.best_checkpoint"]
    apply = parse_config(
        {"data": {"image": str(test_root / "image.ome.zarr")}, "model": {"path": model}},
        base=work,
        source="bench",
    )
    started = time.perf_counter()
    run_pipeline(apply, run_dir / "apply", steps=["predict", "segment"])
    apply_seconds = time.perf_counter() - started
    pred = np.asarray(open_volume(run_dir / "apply" / SEGMENTATION_NAME, 0, None).array[:])
    if keep is not None and keep_maps:
        distance = open_volume(run_dir / "apply" / "prediction" / "distance.ome.zarr", 0, None)
        np.save(keep / f"{work.name}_seed{seed}_distance.npy", np.asarray(distance.array[:]))
        np.save(keep / f"{work.name}_truth.npy", pair.test_labels)
        params = load_model(Path(model), "cpu").metadata.get("segment_params", {})
        (keep / f"{work.name}_seed{seed}_segment.json").write_text(json.dumps(params, indent=1))
        shutil.copyfile(model, keep / f"{work.name}_seed{seed}_model.pt")
    row = {
        "f1": object_f1(pred, pair.test_labels),
        "objects": len(np.unique(pred[pred != 0])),
        "train_s": train_seconds,
        "apply_s": apply_seconds,
    }
    if compare_flips:
        default = len(pair.voxel_size) == 2
        other = _other_flips(pair, config, Path(model), run_dir, test_root, not default)
        row.update({f"f1_flips_{'on' if default else 'off'}": row["f1"],
                    f"f1_flips_{'off' if default else 'on'}": other})  # fmt: skip
    return row


def _other_flips(
    pair: Pair, config: Any, model: Path, run_dir: Path, test_root: Path, flips: bool
) -> float:
    """Held-out F1 of a copy of ``model`` refitted and applied with test-time ``flips``."""
    from pipeline.progress import no_progress
    from pipeline.run import fit_and_record
    from pipeline.training_set import training_boxes

    copy = run_dir / f"model_flips_{flips}.pt"
    shutil.copyfile(model, copy)
    boxes, _ = training_boxes(config.training_images(), channels=config.model.unet.in_channels)
    train_config = config.train_config(tuple(pair.voxel_size), boxes)
    fit_and_record(copy, boxes, train_config, no_progress, flips=flips)
    apply = parse_config(
        {"data": {"image": str(test_root / "image.ome.zarr")},
         "model": {"path": str(copy)}, "predict": {"flips": flips}},
        base=run_dir, source="bench",
    )  # fmt: skip
    out = run_dir / f"apply_flips_{flips}"
    run_pipeline(apply, out, steps=["predict", "segment"])
    pred = np.asarray(open_volume(out / SEGMENTATION_NAME, 0, None).array[:])
    return object_f1(pred, pair.test_labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench_accuracy"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--keep-maps", action="store_true")
    parser.add_argument("--compare-flips", action="store_true")
    args = parser.parse_args()
    try:
        overrides = parse_overrides(args.overrides)
    except ValueError as exc:
        parser.error(str(exc))
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        parser.error(f"unknown set(s) {unknown}; known: {', '.join(SETS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="annotome-accuracy-") as tmp:
        for name in names:
            pair = SETS[name]()
            n_true = len(np.unique(pair.test_labels[pair.test_labels != 0]))
            started = time.perf_counter()
            classical = classical_labels(pair.test_image, pair.voxel_size)
            baseline = object_f1(classical, pair.test_labels)
            baseline_s = time.perf_counter() - started
            f1s: list[float] = []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                print(f"[{name}] seed {seed} ...", file=sys.stderr, flush=True)
                try:
                    row = run_one(
                        pair, Path(tmp) / name, seed, args.threads, args.max_epochs,
                        overrides, args.out, args.keep_maps, args.compare_flips,
                    )  # fmt: skip
                except Exception as exc:  # a failed run is a result, not the end of the bench
                    traceback.print_exc()
                    # NaN, not 0: a run that failed is not a model that collapsed.
                    row = {"f1": math.nan, "objects": 0, "train_s": math.nan, "apply_s": math.nan,
                           "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip
                rows.append({"set": name, "seed": seed, **row})
                f1s.append(float(row["f1"]))
                flips = "".join(
                    f", flips {k[-3:].strip('_')} {row[k]:.3f}" for k in FLIPS_KEYS if k in row
                )
                print(
                    f"[{name}] seed {seed}: F1 {row['f1']:.3f}{flips}", file=sys.stderr, flush=True
                )
            train_s = [r["train_s"] for r in rows if r["set"] == name]
            ok = any(not math.isnan(f) for f in f1s)
            compared = {
                f"{k}_{stat}": float(fn([r.get(k, math.nan) for r in rows if r["set"] == name]))
                for k in FLIPS_KEYS
                if args.compare_flips
                for stat, fn in (("mean", np.mean), ("min", np.min))
            }
            summary.append(
                {
                    "set": name,
                    "objects": n_true,
                    "f1_mean": float(np.nanmean(f1s)) if ok else math.nan,
                    "f1_min": float(np.nanmin(f1s)) if ok else math.nan,
                    "collapsed": int(sum(f < COLLAPSED_F1 for f in f1s)),  # NaN never is
                    "runs": len(f1s),
                    "failed": int(sum(math.isnan(f) for f in f1s)),
                    "train_s_median": float(np.nanmedian(train_s)),
                    "baseline_f1": baseline,
                    "baseline_s": baseline_s,
                    "ratio_to_baseline": (
                        float(np.nanmean(f1s)) / baseline if baseline and ok else math.nan
                    ),
                    **compared,
                }
            )
            pd.DataFrame(rows).to_csv(args.out / "accuracy.csv", index=False)
            pd.DataFrame(summary).to_csv(args.out / "summary.csv", index=False)
    table = pd.DataFrame(summary)
    with pd.option_context("display.width", 160, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
