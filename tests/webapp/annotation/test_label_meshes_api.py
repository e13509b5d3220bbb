"""The meshes of painted labels versions as served to Neuroglancer: who may read them, the files
of a version's source, fragments shared across versions by content, versions that never change.

Boxes are 10 x 128 x 128 voxels of 400 x 200 x 200 nm in chunks of 10 x 64 x 64 (as in
test_labels.py), the image's origin moved off zero so the meshes' physical position shows.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from annotation_testdata import painted_campaign
from rest_framework.test import APIClient

from pipeline.precomputed import MESH_INFO_TYPE, VOLUME_PROPERTY, decode_fragment
from webapp.annotation import selectors, services
from webapp.annotation.models import AnnotationCampaign, Assignment

pytestmark = pytest.mark.django_db

SHAPE = (20, 256, 256)
BOX_UM = [4.0, 25.6, 25.6]
ORIGIN_UM = [0.8, 1.6, 2.4]
CHUNK = (10, 64, 64)
VOXEL_NM = (400.0, 200.0, 200.0)
API = "/api/v1/annotation/assignments/"
WHO = ("a1", "owner", "rv", "a3", "outsider", None)
IMMUTABLE = "private, max-age=31536000, immutable"


@pytest.fixture
def painted(people: dict[str, Any]) -> AnnotationCampaign:
    return painted_campaign(people, SHAPE, BOX_UM, ORIGIN_UM)


@pytest.fixture
def task(painted: AnnotationCampaign, people: dict[str, Any]) -> Assignment:
    row = services.next_task(painted, people["a1"])
    assert row is not None
    return row


def blob(value: int, radius: float = 20.0) -> np.ndarray:
    """A chunk holding one ellipsoid object ``value`` (about round in nm)."""
    out = np.zeros(CHUNK, np.uint32)
    z, y, x = np.ogrid[: CHUNK[0], : CHUNK[1], : CHUNK[2]]
    out[((z - 5) / (radius / 2)) ** 2 + ((y - 32) / radius) ** 2 + ((x - 32) / radius) ** 2 < 1] = (
        value
    )
    return out


def client(people: dict[str, Any], name: str | None) -> APIClient:
    api = APIClient()
    if name is not None:
        api.force_login(people[name])
    return api


def manifest_fragment(api: APIClient, base: str, segment_id: int) -> str:
    """The URL a manifest's fragment resolves to, as the browser resolves it."""
    answer = api.get(f"{base}{segment_id}:0")
    assert answer.status_code == 200, answer.content
    (name,) = answer.json()["fragments"]
    assert name.startswith("../../fragments/")
    return base.rsplit("/v", 1)[0] + "/" + name.removeprefix("../../")


def test_outsiders_get_404_and_the_others_read_the_meshes(
    task: Assignment, people: dict[str, Any]
) -> None:
    services.labels_save(task, people["a1"], 0, {(0, 0, 0): blob(5)})
    base = f"{API}{task.pk}/labels/v1/meshes/"
    infos = [client(people, who).get(f"{base}info").status_code for who in WHO]
    assert infos == [200, 200, 200, 404, 404, 404]
    fragment = manifest_fragment(client(people, "a1"), base, 5)
    fragments = [client(people, who).get(fragment).status_code for who in WHO]
    assert fragments == [200, 200, 200, 404, 404, 404]
    api = client(people, "a1")
    # An id the version lacks: an empty manifest (it never gets a mesh).
    absent = api.get(f"{base}6:0")
    assert absent.status_code == 200 and absent.json() == {"fragments": []}
    # Not a version yet, not a file of a source, not a key: 404.
    for path in (
        f"{API}{task.pk}/labels/v2/meshes/info",
        f"{base}5.frag",
        f"{base}../../../../x",
        f"{API}{task.pk}/labels/fragments/{'0' * 64}",
        f"{API}{task.pk}/labels/fragments/nothex",
    ):
        assert api.get(path).status_code == 404, path
    assert api.post(f"{base}info").status_code == 405


