"""Safe extraction of uploaded zip archives (zipped OME-Zarr directories, TIFF files), and zips
streamed out (:func:`iter_directory_zip`).

Every entry is checked before anything is written (names, symlinks, encryption, counts, declared
sizes); bytes are counted again while extracting because declared sizes can lie. Extraction goes
to a hidden sibling directory that is renamed to ``dest`` only when complete.

Zip bombs are refused before the first byte is written, by the sizes the archive declares,
against the smallest of three limits (:func:`extraction_limit`): the caller's ``max_total_bytes``;
the free space of the destination's disk less a margin; and, past ``ratio_floor_bytes``,
``max_ratio`` times the archive's own size (real data zips to a few times smaller at best: images
and OME-Zarr chunks are already compressed, while a bomb expands a thousandfold). While
extracting, every entry is held to its declared size and the total to the limit, and the free
space is checked again as it goes.
"""

from __future__ import annotations

import re
import shutil
import stat
import uuid
import zipfile
import zlib
from collections.abc import Callable, Generator
from pathlib import Path, PurePosixPath

from pipeline.errors import InvalidInputError

COPY_BLOCK = 1 << 20
# Expansion beyond which the ratio limit applies: small archives may compress as well as they like
# (a sparse label TIFF of a few hundred MB can zip 100:1 or better).
DEFAULT_RATIO_FLOOR_BYTES = 256 << 20
DEFAULT_MAX_RATIO = 100.0
# Space left free on the destination's disk, for everything else that writes there.
DEFAULT_DISK_MARGIN_BYTES = 512 << 20
DISK_RECHECK_BYTES = 64 << 20
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


def _free_bytes(path: Path) -> int:
    """Free bytes on the disk that holds ``path`` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(Path.cwd()).free


def extraction_limit(
    archive_bytes: int,
    dest: Path,
    *,
    max_total_bytes: int,
    max_ratio: float = DEFAULT_MAX_RATIO,
    ratio_floor_bytes: int = DEFAULT_RATIO_FLOOR_BYTES,
    disk_margin_bytes: int = DEFAULT_DISK_MARGIN_BYTES,
) -> tuple[int, str]:
    """The most bytes an archive of ``archive_bytes`` may unpack to under ``dest``, and why.

    The reason is a phrase for the refusal message.
    """
    free = _free_bytes(dest) - disk_margin_bytes
    by_ratio = max(int(archive_bytes * max_ratio), ratio_floor_bytes)
    limits = [
        (max_total_bytes, f"the limit of {max_total_bytes:,} bytes"),
        (
            max(free, 0),
            f"the {max(free, 0):,} bytes free on the disk (keeping {disk_margin_bytes:,} free)",
        ),
        (
            by_ratio,
            f"{max_ratio:g} times the archive's size ({archive_bytes:,} bytes), the most real "
            f"data expands by; upload the files unzipped instead",
        ),
    ]
    return min(limits, key=lambda limit: limit[0])


def _entries(
    archive: zipfile.ZipFile, limit: tuple[int, str], max_files: int
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
    if declared > limit[0]:
        raise InvalidInputError(f"archive unpacks to {declared:,} bytes, more than {limit[1]}")
    if not any(not i.is_dir() for i in entries):
        raise InvalidInputError("archive contains no files")
    return entries


def _extract(
    archive: zipfile.ZipFile,
    entries: list[zipfile.ZipInfo],
    root: Path,
    limit: tuple[int, str],
    disk_margin_bytes: int,
) -> None:
    written = 0
    next_disk_check = DISK_RECHECK_BYTES
    resolved_root = root.resolve()
    for info in entries:
        target = root.joinpath(*PurePosixPath(info.filename).parts)
        if not target.resolve().is_relative_to(resolved_root):
            raise InvalidInputError(f"archive entry {info.filename!a} escapes the folder")
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        entry_written = 0
        try:
            with archive.open(info) as src, target.open("xb") as dst:
                while block := src.read(COPY_BLOCK):
                    entry_written += len(block)
                    written += len(block)
                    if entry_written > info.file_size:
                        raise InvalidInputError(
                            f"archive entry {info.filename!a} unpacks to more than the "
                            f"{info.file_size:,} bytes its header declares"
                        )
                    if written > limit[0]:
                        raise InvalidInputError(f"archive unpacks to more than {limit[1]}")
                    if written >= next_disk_check:
                        next_disk_check += DISK_RECHECK_BYTES
                        if _free_bytes(root) < disk_margin_bytes:
                            raise InvalidInputError(
                                "the disk filled up while unpacking the archive (keeping "
                                f"{disk_margin_bytes:,} bytes free); free some space and retry"
                            )
                    dst.write(block)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise InvalidInputError(
                f"archive entry {info.filename!a} is damaged or does not match the size its "
                f"header declares ({exc})"
            ) from exc


def safe_extract_zip(
    zip_path: Path,
    dest: Path,
    *,
    max_total_bytes: int,
    max_files: int,
    max_ratio: float = DEFAULT_MAX_RATIO,
    ratio_floor_bytes: int = DEFAULT_RATIO_FLOOR_BYTES,
    disk_margin_bytes: int = DEFAULT_DISK_MARGIN_BYTES,
) -> Path:
    """Extract ``zip_path`` into ``dest`` (absent or empty) and return what it holds.

    Returns ``dest/<entry>`` when the archive has a single top-level entry (a zipped
    ``image.ome.zarr`` folder or one TIFF), otherwise ``dest``. Raises InvalidInputError, leaving
    nothing behind, for a corrupt archive, path traversal, links, too many files, or more bytes
    than :func:`extraction_limit` allows (refused before writing when the sizes say so).
    """
    zip_path, dest = Path(zip_path), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidInputError(f"{dest} already exists and is not an empty folder")
    partial = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:12]}"
    try:
        with zipfile.ZipFile(zip_path) as archive:
            limit = extraction_limit(
                zip_path.stat().st_size,
                dest.parent,
                max_total_bytes=max_total_bytes,
                max_ratio=max_ratio,
                ratio_floor_bytes=ratio_floor_bytes,
                disk_margin_bytes=disk_margin_bytes,
            )
            entries = _entries(archive, limit, max_files)
            partial.mkdir(parents=True)
            _extract(archive, entries, partial, limit, disk_margin_bytes)
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


# --- zips streamed out ---------------------------------------------------------------------------


class StreamSink:
    """A write-only stream collecting what a writer wrote until a generator takes it.

    zipfile writes to a non-seekable sink with data descriptors after each entry, so a zip can
    be handed out entry by entry while it is written; pyarrow's Parquet writer likewise row
    group by row group (it also asks whether the sink is closed).
    """

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


def iter_directory_zip(
    root: Path, *, stored: Callable[[str], bool] = lambda name: False
) -> Generator[bytes, None, None]:
    """Stream a zip of every file under ``root`` (names relative to it, ``/``-separated, in
    sorted order), one file at a time, so memory holds one file, not the archive.

    ``stored(name)`` says which entries to store uncompressed (bytes already compressed, such
    as zarr chunks); the rest are deflated.
    """
    root = Path(root)
    sink = StreamSink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            name = path.relative_to(root).as_posix()
            method = zipfile.ZIP_STORED if stored(name) else zipfile.ZIP_DEFLATED
            archive.write(path, name, compress_type=method)
            chunk = sink.take()
            if chunk:
                yield chunk
    chunk = sink.take()
    if chunk:
        yield chunk
