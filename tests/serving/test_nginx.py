"""The production path: a real nginx (Debian package) running docker/nginx/annotome.conf.template
in front of the site (pytest-django's live server), serving dataset files itself and asking the
site through a cached auth_request."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.signals import request_started
from django.http import HttpRequest, StreamingHttpResponse
from django.test import Client
from django.urls import path
from django.utils import timezone

from tests.serving.conftest import STORE_FILES, World
from tests.serving.neuroglancer_reads import read_mesh_over_http
from tests.serving.nginx_harness import free_port, render_nginx_conf, start_nginx
from webapp.datasets.models import ShareLink
from webapp.urls import urlpatterns as site_urlpatterns

AUTH_CACHE_SECONDS = 1


def _events(request: HttpRequest, token: str) -> StreamingHttpResponse:
    """A held-open event stream like Neuroglancer's: one event now, the rest much later."""

    def stream() -> Iterator[bytes]:
        yield b"data: first\n\n"
        time.sleep(1.5)
        yield b"data: second\n\n"

    return StreamingHttpResponse(stream(), content_type="text/event-stream")


# The whole site, with the events stream replaced by one that proves nginx does not buffer.
urlpatterns = [path("neuroglancer/events/<str:token>", _events), *site_urlpatterns]
pytestmark = [pytest.mark.nginx, pytest.mark.urls(__name__)]

