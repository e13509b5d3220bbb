"""A box's versioned label volume in one directory, for use without a database.

::

    <root>/geometry.json   the box (:class:`pipeline.label_store.LabelGeometry`)
    <root>/blobs/          the chunks (:class:`pipeline.label_store.BlobStore`)
    <root>/versions/       the versions (:class:`pipeline.label_versions.FileVersionLog`)

It chains the storage functions as the site does with its ``Revision`` rows: write the blobs
first (outside any lock), then make the next version from the current one and record it, which
fails with :class:`pipeline.label_versions.VersionConflict` when the base is stale.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidInputError
from pipeline.label_export import ZarrFormat, export_ome_zarr
from pipeline.label_store import (
    WRITE_WORKERS,
    BlobStore,
    ChunkIndex,
    LabelArray,
    LabelGeometry,
    chunk_encoded,
    chunks_write,
    labels_read,
)
from pipeline.label_versions import FileVersionLog, LabelVersion, version_next, version_restore

GEOMETRY_FILE = "geometry.json"


class LabelVolume:
    """Versions of one box's labels stored under ``root``."""

    def __init__(
        self,
        root: Path,
        geometry: LabelGeometry,
        *,
        durable: bool = True,
        workers: int = WRITE_WORKERS,
    ) -> None:
        self.root = Path(root)
        self.geometry = geometry
        self.workers = workers
        self.blobs = BlobStore(self.root / "blobs", durable=durable)
        self.log = FileVersionLog(self.root / "versions", geometry)

    @classmethod
    def create(
        cls,
        root: Path,
        geometry: LabelGeometry,
        *,
        durable: bool = True,
        workers: int = WRITE_WORKERS,
    ) -> LabelVolume:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{GEOMETRY_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(geometry.to_json()))
        try:
            os.link(tmp, root / GEOMETRY_FILE)
        except FileExistsError:
            raise InvalidInputError(f"{root} already holds a label volume") from None
        finally:
            tmp.unlink(missing_ok=True)
        return cls(root, geometry, durable=durable, workers=workers)

    @classmethod
    def open(cls, root: Path, *, durable: bool = True, workers: int = WRITE_WORKERS) -> LabelVolume:
        try:
            data = json.loads((Path(root) / GEOMETRY_FILE).read_text())
        except FileNotFoundError:
            raise InvalidInputError(f"{root} holds no label volume") from None
        return cls(root, LabelGeometry.from_json(data), durable=durable, workers=workers)

    def current(self) -> LabelVersion:
        return self.log.current()

    def version(self, number: int | None = None) -> LabelVersion:
        """Version ``number``, or the current one."""
        return self.current() if number is None else self.log.get(number)

    def save(self, base: int, chunks: Mapping[Any, Any]) -> LabelVersion:
        """Write changed chunks (index -> array) as the version after ``base``.

        A stale base is refused before any blob is written and checked again when the version
        is recorded (a save from another process may land in between: its blobs then stay
        unreferenced until :meth:`BlobStore.remove_unreferenced`).
        """
        version_next(self.current(), base, {})
        written = chunks_write(self.blobs, self.geometry, chunks, self.workers)
        version = version_next(self.current(), base, written)
        self.log.append(version)
        return version

    def restore(self, base: int, number: int) -> LabelVersion:
        """Make version ``number``'s labels current again, as a new version after ``base``."""
        version = version_restore(self.current(), base, self.log.get(number))
        self.log.append(version)
        return version

    def read(self, number: int | None = None, region: Sequence[slice] | None = None) -> LabelArray:
        return labels_read(self.blobs, self.geometry, self.version(number).chunks, region)

    def chunk_bytes(self, index: ChunkIndex, number: int | None = None) -> bytes | None:
        """Chunk ``index``'s Zarr chunk file bytes in a version (None: all zero)."""
        return chunk_encoded(
            self.blobs, self.version(number).chunks, self.geometry.index_check(index)
        )

    def export(
        self,
        path: Path,
        number: int | None = None,
        *,
        name: str = "labels",
        zarr_format: ZarrFormat = 3,
    ) -> Path:
        return export_ome_zarr(
            self.blobs,
            self.geometry,
            self.version(number).chunks,
            path,
            name=name,
            zarr_format=zarr_format,
        )
