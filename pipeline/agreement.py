"""Agreement between proofreaders, the consensus verdict of each detection, second-round routing.

Input is one row per verdict (a DataFrame or a list of records): ``detection_id``, ``reviewer``,
``verdict`` and ``round`` (1: the first round, 2: the expert's second round; default 1). A
reviewer has one current verdict per detection and round (the site keeps the history elsewhere).
Verdict names are the campaign's own; the one that means "cannot tell" is ``uncertain`` unless
the caller names others.

Rules (issue 8, after the kidney-glomeruli and nuclei proofreading studies):

- First round: each detection gets ``quorum`` (the campaign's N) verdicts from different people.
  Until it has them it is *pending*; routing waits for all N, so that every detection carries the
  same number of first-round verdicts and the agreement statistics are not computed on the easy
  detections only.
- A complete first round is *decided* when no verdict is uncertain and the verdicts agree: all
  the same (rule ``unanimous``, the issue's "whose N verdicts disagree goes to a second round"), or
  a strict majority (rule ``majority``: more than half the votes; a tie is not a majority).
  Otherwise it goes to the *second round*.
- The expert's second-round verdict is final, whatever the first round said (the latest one, when
  the caller gives several in time order).

Statistics: Cohen's kappa per pair of reviewers on the detections both rated (scikit-learn's
``cohen_kappa_score``: kappa = (p_o - p_e) / (1 - p_e), p_e from each reviewer's own marginals);
Fleiss' kappa per campaign (statsmodels' ``aggregate_raters`` and ``fleiss_kappa``: P-bar from
sum_j n_ij (n_ij - 1) / (n (n - 1)) per detection, P_e = sum_j p_j^2 from the pooled marginals),
which needs the same number of ratings n per detection: it is computed on the detections with
exactly n first-round verdicts (n: the campaign's N when given, else the most common count) and
the others are counted as excluded; and percent agreement (the share of agreeing pairs of
verdicts, Fleiss' P-bar with each detection weighted by its number of pairs, so that varying
counts are handled, and the share of unanimous detections).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from pipeline.errors import InvalidInputError

UNCERTAIN = "uncertain"
FIRST_ROUND = 1
SECOND_ROUND = 2
REQUIRED_COLUMNS: tuple[str, ...] = ("detection_id", "reviewer", "verdict")

Rule = Literal["unanimous", "majority"]
Status = Literal["pending", "decided", "second_round"]
Source = Literal["first_round", "expert"]


def verdicts_frame(verdicts: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The verdicts as a checked DataFrame: ``detection_id, reviewer, verdict, round``.

    ``round`` defaults to 1; an optional ``decided_at`` column orders the verdicts (else the row
    order is kept). Missing values, rounds other than 1 and 2, and two current verdicts of one
    reviewer on one detection in one round are refused, with a message naming the first bad row.
    """
    frame = verdicts.copy() if isinstance(verdicts, pd.DataFrame) else pd.DataFrame(list(verdicts))
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"the verdicts table has no {', '.join(missing)} column "
            f"(expected {', '.join(REQUIRED_COLUMNS)} and optionally round)"
        )
    # A record without a round (or a blank one) is a first-round verdict.
    frame["round"] = frame["round"].fillna(FIRST_ROUND) if "round" in frame else FIRST_ROUND
    for column in (*REQUIRED_COLUMNS, "round"):
        bad = frame[column].isna()
        if bad.any():
            raise InvalidInputError(f"verdict row {int(np.flatnonzero(bad)[0])} has no {column}")
    try:
        rounds = pd.to_numeric(frame["round"], errors="raise")
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"the round column must hold 1 or 2: {exc}") from exc
    bad = ~rounds.isin([FIRST_ROUND, SECOND_ROUND])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(
            f"verdict row {row} has round {frame['round'].iloc[row]}; use 1 or 2"
        )
    frame["round"] = rounds.astype(np.int64)
    frame["verdict"] = frame["verdict"].astype(str)
    if "decided_at" in frame.columns:
        frame = frame.sort_values("decided_at", kind="stable")
    dup = frame.duplicated(["detection_id", "reviewer", "round"])
    if dup.any():
        row = frame.loc[dup].iloc[0]
        raise InvalidInputError(
            f"reviewer {row['reviewer']!r} has two verdicts on detection {row['detection_id']!r} "
            f"in round {row['round']}"
        )
    return frame.reset_index(drop=True)


