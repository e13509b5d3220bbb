"""Annotome pipeline on files: convert, train, predict, segment, measure, mesh, evaluate, run.

Proofreading statistics too: agreement (kappas, consensus) and disector (miss-rate estimate);
the gallery's cards (one PNG per detection); ``detections`` (a label image's detections table
without meshing); ``annotation-points`` (a detections table as Neuroglancer point annotations).

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
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline", description=(__doc__ or "").splitlines()[0]
    )
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
