"""Painted labels of annotation tasks: versioned copy-on-write saves, restore, conflicts, the API
(every role, every refusal) and the OME-Zarr files each version is served as.

The campaign's boxes are 10 x 128 x 128 voxels of 400 x 200 x 200 nm, so a box holds 1 x 2 x 2
chunks of 10 x 64 x 64; the image's origin is moved off zero to check the physical position.
"""

from __future__ import annotations

import gzip
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from annotation_testdata import UserFactory, campaign_with, image_layer, painted_campaign, point_op
from django.core.files.uploadedfile import SimpleUploadedFile
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Multiscales, Reader
from rest_framework.test import APIClient

from pipeline.label_store import labels_read
from webapp.annotation import selectors, services
from webapp.annotation.models import (
    AnnotationCampaign,
    Assignment,
    AuditAction,
    AuditEntry,
    Revision,
    RevisionKind,
)
from webapp.core.errors import Conflict, InvalidRequest, NotAllowed

pytestmark = pytest.mark.django_db

SHAPE = (20, 256, 256)
BOX_UM = [4.0, 25.6, 25.6]
ORIGIN_UM = [0.8, 1.6, 2.4]
CHUNK = (10, 64, 64)
API = "/api/v1/annotation/assignments/"


@pytest.fixture
def painted(people: dict[str, Any]) -> AnnotationCampaign:
    return painted_campaign(people, SHAPE, BOX_UM, ORIGIN_UM)


@pytest.fixture
def task(painted: AnnotationCampaign, people: dict[str, Any]) -> Assignment:
    row = services.next_task(painted, people["a1"])
    assert row is not None
    return row


def chunk(value: int, seed: int = 0) -> np.ndarray:
    """A chunk holding a sphere-ish object ``value`` and a few random ids."""
    rng = np.random.default_rng(seed)
    out = np.zeros(CHUNK, np.uint32)
    z, y, x = np.ogrid[: CHUNK[0], : CHUNK[1], : CHUNK[2]]
    out[((z - 5) / 4) ** 2 + ((y - 30) / 20) ** 2 + ((x - 30) / 20) ** 2 <= 1] = value
    out[rng.integers(0, 10, 5), rng.integers(0, 64, 5), rng.integers(0, 64, 5)] = 2**32 - 1
    return out


def blob_count(campaign: AnnotationCampaign) -> int:
    root = selectors.label_blobs_root(campaign.pk)
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def whole(row: Assignment, version: int | None = None) -> np.ndarray:
    row.refresh_from_db()
    labels = selectors.labels_at(row, version)
    return labels_read(labels.blobs, labels.geometry, labels.chunks)


# --- services -----------------------------------------------------------------------------------


