"""``python -m pipeline run --config CONFIG``: the whole pipeline.

A step that produced nothing (the kept model segments no validation object, the distance map
never reaches the seed threshold, zero objects) is a warning and exit status 3 unless
``--allow-empty`` or the config's ``allow_empty: true``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.config import STEPS
from pipeline.empty_results import add_allow_empty_argument, report_empty, run_empty
from pipeline.errors import InvalidInputError
from pipeline.progress import PIPELINE_STAGE_UNITS, tqdm_progress


def parse_steps(text: str | None) -> list[str] | None:
    """``"train,predict"`` -> ``["train", "predict"]``; checked against the known steps."""
    if text is None:
        return None
    steps = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        raise InvalidInputError(
            f"unknown step(s) {', '.join(unknown) or '(none given)'}; steps: {', '.join(STEPS)}"
        )
    return steps


def describe_fit(fit: dict[str, Any]) -> str:
    """One line on the fitting after training (from ``SegmentFit.to_dict()``).

    The winner is chosen by its grid neighbourhood's mean F1, so its own F1 can be below the best
    single combination's or the start's: the line says so, else a user reads it as a bad choice.
    """
    p = fit["params"]
    rows = fit.get("table") or []
    judged = ""
    if "neighbourhood_f1" in fit and rows:  # absent from runs recorded before it was kept
        best = max(float(r["f1"]) for r in rows)
        judged = (
            f", {float(fit['neighbourhood_f1']):.3f} with its grid neighbours (the highest; "
            f"best single combination {best:.3f})"
        )
    return (
        f"fitted segmentation on {len(fit['boxes'])} box(es), {len(rows)} "
        f"combinations: seeds {p['seed_threshold_nm']:.1f} nm, peak dynamic "
        f"{p.get('seed_dynamic_nm', 0.0):.1f} nm, smoothing {p['smooth_nm']:.1f} nm, "
        f"minimum seed {p['min_seed_voxels']} voxels; object F1 {fit['f1']:.3f}{judged}, "
        f"derived start {fit['start_f1']:.3f}; recorded in the model file"
    )


def run(args: argparse.Namespace) -> int:
    """Load the config, run the pipeline, print what ran and the headline metrics."""
    from pipeline.config import load_config
    from pipeline.run import run_pipeline

    steps = parse_steps(args.steps)
    config = load_config(args.config)
    result = run_pipeline(
        config, args.out, steps=steps, progress=tqdm_progress("block", PIPELINE_STAGE_UNITS)
    )
    print(
        f"ran: {', '.join(result.ran) or 'nothing'}; up to date: "
        f"{', '.join(result.skipped) or 'nothing'}"
    )
    if "segment.params" in result.metrics:
        from pipeline.segment_params import describe_chosen

        print(describe_chosen(result.metrics["segment.params"]))
    if "train.segment_fit" in result.metrics:
        print(describe_fit(result.metrics["train.segment_fit"]))
    keys = ("train.best_val_f1", "segment.objects", "filter.kept", "evaluate.all_f1",
            "evaluate.filtered_f1")  # fmt: skip
    for key in keys:
        if key in result.metrics:
            print(f"{key}: {result.metrics[key]}")
    print(f"manifest: {result.manifest_path}")
    return report_empty(run_empty(result.metrics), args.allow_empty or config.allow_empty)


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run",
        help="run the whole pipeline from a config file (resumable), writing a manifest",
        description=(
            "Chain train, predict, segment, measure (meshes + detections), filter and evaluate "
            "as the config file (YAML or TOML) describes. Steps whose inputs and parameters are "
            "unchanged are skipped; an interrupted run resumes. See examples/pipeline.yaml."
        ),
    )
    parser.add_argument("--config", type=Path, required=True, help="YAML or TOML config file")
    parser.add_argument("--out", type=Path, default=None, help="output directory (or 'out')")
    parser.add_argument(
        "--steps", default=None, help=f"comma-separated subset of: {','.join(STEPS)}"
    )
    add_allow_empty_argument(parser)
    parser.set_defaults(func=run)
