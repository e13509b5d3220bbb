"""Results flow back into the data: verdict tags in the segment properties (coalescing job),
verdict columns in the detections exports, and a curated layer published by a manager."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from curation_testdata import PASSWORD, PLAN, give_verdicts, make_campaign
from django.db import transaction
from rest_framework.test import APIClient

from pipeline.ome_zarr_io import list_labels, open_multiscale
from pipeline.precomputed import VERDICT_PROPERTY, read_segment_properties, stored_segment_ids
from webapp.core.jobs.lifecycle import job_cancel
from webapp.core.jobs.models import JobStatus
from webapp.curation import selectors, services
from webapp.curation.models import CurationJob, CurationKind
from webapp.curation.runners import PublishRunner, publish_run, verdict_properties_run
from webapp.datasets.data_urls import layer_source_url
from webapp.datasets.models import Layer, LayerKind
from webapp.proofreading import services as proofreading
from webapp.proofreading.models import CampaignItem, ProofreadingCampaign

ACCEPTED = {"tp", "tp_distortion"}


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _mesh_dir(layer: Layer) -> Any:
    mesh = Layer.objects.get(source_layer=layer, kind=LayerKind.MESH)
    return layer.dataset.root / mesh.path, mesh


@contextmanager
def committed(capture: Any) -> Iterator[list[Any]]:
    """Run the block's on-commit callbacks as a commit would, and forget them as a commit does
    (the test's own transaction never commits, so they would stay pending)."""
    from django.db import connection

    start = len(connection.run_on_commit)
    with capture(execute=True) as callbacks:
        yield callbacks
    del connection.run_on_commit[start:]


def _decided(given: dict[int, str]) -> dict[int, str]:
    return {s: v for s, v in given.items() if v != "uncertain"}


# --- verdicts into segment properties -------------------------------------------------------


@pytest.mark.django_db
def test_a_burst_of_verdicts_queues_one_properties_job(
    campaign: ProofreadingCampaign,
    people: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from webapp.curation import tasks

    sent: list[Any] = []
    monkeypatch.setattr(
        tasks.verdict_properties_task, "apply_async", lambda *a, **k: sent.append((a, k))
    )
    with committed(django_capture_on_commit_callbacks) as callbacks, transaction.atomic():
        give_verdicts(campaign, people["rev"], PLAN)
    scheduled = [c for c in callbacks if getattr(c, "curation_marker", None)]
    assert len(scheduled) == 1  # one per transaction and layer, not one per verdict
    assert len(sent) == 1
    jobs = CurationJob.objects.filter(kind=CurationKind.VERDICT_PROPERTIES)
    assert jobs.count() == 1 and jobs.get().status == JobStatus.QUEUED
    # More verdicts while that job is still queued: coalesced into it.
    item = CampaignItem.objects.filter(campaign=campaign, status="pending").first()
    assert item is not None
    with committed(django_capture_on_commit_callbacks):
        proofreading.verdict_create(campaign, people["rev"], item.id, "fp")
    assert jobs.count() == 1
    # Once it ran, the next change queues a new one.
    assert verdict_properties_run(jobs.get().id).status == JobStatus.SUCCEEDED
    item = CampaignItem.objects.filter(campaign=campaign, status="pending").first()
    assert item is not None
    with committed(django_capture_on_commit_callbacks):
        proofreading.verdict_create(campaign, people["rev"], item.id, "tp")
    assert jobs.count() == 2


@pytest.mark.django_db
def test_properties_job_writes_verdict_tags_and_keeps_the_other_properties(
    layer: Layer, campaign: ProofreadingCampaign, given: dict[int, str]
) -> None:
    mesh_dir, mesh = _mesh_dir(layer)
    before = read_segment_properties(mesh_dir)
    assert before is not None and before.tag_property(VERDICT_PROPERTY) is None
    url_before = layer_source_url(mesh, "http://testserver/")
    job = services.verdict_properties_schedule(layer.id)
    assert job is not None
    assert verdict_properties_run(job.id).status == JobStatus.SUCCEEDED
    after = read_segment_properties(mesh_dir)
    assert after is not None
    assert after.ids == before.ids and after.labels == before.labels
    assert [(p.id, list(p.values)) for p in after.numbers] == [
        (p.id, list(p.values)) for p in before.numbers
    ]
    tags = after.tag_property(VERDICT_PROPERTY)
    assert tags is not None and list(tags.tags) == ["tp", "tp_distortion", "fp", "uncertain"]
    shown = {sid: tags.tags_of(i) for i, sid in enumerate(after.ids)}
    decided = _decided(given)
    for sid, tag_names in shown.items():
        assert tag_names == ([decided[sid]] if sid in decided else []), sid
    # The viewer's source URL changed with the file, so Neuroglancer fetches it anew.
    url_after = layer_source_url(mesh, "http://testserver/")
    assert url_after.startswith(url_before.split("?")[0] + "?v=") and url_after != url_before


@pytest.mark.django_db
def test_the_latest_campaign_with_decisions_gives_the_verdicts(
    layer: Layer, campaign: ProofreadingCampaign, given: dict[int, str], people: dict[str, Any]
) -> None:
    assert selectors.verdict_campaign_of(layer) == campaign
    newer = make_campaign(layer, people, name="Second look")
    assert selectors.verdict_campaign_of(layer) == campaign  # nothing decided there yet
    give_verdicts(newer, people["rev"], ["fp"])
    assert selectors.verdict_campaign_of(layer) == newer
    verdict_properties_run(services.verdict_properties_schedule(layer.id).id)  # type: ignore[union-attr]
    props = read_segment_properties(_mesh_dir(layer)[0])
    assert props is not None
    tags = props.tag_property(VERDICT_PROPERTY)
    assert tags is not None
    assert sum(1 for i in range(len(props.ids)) if tags.tags_of(i)) == 1
    # Deleting the campaigns removes the property (through the job, on commit).
    ProofreadingCampaign.objects.filter(layer=layer).delete()
    verdict_properties_run(services.verdict_properties_schedule(layer.id).id)  # type: ignore[union-attr]
    props = read_segment_properties(_mesh_dir(layer)[0])
    assert props is not None and props.tag_property(VERDICT_PROPERTY) is None


# --- verdict columns in the exports ---------------------------------------------------------


def _csv(response: Any) -> list[dict[str, str]]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.django_db
def test_layer_export_has_verdict_columns_agreeing_with_the_campaign_export(
    layer: Layer, campaign: ProofreadingCampaign, given: dict[int, str], people: dict[str, Any]
) -> None:
    client = _client(people["owner"])
    base = f"/api/v1/datasets/{layer.dataset.slug}/layers/{layer.name}/detections/"
    rows = _csv(client.get(f"{base}export.csv"))
    assert rows and {"verdict", "verdict_campaign"} <= set(rows[0])
    by_segment = {int(r["segment_id"]): r for r in rows}
    decided = _decided(given)
    for sid, row in by_segment.items():
        assert row["verdict"] == decided.get(sid, ""), sid
        assert row["verdict_campaign"] == (str(campaign.id) if sid in decided else "")
    own = _csv(client.get(f"/api/v1/proofreading/campaigns/{campaign.id}/export.csv"))
    assert {int(r["segment_id"]): r["verdict"] for r in own} == {
        sid: r["verdict"] for sid, r in by_segment.items()
    }
    parquet = client.get(f"{base}export.parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(b"".join(parquet.streaming_content)))
    assert table.schema.field("verdict_campaign").type == pa.int64()
    columns = table.to_pydict()
    assert dict(zip(columns["segment_id"], columns["verdict"], strict=True)) == {
        sid: decided.get(sid) for sid in by_segment
    }
    assert {c for c in columns["verdict_campaign"] if c is not None} == {campaign.id}


@pytest.mark.django_db
def test_layer_export_without_decisions_has_no_verdict_columns(
    layer: Layer, campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    base = f"/api/v1/datasets/{layer.dataset.slug}/layers/{layer.name}/detections/"
    rows = _csv(_client(people["owner"]).get(f"{base}export.csv"))
    assert rows and "verdict" not in rows[0]


@pytest.mark.django_db
def test_detections_list_and_export_filter_by_verdict(
    layer: Layer, campaign: ProofreadingCampaign, given: dict[int, str], people: dict[str, Any]
) -> None:
    client = _client(people["owner"])
    base = f"/api/v1/datasets/{layer.dataset.slug}/layers/{layer.name}/detections/"
    decided = _decided(given)
    for verdict in ("tp", "fp", "tp_distortion"):
        want = sorted(sid for sid, v in decided.items() if v == verdict)
        assert want, verdict
        listed = client.get(f"{base}?verdict={verdict}&limit=100")
        assert listed.status_code == 200, listed.content
        assert sorted(r["segment_id"] for r in listed.json()["results"]) == want
        assert listed.json()["count"] == len(want)
        rows = _csv(client.get(f"{base}export.csv?verdict={verdict}"))
        assert sorted(int(r["segment_id"]) for r in rows) == want
        assert {r["verdict"] for r in rows} == {verdict}
    # Combined with a column range: the intersection.
    some = client.get(f"{base}?verdict=tp&volume_min=1e12").json()
    assert some["count"] == 0 and some["results"] == []
    unknown = client.get(f"{base}?verdict=maybe")
    assert unknown.status_code == 400
    assert "maybe" in unknown.json()["message"] and "fp" in unknown.json()["message"]


@pytest.mark.django_db
def test_verdict_filter_on_a_layer_without_decisions_is_a_400(
    layer: Layer, campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    base = f"/api/v1/datasets/{layer.dataset.slug}/layers/{layer.name}/detections/"
    answer = _client(people["owner"]).get(f"{base}?verdict=fp")
    assert answer.status_code == 400
    assert "no verdict" in answer.json()["message"]


# --- publish a curated layer ----------------------------------------------------------------


def _publish_url(campaign: ProofreadingCampaign) -> str:
    return f"/api/v1/curation/campaigns/{campaign.id}/publish/"


@pytest.mark.django_db
def test_publish_permissions_and_bad_input(
    campaign: ProofreadingCampaign, given: dict[int, str], people: dict[str, Any]
) -> None:
    url = _publish_url(campaign)
    assert APIClient().post(url, {}, format="json").status_code in (401, 403)
    assert _client(people["outsider"]).post(url, {}, format="json").status_code == 404
    assert _client(people["outsider"]).get(url).status_code == 404
    refused = _client(people["rev"]).post(url, {}, format="json")
    assert refused.status_code == 403, refused.content
    assert "managers" in refused.json()["message"]
    assert _client(people["rev"]).get(url).status_code == 200  # members see the list
    manager = _client(people["owner"])
    bad = manager.post(url, {"verdicts": ["nope"]}, format="json")
    assert bad.status_code == 400 and "nope" in bad.json()["message"]
    assert manager.post(url, {"verdicts": []}, format="json").status_code == 400
    assert manager.post(url, {"name": "../x"}, format="json").status_code == 400
    assert manager.post(url, {"name": "nuclei"}, format="json").status_code == 409
    assert manager.post(url, {"verdicts": "tp"}, format="json").status_code == 400
    assert CurationJob.objects.filter(kind=CurationKind.PUBLISH).count() == 0


@pytest.mark.django_db
def test_publish_nothing_accepted_yet_is_refused(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    answer = _client(people["owner"]).post(_publish_url(campaign), {}, format="json")
    assert answer.status_code == 400 and "No detection" in answer.json()["message"]


@pytest.mark.django_db
def test_manager_publishes_a_layer_of_only_the_accepted_objects(
    layer: Layer, campaign: ProofreadingCampaign, given: dict[int, str], people: dict[str, Any]
) -> None:
    manager = _client(people["owner"])
    answer = manager.post(_publish_url(campaign), {}, format="json")
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert body["state"] == "queued" and body["name"] == "nuclei-curated"
    assert body["verdicts"] == ["tp", "tp_distortion"]
    again = manager.post(_publish_url(campaign), {}, format="json")
    assert again.status_code == 409  # one publication at a time

    stages: list[tuple[str, int, int]] = []
    job = PublishRunner(body["id"], progress=lambda s, d, t: stages.append((s, d, t))).run()
    assert job.status == JobStatus.SUCCEEDED, (job.error, job.log)
    assert {s for s, _, _ in stages} >= {"choosing objects", "labels", "meshes", "publishing"}
    status = manager.get(f"/api/v1/curation/jobs/{job.id}/").json()
    assert status["state"] == "succeeded" and status["progress"] == 1.0
    assert status["result_layer"] == "nuclei-curated" and status["kept"] == 3
    assert status["viewer_url"] == f"/datasets/{layer.dataset.slug}/?show=nuclei-curated"
    assert _client(people["rev"]).get(f"/api/v1/curation/jobs/{job.id}/").status_code == 404

    accepted = {s for s, v in given.items() if v in ACCEPTED}
    curated = Layer.objects.get(dataset=layer.dataset, name="nuclei-curated")
    assert curated.kind == LayerKind.SEGMENTATION and curated.path.endswith("labels/nuclei-curated")
    root = layer.dataset.root
    levels = open_multiscale(root / curated.path).levels
    assert len(levels) == layer.levels
    original = np.asarray(open_multiscale(root / layer.path).levels[0])
    np.testing.assert_array_equal(
        np.asarray(levels[0]), np.where(np.isin(original, list(accepted)), original, 0)
    )
    assert "nuclei-curated" in list_labels(root / "image.ome.zarr")
    mesh = Layer.objects.get(source_layer=curated, kind=LayerKind.MESH)
    assert sorted(stored_segment_ids(root / mesh.path)) == sorted(accepted)
    props = read_segment_properties(root / mesh.path)
    assert props is not None and sorted(props.ids) == sorted(accepted)
    tags = props.tag_property(VERDICT_PROPERTY)
    assert tags is not None
    assert {sid: tags.tags_of(i) for i, sid in enumerate(props.ids)} == {
        s: [given[s]] for s in accepted
    }
    listing = manager.get(_publish_url(campaign)).json()
    assert [j["id"] for j in listing] == [job.id]


@pytest.mark.django_db
def test_a_cancelled_publication_leaves_no_layer_and_no_files(
    layer: Layer, campaign: ProofreadingCampaign, given: dict[int, str], people: dict[str, Any]
) -> None:
    job = services.publish_start(campaign, people["owner"], enqueue=False)

    def cancel_at_labels(stage: str, done: int, total: int) -> None:
        if stage == "labels" and done == 1:
            job_cancel(CurationJob.objects.get(id=job.id))

    ended = PublishRunner(job.id, progress=cancel_at_labels).run()
    assert ended.status == JobStatus.CANCELLED and ended.stage == "cancelled"
    assert not Layer.objects.filter(name__startswith="nuclei-curated").exists()
    root = layer.dataset.root
    assert not (root / "image.ome.zarr/labels/nuclei-curated").exists()
    assert "nuclei-curated" not in list_labels(root / "image.ome.zarr")
    answer = _client(people["owner"]).post(f"/api/v1/curation/jobs/{job.id}/cancel/")
    assert answer.status_code == 409


@pytest.mark.django_db
def test_publish_with_chosen_verdicts_and_name(
    layer: Layer, campaign: ProofreadingCampaign, given: dict[int, str], people: dict[str, Any]
) -> None:
    job = services.publish_start(
        campaign, people["owner"], name="only-fp", verdicts=["fp"], enqueue=False
    )
    assert publish_run(job.id).status == JobStatus.SUCCEEDED
    curated = Layer.objects.get(dataset=layer.dataset, name="only-fp")
    values = set(
        np.unique(np.asarray(open_multiscale(layer.dataset.root / curated.path).levels[0]))
    )
    assert values == {0} | {s for s, v in given.items() if v == "fp"}
    client = APIClient()
    client.login(username="owner", password=PASSWORD)
    assert client.get(f"/api/v1/datasets/{layer.dataset.slug}/").status_code == 200


@pytest.mark.django_db
def test_publishing_builds_only_the_new_layer_with_the_sources_surface_areas(
    layer: Layer,
    campaign: ProofreadingCampaign,
    given: dict[int, str],
    people: dict[str, Any],
    settings: Any,
) -> None:
    from webapp.detections.builds import detections_build_run
    from webapp.detections.cards import cards_build_run, cards_build_start
    from webapp.detections.models import CardBuild, Detection, DetectionBuild
    from webapp.proofreading.gallery_views import cards_for_gallery

    settings.DETECTIONS_AUTO_BUILD = settings.CARDS_AUTO_BUILD = True
    # The source's cards, built for its current data: opening the gallery queues nothing.
    cards = cards_build_start(layer, reason="detections", enqueue=False)
    assert cards_build_run(cards.id).status == JobStatus.SUCCEEDED
    cards_for_gallery(campaign)
    cards_for_gallery(campaign)
    assert list(CardBuild.objects.filter(layer=layer).values_list("id", flat=True)) == [cards.id]
    source_builds = list(DetectionBuild.objects.filter(layer=layer).values_list("id", "status"))

    job = services.publish_start(campaign, people["owner"], enqueue=False)
    assert publish_run(job.id).status == JobStatus.SUCCEEDED
    curated = Layer.objects.get(dataset=layer.dataset, name="nuclei-curated")
    # Only the new layer's table is queued; the source's table and card set stay current.
    assert list(DetectionBuild.objects.filter(layer=layer).values_list("id", "status")) == (
        source_builds
    )
    build = DetectionBuild.objects.get(layer=curated)
    assert build.status == JobStatus.QUEUED and build.reason == "import"
    cards_for_gallery(campaign)
    cards_for_gallery(campaign)
    assert list(CardBuild.objects.filter(layer=layer).values_list("id", flat=True)) == [cards.id]

    # The curated table has the source's surface areas and sphericities for the kept objects.
    assert detections_build_run(build.id).status == JobStatus.SUCCEEDED

    def measures(of: Layer) -> dict[int, tuple[float | None, float | None]]:
        rows = Detection.objects.filter(layer=of).values_list(
            "segment_id", "surface_area", "sphericity"
        )
        return {int(s): (a, p) for s, a, p in rows}

    accepted = sorted(s for s, v in given.items() if v in ACCEPTED)
    kept, source = measures(curated), measures(layer)
    assert sorted(kept) == accepted
    for segment_id in accepted:
        area, sphericity = kept[segment_id]
        assert area is not None and sphericity is not None, segment_id
        assert (area, sphericity) == pytest.approx(source[segment_id]), segment_id
