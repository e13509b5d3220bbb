"""Versions of a box's label volume: small manifests, made and checked by pure functions.

A version is the full map chunk index -> blob key of :mod:`pipeline.label_store` (absent
chunks are all zero), the chunks that differ from the version it was based on, and its number
(0 is the empty volume, each save or restore adds one). Nothing is ever rewritten: a restore is
a new version whose map equals an older one's.

The functions take the current version and return the next, raising :class:`VersionConflict`
when the client's base is not the current version, so the manifests can live anywhere that
serialises a save: a database row locked for the save (the site's ``Revision``) or the files of
:class:`FileVersionLog` (the command line, tests, benchmarks), where a version file is created
only if absent, so two saves from one base cannot both land.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidInputError
from pipeline.label_store import ChunkIndex, LabelGeometry, blob_key_check

_VERSION_FILE = re.compile(r"(\d{8,})\.json")


class VersionConflict(Exception):
    """A save or restore based on a version that is no longer the current one.

    Not a :class:`pipeline.errors.PipelineError` (bad input, 400): the site answers 409 with
    ``current`` so the page can reload and apply its changes on top.
    """

    def __init__(self, current: int, base: int) -> None:
        super().__init__(
            f"version {base} is not the current version {current}: "
            "reload it and apply your changes on top"
        )
        self.current = current
        self.base = base


def chunk_key(index: ChunkIndex) -> str:
    """A chunk index as a JSON object key, ``"z.y.x"``."""
    return f"{index[0]}.{index[1]}.{index[2]}"


def chunk_key_parse(text: Any, geometry: LabelGeometry) -> ChunkIndex:
    parts = text.split(".") if isinstance(text, str) else []
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        raise InvalidInputError(f"{text!r} is not a chunk key z.y.x")
    return geometry.index_check(tuple(int(p) for p in parts))


@dataclass(frozen=True)
class LabelVersion:
    """One version: ``chunks`` maps every non-zero chunk to its blob."""

    number: int
    based_on: int | None
    chunks: Mapping[ChunkIndex, str] = field(default_factory=dict)
    changed: tuple[ChunkIndex, ...] = ()
    restored_from: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "based_on": self.based_on,
            "restored_from": self.restored_from,
            "chunks": {chunk_key(i): k for i, k in sorted(self.chunks.items())},
            "changed": [chunk_key(i) for i in self.changed],
        }

    @classmethod
    def from_json(cls, data: Any, geometry: LabelGeometry) -> LabelVersion:
        """A stored manifest, checked: its chunk keys must lie in the box, its keys be blobs."""
        if not isinstance(data, Mapping):
            raise InvalidInputError("a label version must be a JSON object")

        def number(name: str, optional: bool) -> int | None:
            value = data.get(name)
            if value is None and optional:
                return None
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidInputError(f"label version: {name} must be a non-negative integer")
            return value

        chunks, changed = data.get("chunks", {}), data.get("changed", [])
        if not isinstance(chunks, Mapping) or not isinstance(changed, list):
            raise InvalidInputError("label version: chunks must be an object, changed a list")
        n = number("number", False)
        assert n is not None
        return cls(
            number=n,
            based_on=number("based_on", True),
            restored_from=number("restored_from", True),
            chunks={chunk_key_parse(i, geometry): blob_key_check(k) for i, k in chunks.items()},
            changed=tuple(chunk_key_parse(i, geometry) for i in changed),
        )


def version_empty() -> LabelVersion:
    """Version 0: nothing painted."""
    return LabelVersion(number=0, based_on=None)


def chunk_maps_diff(
    a: Mapping[ChunkIndex, str], b: Mapping[ChunkIndex, str]
) -> tuple[ChunkIndex, ...]:
    """The chunks whose content differs between two maps (what a viewer must fetch again)."""
    return tuple(sorted(i for i in set(a) | set(b) if a.get(i) != b.get(i)))


def _base_check(current: LabelVersion, base: int) -> None:
    if base != current.number:
        raise VersionConflict(current=current.number, base=base)


def version_next(
    current: LabelVersion, base: int, written: Mapping[ChunkIndex, str | None]
) -> LabelVersion:
    """The version after ``current`` with ``written`` (from ``chunks_write``) applied.

    ``changed`` lists only chunks whose blob differs: a chunk sent again unchanged is not a
    change (same content, same key).
    """
    _base_check(current, base)
    chunks = dict(current.chunks)
    for index, key in written.items():
        if key is None:
            chunks.pop(index, None)
        else:
            chunks[index] = key
    return LabelVersion(
        number=current.number + 1,
        based_on=current.number,
        chunks=chunks,
        changed=chunk_maps_diff(current.chunks, chunks),
    )


def version_restore(current: LabelVersion, base: int, target: LabelVersion) -> LabelVersion:
    """A new version equal to ``target`` (an older one); the history is kept."""
    _base_check(current, base)
    return LabelVersion(
        number=current.number + 1,
        based_on=current.number,
        chunks=dict(target.chunks),
        changed=chunk_maps_diff(current.chunks, target.chunks),
        restored_from=target.number,
    )


class FileVersionLog:
    """Versions as files ``<number>.json`` in a directory, for use without a database."""

    def __init__(self, root: Path, geometry: LabelGeometry) -> None:
        self.root = Path(root)
        self.geometry = geometry

    def numbers(self) -> list[int]:
        if not self.root.is_dir():
            return []
        found = (_VERSION_FILE.fullmatch(p.name) for p in self.root.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def _path(self, number: int) -> Path:
        return self.root / f"{number:08d}.json"

    def get(self, number: int) -> LabelVersion:
        if number == 0 and not self._path(0).exists():
            return version_empty()
        try:
            text = self._path(number).read_text()
        except FileNotFoundError:
            raise InvalidInputError(f"there is no label version {number}") from None
        return LabelVersion.from_json(json.loads(text), self.geometry)

    def current(self) -> LabelVersion:
        numbers = self.numbers()
        return self.get(numbers[-1]) if numbers else version_empty()

    def append(self, version: LabelVersion) -> None:
        """Record ``version``; :class:`VersionConflict` if its number is already taken."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{version.number}.{os.getpid()}.{id(version)}.tmp"
        with open(tmp, "w") as file:
            json.dump(version.to_json(), file)
            file.flush()
            os.fsync(file.fileno())
        try:
            # link() fails when the name exists: the first of two saves from one base wins.
            os.link(tmp, self._path(version.number))
        except FileExistsError:
            raise VersionConflict(
                current=self.current().number, base=version.based_on or 0
            ) from None
        finally:
            tmp.unlink(missing_ok=True)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
