"""Uploaded zip archives: extracted when sound, refused (with nothing left behind) otherwise."""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image, write_reference_ome_zarr

from pipeline.archives import DEFAULT_MAX_RATIO, extraction_limit, safe_extract_zip
from pipeline.errors import InvalidInputError
from pipeline.importers import read_ome_zarr_info
from tests.zip_bombs import zeros_deflate_zip

LIMITS = {"max_total_bytes": 10_000_000, "max_files": 1000}


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def _nothing_left(tmp_path: Path, dest: Path) -> None:
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_zipped_ome_zarr_directory_extracts_and_registers(tmp_path: Path) -> None:
    store = write_reference_ome_zarr(
        tmp_path / "scan.ome.zarr",
        make_image((20, 30, 40)),
        {},
        version="0.5",
        scale={"z": 1.0, "y": 1.0, "x": 1.0},
    )
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(store.rglob("*")):
            zf.write(file, file.relative_to(tmp_path).as_posix())
        zf.writestr("__MACOSX/scan.ome.zarr/._zarr.json", b"finder junk")
    root = safe_extract_zip(archive, tmp_path / "extracted", **LIMITS)
    assert root == tmp_path / "extracted" / "scan.ome.zarr"
    image, _ = read_ome_zarr_info(root)
    assert image.shape == (20, 30, 40)
    assert not (tmp_path / "extracted" / "__MACOSX").exists()


def test_several_top_level_entries_return_dest(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"one.tif": b"1", "two/three.tif": b"3"})
    root = safe_extract_zip(archive, tmp_path / "out", **LIMITS)
    assert root == tmp_path / "out"
    assert (root / "two" / "three.tif").read_bytes() == b"3"


@pytest.mark.parametrize(
    "name",
    ["../evil.tif", "a/../../evil.tif", "/etc/evil", "C:/evil.tif", "c:evil", "a\\..\\evil.tif"],
)
def test_path_traversal_is_refused(tmp_path: Path, name: str) -> None:
    archive = _zip(tmp_path / "bad.zip", {"fine.tif": b"ok", name: b"x"})
    with pytest.raises(InvalidInputError, match="archive entry"):
        safe_extract_zip(archive, tmp_path / "out", **LIMITS)
    _nothing_left(tmp_path, tmp_path / "out")
    assert not (tmp_path / "evil.tif").exists()


def test_symlink_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/real.tif", b"data")
        link = zipfile.ZipInfo("data/link.tif")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(InvalidInputError, match="symbolic link"):
        safe_extract_zip(archive, tmp_path / "out", **LIMITS)
    _nothing_left(tmp_path, tmp_path / "out")


def test_too_many_files_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(20)})
    with pytest.raises(InvalidInputError, match="20 entries, more than the limit of 10"):
        safe_extract_zip(archive, tmp_path / "out", max_total_bytes=10**6, max_files=10)
    _nothing_left(tmp_path, tmp_path / "out")


def test_zip_bomb_by_declared_size_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "bomb.zip", {"zeros.npy": bytes(5_000_000)})
    assert archive.stat().st_size < 50_000  # compresses ~1000:1
    with pytest.raises(InvalidInputError, match="more than the limit"):
        safe_extract_zip(archive, tmp_path / "out", max_total_bytes=1_000_000, max_files=10)
    _nothing_left(tmp_path, tmp_path / "out")


def test_the_generated_bomb_is_a_real_zip(tmp_path: Path) -> None:
    archive = zeros_deflate_zip(tmp_path / "small.zip", "zeros.bin", 4 << 20)
    with zipfile.ZipFile(archive) as zf:
        assert zf.read("zeros.bin") == bytes(4 << 20)  # CRC and sizes check out
    assert archive.stat().st_size < 10_000


def test_a_2_gib_zip_bomb_is_refused_before_writing_with_default_limits(tmp_path: Path) -> None:
    # The case: a small archive that expands to 2 GiB, under the site's own size limit
    # (4 x the 8 GiB upload limit) and with the disk's room: the expansion ratio refuses it.
    archive = zeros_deflate_zip(tmp_path / "bomb.zip", "zeros.npy", 2 << 30)
    assert archive.stat().st_size < 3 << 20
    with pytest.raises(InvalidInputError) as refused:
        safe_extract_zip(archive, tmp_path / "out", max_total_bytes=32 << 30, max_files=1000)
    message = str(refused.value)
    assert "unpacks to 2,147,483,648 bytes" in message
    assert f"{DEFAULT_MAX_RATIO:g} times the archive's size" in message
    assert "upload the files unzipped" in message
    _nothing_left(tmp_path, tmp_path / "out")


