"""Agreement, consensus and second-round routing on constructed cases with known answers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.agreement import (
    agreement_report,
    cohen_kappa_pairs,
    consensus_table,
    detection_consensus,
    fleiss_kappa_campaign,
    needs_second_round,
    percent_agreement,
    reviewer_agreement_with_consensus,
    second_round_detections,
    verdicts_frame,
)
from pipeline.errors import InvalidInputError

# Fleiss (1971) as worked on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters,
# 5 categories; kappa = 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def _rows_from_counts(table: list[list[int]]) -> list[dict[str, Any]]:
    rows = []
    for subject, counts in enumerate(table):
        rater = 0
        for category, count in enumerate(counts):
            for _ in range(count):
                rows.append(
                    {"detection_id": subject, "reviewer": f"r{rater}", "verdict": f"c{category}"}
                )
                rater += 1
    return rows


def _votes(detection_id: int, verdicts: str, reviewers: str = "abc") -> list[dict[str, Any]]:
    """One detection's first-round verdicts, written as letters: t(p), f(p), u(ncertain)."""
    names = {"t": "tp", "f": "fp", "u": "uncertain", "x": "x", "y": "y"}
    return [
        {"detection_id": detection_id, "reviewer": r, "verdict": names[v]}
        for r, v in zip(reviewers, verdicts, strict=False)
    ]


def _cohen_wikipedia() -> list[dict[str, Any]]:
    """50 items: both yes 20, A yes B no 5, A no B yes 10, both no 15 (kappa 0.4)."""
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    rows = []
    for i, (a, b) in enumerate(pairs):
        rows.append({"detection_id": i, "reviewer": "A", "verdict": a})
        rows.append({"detection_id": i, "reviewer": "B", "verdict": b})
    return rows


def test_fleiss_kappa_matches_the_published_example() -> None:
    result = fleiss_kappa_campaign(_rows_from_counts(FLEISS_TABLE))
    assert result.kappa == pytest.approx(0.20993, abs=1e-4)
    assert (result.n_raters, result.n_detections, result.n_excluded) == (14, 10, 0)


def test_fleiss_leaves_out_detections_with_another_number_of_ratings() -> None:
    rows = _rows_from_counts(FLEISS_TABLE)
    # Two incomplete detections (3 ratings each) and one with an extra rating (15).
    rows += [{"detection_id": 100, "reviewer": f"r{i}", "verdict": "c0"} for i in range(3)]
    rows += [{"detection_id": 101, "reviewer": f"r{i}", "verdict": "c1"} for i in range(3)]
    rows += [{"detection_id": 0, "reviewer": "r14", "verdict": "c4"}]
    result = fleiss_kappa_campaign(rows, n_raters=14)
    assert (result.n_detections, result.n_excluded) == (9, 3)
    nine = fleiss_kappa_campaign(_rows_from_counts(FLEISS_TABLE[1:]))
    assert result.kappa == pytest.approx(nine.kappa)
    # Without n_raters, the most common count (14) is used.
    assert fleiss_kappa_campaign(rows).n_raters == 14


def test_fleiss_is_nan_when_everyone_always_says_the_same() -> None:
    rows = [{"detection_id": d, "reviewer": r, "verdict": "tp"} for d in range(5) for r in "ab"]
    assert math.isnan(fleiss_kappa_campaign(rows).kappa)


def test_fleiss_with_perfect_agreement_is_one_and_unknown_labels_are_refused() -> None:
    rows = [
        {"detection_id": d, "reviewer": r, "verdict": "tp" if d % 2 else "fp"}
        for d in range(6)
        for r in "abc"
    ]
    assert fleiss_kappa_campaign(rows, labels=["tp", "fp", "uncertain"]).kappa == pytest.approx(1)
    with pytest.raises(InvalidInputError, match="outside the verdict set: fp"):
        fleiss_kappa_campaign(rows, labels=["tp", "uncertain"])


