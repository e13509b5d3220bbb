"""Fitting the seeded-watershed settings on validation boxes, recorded in the model file."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.commands.run import describe_fit
from pipeline.errors import InvalidInputError
from pipeline.model_io import load_model, model_segment_params, record_segment_params, save_model
from pipeline.segment_fit import (
    BoxPrediction,
    choose_row,
    contenders,
    fit_segment_params,
    neighbourhood_f1,
    score_segment_params,
)
from pipeline.segment_params import (
    SegmentParams,
    choose_segment_params,
    derive_segment_params,
    preset,
)
from pipeline.targets import instance_targets
from pipeline.training import TrainConfig, TrainingBox, check_config, resolve_clamp
from pipeline.unet import UNet, UNetConfig

VOXEL = (100.0, 100.0, 100.0)


def touching_balls(radius: float, n: int, seed: int) -> np.ndarray:
    """``n``^3 balls on a lattice 1.8 radii apart (so neighbours overlap), split by nearness."""
    rng = np.random.default_rng(seed)
    spacing, pad = 1.8 * radius, radius + 2
    size = int(2 * pad + spacing * (n - 1)) + 1
    shape = (size,) * 3
    centres = [
        np.array([pad + i * spacing, pad + j * spacing, pad + k * spacing])
        + rng.uniform(-0.1, 0.1, 3) * radius
        for i in range(n)
        for j in range(n)
        for k in range(n)
    ]
    grid = np.indices(shape).reshape(3, -1).T.astype(np.float32)
    d = np.stack([np.linalg.norm(grid - c, axis=1) for c in centres])
    labels = np.where(d.min(0) <= radius, d.argmin(0) + 1, 0).astype(np.uint32)
    return labels.reshape(shape)


def noisy_predictions(boxes: list[np.ndarray], radius_nm: float) -> list[BoxPrediction]:
    """The true signed distance plus voxel noise (8 % of the radius), as a network's would be."""
    rng = np.random.default_rng(5)
    out = []
    for labels in boxes:
        _, distance = instance_targets(labels, VOXEL, 4000.0)
        noise = rng.normal(0.0, 0.08 * radius_nm, distance.shape).astype(np.float32)
        out.append(BoxPrediction(distance + noise, tuple(slice(0, n) for n in labels.shape)))
    return out


@pytest.mark.parametrize(("radius", "n", "n_boxes"), [(4, 3, 2), (16, 2, 1)])
def test_fitting_recovers_good_settings_at_both_scales_where_the_preset_fails(
    radius: int, n: int, n_boxes: int
) -> None:
    boxes = [touching_balls(radius, n, seed) for seed in range(n_boxes)]
    predictions = noisy_predictions(boxes, radius * VOXEL[0])
    start = derive_segment_params(boxes, VOXEL)
    params, fit = fit_segment_params(predictions, boxes, VOXEL, start)
    with_preset = score_segment_params(predictions, boxes, VOXEL, preset("xray-nuclei"))
    assert params.source == "fitted" and params.clamp_nm == start.clamp_nm
    assert fit.f1 >= 0.9 and fit.f1 >= fit.start_f1
    assert score_segment_params(predictions, boxes, VOXEL, params)["f1"] == fit.f1
    assert with_preset["f1"] < 0.5  # the published 705.6 nm, unsmoothed, on the same maps
    # Seeds lie at a fraction of the radius: at 4 voxels the preset's 705.6 nm is too deep.
    assert 0.1 * radius * VOXEL[0] < params.seed_threshold_nm < 0.7 * radius * VOXEL[0]
    assert {"seed_threshold_nm", "smooth_nm", "min_seed_voxels", "f1"} <= set(fit.table[0])
    assert len(fit.table) >= 7 * 3 * 3
    line = describe_fit(fit.to_dict())  # what the CLI prints
    assert f"object F1 {fit.f1:.3f}" in line
    # The rule's judge and the best single combination are shown: the winner's own F1 may be lower.
    chosen = next(r for r in fit.table if r["seed_threshold_nm"] == params.seed_threshold_nm
                  and r["smooth_nm"] == params.smooth_nm
                  and r["seed_dynamic_nm"] == params.seed_dynamic_nm
                  and r["min_seed_voxels"] == params.min_seed_voxels)  # fmt: skip
    assert f"{chosen['neighbourhood_f1']:.3f} with its grid neighbours" in line
    assert f"best single combination {max(r['f1'] for r in fit.table):.3f}" in line


