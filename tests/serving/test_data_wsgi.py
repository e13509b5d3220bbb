"""The production WSGI application's direct route for data files (webapp/wsgi.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, RequestFactory

from tests.serving.conftest import CHUNK, STORE_FILES, World
from tests.serving.neuroglancer_reads import read_mesh_over_http
from webapp.datasets.data_wsgi import DataFastPathHandler

CHUNK_PATH = STORE_FILES["chunk"][0]


def call(path: str, cookies: dict[str, str] | None = None, **extra: Any) -> tuple[int, dict, bytes]:
    """Run one request through the handler exactly as gunicorn would."""
    factory = RequestFactory()
    for name, value in (cookies or {}).items():
        factory.cookies[name] = value
    environ = factory.get(path, **extra).environ
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = int(status.split()[0])
        seen["headers"] = dict(headers)

    body_iter = DataFastPathHandler()(environ, start_response)
    try:
        body = b"".join(body_iter)
    finally:
        getattr(body_iter, "close", lambda: None)()
    return seen["status"], seen["headers"], body


def session_cookie(user: Any) -> dict[str, str]:
    client = Client()
    client.force_login(user)
    return {"sessionid": client.cookies["sessionid"].value}


@pytest.mark.django_db(transaction=True)
def test_data_route_checks_access_like_the_views(world: World) -> None:
    status, headers, body = call(f"/data/pub/{CHUNK_PATH}")
    assert (status, body) == (200, CHUNK)
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "ETag" in headers

    assert call(f"/data/priv/{CHUNK_PATH}")[0] == 404
    assert call(f"/data/priv/{CHUNK_PATH}", session_cookie(world.other))[0] == 404
    status, _, body = call(f"/data/priv/{CHUNK_PATH}", session_cookie(world.owner))
    assert (status, body) == (200, CHUNK)
    assert call(f"/data/teamds/{CHUNK_PATH}", session_cookie(world.member))[0] == 200

    assert call(f"/s/{world.link.token}/data/priv/{CHUNK_PATH}")[:1] == (200,)
    assert call(f"/s/{world.link.token}/data/second/{CHUNK_PATH}")[0] == 404
    assert call(f"/s/{world.revoked.token}/data/priv/{CHUNK_PATH}")[0] == 404
    assert call("/data/pub/image.ome.zarr/s0/c/9/9/9")[0] == 404
    assert call("/data/pub/../priv/" + CHUNK_PATH)[0] == 404

    status, headers, body = call(f"/data/pub/{CHUNK_PATH}", HTTP_RANGE="bytes=10-19")
    assert (status, body) == (206, CHUNK[10:20])


@pytest.mark.django_db(transaction=True)
def test_other_urls_still_go_through_django(world: World) -> None:
    status, headers, body = call("/api/v1/datasets/")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert b'"pub"' in body and b'"priv"' not in body
    # Middleware still runs there: the security middleware's header on an ordinary page.
    assert call("/accounts/login/")[1].get("X-Content-Type-Options") == "nosniff"


@pytest.mark.django_db(transaction=True)
def test_sharded_meshes_read_with_ranges_as_neuroglancer_does(world: World) -> None:
    """The embedded server's route answers the Range reads of a sharded mesh source."""
    cookie = session_cookie(world.owner)

    def get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        status, response_headers, body = call(url, cookie, **extra)
        return status, {k.lower(): v for k, v in response_headers.items()}, body

    for segment_id, url in (
        (1, "/data/priv/meshes/cells/"),
        (300, f"/s/{world.link.token}/data/priv/meshes/cells/"),
        (7, "/data/pub/meshes/cells/"),
    ):
        manifest, faces = read_mesh_over_http(get, url, segment_id)
        assert [p.tolist() for p in manifest.positions] == [[[0, 0, 0]]]
        assert faces == [4]