def test_cohen_kappa_matches_the_worked_example_and_is_per_pair() -> None:
    pairs = cohen_kappa_pairs(_cohen_wikipedia())
    assert len(pairs) == 1
    row = pairs.iloc[0]
    assert (row["reviewer_a"], row["reviewer_b"], row["n_common"]) == ("A", "B", 50)
    assert row["kappa"] == pytest.approx(0.4)
    assert row["percent_agreement"] == pytest.approx(0.7)


def test_cohen_uses_only_the_detections_both_rated() -> None:
    rows = _cohen_wikipedia()
    # C agrees with A on the first 10 items only, and rates nothing else.
    rows += [{"detection_id": i, "reviewer": "C", "verdict": "yes"} for i in range(10)]
    rows += [{"detection_id": 999, "reviewer": "D", "verdict": "yes"}]  # shares nothing
    pairs = cohen_kappa_pairs(rows).set_index(["reviewer_a", "reviewer_b"])
    assert ("A", "D") not in pairs.index
    assert pairs.loc[("A", "C"), "n_common"] == 10
    assert pairs.loc[("A", "C"), "percent_agreement"] == 1.0
    # A and C both said yes throughout: p_e = 1, kappa undefined.
    assert math.isnan(pairs.loc[("A", "C"), "kappa"])


def test_percent_agreement_weights_detections_by_their_pairs() -> None:
    rows = [
        *_votes(1, "xxy"),
        *_votes(2, "xx"),
        {"detection_id": 3, "reviewer": "a", "verdict": "x"},  # a single verdict: no pair
    ]
    result = percent_agreement(rows)
    # Detection 1: 2 of its 6 ordered pairs agree; detection 2: 2 of 2.
    assert result.pairwise == pytest.approx((2 + 2) / (6 + 2))
    assert result.unanimous == pytest.approx(0.5)
    assert result.n_detections == 2


@pytest.mark.parametrize(
    ("first", "second", "rule", "expected"),
    [
        (["tp", "tp", "tp"], [], "unanimous", ("decided", "tp", "unanimous")),
        (["tp", "tp", "fp"], [], "unanimous", ("second_round", None, "disagreement")),
        (["tp", "tp", "fp"], [], "majority", ("decided", "tp", "majority")),
        (["tp", "fp", "tp_distortion"], [], "majority", ("second_round", None, "tie")),
        (["tp", "fp", "fp", "tp"], [], "majority", ("second_round", None, "tie")),
        (["tp", "tp", "uncertain"], [], "majority", ("second_round", None, "uncertain")),
        (["uncertain"] * 3, [], "majority", ("second_round", None, "uncertain")),
        (["tp", "fp"], [], "unanimous", ("pending", None, "2 of 3 verdicts")),
        (["uncertain"], [], "unanimous", ("pending", None, "1 of 3 verdicts")),
        (["tp", "fp", "fp"], ["tp"], "unanimous", ("decided", "tp", "expert")),
        (["tp", "tp", "tp"], ["fp"], "unanimous", ("decided", "fp", "expert")),
        (["tp", "uncertain", "fp"], ["fp", "tp"], "unanimous", ("decided", "tp", "expert")),
        ([], ["fp"], "unanimous", ("decided", "fp", "expert")),
    ],
)
def test_detection_consensus_with_three_reviewers(
    first: list[str], second: list[str], rule: Any, expected: tuple[str, str | None, str]
) -> None:
    c = detection_consensus(first, second, quorum=3, rule=rule)
    assert (c.status, c.verdict, c.reason) == expected
    assert c.source == ("expert" if second else "first_round" if c.verdict else None)


def test_majority_is_shown_even_when_the_rule_is_unanimous() -> None:
    c = detection_consensus(["fp", "tp", "fp"], quorum=3)
    assert c.status == "second_round"
    assert c.majority == "fp"


def test_a_single_reviewer_campaign_routes_only_uncertain() -> None:
    assert needs_second_round(["uncertain"], quorum=1)
    assert not needs_second_round(["tp_distortion"], quorum=1)
    assert not needs_second_round([], quorum=1)


