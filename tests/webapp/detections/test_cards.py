"""Gallery cards: the render job, cards on demand, the card endpoint (permissions, ETag)."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from pipeline.gallery import CardGeometry, card_pixel_to_voxel, read_card_geometry
from webapp.datasets.models import Dataset, Layer, Visibility
from webapp.detections import cards
from webapp.detections.api.card_views import CardGeometrySerializer
from webapp.detections.models import CardBuild, Detection, JobStatus
from webapp.detections.services import detections_build_now

pytestmark = pytest.mark.django_db

Imported = tuple[Dataset, Layer, Any, Any]


def url(layer: Layer, tail: str) -> str:
    return f"/api/v1/datasets/{layer.dataset.slug}/layers/{layer.name}/detections/{tail}"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def segment_ids(layer: Layer) -> list[int]:
    return list(
        Detection.objects.filter(layer=layer)
        .order_by("segment_id")
        .values_list("segment_id", flat=True)
    )


def test_a_table_build_queues_the_cards_and_the_job_renders_every_card(
    imported: Imported,
) -> None:
    _, layer, _, _ = imported
    queued = CardBuild.objects.get(layer=layer)  # by the fixture's table build
    assert queued.status == JobStatus.QUEUED and queued.reason == "detections"
    assert queued.key == cards.card_key(layer)
    # Asking again for the same data returns the queued build.
    assert cards.cards_build_start(layer, reason="gallery", enqueue=False).id == queued.id

    build = cards.cards_build_run(queued.id)
    assert build.status == JobStatus.SUCCEEDED, (build.error, build.log)
    ids = segment_ids(layer)
    assert build.n_cards == len(ids) == 3 and build.n_failed == 0
    out = cards.card_set_dir(layer.id, build.key)
    assert sorted(int(p.stem) for p in out.glob("*.png")) == ids
    for path in out.glob("*.png"):
        assert png_size(path.read_bytes()) == (194, 194)
    # Done once for this data: a gallery opening now starts nothing new.
    assert cards.cards_build_start(layer, reason="gallery", enqueue=False).id == build.id


def test_priority_segments_are_rendered_first(
    imported: Imported, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, layer, _, _ = imported
    CardBuild.objects.filter(layer=layer).delete()
    order: list[int] = []
    real = cards.render_cards

    def spy(source: Any, detections: Any, *args: Any, **kwargs: Any) -> Any:
        order.extend(d.segment_id for d in detections)
        return real(source, detections, *args, **kwargs)

    monkeypatch.setattr(cards, "render_cards", spy)
    build = cards.cards_build_start(layer, priority=[40], enqueue=False)
    build = cards.cards_build_run(build.id)
    assert build.status == JobStatus.SUCCEEDED
    assert order[0] == 40 and sorted(order) == segment_ids(layer)


def test_card_endpoint_renders_on_demand_with_etag_and_cache_control(
    imported: Imported, api: APIClient, owner: Any
) -> None:
    _, layer, _, _ = imported
    api.force_authenticate(owner)
    response = api.get(url(layer, "2/card.png"))
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "image/png"
    assert png_size(response.content) == (194, 194)
    etag = response["ETag"]
    assert etag.startswith('"') and response["Cache-Control"] == "private, max-age=300"
    # On demand, into the card set the queued build will fill (it keeps this card).
    key = CardBuild.objects.get(layer=layer).key
    stored = cards.card_set_dir(layer.id, key) / "2.png"
    assert stored.read_bytes() == response.content

    again = api.get(url(layer, "2/card.png"), HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again["ETag"] == etag and not again.content
    other = api.get(url(layer, "1/card.png"), HTTP_IF_NONE_MATCH=etag)
    assert other.status_code == 200 and other["ETag"] != etag
    head = api.head(url(layer, "1/card.png"))
    assert head.status_code == 200 and head["ETag"] == other["ETag"]
    # An error is JSON whatever the client accepts (a browser's img asks for image/*).
    missing = api.get(url(layer, "999/card.png"), HTTP_ACCEPT="image/png")
    assert missing.status_code == 404 and missing["Content-Type"] == "application/json"
    assert "999" in missing.json()["message"]


def test_cards_of_a_private_dataset_are_not_found_by_others(
    imported: Imported, api: APIClient, other: Any
) -> None:
    dataset, layer, _, _ = imported
    assert dataset.visibility == Visibility.PRIVATE
    assert api.get(url(layer, "1/card.png")).status_code == 404  # anonymous
    assert api.get(url(layer, "cards/")).status_code == 404
    api.force_authenticate(other)
    response = api.get(url(layer, "1/card.png"))
    assert response.status_code == 404
    assert "may not see" in response.json()["message"]
    assert api.post(url(layer, "cards/")).status_code == 404
    # Nothing was rendered for them.
    assert not cards.layer_cards_dir(layer.id).exists()


def test_public_cards_are_publicly_cacheable_and_only_the_owner_rebuilds(
    imported: Imported, api: APIClient, owner: Any, other: Any
) -> None:
    dataset, layer, _, _ = imported
    Dataset.objects.filter(id=dataset.id).update(visibility=Visibility.PUBLIC)
    response = api.get(url(layer, "1/card.png"))
    assert response.status_code == 200 and response["Cache-Control"] == "public, max-age=300"
    status = api.get(url(layer, "cards/")).json()
    assert status["layer"] == "nuclei" and status["latest_build"]["state"] == "queued"
    assert api.post(url(layer, "cards/")).status_code == 401
    api.force_authenticate(other)
    assert api.post(url(layer, "cards/")).status_code == 403
    api.force_authenticate(owner)
    before = CardBuild.objects.filter(layer=layer).count()
    response = api.post(url(layer, "cards/"))
    assert response.status_code == 202
    # The queued build of the same data is returned, not a second one.
    assert CardBuild.objects.filter(layer=layer).count() == before
    done = cards.cards_build_run(response.json()["latest_build"]["id"])
    assert done.status == JobStatus.SUCCEEDED
    # A rebuild of a finished set is a new build, rendering every card again.
    again = api.post(url(layer, "cards/")).json()["latest_build"]
    assert again["id"] != done.id and again["state"] == "queued"
    assert cards.cards_build_run(again["id"]).n_cards == 3


def test_new_data_gets_a_new_card_set_and_the_old_one_is_removed(imported: Imported) -> None:
    _, layer, _, _ = imported
    first = cards.cards_build_run(CardBuild.objects.get(layer=layer).id)
    old_dir = cards.card_set_dir(layer.id, first.key)
    assert old_dir.is_dir()
    detections_build_now(layer)  # a new table build: new key, its cards queued
    latest = CardBuild.objects.filter(layer=layer).order_by("-created").first()
    assert latest is not None and latest.key != first.key and latest.status == JobStatus.QUEUED
    assert cards.current_card_key(layer) == latest.key
    assert cards.cards_build_run(latest.id).status == JobStatus.SUCCEEDED
    assert not old_dir.exists()
    assert cards.card_set_dir(layer.id, latest.key).is_dir()
    layer.delete()
    assert not cards.layer_cards_dir(first.layer_id).exists()


def test_a_layer_whose_files_are_missing_fails_with_a_message(
    make_layer: Any, api: APIClient, owner: Any
) -> None:
    layer = make_layer(rows=5)
    build = cards.cards_build_now(layer)
    assert build.status == JobStatus.FAILED and build.error
    api.force_authenticate(owner)
    response = api.get(url(layer, "1/card.png"))
    assert response.status_code == 404
    assert "cannot be drawn" in response.json()["message"]


def test_card_files_live_under_the_data_root(imported: Imported, settings: Any) -> None:
    _, layer, _, _ = imported
    assert cards.layer_cards_dir(layer.id).is_relative_to(Path(settings.DATA_ROOT) / "var")


def test_a_page_of_cards_in_one_request(imported: Imported, api: APIClient, owner: Any) -> None:
    import base64

    _, layer, _, _ = imported
    api.force_authenticate(owner)
    page = api.get(url(layer, "cards/page/"), {"segments": "40,1,999"})
    assert page.status_code == 200, page.content
    body = page.json()
    assert [c["segment_id"] for c in body["cards"]] == [40, 1, 999]
    forty, one, absent = body["cards"]
    single = api.get(url(layer, "40/card.png"))
    assert base64.b64decode(forty["png"]) == single.content and forty["error"] == ""
    assert png_size(base64.b64decode(one["png"])) == (194, 194)
    assert absent["png"] is None and "no detection 999" in absent["error"]
    assert body["key"] == CardBuild.objects.get(layer=layer).key
    etag = page["ETag"]
    assert page["Cache-Control"] == "private, max-age=300"
    again = api.get(url(layer, "cards/page/"), {"segments": "40,1,999"}, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    other = api.get(url(layer, "cards/page/"), {"segments": "1,40"}, HTTP_IF_NONE_MATCH=etag)
    assert other.status_code == 200
    for bad in ("", "1,x", "1,1", ",".join(str(i) for i in range(1, 102)), "-1"):
        response = api.get(url(layer, "cards/page/"), {"segments": bad})
        assert response.status_code == 400, bad
        assert "segments" in response.json()["message"]


def xy_pixel_showing(geometry: dict[str, Any], voxel: tuple[float, ...]) -> tuple[float, float]:
    """The centre of the xy tile's pixel that shows a voxel position (z y x)."""
    pixel_nm = geometry["field_nm"] / geometry["tile"]
    at = []
    for axis in (2, 1):  # px along x, py along y
        nm = geometry["origin_nm"][axis] + voxel[axis] * geometry["voxel_size_nm"][axis]
        offset = nm - geometry["centre_nm"][axis] + geometry["field_nm"] / 2
        at.append(math.floor(offset / pixel_nm) + 0.5)
    return at[0], at[1]


