"""Gallery cards: geometry of the slices and outlines, the mesh tile, levels, caching, bad input.

The volumes are balls placed in physical space (nm) over anisotropic voxels (z 4x coarser), so
every expectation is computed from the geometry, independently of the renderer: where the
outline must be in each slice, how large the mesh's silhouette must be.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from PIL import Image
from skimage.segmentation import find_boundaries

from pipeline import cli
from pipeline.card_image import (
    GRAY_LEVELS,
    MESH_BASE,
    MESH_SHADES,
    OUTLINE,
    OUTSIDE,
    PALETTE,
    encode_png,
    inner_boundary,
    text_mask,
)
from pipeline.errors import InvalidInputError
from pipeline.gallery import (
    Card,
    CardSource,
    CardStyle,
    ChunkCache,
    Detection,
    Pyramid,
    card_set_key,
    detections_from_labels,
    detections_from_table,
    open_card_source,
    pyramid_from_array,
    render_card,
    render_cards,
    store_version,
)
from pipeline.importers import convert_to_ome_zarr
from pipeline.mesh_render import render_mesh

VOXEL = (800.0, 200.0, 200.0)  # z y x nm
SHAPE = (32, 96, 96)
# (id, centre z y x nm, radius nm): disjoint, inside the volume.
BALLS = [
    (1, (12800.0, 6000.0, 6200.0), 3000.0),
    (2, (12000.0, 12600.0, 13000.0), 4000.0),
    (3, (5600.0, 15600.0, 4400.0), 1600.0),
]
# Tile order in a 3D card: (normal, row axis, column axis), grid position (row, column).
TILES = [((0, 1, 2), (0, 0)), ((2, 1, 0), (0, 1)), ((1, 0, 2), (1, 0))]


def balls(
    shape: tuple[int, ...] = SHAPE,
    voxel: tuple[float, ...] = VOXEL,
    specs: list[tuple[int, tuple[float, ...], float]] = BALLS,
) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint32]]:
    """(image, labels): voxel i's centre lies at i * voxel; objects bright on a dim background."""
    grid = np.indices(shape, dtype=np.float64)
    labels = np.zeros(shape, dtype=np.uint32)
    for sid, centre, radius in specs:
        d2 = sum(((g * v - c) ** 2 for g, v, c in zip(grid, voxel, centre, strict=True)))
        labels[d2 <= radius**2] = sid
    rng = np.random.default_rng(0)
    image = np.where(labels > 0, 900.0, 250.0) + rng.normal(0, 40, shape)
    return np.clip(image, 0, 65535).astype(np.uint16), labels


def box_of(labels: npt.NDArray[Any], sid: int) -> Detection:
    where = np.nonzero(labels == sid)
    return Detection(
        sid, tuple(int(w.min()) for w in where), tuple(int(w.max()) + 1 for w in where)
    )


@pytest.fixture(scope="module")
def volume() -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint32]]:
    return balls()


