"""Volume/sphericity thresholds from proofreading verdicts: labels, boxes, scores, the fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import InvalidInputError
from pipeline.thresholds import (
    fit_thresholds_from_verdicts,
    grid_search_thresholds,
    verdict_filter_scores,
    verdict_labelled_table,
)


def _known() -> pd.DataFrame:
    """Ten positives (volume 100-190, sphericity 0.8), four false positives, uncertain ones.

    With the paper's candidates (the false positives' values) the best F1 at recall >= 0.8 is
    (70, 0.8): it keeps every positive and the one false positive at volume 70 (F1 20/21);
    (150, 0.8) would drop half the positives. Were the nine uncertain detections (volume
    101-109, sphericity 0.8) counted as false positives the best point would be (109, 0.8)
    (F1 0.9 against 20/31), so they must be left out.
    """
    rows = [
        *({"volume": 100 + 10 * i, "sphericity": 0.8, "verdict": "tp"} for i in range(6)),
        *({"volume": 160 + 10 * i, "sphericity": 0.8, "verdict": "tp_distortion"}
          for i in range(4)),
        *({"volume": v, "sphericity": 0.8, "verdict": "fp"} for v in (50, 60, 70)),
        {"volume": 150, "sphericity": 0.4, "verdict": "fp"},
        *({"volume": 101 + i, "sphericity": 0.8, "verdict": "uncertain"} for i in range(9)),
        {"volume": 1, "sphericity": 0.1, "verdict": None},  # not decided yet
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_verdicts_map_to_labels_and_uncertain_is_left_out() -> None:
    detections = _known()
    table = verdict_labelled_table(detections)
    assert len(table) == 14
    assert int(table["is_tp"].sum()) == 10
    assert (table["box"] == "all").all()
    # The index of the detections is kept, so that rows map back.
    assert set(table.index) == set(range(14))
    assert set(detections.loc[table.index, "verdict"]) == {"tp", "tp_distortion", "fp"}


def test_precision_and_recall_of_a_threshold_pair_against_the_verdicts() -> None:
    scores = verdict_filter_scores(_known(), 70, 0.8)
    assert (scores.tp_kept, scores.fp_kept, scores.tp_total) == (10, 1, 10)
    assert scores.precision == pytest.approx(10 / 11)
    assert scores.recall == 1.0
    tight = verdict_filter_scores(_known(), 150, 0.5)
    assert (tight.precision, tight.recall) == (1.0, 0.5)


def test_fit_on_verdicts_finds_the_known_thresholds() -> None:
    fit = fit_thresholds_from_verdicts(_known())
    assert (fit.t_volume, fit.t_sphericity) == (70, 0.8)
    assert fit.scores is not None and fit.scores.f1 == pytest.approx(20 / 21)
    # Counting uncertain as false positive moves the optimum: the mapping matters.
    strict = {"tp": True, "tp_distortion": True, "fp": False, "uncertain": False}
    moved = fit_thresholds_from_verdicts(_known(), classes=strict)
    assert (moved.t_volume, moved.t_sphericity) == (109, 0.8)


def test_custom_verdict_names() -> None:
    detections = _known().replace({"tp": "good", "tp_distortion": "good-ish", "fp": "junk"})
    classes = {"good": True, "good-ish": True, "junk": False, "uncertain": None}
    fit = fit_thresholds_from_verdicts(detections, classes=classes)
    assert (fit.t_volume, fit.t_sphericity) == (70, 0.8)
    with pytest.raises(InvalidInputError, match="verdicts without a class: good, good-ish, junk"):
        verdict_labelled_table(detections)


def test_grid_boxes_from_centroids_drive_the_k_fold() -> None:
    rng = np.random.default_rng(0)
    n = 400
    is_tp = rng.random(n) < 0.7
    detections = pd.DataFrame(
        {
            "volume": np.where(is_tp, rng.uniform(100, 200, n), rng.uniform(10, 120, n)),
            "sphericity": np.where(is_tp, rng.uniform(0.7, 0.95, n), rng.uniform(0.3, 0.9, n)),
            "verdict": np.where(is_tp, "tp", "fp"),
            "centroid_z": rng.uniform(0, 100, n),
            "centroid_y": rng.uniform(0, 1000, n),
            "centroid_x": rng.uniform(0, 1000, n),
        }
    )
    table = verdict_labelled_table(detections, grid=(1, 2, 2))
    assert sorted(table["box"].unique()) == ["z0y0x0", "z0y0x1", "z0y1x0", "z0y1x1"]
    assert table["box"].is_monotonic_increasing  # neighbouring cells make a fold
    # The top-right cell holds the centroids with y >= 500 and x >= 500.
    right = detections.loc[table.index[table["box"] == "z0y1x1"]]
    assert (right["centroid_y"] >= 500).all() and (right["centroid_x"] >= 500).all()
    fit = fit_thresholds_from_verdicts(detections, grid=(1, 2, 2), n_folds=5)
    assert len(fit.folds) == 4  # capped at the number of boxes
    single = grid_search_thresholds(table.assign(box="all"))
    # The k-fold minimum is never tighter than every fold's choice, and the search is sane.
    assert fit.t_volume <= max(f.fit.t_volume for f in fit.folds)
    assert fit.scores is not None and fit.scores.recall >= 0.8
    assert single.scores.recall >= 0.8
    # A campaign's own boxes win over the grid.
    own = verdict_labelled_table(detections.assign(box=np.where(is_tp, "a", "b")))
    assert set(own["box"]) == {"a", "b"}


@pytest.mark.parametrize(
    ("detections", "message"),
    [
        (pd.DataFrame({"volume": [1.0], "sphericity": [0.5]}), "no 'verdict' column"),
        (pd.DataFrame({"volume": [1.0], "sphericity": [0.5], "verdict": ["uncertain"]}),
         "no detection has a positive or negative verdict"),
        (pd.DataFrame({"volume": [np.nan], "sphericity": [0.5], "verdict": ["tp"]}), "finite"),
        (pd.DataFrame({"sphericity": [0.5], "verdict": ["tp"]}), "no volume column"),
    ],
)  # fmt: skip
def test_bad_verdict_tables_are_refused(detections: pd.DataFrame, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        verdict_labelled_table(detections)


def test_fit_needs_a_positive() -> None:
    only_fp = pd.DataFrame({"volume": [1.0, 2.0], "sphericity": [0.5, 0.6], "verdict": ["fp"] * 2})
    with pytest.raises(InvalidInputError, match="no detection has a positive verdict"):
        fit_thresholds_from_verdicts(only_fp)