def test_routing_waits_for_the_quorum_then_sends_uncertain_and_disagreement() -> None:
    rows = [
        *_votes(1, "ttt"),
        *_votes(2, "tft"),
        *_votes(3, "tu"),
        *_votes(4, "tut"),
        *_votes(5, "ftt"),
        {"detection_id": 5, "reviewer": "expert", "verdict": "fp", "round": 2},
    ]
    assert second_round_detections(rows, quorum=3) == [2, 4]
    assert second_round_detections(rows, quorum=3, rule="majority") == [4]
    table = consensus_table(rows, quorum=3).set_index("detection_id")
    assert table.loc[3, "status"] == "pending"
    assert table.loc[5, ["status", "verdict", "source"]].tolist() == ["decided", "fp", "expert"]
    assert table.loc[5, "agreement"] == pytest.approx(1 / 3)
    assert table.loc[1, "agreement"] == 1.0
    assert math.isnan(table.loc[2, "agreement"])


def test_second_round_order_follows_decided_at() -> None:
    rows = [
        {"detection_id": 1, "reviewer": "e1", "verdict": "tp", "round": 2, "decided_at": 5},
        {"detection_id": 1, "reviewer": "e2", "verdict": "fp", "round": 2, "decided_at": 3},
    ]
    assert consensus_table(rows, quorum=1)["verdict"].tolist() == ["tp"]


def test_agreement_with_consensus_per_reviewer() -> None:
    rows = [
        *_votes(1, "ttt"),
        *_votes(2, "fft"),
        *_votes(3, "ftt"),
    ]
    consensus = consensus_table(rows, quorum=3, rule="majority")
    table = reviewer_agreement_with_consensus(rows, consensus).set_index("reviewer")
    assert table["agreement_with_consensus"].to_dict() == pytest.approx(
        {"a": 2 / 3, "b": 1.0, "c": 2 / 3}
    )
    assert table["n_with_consensus"].tolist() == [3, 3, 3]


def test_report_puts_it_together() -> None:
    rng = np.random.default_rng(0)
    truth = rng.choice(["tp", "fp"], 200, p=[0.8, 0.2])
    rows = []
    for d, t in enumerate(truth):
        for r in "abc":
            flip = rng.random() < 0.1
            rows.append(
                {
                    "detection_id": d,
                    "reviewer": r,
                    "verdict": ("fp" if t == "tp" else "tp") if flip else t,
                }
            )
    labels = ["tp", "fp", "uncertain"]
    report = agreement_report(pd.DataFrame(rows), quorum=3, labels=labels)
    assert sum(report.status_counts.values()) == 200
    assert report.status_counts["pending"] == 0
    assert len(report.pairs) == 3
    # 10 % independent flips on a 80/20 split: kappa about 0.56 for each pair.
    assert report.pairs["kappa"].between(0.4, 0.75).all()
    assert 0.4 < report.fleiss.kappa < 0.75
    assert report.percent.pairwise == pytest.approx(
        report.pairs["percent_agreement"].mean(), abs=1e-9
    )
    assert set(report.verdict_counts) <= {"tp", "fp"}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"detection_id": 1, "verdict": "tp"}], "no reviewer column"),
        ([{"detection_id": 1, "reviewer": "a", "verdict": None}], "row 0 has no verdict"),
        ([{"detection_id": 1, "reviewer": "a", "verdict": "tp", "round": 3}], "round 3"),
        ([{"detection_id": 1, "reviewer": "a", "verdict": "tp", "round": "x"}], "1 or 2"),
        ([{"detection_id": 1, "reviewer": "a", "verdict": "tp"}] * 2, "two verdicts"),
    ],
)
def test_bad_verdict_tables_are_refused(rows: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        verdicts_frame(rows)


def test_quorum_and_rule_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="quorum"):
        detection_consensus(["tp"], quorum=0)
    with pytest.raises(InvalidInputError, match="unknown consensus rule"):
        detection_consensus(["tp"], quorum=1, rule="plurality")  # type: ignore[arg-type]
