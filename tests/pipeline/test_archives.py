"""Uploaded zip archives: extracted when sound, refused (with nothing left behind) otherwise."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image, write_reference_ome_zarr

from pipeline.archives import safe_extract_zip
from pipeline.errors import InvalidInputError
from pipeline.importers import read_ome_zarr_info

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


def test_zip_bomb_with_lying_header_is_caught_while_extracting(tmp_path: Path) -> None:
    # Declared sizes say 100 bytes; the data inflates to 2 MB. Counting or the CRC must stop it.
    archive = _zip(tmp_path / "liar.zip", {"a.bin": bytes(2_000_000)})
    raw = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("a.bin")
    central = raw.rfind(b"PK\x01\x02")
    for offset in (info.header_offset + 22, central + 24):  # uncompressed-size fields
        raw[offset : offset + 4] = (100).to_bytes(4, "little")
    archive.write_bytes(bytes(raw))
    with pytest.raises(InvalidInputError):
        safe_extract_zip(archive, tmp_path / "out", max_total_bytes=1_000, max_files=10)
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
