"""``python -m pipeline fit-thresholds``: volume/sphericity thresholds from labelled detections."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import InvalidInputError
from pipeline.thresholds import (
    BOX_COLUMN,
    LABEL_COLUMN,
    fit_thresholds,
    labelled_table,
    per_box_scores,
    verdict_labelled_table,
)

THRESHOLDS_CSV = "thresholds_volume_sphericity.csv"
SUMMARY_JSON = "thresholds_summary.json"
SCATTER_PNG = "volume_sphericity.png"
PER_BOX_CSV = "filter_metrics_per_box.csv"
PER_BOX_PNG = "filter_metrics_per_box.png"


def read_table(path: Path, what: str) -> pd.DataFrame:
    """A CSV (optionally gzipped) or Parquet table, with errors a person can act on."""
    if not path.is_file():
        raise InvalidInputError(f"{what} table {path} does not exist")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise InvalidInputError(f"{what} table {path.name} cannot be read: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    """Fit, write the thresholds CSV, the plots and a JSON summary."""
    # matplotlib is imported only when plotting, so other subcommands start fast.
    from pipeline.plots import plot_metrics_per_box, plot_volume_sphericity

    if args.verdicts is not None:
        if args.tp is not None or args.fp is not None:
            raise InvalidInputError("give either --verdicts or --tp and --fp, not both")
        classes: dict[str, bool | None] = {v: None for v in args.exclude}
        classes |= {v: True for v in args.positive} | {v: False for v in args.negative}
        table = verdict_labelled_table(
            read_table(args.verdicts, "verdicts"),
            classes=classes,
            box_column=args.box_column,
            grid=args.grid,
        ).reset_index(drop=True)
    elif args.tp is not None and args.fp is not None:
        tp = read_table(args.tp, "true-positive")
        fp = read_table(args.fp, "false-positive")
        table = labelled_table(tp, fp, box_column=args.box_column)
    else:
        raise InvalidInputError("give --tp and --fp tables, or a --verdicts table")
    has_boxes = not (table[BOX_COLUMN] == "all").all()
    if args.boxes:
        if not has_boxes:
            raise InvalidInputError(
                f"--boxes needs a {args.box_column!r} column in both the TP and FP tables"
            )
        unknown = sorted(set(args.boxes) - set(table[BOX_COLUMN]))
        if unknown:
            raise InvalidInputError(f"unknown boxes: {', '.join(unknown)}")
        table = table.loc[table[BOX_COLUMN].isin(args.boxes)].reset_index(drop=True)
    folds = args.folds
    note = None
    if not has_boxes and folds > 1:
        note = f"no {args.box_column!r} column: fitted once on all detections, without folds"
        print(f"warning: {note}", file=sys.stderr)
        folds = 1
    with_tp = int(table.loc[table[LABEL_COLUMN], BOX_COLUMN].nunique())
    if args.verdicts is not None and 1 < with_tp < folds:
        note = f"{with_tp} boxes hold true positives: {with_tp} folds instead of {folds}"
        print(f"warning: {note}", file=sys.stderr)
        folds = with_tp
    fit = fit_thresholds(
        table,
        n_folds=folds,
        min_recall=args.min_recall,
        candidates=args.candidates,
        tie_break=args.tie_break,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {"threshold_volume": [fit.t_volume], "threshold_sphericity": [fit.t_sphericity]}
    ).to_csv(args.out / THRESHOLDS_CSV, index=False)
    is_tp = table[LABEL_COLUMN]
    plot_volume_sphericity(
        table.loc[is_tp], table.loc[~is_tp], fit.t_volume, fit.t_sphericity,
        args.out / SCATTER_PNG, volume_unit=args.volume_unit,
    )  # fmt: skip
    summary: dict[str, Any] = {
        "threshold_volume": fit.t_volume,
        "threshold_sphericity": fit.t_sphericity,
        "scores_all_detections": asdict(fit.scores) if fit.scores else None,
        "folds": [
            {
                "held_out_boxes": f.held_out,
                "threshold_volume": f.fit.t_volume,
                "threshold_sphericity": f.fit.t_sphericity,
                "training_scores": asdict(f.fit.scores),
                "held_out_scores": asdict(f.held_out_scores) if f.held_out_scores else None,
            }
            for f in fit.folds
        ],
        "parameters": {
            "tp": None if args.tp is None else str(args.tp),
            "fp": None if args.fp is None else str(args.fp),
            "verdicts": None if args.verdicts is None else str(args.verdicts),
            "boxes": args.boxes,
            "folds": folds,
            "min_recall": args.min_recall,
            "candidates": args.candidates,
            "tie_break": args.tie_break,
            "aggregation": "minimum over folds",
        },
        "note": note,
    }
    if has_boxes:
        per_box = per_box_scores(table, fit.t_volume, fit.t_sphericity)
        per_box.to_csv(args.out / PER_BOX_CSV, index=False)
        plot_metrics_per_box(per_box, args.out / PER_BOX_PNG)
    (args.out / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    s = fit.scores
    print(
        f"threshold_volume={fit.t_volume:g} threshold_sphericity={fit.t_sphericity:.6g}"
        + (f" (precision {s.precision:.3f}, recall {s.recall:.3f}, F1 {s.f1:.3f})" if s else "")
    )
    print(f"wrote {args.out / THRESHOLDS_CSV}, {SUMMARY_JSON}, {SCATTER_PNG}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``fit-thresholds`` subcommand."""
    parser = subparsers.add_parser(
        "fit-thresholds",
        help="fit volume/sphericity filter thresholds on labelled TP/FP detections",
        description=(
            "Grid search for the volume and sphericity thresholds with the best F1 at "
            "recall >= --min-recall (recall relative to the true positives), k-fold "
            "cross-validated over boxes, folds aggregated by the minimum of each threshold."
        ),
    )
    parser.add_argument("--tp", type=Path, help="true positives (CSV[.gz]/Parquet)")
    parser.add_argument("--fp", type=Path, help="false positives (CSV[.gz]/Parquet)")
    parser.add_argument(
        "--verdicts",
        type=Path,
        help="instead of --tp/--fp: proofread detections with volume, sphericity, verdict "
        "(and box or centroid_z/y/x for the folds)",
    )
    parser.add_argument(
        "--positive",
        nargs="+",
        default=["tp", "tp_distortion"],
        metavar="VERDICT",
        help="verdicts counted as true positives (default tp tp_distortion)",
    )
    parser.add_argument(
        "--negative", nargs="+", default=["fp"], metavar="VERDICT", help="false-positive verdicts"
    )
    parser.add_argument(
        "--exclude",
        nargs="*",
        default=["uncertain"],
        metavar="VERDICT",
        help="verdicts left out (default uncertain)",
    )
    parser.add_argument(
        "--grid",
        type=int,
        nargs=3,
        default=[2, 2, 2],
        metavar=("Z", "Y", "X"),
        help="with --verdicts and no box column: fold boxes are grid cells of the centroids",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--boxes", nargs="+", metavar="BOX", help="fit on these boxes only (e.g. validation ones)"
    )
    parser.add_argument(
        "--box-column", default=BOX_COLUMN, help=f"box id column (default {BOX_COLUMN})"
    )
    parser.add_argument("--folds", type=int, default=5, help="folds over boxes (default 5)")
    parser.add_argument(
        "--min-recall", type=float, default=0.8, help="recall constraint (default 0.8)"
    )
    parser.add_argument(
        "--candidates",
        choices=("fp", "all"),
        default="fp",
        help="candidate thresholds: values of the false positives (default) or of all objects",
    )
    parser.add_argument(
        "--tie-break",
        choices=("tightest", "loosest"),
        default="tightest",
        help="among equal F1, the tightest (default) or loosest thresholds",
    )
    parser.add_argument(
        "--volume-unit", default="voxels", help="unit of the volume column, for the plot"
    )
    parser.set_defaults(func=run)