@pytest.fixture(scope="module")
def source(volume: tuple[npt.NDArray[Any], npt.NDArray[Any]]) -> CardSource:
    image, labels = volume
    return CardSource(pyramid_from_array(image, VOXEL), pyramid_from_array(labels, VOXEL))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An imported dataset directory: OME-Zarr 0.5 with a pyramid (16^3 chunks), labels."""
    root = tmp_path_factory.mktemp("store")
    image, labels = balls()
    np.save(root / "image.npy", image)
    np.save(root / "labels.npy", labels)
    convert_to_ome_zarr(
        root / "image.npy",
        root,
        voxel_size=VOXEL,
        unit="nanometer",
        labels={"nuclei": root / "labels.npy"},
        chunk=16,
    )
    return root


def decode(card: Card | bytes) -> npt.NDArray[np.uint8]:
    data = card.png if isinstance(card, Card) else card
    picture = Image.open(io.BytesIO(data))
    assert picture.format == "PNG" and picture.mode == "P"
    return np.asarray(picture)


def tile_of(pixels: npt.NDArray[Any], position: tuple[int, int], style: CardStyle) -> Any:
    row, col = position
    step = style.tile + style.gap
    return pixels[row * step : row * step + style.tile, col * step : col * step + style.tile]


def pixel_positions(card: Card, rows_axis: int, cols_axis: int, tile: int) -> Any:
    """Physical positions (nm) of the pixel centres of a tile, along its rows and columns."""
    steps = (np.arange(tile) + 0.5) * card.pixel_nm - card.field_nm / 2
    return card.centre_nm[rows_axis] + steps, card.centre_nm[cols_axis] + steps


def expected_tile_labels(
    labels: npt.NDArray[Any], voxel: tuple[float, ...], card: Card, plan: tuple[int, int, int],
    tile: int,
) -> npt.NDArray[Any]:  # fmt: skip
    """The labels a tile must show: the nearest voxel of each pixel centre, 0 outside."""
    normal, rows_axis, cols_axis = plan
    row_nm, col_nm = pixel_positions(card, rows_axis, cols_axis, tile)
    index: list[Any] = [None, None, None]
    index[normal] = int(np.floor(card.slices_nm[normal] / voxel[normal] + 0.5))
    r = np.floor(row_nm / voxel[rows_axis] + 0.5).astype(int)
    c = np.floor(col_nm / voxel[cols_axis] + 0.5).astype(int)
    out = np.zeros((tile, tile), dtype=labels.dtype)
    ok_r = (r >= 0) & (r < labels.shape[rows_axis])
    ok_c = (c >= 0) & (c < labels.shape[cols_axis])
    index[rows_axis] = np.clip(r, 0, labels.shape[rows_axis] - 1)[:, None]
    index[cols_axis] = np.clip(c, 0, labels.shape[cols_axis] - 1)[None, :]
    out[:] = labels[tuple(index)]
    out[~(ok_r[:, None] & ok_c[None, :])] = 0
    return out


SCALE_BAR_ROWS = slice(-18, None)  # the xy tile's scale bar and label sit bottom left
SCALE_BAR_COLS = slice(0, 40)


# ---------------------------------------------------------------------------- one card


def test_card_decodes_at_the_expected_size_and_is_deterministic(
    source: CardSource, volume: tuple[npt.NDArray[Any], npt.NDArray[Any]]
) -> None:
    detection = box_of(volume[1], 1)
    card = render_card(source, detection)
    pixels = decode(card)
    assert pixels.shape == (194, 194)
    assert Image.open(io.BytesIO(card.png)).size == (194, 194)
    assert 1000 < len(card.png) < 40_000
    assert render_card(source, detection).png == card.png
    small = render_card(source, detection, CardStyle(tile=64, gap=4))
    assert decode(small).shape == (132, 132)


@pytest.mark.parametrize("sid", [1, 2, 3])
def test_outlines_lie_on_the_object_boundary_in_every_slice(
    source: CardSource, volume: tuple[npt.NDArray[Any], npt.NDArray[Any]], sid: int
) -> None:
    """Exactly skimage's inner boundary of the object in each slice (sampled independently),
    and on the sphere's circle in physical units (so the anisotropic aspect is right)."""
    labels = volume[1]
    style = CardStyle()
    card = render_card(source, box_of(labels, sid), style)
    pixels = decode(card)
    _, centre, radius = next(b for b in BALLS if b[0] == sid)
    for plan, position in TILES:
        tile = tile_of(pixels, position, style)
        outline = tile == OUTLINE
        expected_labels = expected_tile_labels(labels, VOXEL, card, plan, style.tile)
        expected = find_boundaries(expected_labels == sid, mode="inner")
        if position == (0, 0):  # the scale bar covers a corner of the xy tile
            outline[SCALE_BAR_ROWS, SCALE_BAR_COLS] = False
            expected[SCALE_BAR_ROWS, SCALE_BAR_COLS] = False
        assert np.array_equal(outline, expected), f"tile {position} of segment {sid}"
        normal, rows_axis, cols_axis = plan
        offset = card.slices_nm[normal] - centre[normal]
        ring = math.sqrt(radius**2 - offset**2)
        row_nm, col_nm = pixel_positions(card, rows_axis, cols_axis, style.tile)
        r, c = np.nonzero(outline)
        distance = np.hypot(row_nm[r] - centre[rows_axis], col_nm[c] - centre[cols_axis])
        tolerance = max(VOXEL[rows_axis], VOXEL[cols_axis]) + card.pixel_nm
        assert np.all(np.abs(distance - ring) <= tolerance), (position, distance.min(), ring)
        # A closed ring: about its circumference in pixels, and as wide as tall in nm.
        assert len(r) >= 0.8 * 2 * math.pi * ring / card.pixel_nm / math.sqrt(2)
        height = (r.max() - r.min() + 1) * card.pixel_nm
        width = (c.max() - c.min() + 1) * card.pixel_nm
        assert abs(height - 2 * ring) <= 2 * tolerance and abs(width - 2 * ring) <= 2 * tolerance