@dataclass(frozen=True)
class Consensus:
    """Where one detection stands.

    ``verdict`` is final only when ``status`` is ``decided``; ``majority`` is the strict
    first-round majority (or None), shown to the expert and used as the provisional verdict.
    """

    status: Status
    verdict: str | None
    source: Source | None
    majority: str | None
    n_first_round: int
    reason: str


def _strict_majority(first_round: Sequence[str]) -> str | None:
    counts = Counter(first_round).most_common(2)
    if not counts:
        return None
    top, n_top = counts[0]
    if 2 * n_top <= len(first_round):
        return None
    return top


def detection_consensus(
    first_round: Sequence[str],
    second_round: Sequence[str] = (),
    *,
    quorum: int,
    rule: Rule = "unanimous",
    uncertain: Collection[str] = (UNCERTAIN,),
) -> Consensus:
    """The consensus of one detection from its verdicts (each sequence in time order).

    Why a pure function: the site calls it inside the transaction that records a verdict, and
    the batch functions below call it per detection, so both always apply the same rule.
    """
    if quorum < 1:
        raise InvalidInputError("the number of verdicts per detection (quorum) must be at least 1")
    if rule not in ("unanimous", "majority"):
        raise InvalidInputError(f"unknown consensus rule {rule!r}; use unanimous or majority")
    first = [str(v) for v in first_round]
    n = len(first)
    majority = _strict_majority(first)
    if second_round:
        return Consensus("decided", str(second_round[-1]), "expert", majority, n, "expert")
    if n < quorum:
        return Consensus("pending", None, None, majority, n, f"{n} of {quorum} verdicts")
    if any(v in uncertain for v in first):
        return Consensus("second_round", None, None, majority, n, "uncertain")
    if len(set(first)) == 1:
        return Consensus("decided", first[0], "first_round", majority, n, "unanimous")
    if rule == "majority" and majority is not None:
        return Consensus("decided", majority, "first_round", majority, n, "majority")
    return Consensus(
        "second_round", None, None, majority, n, "disagreement" if rule == "unanimous" else "tie"
    )


def needs_second_round(
    first_round: Sequence[str],
    *,
    quorum: int,
    rule: Rule = "unanimous",
    uncertain: Collection[str] = (UNCERTAIN,),
) -> bool:
    """True when a detection's complete first round holds an uncertain verdict or disagrees."""
    return (
        detection_consensus(first_round, quorum=quorum, rule=rule, uncertain=uncertain).status
        == "second_round"
    )


def consensus_table(
    verdicts: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    quorum: int,
    rule: Rule = "unanimous",
    uncertain: Collection[str] = (UNCERTAIN,),
) -> pd.DataFrame:
    """One row per detection: status, final verdict, its source, the majority and why.

    ``agreement`` is the share of first-round verdicts equal to the final verdict (NaN while
    undecided), a per-detection figure the dashboard can average.
    """
    frame = verdicts_frame(verdicts)
    rows = []
    for detection_id, group in frame.groupby("detection_id", sort=True):
        first = group.loc[group["round"] == FIRST_ROUND, "verdict"].tolist()
        second = group.loc[group["round"] == SECOND_ROUND, "verdict"].tolist()
        c = detection_consensus(first, second, quorum=quorum, rule=rule, uncertain=uncertain)
        agree = (
            sum(v == c.verdict for v in first) / len(first)
            if c.verdict is not None and first
            else float("nan")
        )
        rows.append(
            {
                "detection_id": detection_id,
                "n_first_round": c.n_first_round,
                "status": c.status,
                "verdict": c.verdict,
                "source": c.source,
                "majority": c.majority,
                "reason": c.reason,
                "agreement": agree,
            }
        )
    columns = ["detection_id", "n_first_round", "status", "verdict", "source", "majority"]
    return pd.DataFrame(rows, columns=[*columns, "reason", "agreement"])


