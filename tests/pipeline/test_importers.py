"""Import round trips for every input kind, read back with ome-zarr-py and validated by
ome-zarr-models, plus the refusals of bad input (and that they leave nothing behind)."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from conftest import (
    SHAPE_2D,
    SHAPE_3D,
    make_image,
    make_labels,
    read_with_ome_zarr_py,
    validate_with_models,
    write_reference_ome_zarr,
)

from pipeline.errors import InvalidInputError
from pipeline.importers import convert_to_ome_zarr, inspect_source, read_ome_zarr_info
from pipeline.layout import IMAGE_STORE as IMAGE_NAME

ROOT = Path(__file__).resolve().parents[2]


def _expected_scales(voxel: tuple[float, ...], levels: int) -> list[list[float]]:
    return [[v * 2**i for v in voxel] for i in range(levels)]


def _assert_stride_pyramid(
    levels: list[np.ndarray], scales: list[list[float]], labels: np.ndarray
) -> None:
    for level, scale in zip(levels, scales, strict=True):
        steps = [round(s / s0) for s, s0 in zip(scale, scales[0], strict=True)]
        np.testing.assert_array_equal(level, labels[tuple(slice(None, None, n) for n in steps)])


# ---------------------------------------------------------------------------- round trips


def test_npy_with_labels_round_trip(
    tmp_path: Path, image_3d: np.ndarray, labels_3d: np.ndarray
) -> None:
    np.save(tmp_path / "img.npy", image_3d)
    np.save(tmp_path / "nuclei.npy", labels_3d.astype(np.int32))
    reports: list[tuple[str, int, int]] = []
    result = convert_to_ome_zarr(
        tmp_path / "img.npy",
        tmp_path / "ds",
        voxel_size=(200, 100, 100),
        labels={"nuclei": tmp_path / "nuclei.npy"},
        chunk=16,
        progress=lambda stage, done, total: reports.append((stage, done, total)),
    )
    store = tmp_path / "ds" / IMAGE_NAME
    back = read_with_ome_zarr_py(store)
    validate_with_models(store)

    np.testing.assert_array_equal(back.levels[0], image_3d)
    # 40x70x90 with 16^3 chunks: z is coarser (200 vs 100), so y, x halve first, then all.
    assert [lv.shape for lv in back.levels] == [
        (40, 70, 90),
        (40, 35, 45),
        (20, 18, 23),
        (10, 9, 12),
    ]
    assert back.scales == [
        [200.0, 100.0, 100.0],
        [200.0, 200.0, 200.0],
        [400.0, 400.0, 400.0],
        [800.0, 800.0, 800.0],
    ]
    assert [a["unit"] for a in back.axes] == ["nanometer"] * 3
    assert [a["type"] for a in back.axes] == ["space"] * 3
    # Image levels are block means of the level above.
    expected_l1 = image_3d.reshape(40, 35, 2, 45, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(back.levels[1], expected_l1, atol=0.5)

    assert list(back.labels) == ["nuclei"]
    nuclei = back.labels["nuclei"]
    np.testing.assert_array_equal(nuclei[0], labels_3d)
    assert nuclei[0].dtype == np.uint32  # int32 ids stored unsigned
    # Labels are strided, never averaged: every value is an original id.
    np.testing.assert_array_equal(nuclei[1], labels_3d[:, ::2, ::2])
    np.testing.assert_array_equal(nuclei[2], labels_3d[::2, ::4, ::4])
    assert set(np.unique(nuclei[3])) <= {0, 1, 7, 300}
    assert back.label_scales["nuclei"] == back.scales

    assert result.image.path == IMAGE_NAME
    assert result.image.shape == SHAPE_3D
    assert result.image.levels == 4
    assert result.image.voxel_size == (200.0, 100.0, 100.0)
    assert result.image.unit == "nanometer"
    assert result.image.dtype == "uint16"
    low, high = result.image.contrast or (0.0, 0.0)
    assert image_3d.min() <= low < high <= image_3d.max()
    assert result.labels["nuclei"].path == f"{IMAGE_NAME}/labels/nuclei"
    assert result.labels["nuclei"].contrast is None

    stages = {stage for stage, _, _ in reports}
    assert {
        "image level 0",
        "image level 3",
        "labels nuclei level 0",
        "labels nuclei level 3",
    } <= stages
    finals = {stage: (done, total) for stage, done, total in reports}
    assert all(done == total and total > 0 for done, total in finals.values())
    # 3 x 5 x 6 = 90 chunks at level 0, but reports are throttled.
    assert finals["image level 0"] == (90, 90)
    assert sum(1 for s, _, _ in reports if s == "image level 0") < 20
    # Nothing but the store is left in the dataset directory.
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == [IMAGE_NAME]


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_tiff_stack_round_trip(
    tmp_path: Path, image_3d: np.ndarray, compression: str | None
) -> None:
    # Uncompressed stacks are memory-mapped, compressed ones read through tifffile's Zarr view.
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, image_3d, compression=compression)
    info = inspect_source(path)
    assert (info.kind, info.shape, info.axes, info.dtype) == (
        "tiff",
        SHAPE_3D,
        ("z", "y", "x"),
        "uint16",
    )
    assert info.voxel_size is None

    result = convert_to_ome_zarr(path, tmp_path / "ds", voxel_size=(1, 1, 1), unit="um", chunk=32)
    store = tmp_path / "ds" / IMAGE_NAME
    back = read_with_ome_zarr_py(store)
    validate_with_models(store)
    np.testing.assert_array_equal(back.levels[0], image_3d)
    assert back.scales == _expected_scales((1.0, 1.0, 1.0), 3)
    assert result.image.unit == "micrometer"
    assert [lv.shape for lv in back.levels] == [(40, 70, 90), (20, 35, 45), (10, 18, 23)]


def test_2d_multichannel_tiff_round_trip(tmp_path: Path) -> None:
    channels = np.stack([make_image(SHAPE_2D, seed=s) for s in range(3)])
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, channels, metadata={"axes": "CYX"})
    assert inspect_source(path).axes == ("c", "y", "x")

    # 2D chunks are 4x the 3D edge: 16 -> 64^2, so 70x90 needs one halving.
    result = convert_to_ome_zarr(
        path, tmp_path / "ds", voxel_size=(0.5, 0.5), unit="micrometer", chunk=16
    )
    store = tmp_path / "ds" / IMAGE_NAME
    back = read_with_ome_zarr_py(store)
    validate_with_models(store)
    np.testing.assert_array_equal(back.levels[0], channels)
    assert [lv.shape for lv in back.levels] == [(3, 70, 90), (3, 35, 45)]
    assert back.scales == [[1.0, 0.5, 0.5], [1.0, 1.0, 1.0]]  # channels never downsampled
    assert [a["name"] for a in back.axes] == ["c", "y", "x"]
    assert back.axes[0]["type"] == "channel"
    assert result.image.channels == 3
    assert result.image.voxel_size == (0.5, 0.5)
    assert zarr.open_array(str(store / "s0")).chunks == (1, 64, 64)


def test_2d_single_channel_tiff_and_rgb(tmp_path: Path) -> None:
    plane = make_image(SHAPE_2D, dtype=np.uint8)
    tifffile.imwrite(tmp_path / "plane.tif", plane)
    result = convert_to_ome_zarr(tmp_path / "plane.tif", tmp_path / "a", voxel_size=(2, 3))
    assert result.image.axes == ("y", "x")
    np.testing.assert_array_equal(
        read_with_ome_zarr_py(tmp_path / "a" / IMAGE_NAME).levels[0], plane
    )

    rgb = np.stack([plane, plane // 2, plane // 3], axis=-1)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    result = convert_to_ome_zarr(tmp_path / "rgb.tif", tmp_path / "b", voxel_size=(2, 3))
    assert result.image.axes == ("c", "y", "x") and result.image.channels == 3
    back = read_with_ome_zarr_py(tmp_path / "b" / IMAGE_NAME)
    np.testing.assert_array_equal(back.levels[0], np.moveaxis(rgb, -1, 0))


def test_ome_tiff_physical_sizes_are_used(
    tmp_path: Path, image_3d: np.ndarray, labels_3d: np.ndarray
) -> None:
    path = tmp_path / "scan.ome.tif"
    tifffile.imwrite(
        path,
        image_3d,
        ome=True,
        compression="zlib",
        metadata={
            "axes": "ZYX",
            "PhysicalSizeZ": 0.4,
            "PhysicalSizeY": 0.2,
            "PhysicalSizeX": 0.2,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm",
            "PhysicalSizeZUnit": "µm",
        },
    )
    tifffile.imwrite(tmp_path / "seg.tif", labels_3d.astype(np.uint16))
    info = inspect_source(path)
    assert info.kind == "ome-tiff"
    assert info.voxel_size == (0.4, 0.2, 0.2) and info.unit == "micrometer"

    result = convert_to_ome_zarr(
        path, tmp_path / "ds", labels={"seg": tmp_path / "seg.tif"}, chunk=32
    )
    store = tmp_path / "ds" / IMAGE_NAME
    back = read_with_ome_zarr_py(store)
    validate_with_models(store)
    np.testing.assert_array_equal(back.levels[0], image_3d)
    np.testing.assert_array_equal(back.labels["seg"][0], labels_3d)
    assert back.scales[0] == pytest.approx([0.4, 0.2, 0.2])
    assert back.scales[1] == pytest.approx([0.4, 0.4, 0.4])
    assert result.image.unit == "micrometer"
    assert result.labels["seg"].dtype == "uint16"


def test_imagej_tiff_calibration_is_used(tmp_path: Path, image_3d: np.ndarray) -> None:
    path = tmp_path / "fiji.tif"
    tifffile.imwrite(
        path,
        image_3d,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.25),
        metadata={"spacing": 1.5, "unit": "um", "axes": "ZYX"},
    )
    info = inspect_source(path)
    assert info.voxel_size == pytest.approx((1.5, 0.25, 0.25))
    assert info.unit == "micrometer"


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_existing_ome_zarr_is_rewritten_as_0_5(
    tmp_path: Path, image_3d: np.ndarray, labels_3d: np.ndarray, version: str
) -> None:
    source = write_reference_ome_zarr(
        tmp_path / f"in-{version}.ome.zarr",
        image_3d,
        {"cells": labels_3d},
        version=version,
        scale={"z": 0.5, "y": 0.25, "x": 0.25},
    )
    info = inspect_source(source)
    assert (info.kind, info.ngff_version, info.shape) == ("ome-zarr", version, SHAPE_3D)
    assert info.voxel_size == (0.5, 0.25, 0.25) and info.unit == "micrometer"

    image_info, label_infos = read_ome_zarr_info(source)
    assert image_info.path == "" and image_info.ngff_version == version
    assert image_info.shape == SHAPE_3D and image_info.levels == 2
    assert image_info.voxel_size == (0.5, 0.25, 0.25) and image_info.unit == "micrometer"
    assert image_info.contrast is not None
    assert list(label_infos) == ["cells"]
    assert label_infos["cells"].path == "labels/cells" and label_infos["cells"].contrast is None

    result = convert_to_ome_zarr(source, tmp_path / "ds", chunk=32)
    store = tmp_path / "ds" / IMAGE_NAME
    back = read_with_ome_zarr_py(store)
    validate_with_models(store)
    assert zarr.open_group(str(store), mode="r").metadata.zarr_format == 3
    np.testing.assert_array_equal(back.levels[0], image_3d)
    np.testing.assert_array_equal(back.labels["cells"][0], labels_3d)
    _assert_stride_pyramid(back.labels["cells"], back.label_scales["cells"], labels_3d)
    # z is twice as coarse: y, x halve first, then all three.
    assert back.scales == [[0.5, 0.25, 0.25], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]]
    assert [lv.shape for lv in back.levels] == [(40, 70, 90), (40, 35, 45), (20, 18, 23)]
    assert result.image.ngff_version == "0.5"
    assert set(result.labels) == {"cells"}


def test_read_ome_zarr_info_of_our_own_output(
    tmp_path: Path, image_3d: np.ndarray, labels_3d: np.ndarray
) -> None:
    np.save(tmp_path / "img.npy", image_3d)
    np.save(tmp_path / "lab.npy", labels_3d)
    result = convert_to_ome_zarr(
        tmp_path / "img.npy",
        tmp_path / "ds",
        voxel_size=(1, 1, 1),
        labels={"lab": tmp_path / "lab.npy"},
    )
    image, labels = read_ome_zarr_info(tmp_path / "ds" / IMAGE_NAME)
    assert image.shape == result.image.shape and image.levels == result.image.levels
    assert image.contrast == result.image.contrast
    assert labels["lab"].dtype == "uint32" and labels["lab"].levels == image.levels


def test_float64_and_bool_inputs_are_stored_viewer_friendly(tmp_path: Path) -> None:
    data = np.linspace(0, 1, 40 * 30 * 20).reshape(40, 30, 20)
    np.save(tmp_path / "f.npy", data)
    np.save(tmp_path / "mask.npy", data > 0.5)
    result = convert_to_ome_zarr(
        tmp_path / "f.npy",
        tmp_path / "ds",
        voxel_size=(1, 1, 1),
        labels={"mask": tmp_path / "mask.npy"},
    )
    assert result.image.dtype == "float32" and result.labels["mask"].dtype == "uint8"
    back = read_with_ome_zarr_py(tmp_path / "ds" / IMAGE_NAME)
    np.testing.assert_allclose(back.levels[0], data, rtol=1e-6)
    np.testing.assert_array_equal(back.labels["mask"][0], data > 0.5)


# ---------------------------------------------------------------------------- refusals


def _assert_nothing_written(out_dir: Path) -> None:
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such file"):
        inspect_source(tmp_path / "absent.tif")


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_tiff_is_refused(
    tmp_path: Path, image_3d: np.ndarray, compression: str | None
) -> None:
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, image_3d, compression=compression)
    data = full.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match=r"truncated|corrupt"):
        inspect_source(cut)
    with pytest.raises(InvalidInputError):
        convert_to_ome_zarr(cut, tmp_path / "ds", voxel_size=(1, 1, 1))
    _assert_nothing_written(tmp_path / "ds")


def test_garbage_named_tif_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fake.tif"
    path.write_bytes(b"this is not an image" * 50)
    with pytest.raises(InvalidInputError, match="not a TIFF file"):
        inspect_source(path)


def test_corrupt_chunk_midway_leaves_nothing(tmp_path: Path, image_3d: np.ndarray) -> None:
    # The header is fine, the last slices' compressed strips are not: this fails mid-write.
    path = tmp_path / "damaged.tif"
    tifffile.imwrite(path, image_3d, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[-1].dataoffsets[0]
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))
    out_dir = tmp_path / "ds"
    out_dir.mkdir()
    with pytest.raises(InvalidInputError, match=r"could not read damaged\.tif"):
        convert_to_ome_zarr(path, out_dir, voxel_size=(1, 1, 1), chunk=16)
    _assert_nothing_written(out_dir)
    assert out_dir.exists()  # it existed before, so it stays


def test_complex_and_object_npy_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", np.zeros((4, 5, 6), dtype=np.complex64))
    with pytest.raises(InvalidInputError, match="complex"):
        inspect_source(tmp_path / "c.npy")
    np.save(tmp_path / "o.npy", np.array([[None, 1], [2, 3]], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInputError, match="object"):
        inspect_source(tmp_path / "o.npy")


def test_truncated_npy_is_refused(tmp_path: Path, image_3d: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", image_3d)
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) - 1000])
    with pytest.raises(InvalidInputError, match=r"not a readable \.npy"):
        inspect_source(tmp_path / "cut.npy")


def test_bad_dimensionality_and_empty_axes(tmp_path: Path) -> None:
    np.save(tmp_path / "1d.npy", np.zeros(10, np.uint8))
    with pytest.raises(InvalidInputError, match="1 dimensions"):
        inspect_source(tmp_path / "1d.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 10, 10), np.uint8))
    with pytest.raises(InvalidInputError, match="empty"):
        inspect_source(tmp_path / "empty.npy")


def test_absurd_size_is_refused(tmp_path: Path, image_3d: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", image_3d)
    with pytest.raises(InvalidInputError, match="more than the limit"):
        convert_to_ome_zarr(
            tmp_path / "a.npy", tmp_path / "ds", voxel_size=(1, 1, 1), max_voxels=100_000
        )
    _assert_nothing_written(tmp_path / "ds")


def test_missing_voxel_size_asks_for_it(tmp_path: Path, image_3d: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", image_3d)
    with pytest.raises(InvalidInputError, match="--voxel-size Z Y X"):
        convert_to_ome_zarr(tmp_path / "a.npy", tmp_path / "ds")
    with pytest.raises(InvalidInputError, match="give 3 voxel sizes"):
        convert_to_ome_zarr(tmp_path / "a.npy", tmp_path / "ds", voxel_size=(1, 1))
    with pytest.raises(InvalidInputError, match="unknown spatial unit"):
        convert_to_ome_zarr(
            tmp_path / "a.npy", tmp_path / "ds", voxel_size=(1, 1, 1), unit="parsecs!"
        )
    _assert_nothing_written(tmp_path / "ds")


def test_label_shape_mismatch_writes_nothing(tmp_path: Path, image_3d: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", image_3d)
    np.save(tmp_path / "l.npy", np.zeros((40, 70, 89), np.uint16))
    with pytest.raises(InvalidInputError, match=r"shape \(40, 70, 89\).*\(40, 70, 90\)"):
        convert_to_ome_zarr(
            tmp_path / "a.npy",
            tmp_path / "ds",
            voxel_size=(1, 1, 1),
            labels={"l": tmp_path / "l.npy"},
        )
    _assert_nothing_written(tmp_path / "ds")


def test_bad_label_name_and_float_labels(tmp_path: Path, image_3d: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", image_3d)
    np.save(tmp_path / "l.npy", np.zeros(SHAPE_3D, np.float32))
    with pytest.raises(InvalidInputError, match="Invalid label name"):
        convert_to_ome_zarr(
            tmp_path / "a.npy",
            tmp_path / "ds",
            voxel_size=(1, 1, 1),
            labels={"../x": tmp_path / "l.npy"},
        )
    with pytest.raises(InvalidInputError, match="integer or boolean"):
        convert_to_ome_zarr(
            tmp_path / "a.npy",
            tmp_path / "ds",
            voxel_size=(1, 1, 1),
            labels={"x": tmp_path / "l.npy"},
        )
    _assert_nothing_written(tmp_path / "ds")


def test_negative_label_ids_fail_midway_and_clean_up(tmp_path: Path, image_3d: np.ndarray) -> None:
    labels = make_labels(SHAPE_3D, dtype=np.int16)
    labels[-1, -1, -1] = -4  # found only when the last chunk is written
    np.save(tmp_path / "a.npy", image_3d)
    np.save(tmp_path / "l.npy", labels)
    with pytest.raises(InvalidInputError, match="negative"):
        convert_to_ome_zarr(
            tmp_path / "a.npy",
            tmp_path / "ds",
            voxel_size=(1, 1, 1),
            labels={"l": tmp_path / "l.npy"},
            chunk=16,
        )
    _assert_nothing_written(tmp_path / "ds")


def test_existing_store_is_not_overwritten(tmp_path: Path, image_3d: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", image_3d)
    (tmp_path / "ds" / IMAGE_NAME).mkdir(parents=True)
    with pytest.raises(InvalidInputError, match="already contains"):
        convert_to_ome_zarr(tmp_path / "a.npy", tmp_path / "ds", voxel_size=(1, 1, 1))


def test_not_ome_zarr_directories_are_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(InvalidInputError):
        read_ome_zarr_info(tmp_path / "plain")
    zarr.open_group(str(tmp_path / "bare.zarr"), mode="w").create_array(
        "a", shape=(4, 4), dtype="u1"
    )
    with pytest.raises(InvalidInputError, match="no multiscales"):
        read_ome_zarr_info(tmp_path / "bare.zarr")


# ---------------------------------------------------------------------------- memory, CLI


def test_conversion_memory_stays_bounded(tmp_path: Path) -> None:
    # A compressed TIFF is decoded into real (traced) buffers, unlike a memory map.
    rng = np.random.default_rng(1)
    data = rng.integers(0, 4000, (512, 128, 128), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "big.tif", data, compression="zlib")
    size = data.nbytes
    del data
    tracemalloc.start()
    try:
        convert_to_ome_zarr(tmp_path / "big.tif", tmp_path / "ds", voxel_size=(1, 1, 1), chunk=32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size / 3, f"peak traced allocation {peak:,} B for a {size:,} B volume"


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "convert", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_cli_convert_end_to_end(
    tmp_path: Path, image_3d: np.ndarray, labels_3d: np.ndarray
) -> None:
    tifffile.imwrite(tmp_path / "img.tif", image_3d)
    np.save(tmp_path / "nuc.npy", labels_3d)
    out = _cli(
        tmp_path / "img.tif",
        tmp_path / "ds",
        "--voxel-size",
        "300",
        "150",
        "150",
        "--unit",
        "nanometer",
        "--labels",
        f"nuclei={tmp_path / 'nuc.npy'}",
        "--chunk",
        "32",
    )
    assert out.returncode == 0, out.stderr
    assert "image.ome.zarr" in out.stdout and "labels/nuclei" in out.stdout
    assert "image level 0" in out.stderr  # the tqdm bar
    back = read_with_ome_zarr_py(tmp_path / "ds" / IMAGE_NAME)
    np.testing.assert_array_equal(back.levels[0], image_3d)
    np.testing.assert_array_equal(back.labels["nuclei"][0], labels_3d)


def test_cli_bad_input_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process (the subprocess path is covered above): same parser, same error handling.
    from pipeline.cli import main

    (tmp_path / "junk.tif").write_bytes(b"\x00" * 100)
    code = main(
        ["convert", str(tmp_path / "junk.tif"), str(tmp_path / "ds"), "--voxel-size", "1", "1", "1"]
    )
    assert code == 2
    assert capsys.readouterr().err.strip() == "error: junk.tif is not a TIFF file (no TIFF header)"
    assert not (tmp_path / "ds").exists()
    code = main(["convert", str(tmp_path / "junk.tif"), str(tmp_path / "ds"), "--labels", "oops"])
    assert code == 2
    assert "--labels expects NAME=PATH" in capsys.readouterr().err
