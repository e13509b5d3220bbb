"""Volume/sphericity filtering of detections and the search for its thresholds.

The filter keeps an object when ``volume >= t_volume`` and ``sphericity >= t_sphericity``.
Thresholds are fitted, as in Nathansen et al. (SPIE 13152, 2024; data: cboschp/segVolData), on
detections labelled true or false positive inside evaluation boxes:

- precision = kept TP / (kept TP + kept FP), recall = kept TP / all TP (the paper's
  ``recall_thresholding``: relative to the classifier's true positives, not to the ground truth);
- an exhaustive grid over candidate thresholds; the best F1 among the points with
  recall >= ``min_recall``;
- k-fold cross-validation over boxes: each fold's thresholds are fitted on the other folds' boxes,
  and the final thresholds are the minimum of each threshold over the folds.

Candidate thresholds are the observed values of the false positives (a cut placed on an object to
reject), plus the smallest observed value (no filtering). Beyond ``MAX_CANDIDATES`` distinct
values per axis the candidates are that many quantiles of them (observed values still): the grid
costs the square of its side in memory (100,000 verdicts' full grid needed over 22 GB), while
a cut between two of a thousand quantiles moves at most a thousandth of the objects.

Among equally good grid points the tightest is taken (largest volume threshold, then largest
sphericity threshold): on its training boxes it rejects everything it can reject for free, and
the minimum over folds then relaxes it.
With three folds of the published validation boxes this reproduces the published C432 thresholds
exactly (see ``tests/pipeline/test_thresholds.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.errors import InvalidInputError

VOLUME_COLUMNS: tuple[str, ...] = ("volume", "volumes")
SPHERICITY_COLUMNS: tuple[str, ...] = ("sphericity", "sphericities")
LABEL_COLUMN = "is_tp"
BOX_COLUMN = "box"

Candidates = Literal["fp", "all"]
#: Threshold candidates per axis at most (module doc): a 1024 x 1024 grid is 8 MiB of counts.
MAX_CANDIDATES = 1024
TieBreak = Literal["tightest", "loosest"]


def _column(df: pd.DataFrame, names: Sequence[str], what: str) -> str:
    for name in names:
        if name in df.columns:
            return name
    raise InvalidInputError(
        f"the table has no {what} column (expected one of {', '.join(names)}; "
        f"found {', '.join(map(str, df.columns)) or 'none'})"
    )


def volume_column(df: pd.DataFrame) -> str:
    """Name of the volume column (``volume`` in our tables, ``volumes`` in the published ones)."""
    return _column(df, VOLUME_COLUMNS, "volume")


def sphericity_column(df: pd.DataFrame) -> str:
    """Name of the sphericity column (``sphericity`` or the published ``sphericities``)."""
    return _column(df, SPHERICITY_COLUMNS, "sphericity")


def detections_keep_mask(
    df: pd.DataFrame, t_volume: float, t_sphericity: float
) -> npt.NDArray[np.bool_]:
    """Boolean mask of the rows the filter keeps (volume >= t_v and sphericity >= t_s)."""
    volumes = df[volume_column(df)].to_numpy(dtype=np.float64)
    sphericities = df[sphericity_column(df)].to_numpy(dtype=np.float64)
    keep: npt.NDArray[np.bool_] = (volumes >= t_volume) & (sphericities >= t_sphericity)
    return keep


def detections_filter_by_thresholds(
    df: pd.DataFrame, t_volume: float, t_sphericity: float
) -> pd.DataFrame:
    """The rows with volume >= ``t_volume`` and sphericity >= ``t_sphericity``, in order."""
    return df.loc[detections_keep_mask(df, t_volume, t_sphericity)]


def labelled_table(
    tp: pd.DataFrame, fp: pd.DataFrame, *, box_column: str | None = BOX_COLUMN
) -> pd.DataFrame:
    """One table of labelled detections: ``volume``, ``sphericity``, ``is_tp`` and ``box``.

    ``box`` is taken from ``box_column`` when both tables have it, else every row gets box "all".
    """
    parts = []
    for df, is_tp, what in ((tp, True, "true-positive"), (fp, False, "false-positive")):
        if df.empty:
            raise InvalidInputError(f"the {what} table is empty")
        part = pd.DataFrame(
            {
                "volume": df[volume_column(df)].to_numpy(dtype=np.float64),
                "sphericity": df[sphericity_column(df)].to_numpy(dtype=np.float64),
                LABEL_COLUMN: is_tp,
            }
        )
        has_box = box_column is not None and box_column in tp.columns and box_column in fp.columns
        part[BOX_COLUMN] = df[box_column].astype(str).to_numpy() if has_box else "all"
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    values = table[["volume", "sphericity"]].to_numpy()
    if not np.isfinite(values).all():
        raise InvalidInputError("volume and sphericity must be finite numbers")
    return table


@dataclass(frozen=True)
class Scores:
    """Counts and scores of the filter on labelled detections."""

    tp_kept: int
    fp_kept: int
    tp_total: int
    precision: float
    recall: float
    f1: float


def _scores_from_counts(tp_kept: float, fp_kept: float, tp_total: float) -> Scores:
    precision = tp_kept / (tp_kept + fp_kept) if tp_kept + fp_kept else 0.0
    recall = tp_kept / tp_total if tp_total else 0.0
    f1 = 2 * tp_kept / (tp_kept + fp_kept + tp_total) if tp_total else 0.0
    return Scores(int(tp_kept), int(fp_kept), int(tp_total), precision, recall, f1)


def filter_scores(table: pd.DataFrame, t_volume: float, t_sphericity: float) -> Scores:
    """Precision, recall (relative to all TP) and F1 of the filter on a labelled table."""
    keep = detections_keep_mask(table, t_volume, t_sphericity)
    is_tp = table[LABEL_COLUMN].to_numpy(dtype=bool)
    return _scores_from_counts(
        float((keep & is_tp).sum()), float((keep & ~is_tp).sum()), float(is_tp.sum())
    )


@dataclass(frozen=True)
class GridResult:
    """The best grid point of one search."""

    t_volume: float
    t_sphericity: float
    scores: Scores


def _kept_counts(
    volumes: npt.NDArray[np.float64],
    sphericities: npt.NDArray[np.float64],
    grid_v: npt.NDArray[np.float64],
    grid_s: npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]:
    """counts[i, j] = number of objects with volume >= grid_v[i] and sphericity >= grid_s[j]."""
    # An object passes every candidate up to the largest one not above its value.
    vi = np.searchsorted(grid_v, volumes, side="right") - 1
    si = np.searchsorted(grid_s, sphericities, side="right") - 1
    ok = (vi >= 0) & (si >= 0)
    hist = np.zeros((grid_v.size, grid_s.size), dtype=np.int64)
    np.add.at(hist, (vi[ok], si[ok]), 1)
    counts: npt.NDArray[np.int64] = hist[::-1, ::-1].cumsum(axis=0).cumsum(axis=1)[::-1, ::-1]
    return counts


def _candidate_values(
    values: npt.NDArray[np.float64], is_tp: npt.NDArray[np.bool_], candidates: Candidates
) -> npt.NDArray[np.float64]:
    source = values if candidates == "all" else values[~is_tp]
    distinct = np.unique(source)
    if distinct.size > MAX_CANDIDATES:  # quantiles where the candidates are dense, observed values
        levels = np.linspace(0.0, 1.0, MAX_CANDIDATES)
        distinct = np.unique(np.quantile(source, levels, method="inverted_cdf"))
    return np.unique(np.concatenate([distinct, [values.min()]]))


def grid_search_thresholds(
    table: pd.DataFrame,
    *,
    min_recall: float = 0.8,
    candidates: Candidates = "fp",
    tie_break: TieBreak = "tightest",
) -> GridResult:
    """Best F1 subject to recall >= ``min_recall`` over a (volume, sphericity) grid."""
    if table.empty:
        raise InvalidInputError("no labelled detections to fit thresholds on")
    is_tp = table[LABEL_COLUMN].to_numpy(dtype=bool)
    if not is_tp.any():
        raise InvalidInputError("the labelled detections contain no true positive")
    volumes = table["volume"].to_numpy(dtype=np.float64)
    sphericities = table["sphericity"].to_numpy(dtype=np.float64)
    grid_v = _candidate_values(volumes, is_tp, candidates)
    grid_s = _candidate_values(sphericities, is_tp, candidates)
    tp_kept = _kept_counts(volumes[is_tp], sphericities[is_tp], grid_v, grid_s)
    fp_kept = _kept_counts(volumes[~is_tp], sphericities[~is_tp], grid_v, grid_s)
    tp_total = int(is_tp.sum())
    recall = tp_kept / tp_total
    # F1 = 2 TP / (2 TP + FP + FN) avoids dividing precision by zero when nothing is kept.
    f1 = 2 * tp_kept / (2 * tp_kept + fp_kept + (tp_total - tp_kept))
    # The loosest grid point keeps every object (recall 1), so some point is always feasible.
    f1 = np.where(recall >= min_recall, f1, -1.0)
    rows, cols = np.nonzero(f1 == f1.max())
    order = np.lexsort((-cols, -rows)) if tie_break == "tightest" else np.lexsort((cols, rows))
    i, j = int(rows[order[0]]), int(cols[order[0]])
    scores = _scores_from_counts(float(tp_kept[i, j]), float(fp_kept[i, j]), float(tp_total))
    return GridResult(float(grid_v[i]), float(grid_s[j]), scores)


def boxes_in_order(table: pd.DataFrame) -> list[str]:
    """Box names in the order they first appear in the table."""
    return [str(b) for b in pd.unique(table[BOX_COLUMN])]


def folds_by_box(boxes: Sequence[str], n_folds: int) -> list[list[str]]:
    """Split boxes into ``n_folds`` contiguous groups of near-equal size (deterministic)."""
    if n_folds < 1:
        raise InvalidInputError("the number of folds must be at least 1")
    if n_folds > len(boxes):
        raise InvalidInputError(
            f"{n_folds} folds need at least {n_folds} boxes; the table has {len(boxes)}"
        )
    # As numpy.array_split and scikit-learn's KFold: the first len % k folds get one box more.
    size, extra = divmod(len(boxes), n_folds)
    folds, start = [], 0
    for k in range(n_folds):
        stop = start + size + (1 if k < extra else 0)
        folds.append(list(boxes[start:stop]))
        start = stop
    return folds


@dataclass(frozen=True)
class FoldResult:
    """Thresholds chosen on one fold's training boxes and their scores on its held-out boxes."""

    held_out: list[str]
    fit: GridResult
    held_out_scores: Scores | None