def test_saves_are_versions_sharing_unchanged_chunks(
    task: Assignment, people: dict[str, Any]
) -> None:
    a1, campaign = people["a1"], task.box.campaign
    first = services.labels_save(task, a1, 0, {(0, 0, 0): chunk(7)})
    assert (first.version, first.chunks_changed, first.chunks) == (1, 1, 1)
    assert blob_count(campaign) == 1
    second = services.labels_save(task, a1, 1, {(0, 1, 1): chunk(9, seed=1)})
    assert (second.version, second.chunks_changed, second.chunks) == (2, 1, 2)
    assert blob_count(campaign) == 2  # copy-on-write: one chunk saved, one blob added
    # Version 1 is unchanged; version 2 holds both chunks at their voxels.
    v1, v2 = whole(task, 1), whole(task, 2)
    assert (v1[:, :64, :64] == chunk(7)).all() and not v1[:, 64:, 64:].any()
    assert (v2[:, :64, :64] == chunk(7)).all() and (v2[:, 64:, 64:] == chunk(9, seed=1)).all()
    assert not whole(task, 0).any()
    # Sending a chunk as it is changes nothing: no version.
    same = services.labels_save(task, a1, 2, {(0, 0, 0): chunk(7)})
    assert (same.version, same.chunks_changed, same.chunks) == (2, 0, 2)
    # An all-zero chunk is erased: absent from the map, no blob.
    erased = services.labels_save(task, a1, 2, {(0, 0, 0): np.zeros(CHUNK, np.uint32)})
    assert (erased.version, erased.chunks_changed, erased.chunks) == (3, 1, 1)
    assert blob_count(campaign) == 2
    # Points and labels share one version sequence; a points save keeps the labels.
    points = services.save(task, a1, 3, [point_op("p1", 2.0, 3.0, 4.0)])
    assert points.version == 4
    assert (whole(task, 4) == whole(task, 3)).all()
    revisions = list(Revision.objects.filter(assignment=task).order_by("number"))
    assert [r.labels is not None for r in revisions] == [True, True, True, False]
    assert revisions[1].summary == {"chunks_changed": 1, "chunks": 2}
    assert revisions[1].labels["changed"] == ["0.1.1"]
    audit = AuditEntry.objects.filter(action=AuditAction.LABELS_SAVE, assignment=task)
    assert sorted(e.detail["version"] for e in audit) == [1, 2, 3]
    task.refresh_from_db()
    assert task.version == 4 and task.last_activity is not None


def test_identical_chunks_of_two_annotators_share_one_blob(
    painted: AnnotationCampaign, task: Assignment, people: dict[str, Any]
) -> None:
    other = services.next_task(painted, people["a2"])
    assert other is not None and other.pk != task.pk
    services.labels_save(task, people["a1"], 0, {(0, 0, 0): chunk(5)})
    services.labels_save(other, people["a2"], 0, {(0, 1, 0): chunk(5)})
    assert blob_count(painted) == 1


def test_restore_brings_points_and_labels_back_together(
    task: Assignment, people: dict[str, Any]
) -> None:
    a1 = people["a1"]
    services.save(task, a1, 0, [point_op("p1", 1.0, 2.0, 3.0)])  # 1
    services.labels_save(task, a1, 1, {(0, 0, 0): chunk(3)})  # 2
    services.save(task, a1, 2, [point_op("p2", 4.0, 5.0, 6.0)])  # 3
    services.labels_save(task, a1, 3, {(0, 0, 0): chunk(4), (0, 0, 1): chunk(6)})  # 4
    at_2 = whole(task, 2)
    result = services.restore(task, a1, 2, 4)
    assert result.version == 5 and result.count == 1
    assert [a.uid for a in services.annotations_at(task.pk, None)] == ["p1"]
    assert (whole(task) == at_2).all()
    revision = Revision.objects.get(assignment=task, number=5)
    assert revision.kind == RevisionKind.RESTORE and revision.restored_from == 2
    assert revision.labels["restored_from"] == 2
    assert sorted(revision.labels["changed"]) == ["0.0.0", "0.0.1"]
    assert revision.summary["chunks"] == 1
    # Restoring version 3 (same labels as now, other points) records no labels change.
    services.restore(task, a1, 3, 5)
    assert Revision.objects.get(assignment=task, number=6).labels is None
    assert (whole(task) == at_2).all()
    # Version 0: no points, no labels; the older versions still read as they were.
    services.restore(task, a1, 0, 6)
    assert not whole(task).any() and not list(services.annotations_at(task.pk, None))
    assert (whole(task, 4)[:, :64, 64:] == chunk(6)).all()


def test_a_stale_save_is_refused_with_the_current_version_and_writes_nothing(
    task: Assignment, people: dict[str, Any]
) -> None:
    a1 = people["a1"]
    services.labels_save(task, a1, 0, {(0, 0, 0): chunk(1)})
    with pytest.raises(Conflict) as caught:
        services.labels_save(task, a1, 0, {(0, 1, 1): chunk(2)})
    assert caught.value.extra == {"current_version": 1}
    assert blob_count(task.box.campaign) == 1


