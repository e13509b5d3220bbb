"""The lower-level OME-Zarr helpers: units, pyramid plans, chunked level writes, reading back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import make_image, make_labels, validate_with_models, write_reference_ome_zarr

from pipeline.errors import InvalidInputError
from pipeline.ome_zarr_io import (
    ArrayRegions,
    DownsampledRegions,
    compute_contrast,
    create_image_group,
    level_path_check,
    list_labels,
    open_multiscale,
    pyramid_factors,
    write_label_image,
    write_level,
    write_pyramid,
)


def test_pyramid_plan_isotropic_anisotropic_and_2d() -> None:
    assert pyramid_factors((300, 300, 300), (1, 1, 1), 64) == [(2, 2, 2)] * 3
    # Thick sections (4x): y, x halve until the voxel is isotropic, then all three.
    assert pyramid_factors((100, 1000, 1000), (400, 100, 100), 64) == [
        (1, 2, 2),
        (1, 2, 2),
        (2, 2, 2),
        (2, 2, 2),
    ]
    assert pyramid_factors((1000, 700), (1, 1), 256) == [(2, 2), (2, 2)]
    assert pyramid_factors((40, 50, 60), (1, 1, 1), 64) == []  # fits one chunk: one level


def test_downsampling_means_images_and_strides_labels(tmp_path: Path) -> None:
    image = np.arange(5 * 7, dtype=np.uint8).reshape(5, 7)
    level = zarr.create_array(str(tmp_path / "img"), shape=image.shape, dtype="u1", chunks=(2, 4))
    level[:] = image
    down = DownsampledRegions(level, (2, 2), labels=False)
    assert down.shape == (3, 4)
    got = down.read((slice(0, 3), slice(0, 4)))
    padded = np.pad(image.astype(float), ((0, 1), (0, 1)), mode="edge")
    expected = np.rint(padded.reshape(3, 2, 4, 2).mean(axis=(1, 3)))
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.uint8
    strided = DownsampledRegions(level, (2, 2), labels=True).read((slice(1, 3), slice(0, 4)))
    np.testing.assert_array_equal(strided, image[2::2, ::2])


def test_write_level_is_chunk_aligned_and_throttles_progress(tmp_path: Path) -> None:
    data = make_image((37, 41, 29))
    # A source whose cheap read unit (one full plane stack of 3) is not a chunk multiple.
    source = ArrayRegions(data, (0, 1, 2), data.dtype, (3, 41, 29))
    target = zarr.create_array(
        str(tmp_path / "t"), shape=data.shape, dtype=data.dtype, chunks=(8, 8, 8)
    )
    reports: list[tuple[str, int, int]] = []
    write_level(source, target, lambda s, d, t: reports.append((s, d, t)), "copy")
    np.testing.assert_array_equal(target[:], data)
    total = 5 * 6 * 4
    assert reports[0] == ("copy", 0, total) and reports[-1] == ("copy", total, total)
    assert len(reports) < total  # throttled, not one call per chunk


def test_array_regions_reorder_and_drop_singletons() -> None:
    raw = np.arange(1 * 4 * 5 * 3).reshape(1, 4, 5, 3)  # t, y, x, c (RGB-like)
    regions = ArrayRegions(raw, (None, 1, 2, 0), np.dtype(np.float32), (1, 4, 5))
    assert regions.shape == (3, 4, 5)
    block = regions.read((slice(0, 3), slice(1, 3), slice(0, 5)))
    np.testing.assert_array_equal(block, np.moveaxis(raw[0], -1, 0)[:, 1:3, :])
    assert block.dtype == np.float32


def test_written_pyramid_opens_as_multiscale(tmp_path: Path) -> None:
    image = make_image((30, 50, 70))
    labels = make_labels((30, 50, 70), dtype=np.uint16)
    group = create_image_group(tmp_path / "img.ome.zarr")
    plan = pyramid_factors((30, 50, 70), (2.0, 1.0, 1.0), 32)
    write_pyramid(
        ArrayRegions(image, (0, 1, 2), image.dtype, (1, 1, 1)),
        group,
        axes=("z", "y", "x"),
        voxel_size=(2.0, 1.0, 1.0),
        unit="micrometer",
        plan=plan,
        chunk=16,
    )
    write_label_image(
        group,
        "cells",
        ArrayRegions(labels, (0, 1, 2), labels.dtype, (1, 1, 1)),
        axes=("z", "y", "x"),
        voxel_size=(2.0, 1.0, 1.0),
        unit="micrometer",
        plan=plan,
        chunk=16,
    )
    validate_with_models(tmp_path / "img.ome.zarr")
    ms = open_multiscale(tmp_path / "img.ome.zarr")
    assert ms.ngff_version == "0.5" and ms.axes == ("z", "y", "x")
    assert ms.voxel_size == (2.0, 1.0, 1.0) and ms.unit == "micrometer"
    assert ms.scales == ((2.0, 1.0, 1.0), (2.0, 2.0, 2.0), (4.0, 4.0, 4.0))
    assert [lv.shape for lv in ms.levels] == [(30, 50, 70), (30, 25, 35), (15, 13, 18)]
    np.testing.assert_array_equal(ms.level(0).compute(), image)
    assert list_labels(tmp_path / "img.ome.zarr") == ["cells"]
    cells = open_multiscale(tmp_path / "img.ome.zarr" / "labels" / "cells")
    np.testing.assert_array_equal(cells.levels[2][:], labels[::2, ::4, ::4])


def test_contrast_is_a_percentile_window() -> None:
    values = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    low, high = compute_contrast(values)
    assert low == pytest.approx(4.995) and high == pytest.approx(994.005)
    assert compute_contrast(np.zeros((4, 4), np.uint8)) == (0.0, 1.0)


def test_open_multiscale_refuses_non_images(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no OME-Zarr directory"):
        open_multiscale(tmp_path / "absent")
    zarr.create_array(str(tmp_path / "arr"), shape=(3,), dtype="u1")
    with pytest.raises(InvalidInputError, match="Zarr array, not an OME-Zarr image"):
        open_multiscale(tmp_path / "arr")


def _write_czyx_ngff04(path: Path, data: np.ndarray, global_scale: list[float]) -> Path:
    """A one-level NGFF 0.4 image with a channel axis, micrometre units and an offset origin."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", data=data, chunks=(1, 4, 4, 4))
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"
    ]
    level = [
        {"type": "scale", "scale": [1.0, 0.4, 0.2, 0.1]},
        {"type": "translation", "translation": [0.0, 1.0, 2.0, 3.0]},
    ]
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": axes,
            "datasets": [{"path": "0", "coordinateTransformations": level}],
            "coordinateTransformations": [{"type": "scale", "scale": global_scale}],
        }
    ]
    return path


