"""``python -m pipeline disector plan|estimate``: physical-disector miss-rate estimate."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.commands.fit_thresholds import read_table
from pipeline.errors import InvalidInputError
from pipeline.stereology import (
    DEFAULT_H_UM,
    DisectorEstimate,
    DisectorPlan,
    disector_estimates,
    plan_disector,
)


def _voxel_size(values: list[float] | None, recorded: tuple[float, ...] | None) -> list[float]:
    if values:
        voxel = list(values) * 3 if len(values) == 1 else list(values)
    elif recorded:
        voxel = list(recorded)
    else:
        raise InvalidInputError("the voxel size is unknown: give --voxel-size in nm")
    if len(voxel) != 3:
        raise InvalidInputError("give one voxel size, or three (z y x), in nm")
    return voxel


def run_plan(args: argparse.Namespace) -> int:
    """Plan the pairs, print them, write the plan as JSON (and the pairs as CSV)."""
    mask = None
    if args.mask is not None:
        from pipeline.volumes import open_volume

        volume = open_volume(args.mask, args.level, what="mask")
        if len(volume.array.shape) != 3:
            raise InvalidInputError("the mask must be 3D")
        shape: list[int] = [int(n) for n in volume.array.shape]
        voxel = _voxel_size(args.voxel_size, volume.voxel_size)
        mask = volume.array
    elif args.shape:
        shape = list(args.shape)
        voxel = _voxel_size(args.voxel_size, None)
    else:
        raise InvalidInputError("give the volume's --shape Z Y X, or a --mask")
    plan = plan_disector(
        shape,
        voxel,
        n_pairs=args.pairs,
        h_um=args.h_um,
        axis=args.axis,
        seed=args.seed,
        mask=mask,
    )
    pairs = pd.DataFrame([asdict(p) for p in plan.pairs])
    print(
        f"{len(plan.pairs)} disector pairs along axis {'zyx'[plan.axis]}, h = {plan.h_um:g} um "
        f"({plan.h_voxels} sections), every {plan.period_voxels:.2f} sections from "
        f"{plan.start_voxels:.2f}; region {plan.region_volume_um3 / 1e9:.6g} mm^3"
    )
    print(pairs.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    beyond = [p.index for p in plan.pairs if not p.lookup_in_volume]
    if beyond:
        print(f"pairs {beyond}: the look-up section lies beyond the volume (count every object)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
    pairs.to_csv(args.out.with_suffix(".csv"), index=False)
    print(f"wrote {args.out} and {args.out.with_suffix('.csv').name}")
    return 0


def _interval(low: float | None, high: float | None, scale: float = 1.0, digits: int = 3) -> str:
    if low is None or high is None:
        return ""
    hi = "inf" if math.isinf(high) else f"{high * scale:.{digits}f}"
    return f" [{low * scale:.{digits}f}, {hi}]"


def _line(e: DisectorEstimate) -> str:
    who = "pooled" if e.reviewer is None else f"reviewer {e.reviewer}"
    text = (
        f"{who}: {e.n_pairs} pairs, Q- {e.q_minus:g}, Nv {e.nv_per_mm3:.4g}/mm^3, "
        f"N {e.n_total:.1f}{_interval(e.n_total_low, e.n_total_high, digits=1)} (CE {e.ce:.3f})"
    )
    if e.miss_rate is not None:
        text += (
            f", detected {e.detections}, miss rate {e.miss_rate:.3f}"
            f"{_interval(e.miss_rate_low, e.miss_rate_high)}"
        )
    if e.miss_rate_sampled is not None:
        text += (
            f", sampled miss rate {e.miss_rate_sampled:.3f}"
            f"{_interval(e.miss_rate_sampled_low, e.miss_rate_sampled_high)}"
        )
    return text


def run_estimate(args: argparse.Namespace) -> int:
    """Estimate per reviewer and pooled from a plan and the counts; print, optionally write."""
    try:
        plan = DisectorPlan.from_dict(json.loads(args.plan.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"cannot read the plan {args.plan}: {exc}") from exc
    counts = read_table(args.counts, "counts")
    estimates = disector_estimates(
        plan,
        counts,
        detections=args.detections,
        confidence=args.confidence,
        method=args.method,
        smoothness=args.smoothness,
        seed=args.seed,
    )
    print(f"{int(args.confidence * 100)} % intervals ({args.method}):")
    for estimate in estimates:
        print(_line(estimate))
    if args.out:
        rows: list[dict[str, Any]] = [e.as_dict() for e in estimates]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``disector plan`` and ``disector estimate``."""
    parser = subparsers.add_parser(
        "disector",
        help="plan physical-disector section pairs, estimate object number and miss rate",
        description=(
            "Physical disector: 'plan' places K pairs of sections (reference, look-up h apart) "
            "by systematic uniform random sampling; reviewers count the objects seen in the "
            "reference but not the look-up section (Q-), and 'estimate' gives Nv, N, the "
            "detected fraction and the miss rate with confidence intervals."
        ),
    )
    sub = parser.add_subparsers(dest="disector_command", required=True)

    plan = sub.add_parser("plan", help="place the section pairs, write the plan as JSON")
    plan.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), help="volume shape")
    plan.add_argument(
        "--mask", type=Path, help="region mask (.npy, Zarr or OME-Zarr); non-zero is inside"
    )
    plan.add_argument("--level", type=int, default=0, help="OME-Zarr level of the mask")
    plan.add_argument(
        "--voxel-size",
        type=float,
        nargs="+",
        metavar="NM",
        help="voxel size in nm, one or z y x (default: recorded in the mask)",
    )
    plan.add_argument("--pairs", type=int, required=True, help="number of pairs K")
    plan.add_argument(
        "--h-um", type=float, default=DEFAULT_H_UM, help=f"disector height (default {DEFAULT_H_UM})"
    )
    plan.add_argument("--axis", default="z", help="section axis: z, y or x (default z)")
    plan.add_argument("--seed", type=int, help="random start seed (default: fresh)")
    plan.add_argument("--out", type=Path, required=True, help="plan JSON (pairs CSV beside it)")
    plan.set_defaults(func=run_plan)

    estimate = sub.add_parser("estimate", help="estimate N and the miss rate from the counts")
    estimate.add_argument("--plan", type=Path, required=True, help="plan JSON from 'plan'")
    estimate.add_argument(
        "--counts",
        type=Path,
        required=True,
        help="counts CSV/Parquet: pair, q_minus, optional reviewer and matched",
    )
    estimate.add_argument(
        "--detections", type=int, help="accepted detections in the region (for D / N)"
    )
    estimate.add_argument("--confidence", type=float, default=0.95, help="default 0.95")
    estimate.add_argument(
        "--method",
        choices=("gundersen", "bootstrap"),
        default="gundersen",
        help="interval: Gundersen's SURS coefficient of error (default) or a bootstrap of pairs",
    )
    estimate.add_argument(
        "--smoothness",
        type=int,
        choices=(0, 1),
        default=0,
        help="Gundersen's smoothness class m (0 default, 1 for smooth profiles)",
    )
    estimate.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    estimate.add_argument("--out", type=Path, help="estimates CSV")
    estimate.set_defaults(func=run_estimate)