def test_bad_chunks_save_nothing(task: Assignment, people: dict[str, Any]) -> None:
    a1 = people["a1"]
    bad_cases: list[tuple[dict[Any, Any], str]] = [
        ({(0, 0, 0): chunk(1), (0, 2, 0): chunk(2)}, "outside the box"),
        ({(0, 0, 0): chunk(1), (0, 1, 0): chunk(2)[:, :32]}, "must have shape"),
        ({(0, 0, 0): chunk(1), (0, 1, 0): chunk(2).astype(np.float32)}, "unsigned 32-bit"),
        ({(0, 0, 0): chunk(1), (0, 1, 0): chunk(2).astype(np.int64) - 5}, "negative"),
        ({(0, 0, 0): chunk(1).astype(np.int64) + 2**32}, "32 bits"),
    ]
    for chunks, message in bad_cases:
        with pytest.raises(Exception, match=message):
            services.labels_save(task, a1, 0, chunks)
    with pytest.raises(InvalidRequest, match="at least one chunk"):
        services.labels_save(task, a1, 0, {})
    with pytest.raises(NotAllowed):
        services.labels_save(task, people["a2"], 0, {(0, 0, 0): chunk(1)})
    task.refresh_from_db()
    assert task.version == 0 and blob_count(task.box.campaign) == 0
    assert not Revision.objects.filter(assignment=task).exists()