def test_open_spatial_level_drops_singleton_channels_and_converts_to_nm(tmp_path: Path) -> None:
    from pipeline.ome_zarr_io import SpatialView, open_spatial_level

    data = np.arange(6 * 5 * 4, dtype=np.uint16).reshape(1, 6, 5, 4)
    path = _write_czyx_ngff04(tmp_path / "img.zarr", data, [1.0, 2.0, 1.0, 1.0])
    ms = open_multiscale(path)
    # The level's transforms first, then the multiscale-wide scale (which scales the offset too).
    assert ms.scales[0] == pytest.approx((1.0, 0.8, 0.2, 0.1))
    assert ms.translations[0] == pytest.approx((0.0, 2.0, 2.0, 3.0))
    level = open_spatial_level(path)
    assert level.axes == ("z", "y", "x") and isinstance(level.array, SpatialView)
    assert level.voxel_size_nm == pytest.approx((800.0, 200.0, 100.0))
    assert level.translation_nm == pytest.approx((2000.0, 2000.0, 3000.0))
    assert level.array.shape == (6, 5, 4) and level.array.chunks == (4, 4, 4)
    np.testing.assert_array_equal(level.array[1:3, :, 2:], data[0, 1:3, :, 2:])
    np.testing.assert_array_equal(level.array[1], data[0, 1])
    with pytest.raises(InvalidInputError, match=r"label image img\.zarr has no level 1"):
        open_spatial_level(path, 1, "label image")


