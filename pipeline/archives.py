"""Safe extraction of uploaded zip archives (zipped OME-Zarr directories, TIFF files).

Every entry is checked before anything is written (names, symlinks, encryption, counts, declared
sizes); bytes are counted again while extracting because declared sizes can lie. Extraction goes
to a hidden sibling directory that is renamed to ``dest`` only when complete.
"""

from __future__ import annotations

import re
import shutil
import stat
import uuid
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from pipeline.errors import InvalidInputError

COPY_BLOCK = 1 << 20
# Finder adds these to zips made on macOS; they are never data.
IGNORED_PREFIXES = ("__MACOSX/",)
IGNORED_NAMES = frozenset({".DS_Store", "Thumbs.db"})
DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


def _is_ignored(name: str) -> bool:
    return name.startswith(IGNORED_PREFIXES) or PurePosixPath(name).name in IGNORED_NAMES


def _check_entry(info: zipfile.ZipInfo) -> None:
    name = info.filename
    shown = ascii(name)
    if not name or "\\" in name or "\x00" in name:
        raise InvalidInputError(f"archive entry {shown} has an invalid name")
    if name.startswith("/") or DRIVE_LETTER.match(name):
        raise InvalidInputError(f"archive entry {shown} is an absolute path")
    parts = PurePosixPath(name).parts
    if not parts:
        raise InvalidInputError(f"archive entry {shown} has an empty name")
    if any(part == ".." for part in parts):
        raise InvalidInputError(f"archive entry {shown} points outside the archive ('..')")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise InvalidInputError(f"archive entry {shown} is a symbolic link")
    kind = stat.S_IFMT(mode)  # zero when the creator recorded no file type
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        raise InvalidInputError(f"archive entry {shown} is not a regular file")
    if info.flag_bits & 0x1:
        raise InvalidInputError(f"archive entry {shown} is encrypted")


def _entries(
    archive: zipfile.ZipFile, max_total_bytes: int, max_files: int
) -> list[zipfile.ZipInfo]:
    entries = [i for i in archive.infolist() if not _is_ignored(i.filename)]
    if len(entries) > max_files:
        raise InvalidInputError(
            f"archive has {len(entries):,} entries, more than the limit of {max_files:,}"
        )
    seen: set[str] = set()
    declared = 0
    for info in entries:
        _check_entry(info)
        key = "/".join(PurePosixPath(info.filename).parts)
        if key in seen:
            raise InvalidInputError(f"archive entry {key!a} appears twice")
        seen.add(key)
        declared += info.file_size
    if declared > max_total_bytes:
        raise InvalidInputError(
            f"archive unpacks to {declared:,} bytes, more than the limit of {max_total_bytes:,}"
        )
    if not any(not i.is_dir() for i in entries):
        raise InvalidInputError("archive contains no files")
    return entries


def _extract(
    archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], root: Path, max_total_bytes: int
) -> None:
    written = 0
    resolved_root = root.resolve()
    for info in entries:
        target = root.joinpath(*PurePosixPath(info.filename).parts)
        if not target.resolve().is_relative_to(resolved_root):
            raise InvalidInputError(f"archive entry {info.filename!a} escapes the folder")
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, target.open("xb") as dst:
            while block := src.read(COPY_BLOCK):
                written += len(block)
                if written > max_total_bytes:
                    raise InvalidInputError(
                        f"archive unpacks to more than the limit of {max_total_bytes:,} bytes"
                    )
                dst.write(block)


def safe_extract_zip(zip_path: Path, dest: Path, *, max_total_bytes: int, max_files: int) -> Path:
    """Extract ``zip_path`` into ``dest`` (absent or empty) and return what it holds.

    Returns ``dest/<entry>`` when the archive has a single top-level entry (a zipped
    ``image.ome.zarr`` folder or one TIFF), otherwise ``dest``. Raises InvalidInputError, leaving
    nothing behind, for a corrupt archive, path traversal, links, or too many files or bytes.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidInputError(f"{dest} already exists and is not an empty folder")
    partial = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:12]}"
    try:
        with zipfile.ZipFile(zip_path) as archive:
            entries = _entries(archive, max_total_bytes, max_files)
            partial.mkdir(parents=True)
            _extract(archive, entries, partial, max_total_bytes)
        if dest.exists():
            dest.rmdir()
        partial.rename(dest)
    except InvalidInputError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        EOFError,
        zlib.error,
    ) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise InvalidInputError(f"{zip_path.name} is not a readable zip archive: {exc}") from exc
    except FileNotFoundError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise InvalidInputError(f"{zip_path.name}: no such file") from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    tops = {PurePosixPath(i.filename).parts[0] for i in entries}
    return dest / tops.pop() if len(tops) == 1 else dest
