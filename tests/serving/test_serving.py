"""Data serving through Django (the embedded server): permissions, HTTP semantics, path safety."""

from __future__ import annotations

import time
from datetime import timedelta
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from tests.serving.conftest import CHUNK, STORE_FILES, World
from webapp.datasets.data_access import data_access_cache_clear
from webapp.datasets.models import Dataset, ShareLink, Visibility

ALL_SLUGS = ("pub", "priv", "teamds", "second")
READABLE: dict[str, set[str]] = {
    "anonymous": {"pub"},
    "owner": {"pub", "priv", "teamds", "second"},
    "other": {"pub"},
    "member": {"pub", "teamds"},
    "admin": {"pub", "priv", "teamds", "second"},
}


def client_for(world: World, who: str) -> Client:
    client = Client()
    if who != "anonymous":
        client.force_login(getattr(world, who))
    return client


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def disk(slug: str, rel: str) -> bytes:
    return (Path(settings.DATA_ROOT) / "datasets" / slug / rel).read_bytes()


def assert_serves(client: Client, url: str, slug: str, kind: str) -> None:
    rel, content_type = STORE_FILES[kind]
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    assert response["Content-Type"] == content_type, url
    assert body(response) == disk(slug, rel), url


def assert_hidden(client: Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404, (url, response.status_code)
    assert b"marker" not in body(response)


@pytest.mark.parametrize("who", list(READABLE))
@pytest.mark.parametrize("slug", ALL_SLUGS)
def test_permission_matrix_on_every_file_kind(world: World, who: str, slug: str) -> None:
    client = client_for(world, who)
    for kind, (rel, _) in STORE_FILES.items():
        url = f"/data/{slug}/{rel}"
        if slug in READABLE[who]:
            assert_serves(client, url, slug, kind)
        else:
            assert_hidden(client, url)


@pytest.mark.parametrize(
    ("token_of", "slug", "allowed"),
    [
        ("link", "priv", True),
        ("second_link", "second", True),
        ("link", "second", False),  # a link opens exactly its own dataset
        ("second_link", "priv", False),
        ("link", "pub", False),
        ("revoked", "priv", False),
        ("expired", "priv", False),
        ("forged", "priv", False),
    ],
)
def test_share_links(world: World, token_of: str, slug: str, allowed: bool) -> None:
    token = "x" * 32 if token_of == "forged" else getattr(world, token_of).token
    client = Client()  # anonymous: the token alone grants access
    for kind, (rel, _) in STORE_FILES.items():
        url = f"/s/{token}/data/{slug}/{rel}"
        if allowed:
            assert_serves(client, url, slug, kind)
        else:
            assert_hidden(client, url)


def test_share_link_revocation_and_visibility_change_take_effect(world: World) -> None:
    client = Client()
    rel = STORE_FILES["chunk"][0]
    share_url = f"/s/{world.link.token}/data/priv/{rel}"
    assert client.get(share_url).status_code == 200
    world.link.revoked_at = timezone.now()
    world.link.save()
    assert client.get(share_url).status_code == 404

    public_url = f"/data/pub/{rel}"
    assert client.get(public_url).status_code == 200
    world.public.visibility = Visibility.PRIVATE
    world.public.save()
    assert client.get(public_url).status_code == 404


def test_changes_made_by_another_process_apply_after_the_cache_time(
    world: World, settings: Any
) -> None:
    """queryset.update() sends no signal, as a change made in another process."""
    settings.DATA_ACCESS_CACHE_SECONDS = 0.3
    client = Client()
    url = f"/s/{world.link.token}/data/priv/{STORE_FILES['chunk'][0]}"
    assert client.get(url).status_code == 200
    ShareLink.objects.filter(pk=world.link.pk).update(revoked_at=timezone.now())
    Dataset.objects.filter(pk=world.public.pk).update(visibility=Visibility.PRIVATE)
    time.sleep(0.35)
    assert client.get(url).status_code == 404
    assert client.get(f"/data/pub/{STORE_FILES['chunk'][0]}").status_code == 404


def test_share_link_expiring_while_cached_is_refused(world: World) -> None:
    link = ShareLink.objects.create(
        dataset=world.private,
        created_by=world.owner,
        expires_at=timezone.now() + timedelta(seconds=1),
    )
    url = f"/s/{link.token}/data/priv/{STORE_FILES['chunk'][0]}"
    assert Client().get(url).status_code == 200
    time.sleep(1.05)
    assert Client().get(url).status_code == 404


def test_team_membership_change_takes_effect(world: World) -> None:
    client = client_for(world, "other")
    url = f"/data/teamds/{STORE_FILES['chunk'][0]}"
    assert client.get(url).status_code == 404
    world.team.members.add(world.other)
    assert client.get(url).status_code == 200


def test_public_chunk_costs_no_query_once_cached(
    world: World, django_assert_num_queries: Any
) -> None:
    client = Client()
    url = f"/data/pub/{STORE_FILES['chunk'][0]}"
    assert client.get(url).status_code == 200
    with django_assert_num_queries(0):
        assert client.get(url).status_code == 200


# --- HTTP semantics -------------------------------------------------------------------------

CHUNK_URL = "/data/pub/image.ome.zarr/s0/c/0/0/0"


def test_file_headers(world: World) -> None:
    response = Client().get(CHUNK_URL)
    assert response["Content-Length"] == str(len(CHUNK))
    assert response["Accept-Ranges"] == "bytes"
    assert response["ETag"].startswith('"') and response["ETag"].endswith('"')
    assert response["Last-Modified"].endswith("GMT")
    assert response["Cache-Control"] == "public, max-age=60"
    assert "Content-Disposition" not in response


def test_private_data_is_not_publicly_cacheable(world: World) -> None:
    response = client_for(world, "owner").get("/data/priv/image.ome.zarr/s0/c/0/0/0")
    assert response["Cache-Control"].startswith("private")
    response = Client().get(f"/s/{world.link.token}/data/priv/image.ome.zarr/s0/c/0/0/0")
    assert response["Cache-Control"].startswith("private")


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, len(CHUNK) - 1),
        ("bytes=-10", len(CHUNK) - 10, len(CHUNK) - 1),
        ("bytes=1000-999999", 1000, len(CHUNK) - 1),
        ("bytes=5-5", 5, 5),
    ],
)
def test_range(world: World, header: str, start: int, end: int) -> None:
    response = Client().get(CHUNK_URL, HTTP_RANGE=header)
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {start}-{end}/{len(CHUNK)}"
    assert response["Content-Length"] == str(end - start + 1)
    assert body(response) == CHUNK[start : end + 1]