def test_open_spatial_level_refuses_several_channels_and_bad_scales(tmp_path: Path) -> None:
    from pipeline.ome_zarr_io import open_spatial_level

    two = _write_czyx_ngff04(tmp_path / "two.zarr", np.zeros((2, 4, 4, 4), np.uint8), [1.0] * 4)
    with pytest.raises(InvalidInputError, match="single channel"):
        open_spatial_level(two)
    flat = _write_czyx_ngff04(tmp_path / "flat.zarr", np.zeros((1, 4, 4, 4), np.uint8), [0.0] * 4)
    with pytest.raises(InvalidInputError, match="scale must be positive"):
        open_spatial_level(flat)


def ome_zarr_with_level_path(
    root: Path, level_path: object, version: str = "0.5", labels: bool = False
) -> Path:
    """A real OME-Zarr (written by ome-zarr-py) whose first level ``path`` is then changed."""
    store = write_reference_ome_zarr(
        root / "scan.ome.zarr",
        make_image((8, 12, 16)),
        {"nuclei": make_labels((8, 12, 16))} if labels else {},
        version=version,
        scale={"z": 1.0, "y": 1.0, "x": 1.0},
    )
    target = store / "labels" / "nuclei" if labels else store
    meta_file = target / ("zarr.json" if version == "0.5" else ".zattrs")
    meta = json.loads(meta_file.read_text())
    attrs = meta["attributes"]["ome"] if version == "0.5" else meta
    attrs["multiscales"][0]["datasets"][0]["path"] = level_path
    meta_file.write_text(json.dumps(meta))
    return store


BAD_LEVEL_PATHS = ["../other", "/etc", "0/../../x", "./0", "a//b", "..\\x", "", 5, None]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize("level_path", BAD_LEVEL_PATHS)
def test_level_paths_outside_the_image_are_refused_with_a_message(
    tmp_path: Path, level_path: object, version: str
) -> None:
    store = ome_zarr_with_level_path(tmp_path, level_path, version)
    (tmp_path / "other").mkdir()  # something for "../other" to reach, were it followed
    with pytest.raises(
        InvalidInputError, match=r"scan\.ome\.zarr: .*(level path|level has no path)"
    ):
        open_multiscale(store)


def test_nested_relative_level_paths_are_fine(tmp_path: Path) -> None:
    assert level_path_check("0", "x") == "0"
    assert level_path_check("scale0/image", "x") == "scale0/image"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ms: ms.update(axes=[{"type": "space"}] * 3), "axis .* has no name"),
        (lambda ms: ms.update(datasets=["0"]), "datasets must be objects"),
        (
            lambda ms: ms["datasets"][0].update(
                coordinateTransformations=[{"type": "scale", "scale": ["a", 1, 1]}]
            ),
            "scale transform values must be numbers",
        ),
        (lambda ms: ms.update(coordinateTransformations={"x": 1}), "must be a list"),
    ],
)
def test_malformed_multiscales_metadata_is_refused_with_a_message(
    tmp_path: Path, mutate: Any, message: str
) -> None:
    store = write_reference_ome_zarr(
        tmp_path / "scan.ome.zarr", make_image((8, 12, 16)), {}, version="0.4", scale={}
    )
    meta = json.loads((store / ".zattrs").read_text())
    mutate(meta["multiscales"][0])
    (store / ".zattrs").write_text(json.dumps(meta))
    with pytest.raises(InvalidInputError, match=message):
        open_multiscale(store)


@pytest.mark.parametrize(
    ("command", "labels"),
    [(["convert", "{store}", "{out}"], False), (["mesh", "{store}/labels/nuclei", "{out}"], True)],
)
def test_cli_reports_a_bad_level_path_without_a_traceback(
    tmp_path: Path, command: list[str], labels: bool
) -> None:
    store = ome_zarr_with_level_path(tmp_path, "../../x", "0.5", labels=labels)
    argv = [part.format(store=store, out=tmp_path / "out") for part in command]
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *argv],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "pyramid level path '../../x' may not contain '..'" in result.stderr
