"""One box table format for every command: origin+size or corners, voxels or physical units."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from pipeline.box_table import Box, box_table_parse, box_table_read
from pipeline.commands.train import read_boxes
from pipeline.errors import InvalidInputError
from pipeline.evaluation import boxes_read_csv
from pipeline.run import _read_boxes
from pipeline.task_boxes import parse_boxes_csv

C432_BOXES = Path(__file__).parents[1] / "data" / "segvoldata_c432" / "C432_XNH_bbox_test.csv"
SHAPE = (20, 60, 80)
VOXEL = (400.0, 100.0, 100.0)  # nm, z y x
EXPECTED = [Box("a", (2, 10, 5), (8, 30, 40)), Box("b", (0, 0, 0), (20, 60, 80))]

SAME_BOXES = [
    "name,x,y,z,w,h,d\na,5,10,2,40,30,8\nb,0,0,0,80,60,20\n",
    "name,x0,y0,z0,x1,y1,z1\na,5,10,2,45,40,10\nb,0,0,0,80,60,20\n",
    "Box, X_Min ,y_min,z_min,x_max,y_max,z_max\na,5,10,2,45,40,10\nb,0,0,0,80,60,20\n",
    "name,z_start,y_start,x_start,z_stop,y_stop,x_stop\na,2,10,5,10,40,45\nb,0,0,0,20,60,80\n",
    "name,x_um,y_um,z_um,w_um,h_um,d_um\na,0.5,1.0,0.8,4.0,3.0,3.2\nb,0,0,0,8,6,8\n",
    "name,x0_nm,y0_nm,z0_nm,x1_nm,y1_nm,z1_nm\na,500,1000,800,4500,4000,4000\nb,0,0,0,8000,6000,8000\n",
    "name,x,y,z,w,h,d,unit\na,0.5,1.0,0.8,4.0,3.0,3.2,um\nb,0,0,0,80,60,20,voxel\n",
    "\ufeffname,x,y,z,w,h,d\na,5,10,2,40,30,8\n\nb,0,0,0,80,60,20\n",
]


@pytest.mark.parametrize("text", SAME_BOXES)
def test_every_form_reads_as_the_same_boxes(text: str) -> None:
    assert box_table_parse(text, ndim=3, shape=SHAPE, voxel_size=VOXEL) == EXPECTED


def test_2d_tables_and_default_names() -> None:
    boxes = box_table_parse("x0,y0,x1,y1\n1,2,11,12\n", ndim=2, shape=(50, 50))
    assert boxes == [Box("box0", (2, 1), (10, 10))]
    assert boxes[0].corners == (2, 1, 12, 11)
    # a 2D table fits a 3D image of depth 1 (a single section)
    assert box_table_parse("x,y,w,h\n1,2,3,4\n", ndim=3, shape=(1, 9, 9))[0].size == (1, 4, 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,x,y,z,w,h,d\na,1,2,3,4,5,x\n", r"t\.csv: line 2: column 'd': expected a number"),
        ("name,x,y,z,w,h,d\na,1,2,3,4,5,6\nb,1,2,3,4.5,5,6\n", r"line 3: column 'w': .*whole"),
        ("x0,y0,z0,x1,y1,z1\n5,5,5,5,9,9\n", r"line 2: column 'x1': the box is empty along x"),
        ("x,y,z,w,h,d\n75,0,0,10,5,5\n", r"line 2: column 'x': voxels 75\.\.84 .*not inside"),
        ("name,x,y,z,w,h,d\na,1,2,3,4,5,6\na,1,2,3,4,5,6\n", r"line 3: .*'a' appears twice"),
        ("x,y,z,w,h\n1,2,3,4,5\n", r"line 1: axis z needs z and d"),
        ("x,y,z,w,h,d\n1,2\n", "line 2: 2 values"),
        ("x,y,z,w,h,d\n", "no rows"),
        ("", "empty"),
        ("a,b\n1,2\n", "lacks x and y columns"),
        ("x_um,y_nm,z,w,h,d\n1,2,3,4,5,6\n", "different units"),
        ("x,y,z,w,h,d,unit\n1,2,3,4,5,6,parsec\n", r"line 2: column 'unit': unit 'parsec'"),
    ],
)
def test_a_bad_table_names_file_row_and_column(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=message):
        box_table_read(path, shape=SHAPE, voxel_size=VOXEL)


def test_physical_units_need_a_voxel_size() -> None:
    with pytest.raises(InvalidInputError, match="needs the image's voxel size"):
        box_table_parse("x_um,y_um,w_um,h_um\n0,0,1,1\n", ndim=2, shape=(9, 9))


def test_train_run_evaluate_and_the_site_read_the_same_tables(tmp_path: Path) -> None:
    """A corner table that only ``train`` took before is taken by every reader alike."""
    for k, text in enumerate(SAME_BOXES[:6]):
        path = tmp_path / f"boxes{k}.csv"
        path.write_text(text)
        assert _read_boxes(path, SHAPE, VOXEL) == EXPECTED
        assert read_boxes(path, SHAPE, VOXEL) == [(b.name, b.corners) for b in EXPECTED]
        if "_um" not in text and "_nm" not in text:
            assert boxes_read_csv(path) == EXPECTED
            assert [(b.name, b.start, b.size) for b in parse_boxes_csv(text, SHAPE)] == [
                (b.name, b.start, b.size) for b in EXPECTED
            ]


def test_evaluate_command_takes_a_corner_table(tmp_path: Path) -> None:
    from pipeline.commands.evaluate import run

    labels = np.zeros((6, 20, 20), np.uint16)
    labels[1:4, 2:8, 2:8] = 1
    labels[1:4, 12:18, 12:18] = 2
    np.save(tmp_path / "gt.npy", labels)
    (tmp_path / "boxes.csv").write_text("name,x0,y0,z0,x1,y1,z1\nall,0,0,0,20,20,6\n")
    args = argparse.Namespace(
        pred=tmp_path / "gt.npy",
        gt=tmp_path / "gt.npy",
        boxes=tmp_path / "boxes.csv",
        out=tmp_path / "eval",
        voxel_size=[100.0],
        margin_um=0.0,
        iou=0.5,
        level=0,
        semantic=None,
        semantic_threshold=0.5,
    )
    assert run(args) == 0
    assert '"f1": 1.0' in (tmp_path / "eval" / "evaluation_summary.json").read_text()


def test_the_published_table_reads_in_array_axis_order() -> None:
    boxes = box_table_read(C432_BOXES, shape=(5000, 9000, 7000))
    assert len(boxes) == 18 and boxes[0] == Box("GL_ctr", (1000, 4638, 6075), (500, 500, 500))