def test_slices_pass_through_the_object_centre(
    source: CardSource, volume: tuple[npt.NDArray[Any], npt.NDArray[Any]]
) -> None:
    labels = volume[1]
    for sid, centre, _ in BALLS:
        card = render_card(source, box_of(labels, sid))
        for axis in range(3):
            assert abs(card.slices_nm[axis] - centre[axis]) <= VOXEL[axis]
            assert abs(card.centre_nm[axis] - centre[axis]) <= VOXEL[axis]


def test_tiles_are_not_blank_and_the_neighbours_are_outlined_dimmer(
    source: CardSource, volume: tuple[npt.NDArray[Any], npt.NDArray[Any]]
) -> None:
    style = CardStyle()
    card = render_card(source, box_of(volume[1], 1), style)
    pixels = decode(card)
    for _, position in TILES:
        tile = tile_of(pixels, position, style)
        gray = tile[tile < GRAY_LEVELS]
        assert gray.size > 0.5 * tile.size
        assert gray.std() > 5  # object and background both present, stretched apart
        assert gray.min() < GRAY_LEVELS // 4 and gray.max() > 3 * GRAY_LEVELS // 4
    mesh = tile_of(pixels, (1, 1), style)
    shaded = (mesh >= MESH_BASE) & (mesh < MESH_BASE + MESH_SHADES)
    assert shaded.sum() > 0.1 * mesh.size
    assert len(np.unique(mesh[shaded])) > 10  # shaded, not flat
    assert card.mesh_source == "marching cubes"
    low, high = card.window
    assert 250 - 3 * 40 < low < 250 and 900 < high < 900 + 4 * 40


def test_a_given_contrast_window_is_used(
    source: CardSource, volume: tuple[npt.NDArray[Any], npt.NDArray[Any]]
) -> None:
    detection = box_of(volume[1], 1)
    card = render_card(source, detection, CardStyle(window=(0.0, 2000.0)))
    assert card.window == (0.0, 2000.0)
    layer = CardSource(source.image, source.labels, window=(100.0, 300.0))
    dark = decode(render_card(layer, detection))
    assert render_card(layer, detection).window == (100.0, 300.0)
    # Objects (900) saturate at white in that window.
    assert np.mean(tile_of(dark, (0, 0), CardStyle()) == GRAY_LEVELS - 1) > 0.1


def test_pixels_beyond_the_volume_are_marked(tmp_path: Path) -> None:
    """An object at the volume's corner: its field reaches past the edge."""
    image, labels = balls(specs=[(5, (2400.0, 2400.0, 2400.0), 2000.0)])
    card_source = CardSource(pyramid_from_array(image, VOXEL), pyramid_from_array(labels, VOXEL))
    pixels = decode(render_card(card_source, box_of(labels, 5)))
    xy = tile_of(pixels, (0, 0), CardStyle())
    assert np.all(xy[0] == OUTSIDE) and np.all(xy[:, 0] == OUTSIDE)
    assert np.all(xy[-20, 20:] != OUTSIDE) and np.all(xy[20:, -20] != OUTSIDE)


