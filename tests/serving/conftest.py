"""Factories and a small world of users, teams, datasets and share links for the serving tests.

Dataset files are written straight into ``DATA_ROOT/datasets/<slug>/``: a tiny OME-Zarr 0.5
store with one chunk, a v2 label group, precomputed meshes and segment properties.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

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
}


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