def second_round_detections(
    verdicts: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    quorum: int,
    rule: Rule = "unanimous",
    uncertain: Collection[str] = (UNCERTAIN,),
) -> list[Any]:
    """Ids of the detections waiting for an expert (routed, no second-round verdict yet)."""
    table = consensus_table(verdicts, quorum=quorum, rule=rule, uncertain=uncertain)
    ids: list[Any] = table.loc[table["status"] == "second_round", "detection_id"].tolist()
    return ids


def _first_round(verdicts: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    frame = verdicts_frame(verdicts)
    return frame.loc[frame["round"] == FIRST_ROUND]


def _categories(first: pd.DataFrame, labels: Sequence[str] | None) -> list[str]:
    """The verdict set: the campaign's when given (refusing verdicts outside it), else the seen."""
    if labels is None:
        return sorted(str(v) for v in first["verdict"].unique())
    unknown = sorted(set(first["verdict"]) - set(labels))
    if unknown:
        raise InvalidInputError(f"verdicts outside the verdict set: {', '.join(unknown)}")
    return [str(v) for v in labels]


def cohen_kappa_pairs(
    verdicts: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    labels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Cohen's kappa and percent agreement for every pair of first-round reviewers.

    Each pair is scored on the detections both rated (``n_common``); pairs with none are left
    out. Kappa is NaN where it is undefined: both reviewers gave one and the same verdict
    throughout (p_e = 1), as scikit-learn defines it. ``labels``: the campaign's verdict set,
    so that every pair is scored against the same categories.
    """
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score

    first = _first_round(verdicts)
    wide = first.pivot(index="detection_id", columns="reviewer", values="verdict")
    all_labels = _categories(first, labels)
    rows = []
    for a, b in combinations(sorted(wide.columns, key=str), 2):
        both = wide[[a, b]].dropna()
        if both.empty:
            continue
        y1, y2 = both[a].to_numpy(dtype=str), both[b].to_numpy(dtype=str)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            warnings.simplefilter("ignore", UserWarning)
            kappa = float(cohen_kappa_score(y1, y2, labels=all_labels))
        rows.append(
            {
                "reviewer_a": a,
                "reviewer_b": b,
                "n_common": len(both),
                "percent_agreement": float((y1 == y2).mean()),
                "kappa": kappa,
            }
        )
    columns = ["reviewer_a", "reviewer_b", "n_common", "percent_agreement", "kappa"]
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class FleissResult:
    """Fleiss' kappa over the detections with exactly ``n_raters`` first-round verdicts."""

    kappa: float
    n_raters: int
    n_detections: int
    n_excluded: int
    categories: list[str]


def fleiss_kappa_campaign(
    verdicts: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    n_raters: int | None = None,
    labels: Sequence[str] | None = None,
) -> FleissResult:
    """Fleiss' kappa of a campaign's first round (statsmodels).

    Fleiss' formula assumes every subject has the same number of ratings; detections with more
    or fewer than ``n_raters`` (default: the most common count, the larger on a tie) are left
    out and counted in ``n_excluded`` rather than padded or subsampled, which would invent or
    drop ratings. NaN when fewer than two detections or ratings remain, or when every rating is
    the same category (P_e = 1).
    """
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    first = _first_round(verdicts)
    categories = _categories(first, labels)
    counts = first.groupby("detection_id")["verdict"].size()
    if n_raters is None:
        if counts.empty:
            return FleissResult(float("nan"), 0, 0, 0, categories)
        freq = counts.value_counts()
        n_raters = int(max(freq.index[freq == freq.max()]))
    if n_raters < 1:
        raise InvalidInputError("the number of raters must be at least 1")
    keep = counts.index[counts == n_raters]
    n_excluded = int(len(counts) - len(keep))
    if len(keep) < 2 or n_raters < 2:
        return FleissResult(float("nan"), n_raters, len(keep), n_excluded, categories)
    code = {name: i for i, name in enumerate(categories)}
    rated = first.loc[first["detection_id"].isin(keep)].sort_values("detection_id", kind="stable")
    codes = rated["verdict"].map(code).to_numpy(dtype=np.int64).reshape(len(keep), n_raters)
    table, _ = aggregate_raters(codes, n_cat=len(categories))
    p = table.sum(axis=0) / table.sum()
    if np.isclose(float((p**2).sum()), 1.0):
        kappa = float("nan")
    else:
        kappa = float(fleiss_kappa(table, method="fleiss"))
    return FleissResult(kappa, n_raters, len(keep), n_excluded, categories)


@dataclass(frozen=True)
class PercentAgreement:
    """Raw agreement of the first round (no chance correction)."""

    pairwise: float  # agreeing pairs of verdicts / all pairs, over detections with >= 2
    unanimous: float  # detections whose verdicts are all the same / detections with >= 2
    n_detections: int  # detections with at least two first-round verdicts


def percent_agreement(verdicts: pd.DataFrame | Iterable[Mapping[str, Any]]) -> PercentAgreement:
    """Share of agreeing verdict pairs (sum_i sum_j n_ij (n_ij-1) / sum_i n_i (n_i-1)).

    Weighting each detection by its number of pairs handles varying counts; with equal counts
    it is Fleiss' P-bar.
    """
    first = _first_round(verdicts)
    table = pd.crosstab(first["detection_id"], first["verdict"]).to_numpy(dtype=np.int64)
    n = table.sum(axis=1)
    multi = n >= 2
    if not multi.any():
        return PercentAgreement(float("nan"), float("nan"), 0)
    table, n = table[multi], n[multi]
    agreeing = float((table * (table - 1)).sum())
    pairs = float((n * (n - 1)).sum())
    unanimous = float((table.max(axis=1) == n).mean())
    return PercentAgreement(agreeing / pairs, unanimous, int(multi.sum()))


def reviewer_agreement_with_consensus(
    verdicts: pd.DataFrame | Iterable[Mapping[str, Any]], consensus: pd.DataFrame
) -> pd.DataFrame:
    """Per reviewer: first-round decisions, how many have a final verdict, share agreeing."""
    first = _first_round(verdicts)
    final = consensus.loc[consensus["status"] == "decided", ["detection_id", "verdict"]]
    merged = first.merge(final, on="detection_id", how="left", suffixes=("", "_final"))
    rows = []
    for reviewer, group in merged.groupby("reviewer", sort=True):
        decided = group.dropna(subset=["verdict_final"])
        agree = (decided["verdict"] == decided["verdict_final"]).mean() if len(decided) else np.nan
        rows.append(
            {
                "reviewer": reviewer,
                "n_verdicts": len(group),
                "n_with_consensus": len(decided),
                "agreement_with_consensus": float(agree),
            }
        )
    columns = ["reviewer", "n_verdicts", "n_with_consensus", "agreement_with_consensus"]
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class AgreementReport:
    """Everything the dashboard and the CLI show about a campaign's verdicts."""

    consensus: pd.DataFrame
    pairs: pd.DataFrame
    fleiss: FleissResult
    percent: PercentAgreement
    reviewers: pd.DataFrame
    status_counts: dict[str, int]
    verdict_counts: dict[str, int]


def agreement_report(
    verdicts: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    quorum: int,
    rule: Rule = "unanimous",
    uncertain: Collection[str] = (UNCERTAIN,),
    labels: Sequence[str] | None = None,
) -> AgreementReport:
    """Consensus, Cohen per pair, Fleiss (n = ``quorum``), percent agreement, per reviewer."""
    frame = verdicts_frame(verdicts)
    consensus = consensus_table(frame, quorum=quorum, rule=rule, uncertain=uncertain)
    status_counts = {s: int((consensus["status"] == s).sum()) for s in get_args(Status)}
    decided = consensus.loc[consensus["status"] == "decided", "verdict"]
    return AgreementReport(
        consensus=consensus,
        pairs=cohen_kappa_pairs(frame, labels=labels),
        fleiss=fleiss_kappa_campaign(frame, n_raters=quorum, labels=labels),
        percent=percent_agreement(frame),
        reviewers=reviewer_agreement_with_consensus(frame, consensus),
        status_counts=status_counts,
        verdict_counts={str(k): int(v) for k, v in decided.value_counts().sort_index().items()},
    )
