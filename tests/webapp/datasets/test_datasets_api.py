"""The datasets API: visibility, sources, permissions, share links, uploads, jobs, schema."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest
from datasets_testdata import ome_zarr_with_escaping_level
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from webapp.core.jobs.lifecycle import job_start
from webapp.core.jobs.progress import JobProgressWriter
from webapp.datasets import services
from webapp.datasets.api.views import upload_filename_sanitize
from webapp.datasets.models import Dataset, DatasetJob, JobStatus, LayerKind, ShareLink

pytestmark = pytest.mark.django_db

LIST = "/api/v1/datasets/"
IMPORTS = "/api/v1/imports/"


def _client(user: Any = None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def catalogue(
    owner: Any, team_factory: Any, user_factory: Any, dataset_factory: Any, layer_factory: Any
) -> dict[str, Any]:
    """Public, team and private datasets of ``owner``; a team with one member."""
    member = user_factory(username="member")
    team = team_factory()
    team.members.add(owner, member)
    public = dataset_factory(slug="pub", name="Public cells", owner=owner, visibility="public")
    shared = dataset_factory(slug="teamed", owner=owner, visibility="team", team=team)
    private = dataset_factory(slug="priv", owner=owner, visibility="private")
    for dataset in (public, shared, private):
        layer_factory(dataset=dataset)
    seg = layer_factory(
        dataset=public,
        name="nuclei",
        kind=LayerKind.SEGMENTATION,
        path="image.ome.zarr/labels/nuclei",
        ngff_version="0.4",
        dtype="uint32",
    )
    layer_factory(
        dataset=public,
        name="nuclei-meshes",
        kind=LayerKind.MESH,
        path="meshes/nuclei",
        ngff_version="",
        dtype="",
        source_layer=seg,
    )
    return {"member": member, "team": team, "public": public, "private": private}


def _slugs(response: Any) -> set[str]:
    assert response.status_code == 200, response.content
    return {d["slug"] for d in response.json()["results"]}


def test_list_shows_what_each_caller_may_see(
    catalogue: dict[str, Any], owner: Any, other: Any, user_factory: Any
) -> None:
    root = user_factory(username="root", is_superuser=True, is_staff=True)
    assert _slugs(_client().get(LIST)) == {"pub"}
    assert _slugs(_client(owner).get(LIST)) == {"pub", "teamed", "priv"}
    assert _slugs(_client(other).get(LIST)) == {"pub"}
    assert _slugs(_client(catalogue["member"]).get(LIST)) == {"pub", "teamed"}
    assert _slugs(_client(root).get(LIST)) == {"pub", "teamed", "priv"}


def test_list_filters_and_paginates(catalogue: dict[str, Any], owner: Any) -> None:
    client = _client(owner)
    assert _slugs(client.get(LIST, {"visibility": "private"})) == {"priv"}
    assert _slugs(client.get(LIST, {"search": "public CE"})) == {"pub"}
    page = client.get(LIST, {"limit": 1}).json()
    assert page["count"] == 3 and len(page["results"]) == 1 and page["next"]
    bad = client.get(LIST, {"visibility": "secret"})
    assert bad.status_code == 400 and "secret" in bad.json()["message"]


def test_list_gives_layers_with_neuroglancer_sources(catalogue: dict[str, Any]) -> None:
    body = _client().get(LIST).json()["results"][0]
    assert body["viewer_url"] == "/datasets/pub/" and body["owner"] == "owner"
    assert set(body) >= {"id", "name", "description", "visibility", "created", "updated"}
    layers = {layer["name"]: layer for layer in body["layers"]}
    image = layers["image"]
    assert image["source_url"] == "zarr3://http://testserver/data/pub/image.ome.zarr"
    assert layers["nuclei"]["source_url"] == (
        "zarr2://http://testserver/data/pub/image.ome.zarr/labels/nuclei"
    )
    assert (
        layers["nuclei-meshes"]["source_url"]
        == "precomputed://http://testserver/data/pub/meshes/nuclei"
    )
    assert layers["nuclei-meshes"]["source_layer"] == "nuclei"
    assert image["shape"] == [16, 24, 32] and image["voxel_size"] == [400.0, 200.0, 200.0]
    assert image["voxels"] == 16 * 24 * 32 and image["bytes_estimate"] == 16 * 24 * 32 * 2
    assert body["voxels"] == 16 * 24 * 32
    assert body["bytes_estimate"] == 16 * 24 * 32 * 2 + 16 * 24 * 32 * 4
    assert image["contrast_window"] is None
    assert set(image) >= {"kind", "path", "ngff_version", "axes", "dtype", "unit", "channels"}


def test_detail_permissions_404_for_invisible_403_for_non_owner_writes(
    catalogue: dict[str, Any], owner: Any, other: Any
) -> None:
    assert _client(other).get(f"{LIST}priv/").status_code == 404
    assert _client().get(f"{LIST}priv/").status_code == 404
    assert _client(other).get(f"{LIST}pub/").status_code == 200
    for response in (
        _client(other).patch(f"{LIST}pub/", {"name": "Mine"}, format="json"),
        _client(other).delete(f"{LIST}pub/"),
        _client(catalogue["member"]).patch(f"{LIST}teamed/", {"name": "x"}, format="json"),
    ):
        assert response.status_code == 403 and response.json()["message"]
    assert _client(other).patch(f"{LIST}priv/", {"name": "x"}, format="json").status_code == 404
    assert _client(other).delete(f"{LIST}priv/").status_code == 404
    anonymous = _client().patch(f"{LIST}pub/", {"name": "x"}, format="json")
    assert anonymous.status_code in (401, 403) and anonymous.json()["message"]
    assert Dataset.objects.get(slug="pub").name == "Public cells"


def test_owner_updates_and_deletes(catalogue: dict[str, Any], owner: Any, settings: Any) -> None:
    client = _client(owner)
    response = client.patch(
        f"{LIST}priv/", {"name": "Renamed", "visibility": "public"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Renamed" and response.json()["visibility"] == "public"
    bad = client.patch(f"{LIST}priv/", {"visibility": "team", "team": None}, format="json")
    assert bad.status_code == 400 and "team" in bad.json()["message"]
    ok = client.patch(
        f"{LIST}priv/", {"visibility": "team", "team": catalogue["team"].id}, format="json"
    )
    assert ok.status_code == 200 and ok.json()["team"] == catalogue["team"].id

    files = Path(settings.DATA_ROOT) / "datasets" / "priv" / "image.ome.zarr"
    files.mkdir(parents=True)
    (files / "zarr.json").write_text("{}")
    assert client.delete(f"{LIST}priv/").status_code == 204
    assert not Dataset.objects.filter(slug="priv").exists()
    assert not files.parent.exists()


def test_share_links_owner_only(catalogue: dict[str, Any], owner: Any, other: Any) -> None:
    url = f"{LIST}pub/share-links/"
    assert _client(other).get(url).status_code == 403
    assert _client(other).post(url, {"label": "x"}, format="json").status_code == 403
    assert _client().post(url, {"label": "x"}, format="json").status_code in (401, 403)
    assert _client(other).get(f"{LIST}priv/share-links/").status_code == 404

    created = _client(owner).post(url, {"label": "for Ann"}, format="json")
    assert created.status_code == 201, created.content
    link = created.json()
    token = ShareLink.objects.get(id=link["id"]).token
    assert link["token"] == token and link["active"] and link["label"] == "for Ann"
    assert link["viewer_url"] == f"http://testserver/s/{token}/datasets/pub/"
    assert link["data_url"] == f"http://testserver/s/{token}/data/pub/"
    assert [x["id"] for x in _client(owner).get(url).json()] == [link["id"]]

    past = _client(owner).post(url, {"expires_at": "2001-01-01T00:00:00Z"}, format="json")
    assert past.status_code == 400 and "future" in past.json()["message"]

    revoke = f"{url}{link['id']}/revoke/"
    assert _client(other).post(revoke).status_code == 403
    assert _client(owner).post(f"{LIST}priv/share-links/{link['id']}/revoke/").status_code == 404
    revoked = _client(owner).post(revoke)
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert ShareLink.objects.get(id=link["id"]).revoked_at is not None
    with pytest.raises(services.NotAllowed):
        services.share_link_revoke(ShareLink.objects.get(id=link["id"]), other)


# --------------------------------------------------------------------------------- uploads


def _upload(path: Path, name: str | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes(), "application/octet-stream")


def test_upload_queues_a_job_that_imports_the_files(
    owner: Any, tiff_pair: tuple[Path, Path], settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    image, labels = tiff_pair
    client = _client(owner)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            IMPORTS,
            {
                "file": _upload(image, "../../my volume.tif"),
                "labels": [_upload(labels)],
                "label_names": ["nuclei"],
                "name": "Uploaded",
                "voxel_size": "400,200,200",
                "unit": "nm",
                "visibility": "public",
            },
            format="multipart",
        )
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1
    job = response.json()
    assert job["status"] == "queued" and job["name"] == "Uploaded"
    assert response["Location"] == f"/api/v1/jobs/{job['id']}/"
    params = DatasetJob.objects.get(id=job["id"]).params
    upload_root = Path(settings.UPLOAD_ROOT).resolve()
    source = Path(params["source_path"])
    assert source.parent.parent == upload_root and source.name == "my_volume.tif"
    assert params["voxel_size"] == [400.0, 200.0, 200.0] and params["unit"] == "nanometer"
    assert upload_root in Path(params["labels"]["nuclei"]).parents

    # While the worker runs, the job endpoint shows its progress.
    attempt = job_start(DatasetJob, job["id"])
    assert attempt is not None and attempt.number == 1
    JobProgressWriter(DatasetJob, attempt).write("image level 0", 3, 4)
    running = client.get(f"/api/v1/jobs/{job['id']}/").json()
    assert running["status"] == "running" and running["stage"] == "image level 0"
    assert running["state"] == "running" and running["attempts"] == 1 and running["heartbeat"]
    assert (running["done"], running["total"], running["progress"]) == (3, 4, 0.75)
    DatasetJob.objects.filter(id=job["id"]).update(status=JobStatus.QUEUED, attempts=0)

    services.import_job_run(job["id"])  # what the Celery worker does
    done = client.get(f"/api/v1/jobs/{job['id']}/").json()
    assert done["status"] == "succeeded" and done["dataset"] == "uploaded", done
    assert done["viewer_url"] == "/datasets/uploaded/" and done["progress"] == 1.0
    assert not source.parent.exists()  # the upload was consumed
    kinds = sorted(layer.kind for layer in Dataset.objects.get(slug="uploaded").layers.all())
    assert kinds == ["image", "mesh", "segmentation"]


def test_upload_over_the_limit_is_413(
    owner: Any, tiff_pair: tuple[Path, Path], settings: Any
) -> None:
    settings.MAX_UPLOAD_BYTES = 1000
    response = _client(owner).post(
        IMPORTS, {"file": _upload(tiff_pair[0]), "name": "Big"}, format="multipart"
    )
    assert response.status_code == 413 and "limit" in response.json()["message"]
    assert not any(Path(settings.UPLOAD_ROOT).iterdir())
    assert not DatasetJob.objects.exists()


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"voxel_size": "1,2"}, "Voxel size needs 3 numbers"),
        ({"voxel_size": "1,2,3,4"}, "voxel_size"),
        ({"voxel_size": "[1, -2, 3]"}, "positive"),
        ({"voxel_size": "a,b,c"}, "numbers"),
        ({"unit": "furlong"}, "unit"),
        ({"name": ""}, "name"),
        ({"label_names": ["a", "b"]}, "label"),
    ],
)
def test_bad_upload_fields_are_400_with_a_message(
    owner: Any, tiff_pair: tuple[Path, Path], settings: Any, fields: dict[str, Any], needle: str
) -> None:
    data = {"file": _upload(tiff_pair[0]), "name": "x", **fields}
    response = _client(owner).post(IMPORTS, data, format="multipart")
    assert response.status_code == 400, response.content
    assert needle in response.json()["message"]
    assert not any(Path(settings.UPLOAD_ROOT).iterdir())


def test_bad_file_is_400_and_leaves_nothing(owner: Any, settings: Any) -> None:
    junk = SimpleUploadedFile("scan.tif", b"II*\x00not really a tiff" * 5)
    response = _client(owner).post(
        IMPORTS, {"file": junk, "name": "Junk", "voxel_size": "1,1,1"}, format="multipart"
    )
    assert response.status_code == 400 and "scan.tif" in response.json()["message"]
    assert not any(Path(settings.UPLOAD_ROOT).iterdir())
    assert not DatasetJob.objects.exists()


def test_anonymous_upload_is_refused_with_json(tiff_pair: tuple[Path, Path]) -> None:
    response = _client().post(
        IMPORTS, {"file": _upload(tiff_pair[0]), "name": "x"}, format="multipart"
    )
    assert response.status_code in (401, 403) and response.json()["message"]


def test_server_path_is_for_staff_only(
    owner: Any, user_factory: Any, tiff_pair: tuple[Path, Path]
) -> None:
    data = {"server_path": str(tiff_pair[0]), "name": "Server", "voxel_size": "1,1,1"}
    assert _client(owner).post(IMPORTS, data, format="multipart").status_code == 403
    staff = user_factory(username="staff", is_staff=True)
    response = _client(staff).post(IMPORTS, data, format="multipart")
    assert response.status_code == 202, response.content
    assert services.import_job_run(response.json()["id"]).status == JobStatus.SUCCEEDED
    assert tiff_pair[0].exists()  # a server-side input is never deleted


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\cells.ome.tif", "cells.ome.tif"),
        ("my volume (1).tif", "my_volume_1_.tif"),
        (".hidden.npy", "hidden.npy"),
    ],
)
def test_upload_filenames_are_sanitized(raw: str, expected: str) -> None:
    assert upload_filename_sanitize(raw) == expected


@pytest.mark.parametrize("raw", ["..", "", "a/..", "x..tif", "///"])
def test_upload_filenames_with_dotdot_are_refused(raw: str) -> None:
    from webapp.core.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        upload_filename_sanitize(raw)


# ------------------------------------------------------------------------------------ jobs


def test_jobs_are_private_to_their_owner(
    owner: Any, other: Any, tiff_pair: tuple[Path, Path]
) -> None:
    job = services.import_job_create(
        owner, name="Mine", source_path=tiff_pair[0], voxel_size=(1, 1, 1), enqueue=False
    )
    assert _client(other).get(f"/api/v1/jobs/{job.id}/").status_code == 404
    assert _client(other).post(f"/api/v1/jobs/{job.id}/cancel/").status_code == 404
    assert _client(other).get("/api/v1/jobs/").json()["results"] == []
    assert [j["id"] for j in _client(owner).get("/api/v1/jobs/").json()["results"]] == [job.id]
    assert _client().get("/api/v1/jobs/").status_code in (401, 403)

    cancelled = _client(owner).post(f"/api/v1/jobs/{job.id}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = _client(owner).post(f"/api/v1/jobs/{job.id}/cancel/")
    assert again.status_code == 409 and "ended" in again.json()["message"]


def test_failed_job_shows_an_actionable_error(owner: Any, tiff_pair: tuple[Path, Path]) -> None:
    job = services.import_job_create(
        owner, name="Mine", source_path=tiff_pair[0], voxel_size=(1, 1, 1), enqueue=False
    )
    tiff_pair[0].write_bytes(b"II*\x00 truncated")
    services.import_job_run(job.id)
    body = _client(owner).get(f"/api/v1/jobs/{job.id}/").json()
    assert body["status"] == "failed" and body["error"] and "Traceback" not in body["error"]
    assert "log" not in body and body["dataset"] is None


def test_mesh_rebuild_endpoint(owner: Any, other: Any, tiff_pair: tuple[Path, Path]) -> None:
    job = services.import_job_create(
        owner,
        name="Meshy",
        source_path=tiff_pair[0],
        voxel_size=(1, 1, 1),
        labels={"nuclei": tiff_pair[1]},
        visibility="public",
        enqueue=False,
    )
    services.import_job_run(job.id)
    url = "/api/v1/datasets/meshy/layers/nuclei/meshes/"
    assert _client(other).post(url).status_code == 403
    assert _client(owner).post("/api/v1/datasets/meshy/layers/image/meshes/").status_code == 400
    response = _client(owner).post(url)
    assert response.status_code == 202 and response.json()["kind"] == "meshes"


# ---------------------------------------------------------------------------------- schema


def test_openapi_schema_documents_the_datasets_api() -> None:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    for path in (
        "/api/v1/datasets/",
        "/api/v1/datasets/{slug}/",
        "/api/v1/datasets/{slug}/share-links/",
        "/api/v1/datasets/{slug}/share-links/{link_id}/revoke/",
        "/api/v1/imports/",
        "/api/v1/jobs/",
        "/api/v1/jobs/{id}/",
        "/api/v1/jobs/{id}/cancel/",
    ):
        assert path in paths, path
    upload = paths["/api/v1/imports/"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert "202" in upload["responses"]
    layer = schema["components"]["schemas"]["Layer"]["properties"]
    assert {"source_url", "contrast_window", "voxels", "bytes_estimate"} <= set(layer)


@pytest.mark.parametrize("register", [False, True])
def test_server_path_with_a_level_outside_the_store_is_400(
    user_factory: Any, tmp_path: Path, register: bool
) -> None:
    staff = user_factory(username="staff", is_staff=True)
    store = ome_zarr_with_escaping_level(tmp_path / "escape.ome.zarr")
    data = {"name": "Escape", "server_path": str(store), "register_in_place": register}
    response = _client(staff).post(IMPORTS, data, format="multipart")
    assert response.status_code == 400, response.content
    assert "pyramid level path '../outside' may not contain '..'" in response.json()["message"]
    assert not DatasetJob.objects.exists()


def test_zipped_store_with_a_level_outside_fails_its_job_with_the_reason(
    owner: Any, tmp_path: Path
) -> None:
    store = ome_zarr_with_escaping_level(tmp_path / "escape.ome.zarr")
    archive = tmp_path / "escape.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(store.rglob("*")):
            zf.write(file, file.relative_to(tmp_path).as_posix())
    with archive.open("rb") as fh:
        upload = SimpleUploadedFile("escape.zip", fh.read(), content_type="application/zip")
    response = _client(owner).post(IMPORTS, {"name": "Escape", "file": upload}, format="multipart")
    assert response.status_code == 202, response.content
    job = services.import_job_run(response.json()["id"])
    assert job.status == JobStatus.FAILED
    assert "pyramid level path '../outside' may not contain '..'" in job.error
    assert "internal error" not in job.error