@dataclass(frozen=True)
class ThresholdFit:
    """Cross-validated thresholds: the minimum over the folds of each fold's choice."""

    t_volume: float
    t_sphericity: float
    folds: list[FoldResult] = field(default_factory=list)
    scores: Scores | None = None  # of the final thresholds on all the labelled detections


def fit_thresholds(
    table: pd.DataFrame,
    *,
    n_folds: int = 5,
    min_recall: float = 0.8,
    candidates: Candidates = "fp",
    tie_break: TieBreak = "tightest",
) -> ThresholdFit:
    """Fit thresholds by k-fold cross-validation over boxes, aggregating by the minimum.

    With one fold (or a single box) the search runs once on all the detections.
    """
    if table.empty:
        raise InvalidInputError("no labelled detections to fit thresholds on")
    boxes = boxes_in_order(table)
    if n_folds <= 1 or len(boxes) == 1:
        fit = grid_search_thresholds(
            table, min_recall=min_recall, candidates=candidates, tie_break=tie_break
        )
        return ThresholdFit(fit.t_volume, fit.t_sphericity, [], fit.scores)
    folds: list[FoldResult] = []
    for held_out in folds_by_box(boxes, n_folds):
        in_fold = table[BOX_COLUMN].isin(held_out).to_numpy()
        train, test = table.loc[~in_fold], table.loc[in_fold]
        if not train[LABEL_COLUMN].any():
            raise InvalidInputError(
                f"the boxes outside fold {', '.join(held_out)} contain no true positive"
            )
        fit = grid_search_thresholds(
            train, min_recall=min_recall, candidates=candidates, tie_break=tie_break
        )
        held = filter_scores(test, fit.t_volume, fit.t_sphericity) if len(test) else None
        folds.append(FoldResult(held_out, fit, held))
    t_volume = min(f.fit.t_volume for f in folds)
    t_sphericity = min(f.fit.t_sphericity for f in folds)
    return ThresholdFit(t_volume, t_sphericity, folds, filter_scores(table, t_volume, t_sphericity))