@pytest.mark.parametrize("header", [f"bytes={len(CHUNK)}-", "bytes=999999-", "bytes=-0"])
def test_unsatisfiable_range(world: World, header: str) -> None:
    response = Client().get(CHUNK_URL, HTTP_RANGE=header)
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(CHUNK)}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=9-3"])
def test_unsupported_or_invalid_range_serves_whole_file(world: World, header: str) -> None:
    response = Client().get(CHUNK_URL, HTTP_RANGE=header)
    assert response.status_code == 200
    assert body(response) == CHUNK


def test_if_range_with_stale_etag_serves_whole_file(world: World) -> None:
    client = Client()
    etag = client.get(CHUNK_URL)["ETag"]
    assert client.get(CHUNK_URL, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE=etag).status_code == 206
    stale = client.get(CHUNK_URL, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE='"0-0"')
    assert stale.status_code == 200
    assert body(stale) == CHUNK


def test_head_has_headers_and_no_body(world: World) -> None:
    client = Client()
    get = client.get(CHUNK_URL)
    head = client.head(CHUNK_URL)
    assert head.status_code == 200
    assert body(head) == b""
    for name in ("Content-Type", "Content-Length", "ETag", "Last-Modified", "Cache-Control"):
        assert head[name] == get[name], name
    assert client.head("/data/priv/image.ome.zarr/s0/c/0/0/0").status_code == 404


