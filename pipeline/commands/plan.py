"""``python -m pipeline plan DIR``: run (or resume) a saved block plan here, or show its state.

The site saves a plan (``plan.json``: prediction or segmentation, block by block) in a work
directory and Celery workers run its items; this command runs what is left of it on this machine
instead, e.g. after the workers went away: finished items are kept, the rest run with a progress
bar per step (``--workers N`` processes). ``--status`` prints the items done per step and
whether the plan finished, was cancelled or failed (and why).
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from pipeline.empty_results import add_allow_empty_argument, report_empty, segment_empty
from pipeline.plan import LocalExecutor, load_plan, mark_finished, plan_state, restart_plan
from pipeline.progress import tqdm_progress


def run(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    if args.status:
        state = plan_state(folder)
        print(f"{load_plan(folder).kind} plan in {folder}: {state.state}")
        for step, (done, total) in state.steps.items():
            print(f"  {step}: {done}/{total}")
        if state.error:
            print(f"  error: {state.error}")
        return 0
    plan = load_plan(folder)
    restart_plan(folder)
    pool: Any = None
    if args.workers > 1:
        if plan.kind == "predict":
            from pipeline.torch_setup import inference_process_pool

            pool = inference_process_pool(args.workers)
        else:
            pool = ProcessPoolExecutor(max_workers=args.workers)
    try:
        LocalExecutor(pool).execute(plan, tqdm_progress("block", {"predict": "batch"}))
    finally:
        if pool is not None:
            pool.shutdown()
    mark_finished(folder)
    print(f"{plan.kind} plan in {folder}: finished")
    from pipeline.segment import SegmentPlan  # here: ``--help`` stays fast

    if isinstance(plan, SegmentPlan):
        objects = int(plan.summary()["objects"])
        print(f"  {objects} objects")
        return report_empty([segment_empty(objects)], args.allow_empty)
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plan", help="run or resume a saved block plan here, or show its state",
        description=__doc__,
    )  # fmt: skip
    parser.add_argument("dir", help="the plan's work directory (holds plan.json)")
    parser.add_argument("--status", action="store_true", help="print its state and exit")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    add_allow_empty_argument(parser)
    parser.set_defaults(func=run)