def test_only_painted_campaigns_take_labels(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    row = services.next_task(campaign, people["a1"])
    assert row is not None
    with pytest.raises(InvalidRequest, match="not painted"):
        services.labels_save(row, people["a1"], 0, {(0, 0, 0): np.ones((10, 32, 32), np.uint32)})


@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_to_different_chunks_lose_nothing() -> None:
    """Two tabs save different chunks from one base at once: one wins, the other gets 409 and
    saves again on top; both chunks are in the final version (run on PostgreSQL: row locks)."""
    owner, a1 = UserFactory(username="owner"), UserFactory(username="a1")
    layer = image_layer(owner, shape=SHAPE)
    campaign = campaign_with(layer, owner, annotators=(a1,), box_size_um=BOX_UM)
    campaign.painted = True
    campaign.save()
    services.boxes_tile(campaign, owner)
    row = services.next_task(campaign, a1)
    assert row is not None
    gate = threading.Barrier(2)
    outcomes: dict[str, Any] = {}

    def tab(name: str, index: tuple[int, int, int], value: int) -> None:
        from django.db import connection

        try:
            mine = Assignment.objects.select_related("box__campaign").get(pk=row.pk)
            gate.wait(timeout=30)
            try:
                outcomes[name] = services.labels_save(mine, a1, 0, {index: chunk(value)})
            except Conflict as exc:
                outcomes[name] = exc
                current = int(str(exc.extra["current_version"]))
                outcomes[f"{name} again"] = services.labels_save(
                    mine, a1, current, {index: chunk(value)}
                )
        except BaseException as exc:  # reported below
            outcomes[name] = exc
        finally:
            connection.close()

    threads = [
        threading.Thread(target=tab, args=("left", (0, 0, 0), 11)),
        threading.Thread(target=tab, args=("right", (0, 1, 1), 22)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    kinds = sorted(type(outcomes[n]).__name__ for n in ("left", "right"))
    assert kinds == ["Conflict", "LabelsSaveResult"], outcomes
    loser = "left" if isinstance(outcomes["left"], Conflict) else "right"
    assert outcomes[loser].extra == {"current_version": 1}
    assert outcomes[f"{loser} again"].version == 2
    row.refresh_from_db()
    final = whole(row)
    assert row.version == 2
    assert (final[:, :64, :64] == chunk(11)).all() and (final[:, 64:, 64:] == chunk(22)).all()
    assert list(
        Revision.objects.filter(assignment=row).order_by("number").values_list("based_on")
    ) == [(0,), (1,)]


# --- API ----------------------------------------------------------------------------------------


def part(array: np.ndarray, gz: bool = False, content_type: str = "") -> SimpleUploadedFile:
    data = np.ascontiguousarray(array).tobytes()  # as given: a wrong dtype is a wrong size
    if gz:
        data = gzip.compress(data)
    kind = content_type or ("application/gzip" if gz else "application/octet-stream")
    return SimpleUploadedFile("chunk", data, content_type=kind)


def client(people: dict[str, Any], name: str | None) -> APIClient:
    api = APIClient()
    if name is not None:
        api.force_authenticate(people[name])
        api.force_login(people[name])
    return api


def test_api_saves_raw_and_gzip_chunks_and_reports_the_labels(
    task: Assignment, people: dict[str, Any]
) -> None:
    api = client(people, "a1")
    url = f"{API}{task.pk}/labels/"
    answer = api.post(
        url,
        {"base_version": "0", "0.0.0": part(chunk(1)), "0.1.1": part(chunk(2), gz=True)},
        format="multipart",
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert {k: body[k] for k in ("version", "chunks_changed", "chunks")} == {
        "version": 1,
        "chunks_changed": 2,
        "chunks": 2,
    }
    # encoding=gzip applies to every part, whatever its content type.
    answer = api.post(
        url,
        {"base_version": "1", "encoding": "gzip", "0.1.0": part(chunk(3), gz=True,
                                                                  content_type="x/y")},
        format="multipart",
    )  # fmt: skip
    assert answer.status_code == 200, answer.content
    assert (whole(task)[:, 64:, :64] == chunk(3)).all()
    state = api.get(url).json()
    start = list(task.box.start)
    assert state["version"] == state["current_version"] == 2 and state["chunks"] == 3
    assert state["geometry"] == {
        "shape": [10, 128, 128],
        "chunk": list(CHUNK),
        "start": start,
        "voxel_size_nm": [400.0, 200.0, 200.0],
        "origin_nm": [
            o * 1000 + s * v for o, s, v in zip(ORIGIN_UM, start, (400, 200, 200), strict=True)
        ],
    }
    assert state["source"].endswith(f"{API}{task.pk}/labels/v2/")
    assert state["neuroglancer_source"] == f"zarr3://{state['source']}"
    older = api.get(url, {"version": 1}).json()
    assert older["version"] == 1 and older["chunks"] == 2
    assert api.get(url, {"version": 3}).status_code == 400


def test_api_refuses_bad_saves_with_clear_4xx_and_saves_nothing(
    task: Assignment, people: dict[str, Any], settings: Any
) -> None:
    api = client(people, "a1")
    url = f"{API}{task.pk}/labels/"
    good = chunk(1)
    bomb = gzip.compress(bytes(8 * 1024**2))
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"base_version": "0", "0.2.0": part(good)}, 400, "outside the box"),
        ({"base_version": "0", "0.0": part(good)}, 400, "not a chunk key"),
        ({"base_version": "0", "0.0.0": part(good[:, :32])}, 400, "too few"),
        ({"base_version": "0", "0.0.0": part(good.astype(np.uint16))}, 400, "too few"),
        ({"base_version": "0", "0.0.0": part(np.concatenate([good, good]))}, 413, "too many"),
        ({"base_version": "0", "0.0.0": SimpleUploadedFile("c", bomb, "application/gzip")},
         413, "inflates"),
        ({"base_version": "0", "0.0.0": SimpleUploadedFile("c", b"nope", "application/gzip")},
         400, "not valid gzip"),
        ({"base_version": "0", "0.0.0": part(good), "0.1.0": part(good[:5])}, 400, "too few"),
        ({"base_version": "0"}, 400, "at least one chunk"),
        ({"base_version": "x", "0.0.0": part(good)}, 400, "base_version"),
        ({"0.0.0": part(good)}, 400, "base_version"),
        ({"base_version": "0", "0.0.0": "123"}, 400, "Unknown form field"),
        ({"base_version": "0", "encoding": "zip", "0.0.0": part(good)}, 400, "raw or gzip"),
        ({"base_version": "0", **{f"0.0.{i}": part(good[:1]) for i in range(101)}},
         413, "chunks per save"),
    ]  # fmt: skip
    for form, status, message in cases:
        answer = api.post(url, form, format="multipart")
        assert answer.status_code == status, (sorted(form)[:3], answer.content)
        assert message in answer.json()["message"], answer.json()
    assert api.post(url, {"base_version": 0}, format="json").status_code == 415
    settings.ANNOTATION_LABELS_MAX_REQUEST_BYTES = 100_000  # below one raw chunk
    answer = api.post(url, {"base_version": "0", "0.0.0": part(good)}, format="multipart")
    assert answer.status_code == 413 and "at most 100,000 bytes" in answer.json()["message"]
    task.refresh_from_db()
    assert task.version == 0 and blob_count(task.box.campaign) == 0
    # A stale base: 409 naming the current version.
    del settings.ANNOTATION_LABELS_MAX_REQUEST_BYTES
    saved = api.post(url, {"base_version": "0", "0.0.0": part(good)}, format="multipart")
    assert saved.status_code == 200
    stale = api.post(url, {"base_version": "0", "0.1.0": part(good)}, format="multipart")
    assert stale.status_code == 409 and stale.json()["current_version"] == 1


def test_api_refuses_labels_in_a_campaign_that_does_not_paint(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    row = services.next_task(campaign, people["a1"])
    assert row is not None
    answer = client(people, "a1").post(
        f"{API}{row.pk}/labels/",
        {"base_version": "0", "0.0.0": part(np.ones((10, 32, 32)))},
        format="multipart",
    )
    assert answer.status_code == 400 and "not painted" in answer.json()["message"]


def test_campaigns_are_made_and_changed_painted_through_the_api(
    painted: AnnotationCampaign, people: dict[str, Any]
) -> None:
    api = client(people, "owner")
    created = api.post(
        "/api/v1/annotation/campaigns/",
        {
            "dataset": painted.dataset.slug,
            "image_layer": painted.image_layer.name,
            "name": "Painted nuclei",
            "painted": True,
        },
        format="json",
    )
    assert created.status_code == 201 and created.json()["painted"] is True
    campaign_url = f"/api/v1/annotation/campaigns/{created.json()['id']}/"
    changed = api.patch(campaign_url, {"painted": False}, format="json")
    assert changed.status_code == 200 and changed.json()["painted"] is False
    assert AnnotationCampaign.objects.get(pk=created.json()["id"]).painted is False


# Statuses for: the annotator, the campaign's manager, its reviewer, another annotator,
# an outsider, anonymous.
WHO = ("a1", "owner", "rv", "a3", "outsider", None)


def test_who_may_read_and_write_labels(task: Assignment, people: dict[str, Any]) -> None:
    services.labels_save(task, people["a1"], 0, {(0, 0, 0): chunk(1)})
    url = f"{API}{task.pk}/labels/"
    reads = [client(people, who).get(url).status_code for who in WHO]
    assert reads == [200, 200, 200, 404, 404, 401]
    files = [client(people, who).get(f"{url}v1/s0/0/0/0").status_code for who in WHO]
    assert files == [302, 302, 302, 404, 404, 404]
    blob = client(people, "a1").get(f"{url}v1/s0/0/0/0")["Location"]
    blobs = [client(people, who).get(blob).status_code for who in WHO]
    assert blobs == [200, 200, 200, 404, 404, 404]
    writes = [
        client(people, who)
        .post(url, {"base_version": "1", "0.1.1": part(chunk(2))}, format="multipart")
        .status_code
        for who in WHO
    ]
    assert writes == [200, 403, 403, 404, 404, 401]
    # A submitted task is no longer editable: 409.
    services.submit(task, people["a1"], 2)
    answer = client(people, "a1").post(
        url, {"base_version": "2", "0.1.1": part(chunk(3))}, format="multipart"
    )
    assert answer.status_code == 409 and answer.json()["current_version"] == 2


# --- OME-Zarr serving ---------------------------------------------------------------------------


def fetch_store(api: APIClient, base: str, paths: list[str], into: Path) -> list[str]:
    """Fetch store files as a reader would, into a directory; the paths that were 404."""
    absent = []
    for path in paths:
        answer = api.get(base + path, follow=True)  # a chunk file redirects to its blob
        if answer.status_code == 404:
            absent.append(path)
            continue
        assert answer.status_code == 200, (path, answer.status_code)
        assert answer["Cache-Control"] == "private, max-age=31536000, immutable"
        target = into / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(answer.content)
    return absent


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_each_version_is_served_as_ome_zarr_at_its_physical_position(
    task: Assignment, people: dict[str, Any], tmp_path: Path, zarr_format: int
) -> None:
    a1 = people["a1"]
    services.labels_save(task, a1, 0, {(0, 0, 0): chunk(1), (0, 1, 1): chunk(2, seed=3)})
    services.labels_save(task, a1, 1, {(0, 0, 0): np.zeros(CHUNK, np.uint32)})
    services.labels_save(task, a1, 2, {(0, 1, 0): chunk(3, seed=4)})
    api = client(people, "rv")  # a reviewer reads the annotator's versions
    geometry = selectors.labels_at(task).geometry
    documents = (
        [".zgroup", ".zattrs", "s0/.zarray"] if zarr_format == 2 else ["zarr.json", "s0/zarr.json"]
    )
    chunk_path = "s0/{}/{}/{}" if zarr_format == 2 else "s0/c/{}/{}/{}"
    chunk_paths = [chunk_path.format(*i) for i in geometry.chunk_indices()]
    for version in (1, 2, 3):
        store = tmp_path / f"v{version}.ome.zarr"
        base = f"{API}{task.pk}/labels/v{version}/"
        absent = fetch_store(api, base, documents + chunk_paths, store)
        expected = whole(task, version)
        present = {chunk_path.format(*i) for i in selectors.labels_at(task, version).chunks}
        assert set(chunk_paths) - set(absent) == present  # all-zero chunks are 404s
        array = zarr.open_group(str(store), mode="r", zarr_format=zarr_format)["s0"]
        assert array.dtype == np.uint32 and (np.asarray(array[:]) == expected).all()
        nodes = [n for n in Reader(parse_url(str(store)))() if n.load(Multiscales)]
        assert len(nodes) == 1 and nodes[0].load(Label) is not None
        assert (np.asarray(nodes[0].data[0]) == expected).all()
        transforms = nodes[0].metadata["coordinateTransformations"][0]
        start = task.box.start
        assert {t["type"]: t[t["type"]] for t in transforms} == {
            "scale": [400.0, 200.0, 200.0],
            "translation": [
                o * 1000 + s * v for o, s, v in zip(ORIGIN_UM, start, (400, 200, 200), strict=True)
            ],
        }
    assert (whole(task, 1)[:, :64, :64] == chunk(1)).all()  # v1 kept what v2 erased
    for missing in ("v4/.zattrs", "v1/s0/0/2/0", "v1/s0/c/0/0", "v1/nothing", "v1/s0/x/0/0"):
        assert api.get(f"{API}{task.pk}/labels/{missing}").status_code == 404
    assert api.post(f"{API}{task.pk}/labels/v1/.zattrs").status_code == 405
    head = api.head(api.head(f"{API}{task.pk}/labels/v1/s0/0/1/1")["Location"])
    assert head.status_code == 200 and int(head["Content-Length"]) > 0 and not head.content