def per_box_scores(table: pd.DataFrame, t_volume: float, t_sphericity: float) -> pd.DataFrame:
    """Per-box counts, precision, recall (relative to TP) and F1 of the filter."""
    rows = []
    for box in boxes_in_order(table):
        s = filter_scores(table.loc[table[BOX_COLUMN] == box], t_volume, t_sphericity)
        rows.append(
            {
                "box": box,
                "tp_total": s.tp_total,
                "tp_kept": s.tp_kept,
                "fp_kept": s.fp_kept,
                "precision": s.precision,
                "recall": s.recall,
                "f1": s.f1,
            }
        )
    return pd.DataFrame(rows)


def filter_agreement(
    table: pd.DataFrame, thresholds_a: tuple[float, float], thresholds_b: tuple[float, float]
) -> float:
    """Fraction of rows on which two threshold pairs make the same keep/reject decision."""
    a = detections_keep_mask(table, *thresholds_a)
    b = detections_keep_mask(table, *thresholds_b)
    return float((a == b).mean())


# --- thresholds from proofreading verdicts ------------------------------------------------------

#: Verdict -> positive (True), negative (False) or left out (None): the issue's default verdict set.
DEFAULT_VERDICT_CLASSES: dict[str, bool | None] = {
    "tp": True,
    "tp_distortion": True,
    "fp": False,
    "uncertain": None,
}
CENTROID_COLUMNS: tuple[str, str, str] = ("centroid_z", "centroid_y", "centroid_x")