def test_an_image_smaller_than_its_labels_shows_outside(
    volume: tuple[npt.NDArray[Any], npt.NDArray[Any]],
) -> None:
    """Ball 1's xy slice (z = 16) lies beyond an image of 14 z slices: that tile is outside."""
    image, labels = volume
    card_source = CardSource(
        pyramid_from_array(image[:14], VOXEL), pyramid_from_array(labels, VOXEL)
    )
    pixels = decode(render_card(card_source, box_of(labels, 1)))
    xy = tile_of(pixels, (0, 0), CardStyle())
    assert np.all(np.isin(xy[:60], [OUTSIDE, OUTLINE]))
    assert np.any(tile_of(pixels, (0, 1), CardStyle()) < GRAY_LEVELS)


def mesh_area_nm2(card: Card, style: CardStyle) -> float:
    mesh = tile_of(decode(card), (1, 1), style)
    shaded = (mesh >= MESH_BASE) & (mesh < MESH_BASE + MESH_SHADES)
    return float(shaded.sum()) * card.pixel_nm**2


def test_mesh_silhouette_is_the_object_size(
    source: CardSource, volume: tuple[npt.NDArray[Any], npt.NDArray[Any]]
) -> None:
    """A ball's orthographic silhouette is a disc of its radius, whatever the view: the area
    drawn (in nm^2) matches and grows with the object."""
    style = CardStyle()
    areas = {}
    for sid, _, radius in BALLS:
        card = render_card(source, box_of(volume[1], sid), style)
        areas[sid] = mesh_area_nm2(card, style)
        assert areas[sid] == pytest.approx(math.pi * radius**2, rel=0.2)
    assert areas[3] < areas[1] < areas[2]


def test_stored_meshes_are_drawn_multires_and_legacy(store: Path) -> None:
    from pipeline.meshing import build_meshes

    labels_store = store / "image.ome.zarr" / "labels" / "nuclei"
    style = CardStyle()
    for fmt in ("multires", "legacy"):
        mesh_dir = store / "meshes" / fmt
        if not mesh_dir.exists():
            build_meshes(labels_store, mesh_dir, mesh_format=fmt)
        card_source = open_card_source(store / "image.ome.zarr", labels_store, mesh_dir=mesh_dir)
        table = pd.read_csv(mesh_dir / "morphometrics.csv")
        for detection in detections_from_table(table):
            card = render_card(card_source, detection, style)
            assert card.mesh_source == "stored"
            radius = next(r for sid, _, r in BALLS if sid == detection.segment_id)
            assert mesh_area_nm2(card, style) == pytest.approx(math.pi * radius**2, rel=0.2)


def test_large_objects_are_read_from_a_coarser_level(store: Path) -> None:
    """The level read is the coarsest whose voxels are no larger than a tile pixel: a small
    object on 96-pixel tiles reads level 0, a large one on 24-pixel tiles (550 nm pixels) the
    400 nm level; either way a read spans at most about two tiles of voxels."""
    card_source = open_card_source(store / "image.ome.zarr", store / "image.ome.zarr/labels/nuclei")
    assert [lv.voxel_size_nm for lv in card_source.labels.levels] == [
        (800.0, 200.0, 200.0), (800.0, 400.0, 400.0), (800.0, 800.0, 800.0),
        (1600.0, 1600.0, 1600.0),
    ]  # fmt: skip
    labels = np.load(store / "labels.npy")
    small_reads: list[tuple[int, ...]] = []
    small_style, large_style = CardStyle(), CardStyle(tile=24)
    spied = CardSource(spy(card_source.image, small_reads), spy(card_source.labels, small_reads))
    small = render_card(spied, box_of(labels, 3), small_style)
    assert small.level == 0 and small.image_level == 0
    large_reads: list[tuple[int, ...]] = []
    spied = CardSource(spy(card_source.image, large_reads), spy(card_source.labels, large_reads))
    large = render_card(spied, box_of(labels, 2), large_style)
    assert 400 < large.pixel_nm < 800  # 13.2 um field (11 z voxels + margins) / 24
    assert large.level == 1 and large.image_level == 1
    assert max(max(r) for r in small_reads) <= 2 * small_style.tile + 4
    assert max(max(r) for r in large_reads) <= 2 * large_style.tile + 4
    # The outline is still the object's boundary, in that level's voxels.
    level = card_source.labels.levels[large.level]
    pixels = decode(large)
    for plan, position in TILES:
        outline = tile_of(pixels, position, large_style) == OUTLINE
        expected = find_boundaries(
            expected_tile_labels(
                np.asarray(level.array[...]), level.voxel_size_nm, large, plan, large_style.tile
            ) == 2,
            mode="inner",
        )  # fmt: skip
        assert outline.any() and np.array_equal(outline, expected)  # no scale bar on 24 px


