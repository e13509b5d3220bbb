"""``python -m pipeline run --config CONFIG``: the whole pipeline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.config import STEPS
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
    for key in ("segment.objects", "filter.kept", "evaluate.all_f1", "evaluate.filtered_f1"):
        if key in result.metrics:
            print(f"{key}: {result.metrics[key]}")
    print(f"manifest: {result.manifest_path}")
    return 0


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
    parser.set_defaults(func=run)