def _grid_boxes(centroids: npt.NDArray[np.float64], cells: Sequence[int]) -> list[str]:
    """Names of the grid cells ("z0y1x0") holding each centroid; the grid spans the centroids."""
    lo, hi = centroids.min(axis=0), centroids.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    n = np.asarray(cells, dtype=np.int64)
    index = np.minimum(((centroids - lo) / span * n).astype(np.int64), n - 1)
    return [f"z{a}y{b}x{c}" for a, b, c in index]


def verdict_labelled_table(
    detections: pd.DataFrame,
    *,
    classes: Mapping[str, bool | None] = DEFAULT_VERDICT_CLASSES,
    verdict_column: str = "verdict",
    box_column: str | None = BOX_COLUMN,
    grid: int | Sequence[int] = 2,
    centroid_columns: Sequence[str] = CENTROID_COLUMNS,
) -> pd.DataFrame:
    """The labelled table :func:`fit_thresholds` wants, from proofread detections.

    ``classes`` maps each verdict to positive, negative or None (left out: uncertain); detections
    without a verdict are left out, a verdict outside ``classes`` is refused. The k-fold unit
    ``box`` is the campaign's own box column when there is one; else the cell of a ``grid``
    (cells per axis, spanning the centroids) holding the detection's centroid, so that folds are
    spatially separate as the paper's boxes are; else one box "all". The index of
    ``detections`` is kept, so that rows map back to their detections.
    """
    if verdict_column not in detections.columns:
        raise InvalidInputError(f"the detections table has no {verdict_column!r} column")
    verdicts = detections[verdict_column]
    decided = verdicts.notna()
    unknown = sorted(set(verdicts[decided].astype(str)) - set(classes))
    if unknown:
        raise InvalidInputError(
            f"verdicts without a class: {', '.join(unknown)} (known: {', '.join(classes)})"
        )
    label = verdicts[decided].astype(str).map(lambda v: classes[v])
    rows = detections.loc[label.index[label.notna()]]
    is_tp = label[label.notna()].astype(bool).to_numpy()
    if rows.empty:
        raise InvalidInputError("no detection has a positive or negative verdict")
    table = pd.DataFrame(
        {
            "volume": rows[volume_column(rows)].to_numpy(dtype=np.float64),
            "sphericity": rows[sphericity_column(rows)].to_numpy(dtype=np.float64),
            LABEL_COLUMN: is_tp,
        },
        index=rows.index,
    )
    if not np.isfinite(table[["volume", "sphericity"]].to_numpy()).all():
        raise InvalidInputError("volume and sphericity must be finite numbers")
    cells = [grid] * 3 if isinstance(grid, int) else list(grid)
    if len(cells) != 3 or min(cells) < 1:
        raise InvalidInputError(f"the grid needs 1 or more cells on each of 3 axes, got {grid}")
    if box_column is not None and box_column in rows.columns and rows[box_column].notna().all():
        table[BOX_COLUMN] = rows[box_column].astype(str).to_numpy()
    elif all(c in rows.columns for c in centroid_columns):
        centroids = rows[list(centroid_columns)].to_numpy(dtype=np.float64)
        table[BOX_COLUMN] = _grid_boxes(centroids, cells)
        # Folds are runs of boxes in order of appearance: order by cell so that they are
        # neighbouring cells.
        table = table.sort_values(BOX_COLUMN, kind="stable")
    else:
        table[BOX_COLUMN] = "all"
    return table


