"""Run manifests: fingerprints of files and stores, code version, environment, step records."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.manifest import (
    MANIFEST_NAME,
    Manifest,
    StepTimer,
    code_version,
    digest_of,
    environment,
    fingerprint,
)


def test_file_fingerprint_hashes_content(tmp_path: Path) -> None:
    path = tmp_path / "boxes.csv"
    path.write_bytes(b"x,y,z\n1,2,3\n")
    fp = fingerprint(path)
    assert fp["kind"] == "file" and fp["size"] == 12
    assert fp["sha256"] == hashlib.sha256(b"x,y,z\n1,2,3\n").hexdigest()
    assert fingerprint(tmp_path / "absent") == {"path": str(tmp_path / "absent"), "kind": "missing"}


def test_directory_fingerprint_sees_changed_chunks_and_metadata(tmp_path: Path) -> None:
    store = tmp_path / "image.ome.zarr"
    (store / "s0" / "c" / "0").mkdir(parents=True)
    (store / "zarr.json").write_text('{"a": 1}')
    chunk = store / "s0" / "c" / "0" / "0"
    chunk.write_bytes(b"\x00" * 100)
    first = fingerprint(store)
    assert first["kind"] == "directory" and first["files"] == 2 and first["size"] == 108
    assert fingerprint(store) == first  # stable
    (store / "zarr.json").write_text('{"a": 2}')  # same size, different metadata content
    os.utime(store / "zarr.json", ns=(0, 0))
    second = fingerprint(store)
    assert second["sha256"] != first["sha256"]
    chunk.write_bytes(b"\x01" * 101)  # a rewritten chunk
    assert fingerprint(store)["sha256"] != second["sha256"]


def test_digest_is_independent_of_key_order() -> None:
    assert digest_of({"a": 1, "b": [1, 2]}) == digest_of({"b": [1, 2], "a": 1})
    assert digest_of({"a": 1}) != digest_of({"a": 2})


def test_code_version_and_environment() -> None:
    code = code_version()
    assert code["package_version"] == "0.1.0" or code.get("git_commit")
    if "git_commit" in code:
        assert code["git_commit"] is None or len(code["git_commit"]) == 40
    env = environment()
    assert env["packages"]["numpy"] == np.__version__
    assert env["python"].count(".") == 2


def test_steps_are_timed_and_saved_atomically(tmp_path: Path) -> None:
    manifest = Manifest.load_or_new(tmp_path)
    manifest.parameters = {"segment": {"seed_threshold": 705.6}}
    manifest.record_inputs({"boxes": None, "config": Path(__file__)})
    with StepTimer(manifest, "segment", "key1") as record:
        # Saved as running while the step runs, so an interrupted run is visible.
        on_disk = json.loads((tmp_path / MANIFEST_NAME).read_text())
        assert on_disk["steps"]["segment"]["status"] == "running"
        record.outputs["labels"] = "segmentation.ome.zarr"
        record.metrics["objects"] = 12
    with pytest.raises(RuntimeError), StepTimer(manifest, "measure", "key2"):
        raise RuntimeError("disk full")
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert data["steps"]["segment"]["status"] == "done"
    assert data["steps"]["segment"]["metrics"] == {"objects": 12}
    assert data["steps"]["segment"]["seconds"] >= 0
    assert data["steps"]["measure"]["status"] == "failed"
    assert data["steps"]["measure"]["error"] == "RuntimeError: disk full"
    assert set(data["inputs"]) == {"config"}
    assert (
        data["inputs"]["config"]["sha256"]
        == hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    )
    assert not list(tmp_path.glob(".*tmp"))
    reloaded = Manifest.load_or_new(tmp_path)
    assert reloaded.steps["segment"].key == "key1"
    assert reloaded.steps["measure"].status == "failed"
    assert reloaded.parameters == manifest.parameters


def test_unreadable_manifest_starts_fresh(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    assert Manifest.load_or_new(tmp_path).steps == {}
