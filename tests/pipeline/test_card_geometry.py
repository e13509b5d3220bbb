"""Card geometry: a card pixel maps back to the voxel it shows (the gallery's missed-object
points), on hand-worked numbers shared with the page's script and on rendered cards of balls
whose centres are known."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from test_gallery import BALLS, TILES, VOXEL, balls, box_of, expected_tile_labels

from pipeline.errors import InvalidInputError
from pipeline.gallery import (
    CardGeometry,
    CardSource,
    CardStyle,
    card_geometry_path,
    card_path,
    card_pixel_to_voxel,
    pyramid_from_array,
    read_card_geometry,
    render_card,
    render_cards,
)

# The same cases frontend/tests/card_geometry.test.ts checks its mirror of the mapping with.
CASES = json.loads(
    (Path(__file__).parents[2] / "frontend/tests/card_geometry_cases.json").read_text()
)


@pytest.mark.parametrize("case", CASES["cases"], ids=[c["why"] for c in CASES["cases"]])
def test_hand_worked_pixels_map_to_their_voxels(case: dict[str, Any]) -> None:
    geometry = CardGeometry.from_json(CASES["geometries"][case["geometry"]])
    found = card_pixel_to_voxel(geometry, case["px"], case["py"])
    if case["voxel"] is None:
        assert found is None
    else:
        assert found is not None and np.allclose(found, case["voxel"], atol=1e-9), found


def pixel_of(card_value_nm: float, centre_nm: float, field_nm: float, pixel_nm: float) -> float:
    """The centre of the tile pixel (continuous coordinate) that shows a position."""
    return math.floor((card_value_nm - centre_nm + field_nm / 2) / pixel_nm) + 0.5


@pytest.mark.parametrize("origin", [(0.0, 0.0, 0.0), (1600.0, -400.0, 1000.0)])
def test_a_pixel_on_a_balls_centre_maps_back_to_it_in_every_slice_tile(
    origin: tuple[float, float, float],
) -> None:
    image, labels = balls()
    source = CardSource(
        pyramid_from_array(image, VOXEL, origin), pyramid_from_array(labels, VOXEL, origin)
    )
    style = CardStyle()
    step = style.tile + style.gap
    for sid, centre, _ in BALLS:
        card = render_card(source, box_of(labels, sid), style)
        geometry = card.geometry
        assert geometry.slices_nm == card.slices_nm and geometry.centre_nm == card.centre_nm
        physical = [o + c for o, c in zip(origin, centre, strict=True)]
        expected = [c / v for c, v in zip(centre, VOXEL, strict=True)]
        for (_, rows_axis, cols_axis), (row, col) in TILES:
            py = row * step + pixel_of(
                physical[rows_axis], card.centre_nm[rows_axis], card.field_nm, card.pixel_nm
            )
            px = col * step + pixel_of(
                physical[cols_axis], card.centre_nm[cols_axis], card.field_nm, card.pixel_nm
            )
            found = card_pixel_to_voxel(geometry, px, py)
            assert found is not None, (sid, row, col)
            assert np.all(np.abs(np.subtract(found, expected)) <= 1.0), (sid, row, col, found)
            nearest = tuple(math.floor(v + 0.5) for v in found)
            assert labels[nearest] == sid
        assert card_pixel_to_voxel(geometry, step + 48, step + 48) is None  # the mesh tile


def test_every_slice_pixel_maps_to_the_voxel_it_shows(
    volume_source: tuple[CardSource, npt.NDArray[Any]],
) -> None:
    """Over whole tiles: the label at the voxel a pixel maps to is the label the renderer
    draws there (the test's own sampling, which the outline tests check the PNG against)."""
    source, labels = volume_source
    style = CardStyle()
    step = style.tile + style.gap
    card = render_card(source, box_of(labels, 2), style)
    for plan, (row, col) in TILES:
        shown = expected_tile_labels(labels, VOXEL, card, plan, style.tile)
        mapped = np.zeros_like(shown)
        for r in range(style.tile):
            for c in range(style.tile):
                found = card_pixel_to_voxel(
                    card.geometry, col * step + c + 0.5, row * step + r + 0.5
                )
                if found is not None:
                    mapped[r, c] = labels[tuple(math.floor(v + 0.5) for v in found)]
        assert np.array_equal(mapped, shown), (row, col)


@pytest.fixture(scope="module")
def volume_source() -> tuple[CardSource, npt.NDArray[Any]]:
    image, labels = balls()
    return CardSource(pyramid_from_array(image, VOXEL), pyramid_from_array(labels, VOXEL)), labels


def test_a_slice_moved_off_the_centre_is_what_the_mapping_uses() -> None:
    """An object in two parts along x: its centre's zy slice misses it, so the renderer moves
    the slice onto the object (why the geometry is stored, not recomputed by the page)."""
    voxel = (200.0, 200.0, 200.0)
    labels = np.zeros((24, 24, 48), dtype=np.uint32)
    labels[6:18, 6:18, 4:12] = 5
    labels[6:18, 6:18, 36:44] = 5
    image = np.where(labels > 0, 900, 250).astype(np.uint16)
    source = CardSource(pyramid_from_array(image, voxel), pyramid_from_array(labels, voxel))
    style = CardStyle()
    card = render_card(source, box_of(labels, 5), style)
    box_centre_x = card.centre_nm[2]
    assert abs(card.slices_nm[2] - box_centre_x) > 1000  # moved onto one part
    # The zy tile's middle pixel: on the object, in the moved slice.
    step = style.tile + style.gap
    found = card_pixel_to_voxel(card.geometry, step + 48, 48)
    assert found is not None
    assert found[2] == round(card.slices_nm[2] / voxel[2])
    assert labels[tuple(math.floor(v + 0.5) for v in found)] == 5


def test_a_2d_card_maps_its_one_tile() -> None:
    voxel = (300.0, 300.0)
    image, labels = balls((80, 90), voxel, [(4, (12000.0, 13000.0), 5000.0)])
    source = CardSource(pyramid_from_array(image, voxel), pyramid_from_array(labels, voxel))
    card = render_card(source, box_of(labels, 4))
    geometry = card.geometry
    assert geometry.ndim == 2 and geometry.slices_nm == ()
    pixel_nm = geometry.field_nm / geometry.size
    py = pixel_of(12000.0, card.centre_nm[0], card.field_nm, pixel_nm)
    px = pixel_of(13000.0, card.centre_nm[1], card.field_nm, pixel_nm)
    found = card_pixel_to_voxel(geometry, px, py)
    assert found is not None and found[0] == 0.0
    assert abs(found[1] - 40.0) <= 1 and abs(found[2] - 13000.0 / 300.0) <= 1
    # A 2D card is one tile: its bottom right quarter is no mesh tile.
    assert card_pixel_to_voxel(geometry, geometry.size * 0.75, geometry.size * 0.75) is not None


def test_render_cards_writes_each_cards_geometry_beside_it(
    volume_source: tuple[CardSource, npt.NDArray[Any]], tmp_path: Path
) -> None:
    source, labels = volume_source
    out = tmp_path / "cards"
    detections = [box_of(labels, sid) for sid, _, _ in BALLS]
    result = render_cards(source, detections, out)
    assert result.written == 3
    assert sorted(p.name for p in out.iterdir()) == [
        "1.json", "1.png", "2.json", "2.png", "3.json", "3.png",
    ]  # fmt: skip
    for detection in detections:
        card = render_card(source, detection)
        stored = read_card_geometry(out, detection.segment_id)
        assert stored == card.geometry
        assert card_path(out, detection.segment_id).read_bytes() == card.png
        payload = json.loads(card_geometry_path(out, detection.segment_id).read_text())
        assert payload["tile"] == 96 and payload["shape"] == list(labels.shape)
    assert read_card_geometry(out, 99) is None
    card_geometry_path(out, 1).write_text("{not json")
    assert read_card_geometry(out, 1) is None


@pytest.mark.parametrize(
    "change",
    [
        {"ndim": 4},
        {"centre_nm": [1.0, 2.0]},
        {"slices_nm": []},
        {"field_nm": 0},
        {"voxel_size_nm": [800, 0, 200]},
        {"field_nm": "nan"},
        {"shape": None},
        {"tile": "many"},
    ],
)
def test_a_broken_geometry_is_refused(change: dict[str, Any]) -> None:
    payload = dict(CASES["geometries"]["3d"]) | change
    with pytest.raises(InvalidInputError, match="not a card geometry"):
        CardGeometry.from_json(payload)
    good = CardGeometry.from_json(CASES["geometries"]["3d"])
    assert CardGeometry.from_json(json.loads(json.dumps(good.to_json()))) == good
