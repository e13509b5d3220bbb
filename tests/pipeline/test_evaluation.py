"""Matching, P/R/F1 with the margin rule, and Dice on label arrays with hand-computed answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import evaluation
from pipeline.errors import InvalidInputError
from pipeline.evaluation import (
    Box,
    boxes_read_csv,
    dice_object,
    dice_pixel,
    evaluate_box,
    evaluate_boxes,
    margin_voxels,
    match_objects,
    overlap_table,
)

C432_BOXES = Path(__file__).parents[1] / "data" / "segvoldata_c432" / "C432_XNH_bbox_test.csv"


def _gt_3d() -> np.ndarray:
    """Four cubes (ids 1-4) in a 40^3 volume; cube 2 is 6x6x6."""
    gt = np.zeros((40, 40, 40), dtype=np.uint16)
    gt[2:8, 2:8, 2:8] = 1
    gt[2:8, 20:26, 2:8] = 2
    gt[20:26, 2:8, 20:26] = 3
    gt[30:36, 30:36, 30:36] = 4
    return gt


def test_perfect_match_scores_one() -> None:
    gt = _gt_3d()
    pred = (gt.astype(np.uint32) * 7) % 11  # other ids, same objects
    row = evaluate_box(pred, gt, Box("all", (0, 0, 0), gt.shape), margin=(0, 0, 0))
    assert (row["tp"], row["fp"], row["fn"]) == (4, 0, 0)
    assert row["precision"] == row["recall"] == row["f1"] == 1.0
    assert row["dice_pixel"] == row["dice_object"] == row["mean_matched_iou"] == 1.0


def test_split_missed_and_spurious_objects_give_exact_scores() -> None:
    gt = _gt_3d()
    pred = np.zeros_like(gt, dtype=np.uint32)
    pred[gt == 1] = 10  # exact
    pred[2:8, 20:24, 2:8] = 20  # 2/3 of object 2: IoU 2/3, matched
    pred[2:8, 24:26, 2:8] = 21  # the other third: IoU 1/3, a false positive
    # object 3 missed entirely
    pred[gt == 4] = 40  # exact
    pred[12:16, 12:16, 12:16] = 50  # spurious
    row = evaluate_box(pred, gt, Box("all", (0, 0, 0), gt.shape), margin=(0, 0, 0))
    assert (row["tp"], row["fp"], row["fn"]) == (3, 2, 1)
    assert row["precision"] == pytest.approx(3 / 5)
    assert row["recall"] == pytest.approx(3 / 4)
    assert row["f1"] == pytest.approx(2 / 3)
    assert row["mean_matched_iou"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    matching = match_objects(pred, gt)
    assert dict(zip(matching.matched_ids_pred, matching.matched_ids_gt, strict=True)) == {
        10: 1,
        20: 2,
        40: 4,
    }


def test_matching_is_one_to_one_at_low_iou_thresholds() -> None:
    gt = np.zeros((1, 10), dtype=np.uint8)
    gt[0, 0:6] = 1
    gt[0, 6:10] = 2
    pred = np.zeros_like(gt)
    pred[0, 0:10] = 5  # one merged prediction: IoU 0.6 with gt 1, 0.4 with gt 2
    m = match_objects(pred, gt, iou_threshold=0.3)
    assert m.matched_ids_pred.tolist() == [5] and m.matched_ids_gt.tolist() == [1]
    assert m.iou.tolist() == [pytest.approx(0.6)]


def test_margin_rule() -> None:
    gt = np.zeros((1, 60, 60), dtype=np.uint8)
    box = Box("b", (0, 20, 20), (1, 20, 20))  # rows/cols 20..39
    gt[0, 25:30, 25:30] = 1
    pred = np.zeros_like(gt, dtype=np.uint16)
    pred[0, 25:30, 25:30] = 1  # true positive
    pred[0, 16:22, 30:34] = 2  # crosses the top border, centred at row 18.5: in the margin
    pred[0, 33:38, 33:38] = 3  # unmatched, centred inside the box: a false positive
    pred[0, 5:10, 5:10] = 4  # wholly outside the box: not considered
    row = evaluate_box(pred, gt, box, margin=(0, 8, 8))
    assert (row["tp"], row["fp"], row["fn"], row["ignored_in_margin"]) == (1, 1, 0, 1)
    # Without a margin object 2 is seen only inside the box, so it is centred there: counted.
    row = evaluate_box(pred, gt, box, margin=(0, 0, 0))
    assert (row["tp"], row["fp"], row["ignored_in_margin"]) == (1, 2, 0)
    # Shift object 2 so most of it lies inside: its centroid is in the box, so it counts.
    pred[pred == 2] = 0
    pred[0, 18:24, 30:34] = 2  # centre row 20.5
    row = evaluate_box(pred, gt, box, margin=(0, 8, 8))
    assert (row["fp"], row["ignored_in_margin"]) == (2, 0)


def test_ground_truth_outside_the_box_is_ignored() -> None:
    gt = np.zeros((1, 40, 40), dtype=np.uint8)
    gt[0, 12:16, 12:16] = 1
    gt[0, 1:4, 1:4] = 2  # outside the box: not ground truth for this box
    pred = gt.copy()
    row = evaluate_box(pred, gt, Box("b", (0, 10, 10), (1, 20, 20)), margin=(0, 8, 8))
    assert (row["n_gt"], row["tp"], row["fp"], row["fn"]) == (1, 1, 0, 0)


def test_margin_in_voxels_from_physical_units() -> None:
    assert margin_voxels(8.0, (200.0, 100.0, 100.0)) == (40, 80, 80)
    assert margin_voxels(8.0, (300.0, 300.0)) == (27, 27)  # rounded up: 26.7 voxels
    assert margin_voxels(0.0, (5.0, 5.0, 5.0)) == (0, 0, 0)


def test_dice_2d_by_hand() -> None:
    gt = np.zeros((6, 6), dtype=np.uint8)
    gt[0:2, 0:3] = 1  # 6 px
    gt[4:6, 4:6] = 2  # 4 px
    pred = np.zeros_like(gt)
    pred[0:2, 0:2] = 7  # 4 px, all inside gt 1
    pred[3:4, 3:5] = 8  # 2 px, touches nothing
    assert dice_pixel(pred, gt) == pytest.approx(2 * 4 / (6 + 10))
    # GT side: gt1 best match 7 -> 2*4/(6+4) = 0.8 (weight 6/10); gt2 no overlap -> 0 (4/10).
    # Pred side: 7 -> gt1, 0.8 (weight 4/6); 8 -> none, 0 (2/6).
    expected = 0.5 * (0.6 * 0.8 + (4 / 6) * 0.8)
    assert dice_object(pred, gt) == pytest.approx(expected)


def test_dice_3d_by_hand() -> None:
    gt = np.zeros((4, 4, 4), dtype=np.uint8)
    gt[0:2] = 1  # 32 voxels
    pred = np.zeros_like(gt)
    pred[0:1] = 3  # 16, inside gt 1
    pred[1:3] = 4  # 32, half inside gt 1
    assert dice_pixel(pred, gt) == pytest.approx(2 * 32 / (32 + 48))
    # gt1 overlaps 3 and 4 by 16 each: ties go to the smaller id (3): 2*16/(32+16) = 2/3.
    # 3 -> gt1: 2/3 (weight 16/48); 4 -> gt1: 2*16/(32+32) = 0.5 (weight 32/48).
    expected = 0.5 * (2 / 3 + (16 / 48) * (2 / 3) + (32 / 48) * 0.5)
    assert dice_object(pred, gt) == pytest.approx(expected)


def test_dice_of_empty_arrays() -> None:
    empty = np.zeros((3, 3), dtype=np.uint8)
    full = np.ones((3, 3), dtype=np.uint8)
    assert dice_pixel(empty, empty) == dice_object(empty, empty) == 1.0
    assert dice_pixel(full, empty) == dice_object(full, empty) == 0.0


@pytest.mark.parametrize("dense_limit", [evaluation.DENSE_TABLE_LIMIT, 0])
def test_overlap_table_matches_brute_force(
    dense_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evaluation, "DENSE_TABLE_LIMIT", dense_limit)  # 0: the np.unique path
    rng = np.random.default_rng(3)
    a = rng.choice(np.array([0, 3, 9, 1_000_000], dtype=np.uint32), size=(8, 9, 10))
    b = rng.choice(np.array([0, 2, 5], dtype=np.uint16), size=(8, 9, 10))
    ov = overlap_table(a, b)
    assert ov.ids_a.tolist() == [3, 9, 1_000_000] and ov.ids_b.tolist() == [2, 5]
    assert ov.sizes_a.tolist() == [int((a == i).sum()) for i in ov.ids_a]
    pairs = {
        (int(ov.ids_a[i]), int(ov.ids_b[j])): int(n)
        for i, j, n in zip(ov.pair_a, ov.pair_b, ov.pair_count, strict=True)
    }
    expected = {
        (int(i), int(j)): int(((a == i) & (b == j)).sum()) for i in ov.ids_a for j in ov.ids_b
    }
    assert pairs == {k: v for k, v in expected.items() if v}


def test_evaluate_boxes_aggregates_counts() -> None:
    gt = _gt_3d()
    pred = gt.copy()
    pred[gt == 3] = 0  # missed
    boxes = [Box("low", (0, 0, 0), (10, 40, 40)), Box("high", (18, 0, 0), (22, 40, 40))]
    table, summary = evaluate_boxes(pred, gt, boxes, voxel_size_nm=(1000.0,) * 3, margin_um=2.0)
    assert table["box"].tolist() == ["low", "high"]
    assert table[["tp", "fp", "fn"]].to_numpy().tolist() == [[2, 0, 0], [1, 0, 1]]
    assert (summary["tp"], summary["fn"], summary["recall"]) == (3, 1, 0.75)
    assert summary["recall_mean_over_boxes"] == pytest.approx(0.75)
    assert summary["dice_pixel"] == pytest.approx(2 * 648 / (648 + 864))


def test_evaluate_rejects_bad_inputs() -> None:
    gt = _gt_3d()
    with pytest.raises(InvalidInputError, match="differ in shape"):
        evaluate_boxes(gt[:-1], gt, [Box("b", (0, 0, 0), (5, 5, 5))], voxel_size_nm=(1, 1, 1))
    with pytest.raises(InvalidInputError, match="outside"):
        evaluate_boxes(gt, gt, [Box("b", (50, 0, 0), (5, 5, 5))], voxel_size_nm=(1, 1, 1))
    with pytest.raises(InvalidInputError, match="integers"):
        match_objects(gt.astype(np.float32), gt)


def test_published_boxes_read_in_array_axis_order() -> None:
    boxes = boxes_read_csv(C432_BOXES)
    assert len(boxes) == 18
    assert boxes[0] == Box("GL_ctr", (1000, 4638, 6075), (500, 500, 500))


def test_boxes_table_without_size_columns_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "boxes.csv"
    path.write_text("x,y,z\n1,2,3\n")
    with pytest.raises(InvalidInputError, match="axis z needs z and d"):
        boxes_read_csv(path)
