"""Annotome pipeline on files: convert, train, predict, segment, measure, mesh, evaluate, run.

Proofreading statistics too: agreement (kappas, consensus) and disector (miss-rate estimate);
the gallery's cards (one PNG per detection); ``detections`` (a label image's detections table
without meshing); ``annotation-points`` (a detections table as Neuroglancer point annotations);
``parents`` (per-parent morphometrics of children inside parents, e.g. nuclei in glomeruli);
``suggest`` (the next boxes to annotate, where a model's probability is least sure).

Each subcommand lives in ``pipeline/commands/<name>.py``.

Exit status: 0 success; 2 bad input or configuration, or a training that failed (a
:class:`~pipeline.errors.PipelineError`, message on stderr); 3 a stage produced nothing (no seed,
zero objects, an empty table: see :mod:`pipeline.empty_results`) and ``--allow-empty`` was not
given.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from pipeline.errors import PipelineError

# Modules under pipeline.commands that each define ``register(subparsers)``.
COMMAND_MODULES: list[str] = [
    "convert",
    "synth",
    "train",
    "predict",
    "segment",
    "measure",
    "detections",
    "mesh",
    "fit_thresholds",
    "evaluate",
    "run",
    "agreement",
    "disector",
    "cards",
    "curate",
    "annotation_points",
    "label_export",
    "parents",
    "plan",
    "suggest",
]


#: The console script pyproject.toml installs (``annotome-pipeline = pipeline.cli:main``).
CONSOLE_SCRIPT = "annotome-pipeline"


def build_parser() -> argparse.ArgumentParser:
    # Usage lines name the way the user called us.
    prog = CONSOLE_SCRIPT if Path(sys.argv[0]).name == CONSOLE_SCRIPT else "python -m pipeline"
    parser = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"pipeline.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return result
