"""The site's own 404/500 pages, favicon, API root and offline API docs (DEBUG off)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import path

from webapp.core.api_root import api_endpoints


def test_debug_is_off_by_default(settings: Any) -> None:
    assert settings.DEBUG is False


@pytest.mark.django_db
def test_missing_page_gets_the_sites_404_without_url_patterns(client: Client) -> None:
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Page not found" in html and "/no/such/page/" in html
    assert "URLconf" not in html and "admin/" not in html  # no debug listing of patterns
    assert 'href="/static/core/favicon.svg"' in html or "favicon.svg" in html


@pytest.mark.django_db
def test_missing_api_path_answers_json(client: Client) -> None:
    response = client.get("/api/v1/no-such-endpoint/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "/api/v1/" in response.json()["message"]


def _boom(request: Any) -> Any:
    raise RuntimeError("kaboom-secret-detail")


urlpatterns = [path("boom/", _boom), path("api/boom/", _boom)]


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_server_error_pages_hide_the_details() -> None:
    from django.conf import settings

    settings.ROOT_URLCONF = __name__
    client = Client(raise_request_exception=False)
    page = client.get("/boom/")
    assert page.status_code == 500
    assert "Something went wrong" in page.content.decode()
    assert "kaboom" not in page.content.decode()
    api = client.get("/api/boom/")
    assert api.status_code == 500 and "kaboom" not in api.content.decode()
    assert "message" in api.json()


handler500 = "webapp.core.pages.server_error"


def test_favicon(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"  # ICO header
    assert "max-age=86400" in response["Cache-Control"]


@pytest.mark.django_db
def test_api_root_lists_every_endpoint(client: Client) -> None:
    body = client.get("/api/v1/").json()
    endpoints = body["endpoints"]
    names = {name for name, _ in api_endpoints()} - {"api-root"}
    assert {f"api-{n}" if not n.startswith("viewer-") else n for n in endpoints} >= {
        n for n in names if n.startswith("api-")
    }
    assert endpoints["dataset-list"] == "http://testserver/api/v1/datasets/"
    assert endpoints["dataset-detail"] == "http://testserver/api/v1/datasets/{slug}/"
    assert len(endpoints) == len(names)
    assert body["schema"].endswith("/api/schema/") and body["docs"].endswith("/api/docs/")
    assert all("<" not in url for url in endpoints.values())


@pytest.mark.django_db
def test_api_docs_load_nothing_from_other_sites(client: Client) -> None:
    html = client.get("/api/docs/").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui-bundle.js" in a for a in assets), assets
    assert [a for a in assets if a.startswith(("http://", "https://", "//"))] == []
    from django.contrib.staticfiles import finders

    bundle = next(a for a in assets if "swagger-ui-bundle.js" in a)
    assert finders.find(bundle.removeprefix("/static/")), "collectstatic would not find it"
