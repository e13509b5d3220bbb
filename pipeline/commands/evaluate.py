"""``python -m pipeline evaluate``: per-box detection scores and Dice of a label image vs GT."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from pipeline.box_table import box_table_read
from pipeline.errors import InvalidInputError
from pipeline.evaluation import evaluate_boxes, semantic_dice
from pipeline.progress import tqdm_progress
from pipeline.volumes import open_volume

PER_BOX_CSV = "evaluation_per_box.csv"
SUMMARY_JSON = "evaluation_summary.json"
PER_BOX_PNG = "evaluation_per_box.png"


def run(args: argparse.Namespace) -> int:
    """Evaluate every box, write the per-box table, summary and bar plot."""
    from pipeline.plots import plot_metrics_per_box  # matplotlib only when needed

    pred_volume = open_volume(args.pred, args.level, what="predicted labels")
    gt_volume = open_volume(args.gt, args.level, what="ground-truth labels")
    pred, pred_voxel = pred_volume.array, pred_volume.voxel_size
    gt, gt_voxel = gt_volume.array, gt_volume.voxel_size
    ndim = len(gt.shape)
    if args.voxel_size:
        voxel = tuple(float(v) for v in args.voxel_size)
    elif gt_voxel or pred_voxel:
        voxel = gt_voxel or pred_voxel or ()
    elif args.margin_um == 0:
        voxel = (1.0,) * ndim
    else:
        raise InvalidInputError(
            "the voxel size is unknown (.npy input): give --voxel-size in nm, or --margin-um 0"
        )
    if len(voxel) == 1:
        voxel = voxel * ndim
    known_voxel = voxel if (args.voxel_size or gt_voxel or pred_voxel) else None
    boxes = box_table_read(args.boxes, shape=tuple(gt.shape), voxel_size=known_voxel)
    bar = tqdm_progress("box")

    def progress(stage: str, done: int, total: int) -> None:
        bar(stage, done, total)

    table, summary = evaluate_boxes(
        pred,
        gt,
        boxes,
        voxel_size_nm=voxel,
        margin_um=args.margin_um,
        iou_threshold=args.iou,
        progress=progress,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / PER_BOX_CSV, index=False)
    plot_metrics_per_box(table, args.out / PER_BOX_PNG)
    report: dict[str, Any] = {
        "aggregate": {k: (None if math.isnan(v) else v) for k, v in summary.items()},
        "parameters": {
            "pred": str(args.pred),
            "gt": str(args.gt),
            "boxes": str(args.boxes),
            "voxel_size_nm": list(voxel),
            "margin_um": args.margin_um,
            "iou_threshold": args.iou,
            "level": args.level,
        },
    }
    heads: dict[str, dict[str, Any]] = {
        "instances": {
            "dice_object": summary["dice_object_mean_over_boxes"],
            "dice_pixel": summary["dice_pixel"],
        }
    }
    for head, pred_path, gt_path in args.semantic or []:
        predicted = open_volume(Path(pred_path), args.level, what=f"{head} prediction").array
        mask = open_volume(Path(gt_path), args.level, what=f"{head} mask").array
        _, scores = semantic_dice(predicted, mask, boxes, threshold=args.semantic_threshold)
        heads[head] = {
            "dice_pixel": scores["dice_pixel"],
            "dice_object": scores["dice_object_mean_over_boxes"],
        }
        print(
            f"head {head}: Dice pixel {scores['dice_pixel']:.3f} "
            f"object {scores['dice_object_mean_over_boxes']:.3f}"
        )
    report["heads"] = heads
    (args.out / SUMMARY_JSON).write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{len(table)} boxes: precision {summary['precision']:.3f} recall {summary['recall']:.3f} "
        f"F1 {summary['f1']:.3f}, Dice pixel {summary['dice_pixel']:.3f} "
        f"object {summary['dice_object_mean_over_boxes']:.3f}"
    )
    print(f"wrote {args.out / PER_BOX_CSV}, {SUMMARY_JSON}, {PER_BOX_PNG}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="per-box precision/recall/F1 and Dice of predicted labels against ground truth",
        description=(
            "Match predicted and ground-truth objects one to one (IoU >= --iou, Hungarian) in "
            "each box; unmatched predictions centred in the --margin-um margin are not false "
            "positives. Labels: .npy or OME-Zarr label image directories."
        ),
    )
    parser.add_argument("--pred", type=Path, required=True, help="predicted labels")
    parser.add_argument("--gt", type=Path, required=True, help="ground-truth labels")
    parser.add_argument(
        "--boxes",
        type=Path,
        required=True,
        help="box table (CSV): origin and size (x, y, z, w, h, d) or corners (x0..x1, y0..y1, "
        "z0..z1), in voxels or a unit named in the header (x_um, w_nm); see pipeline/box_table.py",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--voxel-size",
        type=float,
        nargs="+",
        metavar="NM",
        help="voxel size in nm, in array axis order (z y x); default from OME-Zarr metadata",
    )
    parser.add_argument(
        "--margin-um", type=float, default=8.0, help="tolerance margin in um (default 8)"
    )
    parser.add_argument("--iou", type=float, default=0.5, help="IoU to match (default 0.5)")
    parser.add_argument("--level", type=int, default=0, help="OME-Zarr pyramid level (default 0)")
    parser.add_argument(
        "--semantic",
        nargs=3,
        action="append",
        metavar=("HEAD", "PRED", "GT"),
        help="a semantic head: its predicted probability map and its ground-truth mask "
        "(pixel-level Dice per head; repeat for several heads)",
    )
    parser.add_argument(
        "--semantic-threshold", type=float, default=0.5, help="foreground above (default 0.5)"
    )
    parser.set_defaults(func=run)
