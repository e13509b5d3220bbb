"""Task boxes: tiling, stratified sampling in a mask, the published CSV form, boxes at points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import InvalidInputError
from pipeline.task_boxes import (
    TaskBox,
    box_size_voxels,
    boxes_around_points,
    check_box,
    mask_fraction,
    parse_boxes_csv,
    stratified_sample,
    suggested_box_size_um,
    tile_boxes,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "segvoldata_c432"


def test_tiling_covers_the_volume_once_and_clips_the_edges() -> None:
    shape = (10, 25, 30)
    boxes = tile_boxes(shape, (5, 10, 10))
    assert len(boxes) == 2 * 3 * 3
    cover = np.zeros(shape, np.int32)
    for box in boxes:
        check_box(box, shape)
        z, y, x = box.start
        d, h, w = box.size
        cover[z : z + d, y : y + h, x : x + w] += 1
    assert (cover == 1).all()
    assert boxes[-1].size == (5, 5, 10)  # y clipped at 25
    assert len({b.name for b in boxes}) == len(boxes)


def test_tiling_adds_a_thin_remainder_to_the_last_box_instead_of_a_sliver_task() -> None:
    shape = (10, 23, 34)  # y: 10 + 13 (a remainder of 3 < half a box); x: 10 + 10 + 14
    boxes = tile_boxes(shape, (10, 10, 10))
    assert sorted({b.size[1] for b in boxes}) == [10, 13]
    assert sorted({b.size[2] for b in boxes}) == [10, 14]
    assert len(boxes) == 1 * 2 * 3
    cover = np.zeros(shape, np.int32)
    for box in boxes:
        z, y, x = box.start
        d, h, w = box.size
        cover[z : z + d, y : y + h, x : x + w] += 1
    assert (cover == 1).all()
    # A volume smaller than half a box is still one (clipped) box, and min_edge=0 keeps slivers.
    assert [b.size for b in tile_boxes((4, 4, 4), (10, 10, 10))] == [(4, 4, 4)]
    assert len(tile_boxes(shape, (10, 10, 10), min_edge=0.0)) == 1 * 3 * 4


def test_tiling_a_region_stays_inside_it() -> None:
    region = TaskBox("r", (2, 3, 4), (4, 7, 9))
    boxes = tile_boxes((10, 20, 20), (3, 3, 3), region)
    assert min(b.start[0] for b in boxes) == 2
    assert max(b.stop[2] for b in boxes) == 13
    with pytest.raises(InvalidInputError, match="not inside"):
        tile_boxes((10, 20, 20), (3, 3, 3), TaskBox("r", (8, 0, 0), (4, 2, 2)))


def test_box_size_in_voxels_from_um() -> None:
    # 50 um at 400 x 200 x 200 nm: 125 x 250 x 250 voxels, capped by the volume.
    assert box_size_voxels([50, 50, 50], [400, 200, 200], [100, 1000, 1000]) == (100, 250, 250)
    with pytest.raises(InvalidInputError):
        box_size_voxels([0, 50, 50], [400, 200, 200], [100, 1000, 1000])


def test_stratified_sample_spreads_over_the_mask_and_is_seeded() -> None:
    shape = (8, 64, 64)
    mask = np.zeros((4, 32, 32), np.uint8)  # half resolution
    mask[:, :, 16:] = 1  # the right half (x >= 32 at full resolution)
    boxes = stratified_sample(shape, (8, 8, 8), 6, seed=3, mask=mask, mask_factor=(2, 2, 2))
    assert len(boxes) == 6
    assert all(b.start[2] >= 32 for b in boxes)
    assert all(mask_fraction(b, mask, (2, 2, 2)) == 1.0 for b in boxes)
    # one per stratum: the draws follow scan order, so their y positions spread out
    ys = [b.start[1] for b in boxes]
    assert ys == sorted(ys) and ys[-1] - ys[0] >= 32
    again = stratified_sample(shape, (8, 8, 8), 6, seed=3, mask=mask, mask_factor=(2, 2, 2))
    assert again == boxes
    with pytest.raises(InvalidInputError, match="only 32 whole boxes"):
        stratified_sample(shape, (8, 8, 8), 40, seed=3, mask=mask, mask_factor=(2, 2, 2))


def test_the_published_box_table_reads_as_is() -> None:
    text = (DATA / "C432_XNH_bbox_test.csv").read_text(encoding="utf-8")
    boxes = parse_boxes_csv(text, (5000, 9000, 7000))
    assert len(boxes) == 18
    first = boxes[0]
    assert first.name == "GL_ctr"
    assert first.start == (1000, 4638, 6075) and first.size == (500, 500, 500)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,x,y,z,w,h\n", "axis z needs z and d"),
        ("id,x,y,z,w,h,d\na,1,2,3,4,5,6\nb,1,2,3,x,5,6\n", "line 3: column 'w'"),
        ("id,x,y,z,w,h,d\na,1,2,3,4,5,0\n", "line 2: column 'd': the box is empty"),
        ("id,x,y,z,w,h,d\na,95,2,3,10,5,6\n", "line 2: .*not inside"),
        (
            "id,x,y,z,w,h,d\na,1,2,3,4,5,6\na,1,2,3,4,5,6\n",
            "line 3: the box name 'a' appears twice",
        ),
        ("id,x,y,z,w,h,d\na,1,2\n", "line 2: 3 values"),
        ("id,x,y,z,w,h,d\n", "no rows"),
        ("", "empty"),
    ],
)
def test_a_bad_table_names_its_line(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_boxes_csv(text, (50, 100, 100))


def test_a_2d_table_needs_no_z() -> None:
    boxes = parse_boxes_csv("name,x,y,w,h\ncell,10,20,30,40\n", (1, 100, 100))
    assert boxes == [TaskBox("cell", (0, 20, 10), (1, 40, 30))]


def test_boxes_around_points_are_centred_and_shifted_inside() -> None:
    boxes = boxes_around_points(
        [("a", (10.0, 10.0, 10.0)), ("edge", (0.0, 99.2, 1.0))], (5, 10, 10), (20, 100, 100)
    )
    assert boxes[0].start == (8, 5, 5) and boxes[0].size == (5, 10, 10)
    assert boxes[1].start == (0, 90, 0)
    with pytest.raises(InvalidInputError, match="outside the volume"):
        boxes_around_points([("far", (25.0, 1.0, 1.0))], (5, 10, 10), (20, 100, 100))


def test_a_first_box_size_gives_several_boxes_of_a_round_size() -> None:
    # The demo volume, 256^3 voxels of 0.2 um (51.2 um): 50 um made one box; 10 um gives 5^3.
    demo = suggested_box_size_um((0.2, 0.2, 0.2), (256, 256, 256))
    assert demo == [10.0, 10.0, 10.0]
    assert len(tile_boxes((256,) * 3, box_size_voxels(demo, (200.0,) * 3, (256,) * 3))) == 125
    # Large volumes are capped at 50 um; a 2D image keeps its one section whole.
    assert suggested_box_size_um((1.0, 0.5, 0.5), (400, 2000, 300)) == [50.0, 50.0, 20.0]
    assert suggested_box_size_um((0.5, 0.5, 0.5), (1, 512, 512)) == [0.5, 50.0, 50.0]
    # Thin axes (a quarter under 8 voxels) are taken whole: no boxes one slice deep.
    assert suggested_box_size_um((3.0, 0.1, 0.1), (6, 9, 30)) == [18.0, 0.9, 3.0]
    # Never below 8 voxels: a quarter of 35 voxels of 0.2 um is 1.75 um, rounded down 1 um (5
    # voxels), so 1.6 um (8 voxels).
    assert suggested_box_size_um((0.2, 0.2, 0.2), (35, 40, 256)) == [1.6, 2.0, 10.0]
    with pytest.raises(InvalidInputError):
        suggested_box_size_um((0.0, 0.1, 0.1), (5, 9, 30))