def test_a_store_without_pyramid_is_read_strided(
    store: Path, volume: tuple[npt.NDArray[Any], npt.NDArray[Any]]
) -> None:
    """One level only: a large object on small tiles is read every 2nd voxel in y and x (the
    400 nm grid the pyramid's level 1 holds), so its outline is that level's, and reads stay
    within about two tiles of voxels."""
    image, labels = volume
    reads: list[tuple[int, ...]] = []
    flat = CardSource(
        spy(pyramid_from_array(image, VOXEL), reads), spy(pyramid_from_array(labels, VOXEL), reads)
    )
    style = CardStyle(tile=24)
    card = render_card(flat, box_of(labels, 2), style)
    assert card.level == 0 and max(max(r) for r in reads) <= 2 * style.tile + 4
    pyramid = open_card_source(store / "image.ome.zarr", store / "image.ome.zarr/labels/nuclei")
    reference = render_card(pyramid, box_of(labels, 2), style)
    assert reference.level == 1 and reference.pixel_nm == card.pixel_nm
    assert np.array_equal(decode(card) == OUTLINE, decode(reference) == OUTLINE)


def test_an_object_too_thin_for_the_level_read_still_gets_a_card() -> None:
    """A one-voxel line on an odd row vanishes from every-2nd-voxel reads: it is found at full
    resolution inside its box, and the card shows its surroundings without an outline."""
    image, labels = balls()
    labels[25, 81, 10:90] = 9
    card_source = CardSource(pyramid_from_array(image, VOXEL), pyramid_from_array(labels, VOXEL))
    card = render_card(card_source, box_of(labels, 9), CardStyle(tile=48))
    assert card.pixel_nm > 400 and card.mesh_source == "none"
    assert not np.any(decode(card) == OUTLINE)


class Spy:
    """An array recording the extent of every read."""

    def __init__(self, array: Any, reads: list[tuple[int, ...]]) -> None:
        self.array, self.reads = array, reads
        self.shape, self.dtype = array.shape, array.dtype
        self.chunks = getattr(array, "chunks", None)

    def __getitem__(self, key: Any) -> Any:
        data = np.asarray(self.array[key])
        self.reads.append(tuple(data.shape))
        return data


def spy(pyramid: Pyramid, reads: list[tuple[int, ...]]) -> Pyramid:
    from dataclasses import replace

    return replace(
        pyramid, levels=tuple(replace(lv, array=Spy(lv.array, reads)) for lv in pyramid.levels)
    )


def test_a_2d_layer_gets_one_large_tile() -> None:
    voxel = (300.0, 300.0)
    image, labels = balls((80, 90), voxel, [(4, (12000.0, 13000.0), 5000.0)])
    card_source = CardSource(pyramid_from_array(image, voxel), pyramid_from_array(labels, voxel))
    style = CardStyle()
    card = render_card(card_source, box_of(labels, 4), style)
    pixels = decode(card)
    assert pixels.shape == (style.size, style.size) and card.mesh_source == "none"
    expected = find_boundaries(
        expected_labels_2d(labels, voxel, card, style.size) == 4, mode="inner"
    )
    outline = pixels == OUTLINE
    outline[-18:, :40] = expected[-18:, :40] = False
    assert outline.sum() > 100 and np.array_equal(outline, expected)


