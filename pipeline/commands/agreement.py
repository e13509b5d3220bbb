"""``python -m pipeline agreement``: consensus, second-round routing and kappas of verdicts."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from pipeline.agreement import UNCERTAIN, agreement_report, verdicts_frame
from pipeline.commands.fit_thresholds import read_table

CONSENSUS_CSV = "consensus.csv"
PAIRS_CSV = "kappa_pairs.csv"
REVIEWERS_CSV = "reviewers.csv"
SUMMARY_JSON = "agreement_summary.json"


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def run(args: argparse.Namespace) -> int:
    """Read the verdicts, print the report, optionally write its tables."""
    verdicts = verdicts_frame(read_table(args.verdicts, "verdicts"))
    quorum = args.quorum
    if quorum is None:
        first = verdicts.loc[verdicts["round"] == 1]
        counts = first.groupby("detection_id").size()
        quorum = int(counts.mode().max()) if len(counts) else 1
        print(f"quorum not given: using the most common number of first-round verdicts, {quorum}")
    report = agreement_report(
        verdicts,
        quorum=quorum,
        rule=args.rule,
        uncertain=args.uncertain,
        labels=args.labels,
    )
    s = report.status_counts
    print(
        f"{len(verdicts)} verdicts on {len(report.consensus)} detections (quorum {quorum}, "
        f"rule {args.rule}): {s['decided']} decided, {s['second_round']} for the second round, "
        f"{s['pending']} pending"
    )
    if report.verdict_counts:
        print("decided: " + ", ".join(f"{k} {v}" for k, v in report.verdict_counts.items()))
    f = report.fleiss
    print(
        f"Fleiss' kappa {f.kappa:.3f} over {f.n_detections} detections with {f.n_raters} "
        f"verdicts ({f.n_excluded} with another number left out)"
    )
    p = report.percent
    print(
        f"percent agreement: pairs {p.pairwise:.3f}, unanimous detections {p.unanimous:.3f} "
        f"({p.n_detections} detections with 2+ verdicts)"
    )
    if not report.pairs.empty:
        print("Cohen's kappa per pair:")
        print(report.pairs.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if not report.reviewers.empty:
        print("per reviewer:")
        print(report.reviewers.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        report.consensus.to_csv(args.out / CONSENSUS_CSV, index=False)
        report.pairs.to_csv(args.out / PAIRS_CSV, index=False)
        report.reviewers.to_csv(args.out / REVIEWERS_CSV, index=False)
        summary: dict[str, Any] = {
            "quorum": quorum,
            "rule": args.rule,
            "status_counts": report.status_counts,
            "verdict_counts": report.verdict_counts,
            "fleiss_kappa": _number(f.kappa),
            "fleiss_n_raters": f.n_raters,
            "fleiss_n_detections": f.n_detections,
            "fleiss_n_excluded": f.n_excluded,
            "percent_agreement_pairs": _number(p.pairwise),
            "percent_unanimous": _number(p.unanimous),
            "second_round": report.consensus.loc[
                report.consensus["status"] == "second_round", "detection_id"
            ].tolist(),
        }
        (args.out / SUMMARY_JSON).write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"wrote {args.out / CONSENSUS_CSV}, {PAIRS_CSV}, {REVIEWERS_CSV}, {SUMMARY_JSON}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``agreement`` subcommand."""
    parser = subparsers.add_parser(
        "agreement",
        help="consensus, second-round routing, Cohen's and Fleiss' kappa of proofreading verdicts",
        description=(
            "Read verdicts (CSV or Parquet: detection_id, reviewer, verdict, optional round 1/2 "
            "and decided_at) and print each reviewer pair's Cohen's kappa, the campaign's "
            "Fleiss' kappa, percent agreement, and how many detections are decided, pending or "
            "waiting for the expert's second round."
        ),
    )
    parser.add_argument("verdicts", type=Path, help="verdicts table (CSV[.gz] or Parquet)")
    parser.add_argument(
        "--quorum",
        type=int,
        help="first-round verdicts per detection, N (default: the most common count)",
    )
    parser.add_argument(
        "--rule",
        choices=("unanimous", "majority"),
        default="unanimous",
        help="what a complete first round needs to be decided (default unanimous)",
    )
    parser.add_argument(
        "--uncertain",
        nargs="+",
        default=[UNCERTAIN],
        metavar="VERDICT",
        help=f"verdicts that mean 'cannot tell' (default {UNCERTAIN})",
    )
    parser.add_argument(
        "--labels", nargs="+", metavar="VERDICT", help="the campaign's verdict set (default: seen)"
    )
    parser.add_argument("--out", type=Path, help="directory for the consensus and kappa tables")
    parser.set_defaults(func=run)
