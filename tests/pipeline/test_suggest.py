"""Active learning's scores: voxel entropy, cell sums in one pass, box means from the cells
(exact on the cell grid), and the ranking of candidate boxes by uncertainty."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import InvalidInputError
from pipeline.suggest import (
    EntropyCells,
    box_scores,
    entropy_cells,
    odd_object_scores,
    odd_objects,
    spread_order,
    suggest_boxes,
    voxel_entropy,
)
from pipeline.task_boxes import TaskBox, tile_boxes


def test_voxel_entropy_is_one_bit_at_a_half_and_zero_when_sure() -> None:
    values = voxel_entropy([0.5, 0.0, 1.0, np.nan, 0.1])
    assert values[0] == pytest.approx(1.0)
    assert values[1:4] == pytest.approx([0.0, 0.0, 0.0], abs=1e-4)
    assert values[4] == pytest.approx(0.469, abs=1e-3)


def test_box_scores_from_cells_equal_the_mean_entropy_of_the_boxes_voxels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    probability = rng.random((40, 56, 72)).astype(np.float32)  # not a multiple of the cell
    cells = entropy_cells(probability, cell=8, slab_cells=2)
    assert cells.sums.shape == (5, 7, 9) and int(cells.counts.sum()) == probability.size
    assert cells.sums.sum() == pytest.approx(voxel_entropy(probability).sum(), rel=1e-9)
    boxes = [TaskBox("a", (0, 8, 16), (16, 24, 32)), TaskBox("edge", (32, 48, 64), (8, 8, 8))]
    for box, score in zip(boxes, box_scores(cells, boxes), strict=True):
        region = probability[
            tuple(slice(s, s + n) for s, n in zip(box.start, box.size, strict=True))
        ]
        assert score == pytest.approx(voxel_entropy(region).mean(), rel=1e-9), box.name
    cells.save(tmp_path / "cells.npz")
    again = EntropyCells.load(tmp_path / "cells.npz")
    assert again.cell == 8 and again.shape == (40, 56, 72)
    assert np.array_equal(again.sums, cells.sums) and np.array_equal(again.counts, cells.counts)
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(InvalidInputError, match="not an uncertainty cell file"):
        EntropyCells.load(tmp_path / "bad.npz")


def test_the_boxes_the_model_cannot_decide_come_first() -> None:
    probability = np.zeros((64, 64, 64), np.float32)  # confident background...
    probability[40:56, 8:24, 8:24] = 1.0  # ...a confident object...
    probability[0:32, 32:64, 32:64] = 0.45  # ...one undecided box...
    probability[32:64, 0:32, 32:64] = 0.2  # ...and one less so
    cells = entropy_cells(probability)
    candidates = tile_boxes(probability.shape, (32, 32, 32))
    ranked = suggest_boxes(cells, candidates, 3)
    assert [s.box.name for s in ranked[:2]] == ["tile-0-1-1", "tile-1-0-1"]
    assert [s.rank for s in ranked] == [1, 2, 3]
    assert ranked[0].score == pytest.approx(float(voxel_entropy([0.45])[0]), rel=1e-6)
    assert ranked[2].score < 1e-3
    with pytest.raises(InvalidInputError, match="count"):
        suggest_boxes(cells, candidates, 0)
    with pytest.raises(InvalidInputError, match="3D"):
        entropy_cells(np.zeros((4, 4), np.float32))


def test_spread_out_suggestions_leave_the_annotated_corner_and_each_other() -> None:
    # A row of eight boxes along x; uncertainty falls from x = 0 to the far end.
    boxes = [TaskBox(f"b{i}", (0, 0, 10 * i), (10, 10, 10)) for i in range(8)]
    scores = [0.9, 0.85, 0.8, 0.75, 0.3, 0.25, 0.2, 0.1]
    assert spread_order(scores, boxes, [], 1) == [0]  # nothing annotated: most uncertain
    # Plain ranking takes 0, 1, 2, side by side. Spread: the most uncertain, then the best
    # product of rank (b4: 4/8) and distance (40 of 70), then b2 (6/8 x 20 of 30): every
    # other box.
    assert spread_order(scores, boxes, [], 3) == [0, 4, 2]
    annotated = [TaskBox("done", (0, 0, 0), (10, 10, 10))]  # where box 0 is
    # Box 0 annotated (distance 0): b4 (4/8 x 40 of 70), then b2 (6/8 x 20 of 30).
    assert spread_order(scores, boxes, annotated, 2) == [4, 2]
    # Physical distances: a z step of 10 voxels at 5 um is farther than 10 voxels in x at 1 um;
    # in voxels the two are equally far and equally uncertain: the first in input order.
    pair = [TaskBox("x", (0, 0, 10), (10, 10, 10)), TaskBox("z", (10, 0, 0), (10, 10, 10))]
    origin = [TaskBox("o", (0, 0, 0), (10, 10, 10))]
    assert spread_order([0.5, 0.5], pair, origin, 1, voxel_size=(5.0, 1.0, 1.0)) == [1]
    assert spread_order([0.5, 0.5], pair, origin, 1) == [0]
    # Equal scores share the better rank: distance alone decides between them.
    flat = [TaskBox(f"f{i}", (0, 0, 10 * (i + 1)), (10, 10, 10)) for i in range(3)]
    assert spread_order([0.0, 0.0, 0.0], flat, origin, 1) == [2]


def test_the_command_line_writes_the_most_uncertain_free_tiles_as_a_box_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    probability = np.zeros((32, 64, 64), np.float32)
    probability[:, :32, :32] = 0.5  # annotated already: excluded
    probability[:, 32:, 32:] = 0.4
    np.save(tmp_path / "probability.npy", probability)
    (tmp_path / "done.csv").write_text("name,x,y,z,w,h,d\nold,0,0,0,32,32,32\n")
    args = ["suggest", str(tmp_path / "probability.npy"), "--box", "32", "32", "32"]
    assert main([*args, "--count", "2", "--exclude", str(tmp_path / "done.csv")]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table["name"]) == ["suggest-1", "suggest-2"]
    assert (table.loc[0, ["x", "y", "z", "w"]].tolist()) == [32, 32, 0, 32]
    assert table.loc[0, "uncertainty"] == pytest.approx(0.971, abs=1e-3)
    assert main([*args, "--count", "1", "--out", str(tmp_path / "next.csv")]) == 0
    assert pd.read_csv(tmp_path / "next.csv").loc[0, ["x", "y"]].tolist() == [0, 0]


def test_the_command_line_spreads_the_boxes_away_from_the_annotated_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    # Four tiles along x: the first annotated, then 0.5, 0.45 and 0.4 of probability.
    probability = np.zeros((32, 32, 128), np.float32)
    for i, p in enumerate([0.5, 0.5, 0.45, 0.4]):
        probability[..., 32 * i : 32 * (i + 1)] = p
    np.save(tmp_path / "probability.npy", probability)
    (tmp_path / "done.csv").write_text("name,x,y,z,w,h,d\nold,0,0,0,32,32,32\n")
    args = ["suggest", str(tmp_path / "probability.npy"), "--box", "32", "32", "32", "--count",
            "2", "--exclude", str(tmp_path / "done.csv")]  # fmt: skip
    assert main(args) == 0
    assert list(pd.read_csv(io.StringIO(capsys.readouterr().out))["x"]) == [32, 64]
    # Spread: rank x distance, 1 x 1/3, 2/3 x 2/3, 1/3 x 1: the middle tile, then its neighbour.
    assert main([*args, "--spread"]) == 0
    assert list(pd.read_csv(io.StringIO(capsys.readouterr().out))["x"]) == [64, 32]


def test_odd_objects_are_fragments_and_merges_and_rank_their_boxes() -> None:
    volumes = [100, 110, 90, 105, 30, 400]  # median 102.5: 30 a fragment, 400 a merge
    assert odd_objects(volumes).tolist() == [False, False, False, False, True, True]
    assert odd_objects([]).tolist() == []
    with pytest.raises(InvalidInputError):
        odd_objects(volumes, fraction=1.5)
    boxes = [TaskBox("a", (0, 0, 0), (10, 10, 10)), TaskBox("b", (0, 0, 10), (10, 10, 10))]
    centroids = [(1, 1, 1), (2, 2, 2), (3, 3, 3), (4, 4, 12), (5, 5, 15), (9.5, 9.5, 19.9)]
    scores = odd_object_scores(centroids, odd_objects(volumes), boxes)
    # a: three typical objects; b: one typical, the fragment and the merge.
    assert scores == pytest.approx([0.003, 2.003])
    with pytest.raises(InvalidInputError):
        odd_object_scores(centroids, [True], boxes)