def expected_labels_2d(
    labels: npt.NDArray[Any], voxel: tuple[float, ...], card: Card, size: int
) -> npt.NDArray[Any]:
    steps = (np.arange(size) + 0.5) * card.pixel_nm - card.field_nm / 2
    r = np.clip(
        np.floor((card.centre_nm[0] + steps) / voxel[0] + 0.5).astype(int), 0, labels.shape[0] - 1
    )
    c = np.clip(
        np.floor((card.centre_nm[1] + steps) / voxel[1] + 0.5).astype(int), 0, labels.shape[1] - 1
    )
    out: npt.NDArray[Any] = labels[np.ix_(r, c)]
    return out


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("detection", "message"),
    [
        (Detection(99, (10, 20, 20), (20, 40, 40)), "segment 99 is not in the labels"),
        (Detection(1, (10, 20, 20), (40, 40, 40)), "is not inside the labels"),
        (Detection(1, (-1, 20, 20), (10, 40, 40)), "is not inside the labels"),
        (Detection(1, (10, 20, 20), (10, 40, 40)), "is empty"),
        (Detection(1, (10, 20), (20, 40)), "needs 3 values per corner"),
        (Detection(0, (10, 20, 20), (20, 40, 40)), "must be a positive integer"),
        (Detection(1, (10, 20, 20), (20, 40, 40), (1.0, 2.0)), "the centre needs 3 values"),
    ],
)
def test_bad_detections_are_refused_with_a_message(
    source: CardSource, detection: Detection, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        render_card(source, detection)


def test_bad_styles_and_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="tile must be"):
        CardStyle(tile=4)
    with pytest.raises(InvalidInputError, match="contrast window"):
        CardStyle(window=(5.0, 5.0))
    with pytest.raises(InvalidInputError, match="voxel size"):
        pyramid_from_array(np.zeros((4, 4, 4)), (1.0, -2.0, 1.0))
    with pytest.raises(InvalidInputError, match="no such file"):
        open_card_source(tmp_path / "nope.npy", tmp_path / "nope.npy")
    np.save(tmp_path / "a.npy", np.zeros((4, 5, 6), np.uint16))
    np.save(tmp_path / "b.npy", np.zeros((5, 6), np.uint32))
    np.save(tmp_path / "f.npy", np.zeros((4, 5, 6), np.float32))
    with pytest.raises(InvalidInputError, match="3D but the labels are 2D"):
        open_card_source(tmp_path / "a.npy", tmp_path / "b.npy")
    with pytest.raises(InvalidInputError, match="integer ids"):
        open_card_source(tmp_path / "a.npy", tmp_path / "f.npy")
    with pytest.raises(InvalidInputError, match="mesh directory"):
        open_card_source(tmp_path / "a.npy", tmp_path / "a.npy", mesh_dir=tmp_path / "m")


# ---------------------------------------------------------------------------- many cards


def test_render_cards_writes_skips_and_reports_failures(
    source: CardSource, volume: tuple[npt.NDArray[Any], npt.NDArray[Any]], tmp_path: Path
) -> None:
    labels = volume[1]
    detections = [box_of(labels, sid) for sid, _, _ in BALLS]
    detections.append(Detection(77, (10, 20, 20), (20, 40, 40)))
    reports: list[tuple[str, int, int]] = []
    result = render_cards(
        source, detections, tmp_path / "cards", progress=lambda *a: reports.append(a)
    )
    assert result.written == 3 and result.skipped == 0
    assert list(result.failed) == [77] and "not in the labels" in result.failed[77]
    pngs = sorted(p.name for p in (tmp_path / "cards").glob("*.png"))
    assert pngs == ["1.png", "2.png", "3.png"]  # each with its geometry (test_card_geometry.py)
    assert reports[0] == ("cards", 0, 4) and reports[-1] == ("cards", 4, 4)
    for detection in detections[:3]:
        on_disk = (tmp_path / "cards" / f"{detection.segment_id}.png").read_bytes()
        assert on_disk == render_card(source, detection).png
    again = render_cards(source, detections[:3], tmp_path / "cards", skip_existing=True)
    assert again.written == 0 and again.skipped == 3


