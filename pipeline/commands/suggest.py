"""``python -m pipeline suggest PROBABILITY --box Z Y X --count K``: the next boxes to annotate.

Tiles the image of a probability map (a model's ``prediction/probability.ome.zarr``) into boxes,
leaves out those overlapping ``--exclude`` (the boxes annotated already, a box table), and
writes the ``--count`` most uncertain ones (mean binary entropy of the probability, bits) as a
box table, most uncertain first: what the site's "Suggest next boxes" does
(:mod:`pipeline.suggest`). ``--spread`` chooses them spread out instead: uncertainty rank times
the distance to the excluded boxes and to those chosen before (``suggest_boxes(spread_from=)``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidInputError
from pipeline.progress import tqdm_progress


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from pipeline.suggest import cells_of_map, suggest_boxes
    from pipeline.task_boxes import overlaps, parse_boxes_csv, tile_boxes

    cells = cells_of_map(args.probability, progress=tqdm_progress("slab"))
    shape = cells.shape
    done = parse_boxes_csv(args.exclude.read_text(), shape) if args.exclude else []
    tiles = [t for t in tile_boxes(shape, args.box) if not any(overlaps(t, o) for o in done)]
    if not tiles:
        raise InvalidInputError("every tile overlaps an excluded box: nothing to suggest")
    ranked = suggest_boxes(cells, tiles, args.count, spread_from=done if args.spread else None)
    table = pd.DataFrame(
        [
            {
                "name": f"suggest-{s.rank}", "x": s.box.start[2], "y": s.box.start[1],
                "z": s.box.start[0], "w": s.box.size[2], "h": s.box.size[1], "d": s.box.size[0],
                "uncertainty": round(s.score, 4),
            }
            for s in ranked
        ]
    )  # fmt: skip
    if args.out is None:
        table.to_csv(sys.stdout, index=False)
    else:
        table.to_csv(args.out, index=False)
        print(
            f"{len(table)} boxes, {'spread out' if args.spread else 'most uncertain first'} "
            f"({ranked[0].score:.3f} bits first) -> {args.out}"
        )
    return 0


def register(subparsers: Any) -> None:
    """Add the ``suggest`` subcommand."""
    parser = subparsers.add_parser(
        "suggest",
        help="the next boxes to annotate: where a model's probability is least sure",
        description=(__doc__ or "").split("\n\n", 1)[1].replace("\n", " "),
    )
    parser.add_argument("probability", type=Path, help="probability map (OME-Zarr, Zarr, .npy)")
    parser.add_argument(
        "--box", type=int, nargs=3, required=True, metavar=("Z", "Y", "X"),
        help="box size, voxels",
    )  # fmt: skip
    parser.add_argument("--count", type=int, default=5, help="boxes to suggest (default 5)")
    parser.add_argument(
        "--exclude", type=Path, help="box table of boxes already annotated (never suggested)"
    )
    parser.add_argument(
        "--spread", action="store_true",
        help="spread the boxes out: uncertainty rank times distance to the excluded and the "
        "chosen boxes (on synthetic data neither ranking beats random boxes yet: bench/README)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="write the box table here (default: stdout)")
    parser.set_defaults(func=run)
