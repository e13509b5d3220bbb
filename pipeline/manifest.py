"""A run's manifest: inputs (fingerprinted), parameters, code version, environment, per-step
outputs and timings, written as JSON after every change so an interrupted run leaves a true record.

Files are fingerprinted by size, modification time and SHA-256 of their content. Directories
(Zarr stores, which may hold terabytes in millions of chunk files) by a SHA-256 over the sorted
listing of (relative path, size, mtime in ns) plus the content of their small metadata files
(``zarr.json``, ``.zattrs``, ``.zarray``, ``.zgroup``, ``info``): a rewritten chunk changes its
size or mtime, so this detects changes without reading the voxels.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
METADATA_FILES = frozenset({"zarr.json", ".zattrs", ".zarray", ".zgroup", "info"})
_READ_CHUNK = 1 << 20
_PACKAGES = ("numpy", "scipy", "torch", "zarr", "ome-zarr", "pandas", "scikit-image", "edt")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(path: Path) -> dict[str, Any]:
    """Size, mtime and a SHA-256 of a file or directory (see the module docstring)."""
    path = Path(path)
    if path.is_file():
        stat = path.stat()
        return {
            "path": str(path),
            "kind": "file",
            "size": stat.st_size,
            "mtime": _iso(stat.st_mtime),
            "sha256": sha256_file(path),
        }
    if path.is_dir():
        digest = hashlib.sha256()
        files = 0
        size = 0
        newest = 0.0
        for root, dirs, names in os.walk(path):
            dirs.sort()
            for name in sorted(names):
                full = Path(root) / name
                stat = full.stat()
                rel = full.relative_to(path).as_posix()
                digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
                if name in METADATA_FILES:
                    digest.update(full.read_bytes())
                files += 1
                size += stat.st_size
                newest = max(newest, stat.st_mtime)
        return {
            "path": str(path),
            "kind": "directory",
            "files": files,
            "size": size,
            "mtime": _iso(newest) if files else None,
            "sha256": digest.hexdigest(),
        }
    return {"path": str(path), "kind": "missing"}


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def code_version() -> dict[str, Any]:
    """``git describe`` and commit of the checkout holding this package, else its version."""
    root = Path(__file__).resolve().parent.parent
    info: dict[str, Any] = {}
    try:
        version = importlib.metadata.version("annotome")
    except importlib.metadata.PackageNotFoundError:
        version = None
    info["package_version"] = version
    if (root / ".git").exists():
        for key, args in (
            ("git_describe", ["describe", "--always", "--dirty", "--tags"]),
            ("git_commit", ["rev-parse", "HEAD"]),
        ):
            try:
                out = subprocess.run(
                    ["git", "-C", str(root), *args],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=True,
                )
                info[key] = out.stdout.strip()
            except (OSError, subprocess.SubprocessError):
                info[key] = None
    return info


def environment() -> dict[str, Any]:
    """Python, platform and the versions of the numerical packages installed."""
    packages: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "packages": packages,
    }


def digest_of(value: Any) -> str:
    """A SHA-256 of JSON-able data, independent of key order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class StepRecord:
    """One step as the manifest records it."""

    status: str = "pending"  # pending, running, done, skipped (up to date), failed
    key: str | None = None  # digest of the step's parameters and inputs
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Manifest:
    """The manifest of one output directory; :meth:`save` writes it atomically."""

    path: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, StepRecord] = field(default_factory=dict)
    code: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @classmethod
    def load_or_new(cls, out_dir: Path) -> Manifest:
        """The manifest in ``out_dir`` if there is a readable one, else an empty one."""
        path = Path(out_dir) / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(path=path)
        if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
            return cls(path=path)
        steps = {
            name: StepRecord(**{k: v for k, v in record.items() if k in StepRecord().__dict__})
            for name, record in (data.get("steps") or {}).items()
            if isinstance(record, dict)
        }
        return cls(
            path=path,
            parameters=data.get("parameters") or {},
            inputs=data.get("inputs") or {},
            steps=steps,
            code=data.get("code") or {},
            environment=data.get("environment") or {},
            created=data.get("created") or datetime.now(UTC).isoformat(),
        )

    def record_inputs(self, paths: Mapping[str, Path | None]) -> None:
        self.inputs = {name: fingerprint(p) for name, p in paths.items() if p is not None}

    def step(self, name: str) -> StepRecord:
        return self.steps.setdefault(name, StepRecord())

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "created": self.created,
            "updated": datetime.now(UTC).isoformat(),
            "code": self.code,
            "environment": self.environment,
            "parameters": self.parameters,
            "inputs": self.inputs,
            "steps": {name: record.as_dict() for name, record in self.steps.items()},
            "total_seconds": sum(r.seconds or 0.0 for r in self.steps.values()),
        }

    def save(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2, default=str) + "\n")
        os.replace(tmp, self.path)
        return self.path


class StepPending(Exception):
    """Raised out of a step whose work goes on in other processes: it stays ``running``."""


class StepTimer:
    """Context manager: marks a step running, then done (timed) or failed; saves each time.

    A step that raises :class:`StepPending` stays running (its work goes on elsewhere)."""

    def __init__(self, manifest: Manifest, name: str, key: str) -> None:
        self.manifest = manifest
        self.record = manifest.step(name)
        self.key = key
        self._start = 0.0

    def __enter__(self) -> StepRecord:
        self.record.status = "running"
        self.record.key = self.key
        self.record.started = datetime.now(UTC).isoformat()
        self.record.finished = None
        self.record.error = None
        self.record.outputs = {}
        self.record.metrics = {}
        self._start = time.perf_counter()
        self.manifest.save()
        return self.record

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.record.seconds = round(time.perf_counter() - self._start, 3)
        self.record.finished = datetime.now(UTC).isoformat()
        if exc is None:
            self.record.status = "done"
        elif isinstance(exc, StepPending):
            self.record.finished = None
        else:
            self.record.status = "failed"
            self.record.error = f"{type(exc).__name__}: {exc}"
        self.manifest.save()


def outputs_exist(paths: Iterable[Path]) -> bool:
    return all(Path(p).exists() for p in paths)