def test_render_cards_reads_each_chunk_about_once(store: Path, tmp_path: Path) -> None:
    card_source = open_card_source(store / "image.ome.zarr", store / "image.ome.zarr/labels/nuclei")
    detections = detections_from_labels(card_source.labels)
    result = render_cards(card_source, detections, tmp_path / "cards")
    assert result.written == len(BALLS) and not result.failed
    n_chunks = sum(
        math.prod(-(-n // c) for n, c in zip(lv.array.shape, lv.array.chunks, strict=True))
        for pyramid in (card_source.image, card_source.labels)
        for lv in pyramid.levels
    )
    assert 0 < result.chunk_reads <= n_chunks


def test_the_chunk_cache_stays_within_its_budget() -> None:
    import zarr

    array = zarr.create_array(
        store={}, shape=(64, 64, 64), chunks=(16, 16, 16), dtype="uint16", fill_value=0
    )
    array[:] = np.arange(64**3, dtype=np.uint16).reshape(64, 64, 64)
    cache = ChunkCache(budget_bytes=3 * 16**3 * 2)
    from pipeline.gallery import read_box

    for start in range(0, 48, 5):
        box = read_box(array, (start, start, 0), (start + 16, start + 16, 30), cache)
        assert np.array_equal(box, array[start : start + 16, start : start + 16, 0:30])
        assert cache.bytes <= cache.budget
    assert cache.hits > 0


def test_card_set_key_and_store_version(store: Path, tmp_path: Path) -> None:
    key = card_set_key("layer 7 v3")
    assert key == card_set_key("layer 7 v3", CardStyle())
    assert key != card_set_key("layer 7 v4")
    assert key != card_set_key("layer 7 v3", CardStyle(tile=64))
    labels = store / "image.ome.zarr" / "labels" / "nuclei"
    before = store_version(store / "image.ome.zarr", labels)
    assert before == store_version(store / "image.ome.zarr", labels)
    meta = labels / "zarr.json"
    stat = meta.stat()
    os.utime(meta, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        assert store_version(store / "image.ome.zarr", labels) != before
    finally:
        os.utime(meta, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_detections_from_labels_and_table(
    volume: tuple[npt.NDArray[Any], npt.NDArray[Any]],
) -> None:
    labels = volume[1]
    found = detections_from_labels(pyramid_from_array(labels, VOXEL), [2])
    assert found[0].bbox_min == box_of(labels, 2).bbox_min
    assert found[0].bbox_max == box_of(labels, 2).bbox_max
    assert found[0].centre is not None
    with pytest.raises(InvalidInputError, match="not in the labels: 9"):
        detections_from_labels(pyramid_from_array(labels, VOXEL), [9])
    table = pd.DataFrame(
        {"id": [2], "bbox_z0": [1], "bbox_y0": [2], "bbox_x0": [3]}
        | {"bbox_z1": [4], "bbox_y1": [5], "bbox_x1": [6]}
    )
    assert detections_from_table(table) == [Detection(2, (1, 2, 3), (4, 5, 6))]
    with pytest.raises(InvalidInputError, match="not in the detections table: 3"):
        detections_from_table(table, [3])
    with pytest.raises(InvalidInputError, match="lacks columns"):
        detections_from_table(table.drop(columns=["bbox_y1"]))


def test_cli_renders_cards(
    volume: tuple[npt.NDArray[Any], npt.NDArray[Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image, labels = volume
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "labels.npy", labels)
    common = ["cards", str(tmp_path / "image.npy"), str(tmp_path / "labels.npy")]
    common += ["--voxel-size", *(str(v) for v in VOXEL)]
    assert cli.main([*common, "--out", str(tmp_path / "out"), "--segments", "1", "3"]) == 0
    assert "2 cards written" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "1.json", "1.png", "3.json", "3.png",
    ]  # fmt: skip
    assert decode((tmp_path / "out" / "1.png").read_bytes()).shape == (194, 194)
    assert cli.main([*common, "--out", str(tmp_path / "out"), "--segments", "5"]) == 2
    assert "segments not in the labels: 5" in capsys.readouterr().err
    table = tmp_path / "table.csv"
    pd.DataFrame(
        {"id": [1, 8], "bbox_z0": [0, 0], "bbox_y0": [0, 0], "bbox_x0": [0, 0]}
        | {"bbox_z1": [32, 4], "bbox_y1": [60, 4], "bbox_x1": [60, 4]}
    ).to_csv(table, index=False)
    out = tmp_path / "out2"
    code = cli.main([*common, "--out", str(out), "--table", str(table), "--tile", "48"])
    captured = capsys.readouterr()
    assert code == 2 and "1 cards written" in captured.out and "segment 8:" in captured.err
    assert decode((out / "1.png").read_bytes()).shape == (98, 98)


# ---------------------------------------------------------------------------- drawing parts


def test_inner_boundary_matches_skimage() -> None:
    rng = np.random.default_rng(1)
    for _ in range(10):
        labels = np.kron(rng.integers(0, 4, (9, 11)), np.ones((3, 2), dtype=np.int64))
        ours = inner_boundary(labels) & (labels != 0)
        assert np.array_equal(ours, find_boundaries(labels, mode="inner"))


def test_png_writer_round_trips() -> None:
    rng = np.random.default_rng(2)
    indices = rng.integers(0, len(PALETTE), (37, 53)).astype(np.uint8)
    indices[:10] = np.arange(53, dtype=np.uint8)[None, :] % GRAY_LEVELS
    data = encode_png(indices)
    picture = Image.open(io.BytesIO(data))
    assert np.array_equal(np.asarray(picture), indices)
    assert picture.getpalette()[: 3 * len(PALETTE)] == [c for rgb in PALETTE for c in rgb]
    assert encode_png(indices) == data
    assert text_mask("20 µm").shape[0] == 6


def test_mesh_render_draws_a_disc_either_winding() -> None:
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=4, radius=10.0)
    vertices, faces = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    raster = render_mesh(vertices, faces, centre_xyz=(0, 0, 0), field=40.0, size=80)
    assert raster.mask.sum() == pytest.approx(math.pi * 20**2, rel=0.03)
    flipped = render_mesh(vertices, faces[:, ::-1], centre_xyz=(0, 0, 0), field=40.0, size=80)
    assert np.array_equal(flipped.mask, raster.mask)
    assert np.allclose(flipped.intensity, raster.intensity, atol=1e-6)
    # Lit from the upper left: that side is brighter.
    assert raster.intensity[30, 30] > raster.intensity[50, 50] > 0


def test_read_segment_mesh_of_either_format_or_none(tmp_path: Path) -> None:
    from pipeline.precomputed import read_segment_mesh, write_mesh, write_mesh_info

    legacy = tmp_path / "legacy"
    write_mesh_info(legacy)
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    write_mesh(legacy, 5, vertices, faces)
    found = read_segment_mesh(legacy, 5)
    assert found is not None
    assert np.allclose(found[0], vertices) and np.array_equal(found[1], faces)
    assert read_segment_mesh(legacy, 6) is None
    with pytest.raises(InvalidInputError, match="no info file"):
        read_segment_mesh(tmp_path, 5)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "info").write_text('{"@type": "neuroglancer_skeletons"}')
    with pytest.raises(InvalidInputError, match="unknown mesh type"):
        read_segment_mesh(tmp_path / "odd", 5)
    (legacy / "7:0").write_text('{"fragments": ["../secret"]}')
    with pytest.raises(InvalidInputError, match="names"):
        read_segment_mesh(legacy, 7)


def test_store_version_of_an_image_ignores_label_images_added_beside_it(
    store: Path, tmp_path: Path
) -> None:
    import shutil

    image = tmp_path / "image.ome.zarr"
    shutil.copytree(store / "image.ome.zarr", image)
    labels = image / "labels" / "nuclei"
    before = store_version(image, labels)
    shutil.copytree(labels, image / "labels" / "curated")
    (image / "labels" / "zarr.json").touch()
    assert store_version(image, labels) == before
    (image / "zarr.json").write_text((image / "zarr.json").read_text() + " ")
    assert store_version(image, labels) != before