def test_the_fits_costly_part_is_spread_so_its_eta_holds_from_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run page reckons the fit's ETA from its pace since the first reported combination.
    A box's peak caps for one dynamic cost about fifteen times its flood and count (measured);
    on a clock that counts those costs, the ETA at every report stays within 2x of the time
    really left (scored seed-major, every cap was paid in a smoothing's first combinations:
    ~4.5x at first)."""
    import pipeline.seed_search as seed_search

    clock = [0.0]
    real_caps = seed_search.peak_caps

    def costly_caps(distance: np.ndarray, dynamic: float) -> np.ndarray:
        clock[0] += 15.0
        return real_caps(distance, dynamic)

    monkeypatch.setattr(seed_search, "peak_caps", costly_caps)
    boxes = [touching_balls(4, 2, seed) for seed in range(2)]
    reports: list[tuple[float, int, int]] = []

    def progress(stage: str, done: int, total: int) -> None:
        clock[0] += len(boxes)  # one combination: a flood and a count per box
        reports.append((clock[0], done, total))

    _, fit = fit_segment_params(
        noisy_predictions(boxes, 400.0), boxes, VOXEL, derive_segment_params(boxes, VOXEL),
        progress=progress,
    )  # fmt: skip
    end, total = clock[0], len(fit.table)
    assert [r[1] for r in reports] == list(range(1, total + 1))
    (at, first), ratios = reports[0][:2], []
    for now, done, _ in reports[1:-1]:
        eta = (now - at) * (total - done) / (done - first)
        ratios.append(eta / (end - now))
    assert min(ratios) >= 0.5 and max(ratios) <= 2.0, (min(ratios), max(ratios))
    # Whatever the scoring order, the table keeps the grid's order (ties in the choice go the
    # same way): smoothing, then seed threshold, dynamic, minimum seed size, all ascending.
    keys = [(r["smooth_nm"], r["seed_threshold_nm"], r["seed_dynamic_nm"], r["min_seed_voxels"])
            for r in fit.table]  # fmt: skip
    assert keys == sorted(keys) and len(set(keys)) == total


def test_ties_go_to_the_starting_values() -> None:
    # Clean, well separated balls: every threshold in the grid segments them perfectly.
    labels = touching_balls(6, 2, 0)
    labels[labels % 2 == 0] = 0
    _, distance = instance_targets(labels, VOXEL, 4000.0)
    start = derive_segment_params([labels], VOXEL)
    params, fit = fit_segment_params(
        [BoxPrediction(distance, tuple(slice(0, n) for n in labels.shape))], [labels], VOXEL, start
    )
    assert fit.f1 == 1.0
    assert params.seed_threshold_nm == pytest.approx(start.seed_threshold_nm, rel=1e-5)
    assert params.smooth_nm == pytest.approx(start.smooth_nm, rel=1e-5)
    assert params.min_seed_voxels == start.min_seed_voxels


def test_mismatched_boxes_are_a_clear_error() -> None:
    labels = touching_balls(4, 2, 0)
    prediction = BoxPrediction(np.zeros((5, 5, 5), np.float32), (slice(0, 5),) * 3, "b1")
    with pytest.raises(InvalidInputError, match="box b1"):
        fit_segment_params([prediction], [labels], VOXEL, preset("xray-nuclei"))


def test_model_file_round_trips_the_fitted_params(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_model(
        path, UNet(UNetConfig(width=2, depth=1)), mean=0.0, std=1.0, voxel_size=VOXEL,
        metadata={"clamp_nm": 600.0},
    )  # fmt: skip
    assert load_model(path, "cpu").segment_params is None
    params = SegmentParams(120.0, 40.0, 3, 600.0, "fitted", 400.0)
    record_segment_params(path, params, {"f1": 0.95})
    loaded = load_model(path, "cpu")
    assert loaded.segment_params == params == model_segment_params(path)
    assert loaded.metadata["segment_fit"]["f1"] == 0.95 and loaded.clamp_nm == 600.0


def test_choice_prefers_the_model_then_the_ground_truth_then_the_preset() -> None:
    fitted = SegmentParams(120.0, 40.0, 3, 600.0, "fitted", 400.0)
    derived = SegmentParams(150.0, 50.0, 2, 750.0, "derived", 500.0)
    chosen = choose_segment_params(model=fitted, derive=lambda: derived)
    assert chosen.params == fitted and "recorded" in chosen.reason
    assert choose_segment_params(derive=lambda: derived).params == derived
    fallback = choose_segment_params()
    assert fallback.params == preset("xray-nuclei") and "no ground truth" in fallback.reason
    asked = choose_segment_params("xray-nuclei", model=fitted, smooth_nm=10.0)
    assert asked.params.seed_threshold_nm == 705.6 and asked.params.smooth_nm == 10.0
    assert asked.overrides == ("smooth_nm",) and "smooth_nm" in asked.describe()
    with pytest.raises(InvalidInputError, match="unknown segmentation preset"):
        choose_segment_params("confocal")


def test_training_clamp_is_derived_from_the_ground_truth_unless_given() -> None:
    labels = touching_balls(4, 2, 0)
    box = TrainingBox(labels.astype(np.float32), labels, (0, 0, 0, *labels.shape), "b")
    config = TrainConfig(voxel_size=VOXEL)
    assert config.clamp_nm == "auto"
    derived = derive_segment_params([labels], VOXEL).clamp_nm
    assert resolve_clamp(config, [box]).clamp_nm == pytest.approx(derived)
    assert derived < 1000.0  # 1.5 x a 400 nm radius, far below the published 4 um
    assert resolve_clamp(dataclasses.replace(config, clamp_nm=1500.0), [box]).clamp_nm == 1500.0
    with pytest.raises(InvalidInputError, match="clamp_nm"):
        check_config(dataclasses.replace(config, clamp_nm=-1.0))


def test_a_setting_amid_good_neighbours_beats_a_lone_best() -> None:
    # One combination scores 1.0 among neighbours of 0.3 (luck on a few objects); another 0.9
    # among neighbours of 0.9: the plateau wins, and its own F1 and the start break ties.
    start = SegmentParams(300.0, 100.0, 4, 1500.0, "derived", 1000.0, 100.0)
    table = [
        {"seed_threshold_nm": seed, "seed_dynamic_nm": dynamic, "smooth_nm": 100.0,
         "min_seed_voxels": 4, "f1": 0.3}
        for seed in (150.0, 200.0, 300.0, 400.0, 500.0, 600.0)
        for dynamic in (0.0, 100.0, 200.0)
    ]  # fmt: skip
    by_key = {(r["seed_threshold_nm"], r["seed_dynamic_nm"]): r for r in table}
    by_key[(150.0, 0.0)]["f1"] = 1.0
    for key in [(500.0, 100.0), (500.0, 200.0), (600.0, 100.0), (600.0, 200.0), (400.0, 200.0)]:
        by_key[key]["f1"] = 0.9
    by_key[(500.0, 200.0)]["f1"] = 0.92
    lone = table.index(by_key[(150.0, 0.0)])
    assert neighbourhood_f1(table)[lone] == pytest.approx((1.0 + 3 * 0.3) / 4)
    best = choose_row(table, start, 1000.0)
    # At the grid's corner, its four cells are all on the plateau.
    assert (best["seed_threshold_nm"], best["seed_dynamic_nm"]) == (600.0, 200.0)
    assert best["neighbourhood_f1"] == pytest.approx((0.92 + 3 * 0.9) / 4)
    flat = [dict(r, f1=0.8) for r in table]
    best = choose_row(flat, start, 1000.0)  # all alike: the start
    assert (best["seed_threshold_nm"], best["seed_dynamic_nm"]) == (300.0, 100.0)


def test_a_plateau_far_below_the_best_does_not_win() -> None:
    # 40 objects. A plateau of 0.77 everywhere but one corner, where a setting scores 0.88
    # beside neighbours of 0.5: the plateau's neighbourhood average is higher, but 0.77 lies
    # more than two standard errors (2 x sqrt(0.88 x 0.12 / 40) = 0.10) below the best.
    start = SegmentParams(300.0, 100.0, 4, 1500.0, "derived", 1000.0, 100.0)

    def row(seed: float, dynamic: float, f1: float) -> dict[str, Any]:
        tp = round(40 * f1)
        return {"seed_threshold_nm": seed, "seed_dynamic_nm": dynamic, "smooth_nm": 100.0,
                "min_seed_voxels": 4, "f1": f1, "tp": tp, "fn": 40 - tp}  # fmt: skip

    table = [row(seed, dynamic, 0.77) for seed in (150.0, 200.0, 300.0, 400.0)
             for dynamic in (0.0, 100.0, 200.0)]  # fmt: skip
    by_key = {(r["seed_threshold_nm"], r["seed_dynamic_nm"]): r for r in table}
    by_key[(150.0, 0.0)]["f1"] = 0.88
    for key in [(150.0, 100.0), (200.0, 0.0), (200.0, 100.0)]:
        by_key[key]["f1"] = 0.5
    assert [r["f1"] for r in contenders(table)] == [0.88]
    best = choose_row(table, start, 1000.0)
    assert (best["seed_threshold_nm"], best["seed_dynamic_nm"]) == (150.0, 0.0)
    # Within two standard errors the neighbourhood still decides: 0.80 amid 0.80s beats 0.88.
    for r in table:
        if r["f1"] == 0.77:
            r["f1"] = 0.80
    assert len(contenders(table)) == len(table) - 3
    best = choose_row(table, start, 1000.0)
    assert best["f1"] == 0.80
