"""Factories and a small world of users, teams, datasets and share links for the serving tests.

Dataset files are written straight into ``DATA_ROOT/datasets/<slug>/``: a tiny OME-Zarr 0.5
store with one chunk, a v2 label group, precomputed meshes (legacy, and sharded multi-resolution
written by the pipeline) and segment properties.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.utils import timezone

from pipeline.precomputed_multires import LodMesh, MultiresMeshWriter, OctreeLayout
from pipeline.precomputed_sharding import ShardingSpec
from webapp.accounts.models import Team
from webapp.datasets.data_access import data_access_cache_clear
from webapp.datasets.models import Dataset, ShareLink, Visibility

CHUNK = bytes(range(256)) * 64  # 16 KiB, every byte value, so a wrong offset shows
FRAGMENT = (3).to_bytes(4, "little") + bytes(36) + bytes(12)
ZARR_JSON = {"zarr_format": 3, "node_type": "group", "attributes": {"ome": {"version": "0.5"}}}

# Paths inside every test store, by kind, with the content type they must be served with.
STORE_FILES: dict[str, tuple[str, str]] = {
    "zarr_metadata": ("image.ome.zarr/zarr.json", "application/json"),
    "array_metadata": ("image.ome.zarr/s0/zarr.json", "application/json"),
    "chunk": ("image.ome.zarr/s0/c/0/0/0", "application/octet-stream"),
    "v2_attrs": ("image.ome.zarr/labels/nuclei/.zattrs", "application/json"),
    "v2_array": ("image.ome.zarr/labels/nuclei/0/.zarray", "application/json"),
    "v2_chunk": ("image.ome.zarr/labels/nuclei/0/0.0.0", "application/octet-stream"),
    "mesh_info": ("meshes/nuclei/info", "application/json"),
    "mesh_manifest": ("meshes/nuclei/1:0", "application/json"),
    "mesh_fragment": ("meshes/nuclei/1", "application/octet-stream"),
    "segment_properties": ("meshes/nuclei/segment_properties/info", "application/json"),
    "multires_info": ("meshes/cells/info", "application/json"),
    "mesh_shard": ("meshes/cells/0.shard", "application/octet-stream"),
}
# Objects of the sharded multi-resolution mesh directory meshes/cells/ (tetrahedra, nm).
SHARDED_MESH_IDS = (1, 7, 300)
SHARDING = ShardingSpec(minishard_bits=1)


def sharded_mesh_files() -> dict[str, bytes]:
    """``info`` and ``0.shard`` of a mesh directory the pipeline writes (computed once)."""
    if not _SHARDED:
        with tempfile.TemporaryDirectory() as tmp:
            with MultiresMeshWriter(Path(tmp), SHARDING, with_properties=False) as writer:
                for n, segment_id in enumerate(SHARDED_MESH_IDS):
                    vertices = (
                        np.array(
                            [[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100]], dtype=np.float64
                        )
                        + 1000.0 * n
                    )
                    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int64)
                    layout = OctreeLayout(vertices.min(axis=0), np.full(3, 100.0), 1)
                    writer.add(segment_id, [LodMesh(vertices, faces)], layout, [1.0])
            _SHARDED.update(
                info=(Path(tmp) / "info").read_bytes(), shard=(Path(tmp) / "0.shard").read_bytes()
            )
    return _SHARDED


_SHARDED: dict[str, bytes] = {}


def write_store(root: Path, marker: str) -> None:
    """Write the test store under ``root``; JSON files carry ``marker`` to tell datasets apart."""
    contents: dict[str, bytes] = {
        "zarr_metadata": json.dumps({**ZARR_JSON, "marker": marker}).encode(),
        "array_metadata": json.dumps({"zarr_format": 3, "node_type": "array"}).encode(),
        "chunk": CHUNK,
        "v2_attrs": json.dumps({"multiscales": [], "marker": marker}).encode(),
        "v2_array": json.dumps({"zarr_format": 2, "chunks": [64, 64, 64]}).encode(),
        "v2_chunk": CHUNK[::-1],
        "mesh_info": json.dumps({"@type": "neuroglancer_legacy_mesh", "marker": marker}).encode(),
        "mesh_manifest": json.dumps({"fragments": ["1"]}).encode(),
        "mesh_fragment": FRAGMENT,
        "segment_properties": json.dumps(
            {"@type": "neuroglancer_segment_properties", "inline": {"ids": ["1"]}}
        ).encode(),
        "multires_info": sharded_mesh_files()["info"],
        "mesh_shard": sharded_mesh_files()["shard"],
    }
    for kind, (rel, _) in STORE_FILES.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(contents[kind])


def make_user(username: str, **extra: Any) -> Any:
    from django.contrib.auth import get_user_model

    # No password: tests sign in with force_login, which skips the slow password hasher.
    return get_user_model().objects.create_user(username, **extra)


def make_team(name: str, members: list[Any]) -> Team:
    team = Team.objects.create(name=name, slug=name)
    team.members.add(*members)
    return team


def make_dataset(
    slug: str, owner: Any, visibility: str = Visibility.PRIVATE, team: Team | None = None
) -> Dataset:
    dataset = Dataset.objects.create(
        name=slug.title(), slug=slug, owner=owner, visibility=visibility, team=team
    )
    write_store(Path(settings.DATA_ROOT) / "datasets" / slug, marker=slug)
    return dataset


def make_share_link(dataset: Dataset, **extra: Any) -> ShareLink:
    return ShareLink.objects.create(dataset=dataset, created_by=dataset.owner, **extra)


@dataclass
class World:
    owner: Any
    other: Any
    member: Any
    admin: Any
    team: Team
    public: Dataset
    private: Dataset
    team_ds: Dataset
    second: Dataset  # another private dataset of the same owner
    link: ShareLink  # active, for `private`
    revoked: ShareLink
    expired: ShareLink
    second_link: ShareLink  # active, for `second`


@pytest.fixture(autouse=True)
def _fresh_access_cache() -> Any:
    data_access_cache_clear()
    yield
    data_access_cache_clear()


@pytest.fixture
def world(db: Any) -> World:
    owner = make_user("owner")
    other = make_user("other")
    member = make_user("member")
    admin = make_user("admin", is_superuser=True, is_staff=True)
    team = make_team("lab", [owner, member])
    public = make_dataset("pub", owner, Visibility.PUBLIC)
    private = make_dataset("priv", owner, Visibility.PRIVATE)
    team_ds = make_dataset("teamds", owner, Visibility.TEAM, team)
    second = make_dataset("second", owner, Visibility.PRIVATE)
    now = timezone.now()
    return World(
        owner=owner,
        other=other,
        member=member,
        admin=admin,
        team=team,
        public=public,
        private=private,
        team_ds=team_ds,
        second=second,
        link=make_share_link(private, expires_at=now + timedelta(days=1)),
        revoked=make_share_link(private, revoked_at=now),
        expired=make_share_link(private, expires_at=now - timedelta(seconds=1)),
        second_link=make_share_link(second),
    )