def verdict_filter_scores(
    detections: pd.DataFrame,
    t_volume: float,
    t_sphericity: float,
    *,
    classes: Mapping[str, bool | None] = DEFAULT_VERDICT_CLASSES,
    verdict_column: str = "verdict",
) -> Scores:
    """Precision and recall (of the positives) of a threshold pair against the verdicts."""
    table = verdict_labelled_table(
        detections, classes=classes, verdict_column=verdict_column, box_column=None
    )
    return filter_scores(table, t_volume, t_sphericity)


def fit_thresholds_from_verdicts(
    detections: pd.DataFrame,
    *,
    classes: Mapping[str, bool | None] = DEFAULT_VERDICT_CLASSES,
    verdict_column: str = "verdict",
    box_column: str | None = BOX_COLUMN,
    grid: int | Sequence[int] = 2,
    n_folds: int = 5,
    min_recall: float = 0.8,
    candidates: Candidates = "fp",
    tie_break: TieBreak = "tightest",
) -> ThresholdFit:
    """:func:`fit_thresholds` on proofread detections (see :func:`verdict_labelled_table`).

    The number of folds is capped at the number of boxes holding a positive, since a fold's
    training boxes need one; with a single such box the search runs once, without folds.
    """
    table = verdict_labelled_table(
        detections,
        classes=classes,
        verdict_column=verdict_column,
        box_column=box_column,
        grid=grid,
        centroid_columns=CENTROID_COLUMNS,
    )
    if not table[LABEL_COLUMN].any():
        raise InvalidInputError("no detection has a positive verdict: nothing to keep")
    boxes_with_tp = table.loc[table[LABEL_COLUMN], BOX_COLUMN].nunique()
    return fit_thresholds(
        table,
        n_folds=min(n_folds, int(boxes_with_tp)),
        min_recall=min_recall,
        candidates=candidates,
        tie_break=tie_break,
    )