READABLE: dict[str, set[str]] = {
    "anonymous": {"pub"},
    "owner": {"pub", "priv", "teamds", "second"},
    "other": {"pub"},
    "member": {"pub", "teamds"},
    "admin": {"pub", "priv", "teamds", "second"},
}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Proxy:
    port: int
    django_paths: list[str]  # PATH_INFO of every request the site handled

    def request(
        self, url: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> Reply:
        """Send ``url`` byte for byte (no client-side normalisation of "..")."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, url, headers=headers or {})
            response = conn.getresponse()
            body = response.read()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
        finally:
            conn.close()


@pytest.fixture
def proxy(live_server: Any, tmp_path: Path) -> Iterator[Proxy]:
    static_root = tmp_path / "static"
    (static_root / "css").mkdir(parents=True)
    (static_root / "css" / "site.css").write_text("body { color: black; }")
    port = free_port()
    snippet = render_nginx_conf(
        listen=f"127.0.0.1:{port}",
        upstream=live_server.url.removeprefix("http://"),
        data_root=str(settings.DATA_ROOT),
        static_root=str(static_root),
        auth_cache_path=str(tmp_path / "nginx-auth-cache"),
        auth_cache_seconds=AUTH_CACHE_SECONDS,
    )
    seen: list[str] = []

    def record(sender: Any, environ: dict[str, Any], **_: Any) -> None:
        seen.append(environ.get("PATH_INFO", ""))

    request_started.connect(record)
    server = start_nginx(tmp_path / "nginx", snippet, port)
    try:
        yield Proxy(port, seen)
    finally:
        request_started.disconnect(record)
        server.stop()


def session_cookie(world: World, who: str) -> dict[str, str]:
    if who == "anonymous":
        return {}
    client = Client()
    client.force_login(getattr(world, who))
    name = settings.SESSION_COOKIE_NAME
    return {"Cookie": f"{name}={client.cookies[name].value}"}


def disk(slug: str, rel: str) -> bytes:
    return (Path(settings.DATA_ROOT) / "datasets" / slug / rel).read_bytes()


def assert_served(reply: Reply, slug: str, kind: str, url: str) -> None:
    rel, content_type = STORE_FILES[kind]
    assert reply.status == 200, (url, reply.status)
    assert reply.headers["content-type"] == content_type, url
    assert reply.headers["x-served-by"] == "nginx", url
    assert reply.body == disk(slug, rel), url


def assert_refused(reply: Reply, url: str) -> None:
    assert reply.status == 404, (url, reply.status)
    assert b"marker" not in reply.body and b"zarr_format" not in reply.body


@pytest.mark.parametrize("who", list(READABLE))
def test_permission_matrix_through_nginx(world: World, proxy: Proxy, who: str) -> None:
    headers = session_cookie(world, who)
    for slug in ("pub", "priv", "teamds", "second"):
        for kind, (rel, _) in STORE_FILES.items():
            url = f"/data/{slug}/{rel}"
            reply = proxy.request(url, headers=headers)
            if slug in READABLE[who]:
                assert_served(reply, slug, kind, url)
            else:
                assert_refused(reply, url)
    assert not [p for p in proxy.django_paths if p.startswith("/data/")]


def test_share_links_through_nginx(world: World, proxy: Proxy) -> None:
    cases = [
        (world.link.token, "priv", True),
        (world.second_link.token, "second", True),
        (world.link.token, "second", False),
        (world.second_link.token, "priv", False),
        (world.link.token, "pub", False),
        (world.revoked.token, "priv", False),
        (world.expired.token, "priv", False),
        ("forged" + world.link.token[6:], "priv", False),
        ("x" * 32, "priv", False),
    ]
    for token, slug, allowed in cases:
        for kind, (rel, _) in STORE_FILES.items():
            url = f"/s/{token}/data/{slug}/{rel}"
            reply = proxy.request(url)
            if allowed:
                assert_served(reply, slug, kind, url)
            else:
                assert_refused(reply, url)


def test_chunks_come_from_nginx_with_one_cached_decision(world: World, proxy: Proxy) -> None:
    url = f"/s/{world.link.token}/data/priv/{STORE_FILES['chunk'][0]}"
    for _ in range(20):
        reply = proxy.request(url)
        assert reply.status == 200
        assert reply.headers["x-served-by"] == "nginx"
    assert proxy.django_paths == ["/internal/data-auth"]


def test_revoked_link_is_refused_after_the_cache_time(world: World, proxy: Proxy) -> None:
    url = f"/s/{world.link.token}/data/priv/{STORE_FILES['chunk'][0]}"
    assert proxy.request(url).status == 200
    ShareLink.objects.filter(pk=world.link.pk).update(revoked_at=timezone.now())
    deadline = time.monotonic() + AUTH_CACHE_SECONDS + 2
    while proxy.request(url).status == 200:
        assert time.monotonic() < deadline, "revocation not effective after the cache time"
        time.sleep(0.2)
    assert proxy.request(url).status == 404


def test_link_expiring_is_refused_after_the_cache_time(world: World, proxy: Proxy) -> None:
    expires_at = timezone.now() + timezone.timedelta(seconds=2)
    link = ShareLink.objects.create(
        dataset=world.private, created_by=world.owner, expires_at=expires_at
    )
    url = f"/s/{link.token}/data/priv/{STORE_FILES['chunk'][0]}"
    assert proxy.request(url).status == 200
    deadline = time.monotonic() + 2 + AUTH_CACHE_SECONDS + 2
    while proxy.request(url).status == 200:
        assert time.monotonic() < deadline, "expiry not effective after the cache time"
        time.sleep(0.2)
    assert timezone.now() >= expires_at
    assert proxy.request(url).status == 404


def test_http_semantics_through_nginx(world: World, proxy: Proxy) -> None:
    rel = STORE_FILES["chunk"][0]
    url = f"/data/pub/{rel}"
    full = disk("pub", rel)
    reply = proxy.request(url, headers={"Origin": "https://viewer.example"})
    assert reply.headers["etag"] == Client().get(url)["ETag"]  # same validators as embedded
    assert reply.headers["accept-ranges"] == "bytes"
    assert reply.headers["cache-control"] == "public, max-age=60"
    assert reply.headers["access-control-allow-origin"] == "*"
    assert "Content-Range" in reply.headers["access-control-expose-headers"]

    part = proxy.request(url, headers={"Range": "bytes=10-19"})
    assert part.status == 206
    assert part.headers["content-range"] == f"bytes 10-19/{len(full)}"
    assert part.body == full[10:20]
    assert proxy.request(url, headers={"Range": f"bytes={len(full)}-"}).status == 416

    head = proxy.request(url, method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == str(len(full))

    etag = reply.headers["etag"]
    assert proxy.request(url, headers={"If-None-Match": etag}).status == 304
    since = reply.headers["last-modified"]
    assert proxy.request(url, headers={"If-Modified-Since": since}).status == 304

    preflight = proxy.request(
        f"/s/{world.link.token}/data/priv/{rel}",
        method="OPTIONS",
        headers={"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "Range" in preflight.headers["access-control-allow-headers"]

    absent = proxy.request("/data/pub/image.ome.zarr/s0/c/7/7/7", headers={"Origin": "https://a.b"})
    assert absent.status == 404
    assert absent.headers["access-control-allow-origin"] == "*"
    refused = proxy.request(f"/data/priv/{rel}", headers={"Origin": "https://a.b"})
    assert refused.status == 404
    assert refused.headers["access-control-allow-origin"] == "*"

    private = proxy.request(f"/data/priv/{rel}", headers=session_cookie(world, "owner"))
    assert private.headers["cache-control"].startswith("private")
    assert proxy.request(url, method="POST").status in (403, 405)


def test_sharded_meshes_read_with_ranges_through_nginx(world: World, proxy: Proxy) -> None:
    """nginx answers every Range read of a sharded mesh source itself (no Django request)."""
    cookie = session_cookie(world, "owner")

    def get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        reply = proxy.request(url, headers={**cookie, **headers})
        assert reply.headers["x-served-by"] == "nginx"
        return reply.status, reply.headers, reply.body

    for segment_id, url in (
        (1, "/data/priv/meshes/cells/"),
        (300, f"/s/{world.link.token}/data/priv/meshes/cells/"),
    ):
        manifest, faces = read_mesh_over_http(get, url, segment_id)
        assert [p.tolist() for p in manifest.positions] == [[[0, 0, 0]]]
        assert faces == [4]
    info = proxy.request("/data/pub/meshes/cells/info")
    assert info.headers["content-type"] == "application/json"
    assert not [p for p in proxy.django_paths if "/data/" in p and "cells" in p]


SECRET = b"TOP-SECRET-OUTSIDE-THE-STORE"


def test_traversal_through_nginx(world: World, proxy: Proxy) -> None:
    root = Path(settings.DATA_ROOT)
    (root / "datasets" / "secret.txt").write_bytes(SECRET)
    (root / "secret.txt").write_bytes(SECRET)
    token = world.link.token
    urls = [
        "/data/pub/../secret.txt",
        "/data/pub/../../secret.txt",
        "/data/pub/%2e%2e/secret.txt",
        "/data/pub/%2e%2e/%2e%2e/secret.txt",
        "/data/pub/..%2fsecret.txt",
        "/data/pub/..%2f..%2fsecret.txt",
        "/data/pub/..%5csecret.txt",
        "/data/pub/image.ome.zarr%00/zarr.json",
        "/data/pub//etc/passwd",
        "/data/pub/%2fetc%2fpasswd",
        "/data/pub/../priv/image.ome.zarr/zarr.json",
        f"/s/{token}/data/priv/../second/image.ome.zarr/zarr.json",
        f"/s/{token}/data/priv/%2e%2e/second/image.ome.zarr/zarr.json",
        f"/s/{token}/../data/second/image.ome.zarr/zarr.json",
        f"/s/{token}/data/priv/../../data/second/image.ome.zarr/zarr.json",
    ]
    for url in urls:
        reply = proxy.request(url)
        assert reply.status in (400, 403, 404), (url, reply.status)
        assert SECRET not in reply.body, url
        assert b"root:" not in reply.body and b'"marker"' not in reply.body, url


def test_internal_endpoint_static_and_proxying(world: World, proxy: Proxy) -> None:
    assert proxy.request("/internal/data-auth", headers={"X-Data-Slug": "pub"}).status == 404
    assert "/internal/data-auth" not in proxy.django_paths

    css = proxy.request("/static/css/site.css")
    assert css.status == 200 and css.body == b"body { color: black; }"

    proxied = proxy.request("/not-a-data-url/")
    assert proxied.status == 404
    assert "x-served-by" not in proxied.headers
    assert "/not-a-data-url/" in proxy.django_paths


def test_event_stream_is_not_buffered(world: World, proxy: Proxy) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        started = time.monotonic()
        conn.request("GET", "/neuroglancer/events/abc")
        response = conn.getresponse()
        assert response.status == 200
        first = b""
        while b"\n\n" not in first:
            first += response.read1(1024)
        assert first == b"data: first\n\n"
        assert time.monotonic() - started < 1.2, "the first event waited for the stream's end"
        assert b"data: second" in response.read()
    finally:
        conn.close()


def test_listed_cors_origins_through_nginx(tmp_path: Path) -> None:
    """With DATA_CORS_ORIGINS listed, nginx echoes a listed origin and no other."""
    port = free_port()
    snippet = render_nginx_conf(
        cors_origins=["https://viewer.example", "http://localhost:8080"],
        listen=f"127.0.0.1:{port}",
        upstream="127.0.0.1:9",  # never reached: preflights need no access check
        data_root=str(tmp_path / "data"),
        static_root=str(tmp_path / "static"),
        auth_cache_path=str(tmp_path / "cache"),
    )
    server = start_nginx(tmp_path / "nginx", snippet, port)
    try:
        proxy = Proxy(port, [])
        url = "/data/any/image.ome.zarr/zarr.json"
        for origin, expected in [
            ("https://viewer.example", "https://viewer.example"),
            ("http://localhost:8080", "http://localhost:8080"),
            ("https://evil.example", None),
        ]:
            reply = proxy.request(url, method="OPTIONS", headers={"Origin": origin})
            assert reply.status == 204
            assert reply.headers.get("access-control-allow-origin") == expected, origin
    finally:
        server.stop()