def test_etag_conditional_get(world: World) -> None:
    client = Client()
    etag = client.get(CHUNK_URL)["ETag"]
    response = client.get(CHUNK_URL, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304
    assert body(response) == b""
    assert response["ETag"] == etag
    assert client.get(CHUNK_URL, HTTP_IF_NONE_MATCH=f'"nope", W/{etag}').status_code == 304
    assert client.get(CHUNK_URL, HTTP_IF_NONE_MATCH='"nope"').status_code == 200


def test_if_modified_since(world: World) -> None:
    client = Client()
    last_modified = client.get(CHUNK_URL)["Last-Modified"]
    assert client.get(CHUNK_URL, HTTP_IF_MODIFIED_SINCE=last_modified).status_code == 304
    long_ago = formatdate(0, usegmt=True)
    assert client.get(CHUNK_URL, HTTP_IF_MODIFIED_SINCE=long_ago).status_code == 200


def test_etag_changes_when_the_file_changes(world: World) -> None:
    client = Client()
    etag = client.get(CHUNK_URL)["ETag"]
    (Path(settings.DATA_ROOT) / "datasets/pub/image.ome.zarr/s0/c/0/0/0").write_bytes(b"new")
    response = client.get(CHUNK_URL, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200
    assert body(response) == b"new"


def test_conditional_get_does_not_bypass_permissions(world: World) -> None:
    owner_response = client_for(world, "owner").get("/data/priv/image.ome.zarr/s0/c/0/0/0")
    etag = owner_response["ETag"]
    response = Client().get("/data/priv/image.ome.zarr/s0/c/0/0/0", HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 404


def test_cors_any_origin(world: World) -> None:
    response = Client().get(CHUNK_URL, HTTP_ORIGIN="https://viewer.example")
    assert response["Access-Control-Allow-Origin"] == "*"
    exposed = response["Access-Control-Expose-Headers"]
    for name in ("ETag", "Content-Range", "Content-Length"):
        assert name in exposed
    absent = Client().get("/data/pub/image.ome.zarr/s0/c/9/9/9", HTTP_ORIGIN="https://x.example")
    assert absent.status_code == 404
    assert absent["Access-Control-Allow-Origin"] == "*"  # so a cross-origin viewer sees the 404


def test_cors_listed_origins(world: World, settings: Any) -> None:
    settings.DATA_CORS_ORIGINS = ["https://viewer.example"]
    response = Client().get(CHUNK_URL, HTTP_ORIGIN="https://viewer.example")
    assert response["Access-Control-Allow-Origin"] == "https://viewer.example"
    assert "Origin" in response["Vary"]
    response = Client().get(CHUNK_URL, HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in response


def test_cors_preflight(world: World) -> None:
    response = Client().options(
        "/data/priv/image.ome.zarr/s0/c/0/0/0",
        HTTP_ORIGIN="https://viewer.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="range",
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "GET" in response["Access-Control-Allow-Methods"]
    assert "Range" in response["Access-Control-Allow-Headers"]
    assert body(response) == b""


def test_other_methods_are_refused(world: World) -> None:
    response = Client().post(CHUNK_URL, data=b"x", content_type="application/octet-stream")
    assert response.status_code == 405
    assert "GET" in response["Allow"]


@pytest.mark.parametrize(
    "rel",
    [
        "image.ome.zarr/s0/c/9/9/9",  # absent chunk: Neuroglancer's fill value
        "image.ome.zarr/s0/c/0/0/0/extra",
        "image.ome.zarr",  # directories are not files
        "image.ome.zarr/s0/c/0",
        "nothing-here.json",
    ],
)
def test_absent_files_and_directories_are_404(world: World, rel: str) -> None:
    response = Client().get(f"/data/pub/{rel}")
    assert response.status_code == 404


def test_unknown_dataset_is_404(world: World) -> None:
    assert Client().get("/data/nope/image.ome.zarr/zarr.json").status_code == 404


def test_fifo_in_a_store_is_not_opened(world: World) -> None:
    import os

    fifo = Path(settings.DATA_ROOT) / "datasets/pub/image.ome.zarr/fifo"
    os.mkfifo(fifo)
    assert Client().get("/data/pub/image.ome.zarr/fifo").status_code == 404


# --- Path safety ----------------------------------------------------------------------------

SECRET = b"TOP-SECRET-OUTSIDE-THE-STORE"


@pytest.fixture
def secrets_around(world: World) -> None:
    """A file beside the datasets and one at DATA_ROOT: traversal must not reach them."""
    root = Path(settings.DATA_ROOT)
    (root / "datasets" / "secret.txt").write_bytes(SECRET)
    (root / "secret.txt").write_bytes(SECRET)


@pytest.mark.parametrize(
    "url",
    [
        "/data/pub/../secret.txt",
        "/data/pub/../../secret.txt",
        "/data/pub/image.ome.zarr/../../secret.txt",
        "/data/pub/%2e%2e/secret.txt",
        "/data/pub/%2E%2E/%2e%2e/secret.txt",
        "/data/pub/..%2fsecret.txt",
        "/data/pub/..%2f..%2fsecret.txt",
        "/data/pub/image.ome.zarr%2f..%2f..%2fsecret.txt",
        "/data/pub/..%5csecret.txt",
        "/data/pub/..\\secret.txt",
        "/data/pub/image.ome.zarr%00/zarr.json",
        "/data/pub/secret.txt%00.json",
        "/data/pub//etc/passwd",
        "/data/pub/%2fetc%2fpasswd",
        f"/data/pub/{settings.BASE_DIR}/pyproject.toml",
        "/data/pub/./image.ome.zarr/zarr.json",
        "/data/pub/image.ome.zarr//zarr.json",
        "/data/pub/../priv/image.ome.zarr/zarr.json",  # another dataset's files
        "/s/TOKEN/data/priv/../second/image.ome.zarr/zarr.json",
        "/s/TOKEN/data/priv/%2e%2e/second/image.ome.zarr/zarr.json",
    ],
)
def test_traversal_attempts_never_return_outside_content(
    world: World, secrets_around: None, url: str
) -> None:
    url = url.replace("TOKEN", world.link.token)
    response = Client().get(url)
    assert response.status_code in (400, 404), (url, response.status_code)
    content = body(response)
    assert SECRET not in content
    assert b"root:" not in content and b"[project]" not in content
    assert b"second" not in content and b"priv" not in content


def test_symlinked_store_registered_in_place_is_served(world: World, tmp_path: Path) -> None:
    """A dataset directory may link a store kept elsewhere; the link is followed."""
    external = tmp_path / "external" / "store.ome.zarr"
    external.mkdir(parents=True)
    (external / "zarr.json").write_bytes(b'{"zarr_format": 3}')
    link = Path(settings.DATA_ROOT) / "datasets" / "pub" / "linked.ome.zarr"
    link.symlink_to(external, target_is_directory=True)
    response = Client().get("/data/pub/linked.ome.zarr/zarr.json")
    assert response.status_code == 200
    assert body(response) == b'{"zarr_format": 3}'
    assert Client().get("/data/pub/linked.ome.zarr/../../secret.txt").status_code == 404


def test_data_auth_endpoint_decision(world: World) -> None:
    """The endpoint nginx asks: 204 to allow, 403 to refuse, by slug and token headers."""
    anonymous = Client()
    assert anonymous.get("/internal/data-auth", HTTP_X_DATA_SLUG="pub").status_code == 204
    assert anonymous.get("/internal/data-auth", HTTP_X_DATA_SLUG="priv").status_code == 403
    assert anonymous.get("/internal/data-auth", HTTP_X_DATA_SLUG="nope").status_code == 403
    assert anonymous.get("/internal/data-auth").status_code == 403
    ok = anonymous.get(
        "/internal/data-auth", HTTP_X_DATA_SLUG="priv", HTTP_X_SHARE_TOKEN=world.link.token
    )
    assert ok.status_code == 204
    assert ok["X-Data-Cache-Control"].startswith("private")
    for token in (world.revoked.token, world.expired.token, world.second_link.token, "forged"):
        denied = anonymous.get(
            "/internal/data-auth", HTTP_X_DATA_SLUG="priv", HTTP_X_SHARE_TOKEN=token
        )
        assert denied.status_code == 403
    owner = client_for(world, "owner")
    assert owner.get("/internal/data-auth", HTTP_X_DATA_SLUG="priv").status_code == 204
    member = client_for(world, "member")
    assert member.get("/internal/data-auth", HTTP_X_DATA_SLUG="teamds").status_code == 204
    assert member.get("/internal/data-auth", HTTP_X_DATA_SLUG="priv").status_code == 403


def test_data_auth_endpoint_reads_past_the_process_cache(world: World) -> None:
    client = Client()
    assert client.get("/data/pub/image.ome.zarr/zarr.json").status_code == 200
    Dataset.objects.filter(pk=world.public.pk).update(visibility=Visibility.PRIVATE)
    assert client.get("/internal/data-auth", HTTP_X_DATA_SLUG="pub").status_code == 403
    data_access_cache_clear()


def test_signed_in_chunk_costs_no_query_once_cached(
    world: World, django_assert_num_queries: Any
) -> None:
    client = client_for(world, "member")
    url = f"/data/teamds/{STORE_FILES['chunk'][0]}"
    assert client.get(url).status_code == 200
    with django_assert_num_queries(0):
        assert client.get(url).status_code == 200


def test_logout_ends_data_access(world: World) -> None:
    client = client_for(world, "owner")
    url = f"/data/priv/{STORE_FILES['chunk'][0]}"
    assert client.get(url).status_code == 200
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    client.logout()
    assert client.get(url).status_code == 404
    stale = Client()
    stale.cookies[settings.SESSION_COOKIE_NAME] = session_key  # the old cookie, replayed
    assert stale.get(url).status_code == 404


def test_user_demoted_from_superuser_loses_access(world: World) -> None:
    client = client_for(world, "admin")
    url = f"/data/priv/{STORE_FILES['chunk'][0]}"
    assert client.get(url).status_code == 200
    world.admin.is_superuser = False
    world.admin.save()
    assert client.get(url).status_code == 404