def test_a_version_is_served_as_a_legacy_mesh_source_at_its_physical_position(
    task: Assignment, people: dict[str, Any]
) -> None:
    services.labels_save(task, people["a1"], 0, {(0, 0, 0): blob(5), (0, 1, 1): blob(9)})
    api = client(people, "rv")
    state = api.get(f"{API}{task.pk}/labels/").json()
    zarr, meshes = state["neuroglancer_sources"]
    assert zarr == state["neuroglancer_source"]
    assert meshes == f"precomputed://{state['source']}meshes/"
    base = f"{API}{task.pk}/labels/v1/meshes/"
    info = api.get(f"{base}info")
    assert info["Cache-Control"] == IMMUTABLE
    assert info.json() == {"@type": MESH_INFO_TYPE, "segment_properties": "segment_properties"}
    props = api.get(f"{base}segment_properties/info").json()["inline"]
    assert props["ids"] == ["5", "9"]
    volumes = next(p for p in props["properties"] if p["id"] == VOLUME_PROPERTY)["values"]
    voxel_um3 = np.prod(VOXEL_NM) * 1e-9
    assert volumes == pytest.approx([int((blob(5) > 0).sum()) * voxel_um3] * 2)
    origin = state["geometry"]["origin_nm"]  # z y x of box voxel (0, 0, 0)
    for segment_id, offset in ((5, (0, 0, 0)), (9, (0, 64, 64))):
        answer = api.get(manifest_fragment(api, base, segment_id))
        assert answer.status_code == 200 and answer["Cache-Control"] == IMMUTABLE
        vertices, faces = decode_fragment(answer.content)
        assert len(faces) > 100
        centre_zyx = [origin[a] + (offset[a] + (5, 32, 32)[a]) * VOXEL_NM[a] for a in range(3)]
        np.testing.assert_allclose(vertices.mean(axis=0), centre_zyx[::-1], atol=VOXEL_NM[0])


def test_versions_never_change_and_share_unchanged_objects(
    task: Assignment, people: dict[str, Any]
) -> None:
    a1 = people["a1"]
    services.labels_save(task, a1, 0, {(0, 0, 0): blob(5), (0, 1, 1): blob(9)})
    api = client(people, "a1")
    v1 = f"{API}{task.pk}/labels/v1/meshes/"
    before = {i: api.get(f"{v1}{i}:0").content for i in (5, 9)}
    fragment_9 = api.get(manifest_fragment(api, v1, 9)).content
    services.labels_save(task, a1, 1, {(0, 1, 1): blob(9, radius=28.0)})  # object 9 grows
    v2 = f"{API}{task.pk}/labels/v2/meshes/"
    # The earlier version's files are as they were; 5 keeps its fragment URL, 9 has a new one.
    assert {i: api.get(f"{v1}{i}:0").content for i in (5, 9)} == before
    assert api.get(manifest_fragment(api, v1, 9)).content == fragment_9
    assert manifest_fragment(api, v2, 5) == manifest_fragment(api, v1, 5)
    assert manifest_fragment(api, v2, 9) != manifest_fragment(api, v1, 9)
    grown = decode_fragment(api.get(manifest_fragment(api, v2, 9)).content)[0]
    assert np.ptp(grown[:, 0]) > np.ptp(decode_fragment(fragment_9)[0][:, 0])
    props = json.loads(api.get(f"{v2}segment_properties/info").content)["inline"]
    assert props["ids"] == ["5", "9"]
    # Erasing everything: no mesh source in the sources, an empty one if asked for.
    services.labels_save(task, a1, 2, {(0, 0, 0): np.zeros(CHUNK, np.uint32),
                                       (0, 1, 1): np.zeros(CHUNK, np.uint32)})  # fmt: skip
    state = api.get(f"{API}{task.pk}/labels/").json()
    assert state["version"] == 3 and len(state["neuroglancer_sources"]) == 1
    assert api.get(f"{API}{task.pk}/labels/v3/meshes/5:0").json() == {"fragments": []}
    assert selectors.label_meshes_root(task.box.campaign_id).is_dir()