def test_expansion_ratio_applies_only_past_its_floor(tmp_path: Path) -> None:
    archive = zeros_deflate_zip(tmp_path / "sparse.zip", "labels.tif", 8 << 20)  # ~1000:1
    limits = {"max_total_bytes": 1 << 30, "max_files": 10}
    with pytest.raises(InvalidInputError, match="times the archive's size"):
        safe_extract_zip(archive, tmp_path / "out", ratio_floor_bytes=1 << 20, **limits)
    _nothing_left(tmp_path, tmp_path / "out")
    root = safe_extract_zip(archive, tmp_path / "out", **limits)  # default floor: 256 MiB
    assert root.stat().st_size == 8 << 20


def test_free_disk_space_limits_extraction(tmp_path: Path) -> None:
    archive = zeros_deflate_zip(tmp_path / "big.zip", "zeros.bin", 64 << 20)
    # A margin that leaves about 8 MiB usable (other processes may write meanwhile: the test
    # only needs the disk, not the other limits, to be the one below 64 MiB).
    margin = shutil.disk_usage(tmp_path).free - (8 << 20)
    limit, why = extraction_limit(
        archive.stat().st_size, tmp_path, max_total_bytes=1 << 40, disk_margin_bytes=margin
    )
    assert limit < 64 << 20 and "free on the disk" in why
    with pytest.raises(InvalidInputError, match="free on the disk"):
        safe_extract_zip(
            archive, tmp_path / "out", max_total_bytes=1 << 40, max_files=10,
            disk_margin_bytes=margin, ratio_floor_bytes=1 << 40,
        )  # fmt: skip
    _nothing_left(tmp_path, tmp_path / "out")


def test_zip_bomb_with_lying_header_is_caught_while_extracting(tmp_path: Path) -> None:
    # Both headers declare 1,000 bytes; the data inflates to 64 MiB. Declared sizes pass every
    # limit, so only the stream can tell: it stops at the declared size with a clear message.
    archive = zeros_deflate_zip(tmp_path / "liar.zip", "a.bin", 64 << 20, declared=1000)
    with pytest.raises(InvalidInputError) as refused:
        safe_extract_zip(archive, tmp_path / "out", max_total_bytes=1 << 20, max_files=10)
    assert "'a.bin'" in str(refused.value)
    assert "does not match the size its header declares" in str(refused.value)
    _nothing_left(tmp_path, tmp_path / "out")


def test_zip_bomb_with_small_declared_sizes_per_entry_cannot_pass_the_total(tmp_path: Path) -> None:
    # Many honest-looking entries that together exceed the limit are refused before writing.
    archive = _zip(tmp_path / "many.zip", {f"{i}.bin": bytes(300_000) for i in range(10)})
    with pytest.raises(InvalidInputError, match="unpacks to 3,000,000 bytes, more than the limit"):
        safe_extract_zip(archive, tmp_path / "out", max_total_bytes=1_000_000, max_files=100)
    _nothing_left(tmp_path, tmp_path / "out")


def test_corrupt_and_non_zip_files_are_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "ok.zip", {"a.npy": np.arange(100_000).tobytes()})
    data = archive.read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="not a readable zip"):
        safe_extract_zip(tmp_path / "cut.zip", tmp_path / "out", **LIMITS)
    (tmp_path / "text.zip").write_text("hello")
    with pytest.raises(InvalidInputError, match="not a readable zip"):
        safe_extract_zip(tmp_path / "text.zip", tmp_path / "out", **LIMITS)
    _nothing_left(tmp_path, tmp_path / "out")


def test_damaged_member_data_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "bad.zip", {"a.bin": np.arange(50_000).tobytes()})
    raw = bytearray(archive.read_bytes())
    raw[200:260] = b"\x00" * 60  # inside the deflate stream of the only member
    archive.write_bytes(bytes(raw))
    with pytest.raises(InvalidInputError):
        safe_extract_zip(archive, tmp_path / "out", **LIMITS)
    _nothing_left(tmp_path, tmp_path / "out")


def test_non_empty_destination_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"a.tif": b"1"})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not an empty folder"):
        safe_extract_zip(archive, tmp_path / "out", **LIMITS)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