def test_a_page_of_cards_carries_their_geometry_drawn_now_or_from_the_job(
    imported: Imported, api: APIClient, owner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, layer, _, labels = imported
    api.force_authenticate(owner)
    centroids = {
        d.segment_id: (d.centroid_z, d.centroid_y, d.centroid_x)
        for d in Detection.objects.filter(layer=layer)
    }

    def check(card: dict[str, Any]) -> CardGeometry:
        geometry = card["geometry"]
        assert set(geometry) == set(CardGeometrySerializer().fields)  # as the schema says
        assert geometry["ndim"] == 3 and geometry["size"] == 194 and geometry["tile"] == 96
        assert geometry["shape"] == list(labels.shape)
        # The xy tile's pixel on the object's centroid maps back to a voxel of the object.
        centroid = centroids[card["segment_id"]]
        found = card_pixel_to_voxel(
            CardGeometry.from_json(geometry), *xy_pixel_showing(geometry, centroid)
        )
        assert found is not None
        assert all(abs(a - b) <= 1 for a, b in zip(found, centroid, strict=True)), found
        assert labels[tuple(math.floor(v + 0.5) for v in found)] == card["segment_id"]
        return CardGeometry.from_json(geometry)

    # Drawn on demand (no job has run): from the render, and the sidecar holds the same.
    drawn = api.get(url(layer, "cards/page/"), {"segments": "1,999"}).json()
    out = cards.card_set_dir(layer.id, drawn["key"])
    assert check(drawn["cards"][0]) == read_card_geometry(out, 1)
    assert drawn["cards"][1]["geometry"] is None and drawn["cards"][1]["png"] is None
    # From the job's card set: read from the sidecars, nothing drawn now.
    build = cards.cards_build_run(CardBuild.objects.get(layer=layer).id)
    assert build.status == JobStatus.SUCCEEDED
    monkeypatch.setattr(cards, "render_card", lambda *a, **kw: pytest.fail("drawn again"))
    cached = api.get(url(layer, "cards/page/"), {"segments": "2,1"}).json()
    for card in cached["cards"]:
        assert check(card) == read_card_geometry(out, card["segment_id"])
    # A card whose sidecar is unreadable is still served, without a geometry.
    (out / "2.json").write_text("{")
    again = api.get(url(layer, "cards/page/"), {"segments": "2"}).json()["cards"][0]
    assert again["png"] and again["geometry"] is None


def test_a_page_of_cards_of_an_unseen_dataset_is_not_found(
    imported: Imported, api: APIClient, other: Any
) -> None:
    _, layer, _, _ = imported
    api.force_authenticate(other)
    assert api.get(url(layer, "cards/page/"), {"segments": "1"}).status_code == 404
    assert not cards.layer_cards_dir(layer.id).exists()
