"""Bad input gets a 4xx with a message, never a 5xx; the schema tells the truth about answers.

Each case here was found by schemathesis (``test_schemathesis.py``) or stands beside one. Run on
PostgreSQL too (``DATABASE_URL=postgres://...``): NUL characters pass through SQLite silently but
make PostgreSQL fail, which is where the 500s came from.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client, RequestFactory
from rest_framework.authtoken.models import Token

from tests.serving.conftest import STORE_FILES, make_dataset, make_share_link, make_user
from webapp.core.pagination import MAX_PAGE_SIZE
from webapp.datasets.data_wsgi import DataFastPathHandler
from webapp.datasets.models import DatasetJob, JobKind, Layer, LayerKind, Visibility
from webapp.viewer.models import SavedState

pytestmark = pytest.mark.django_db

CHUNK_PATH = STORE_FILES["chunk"][0]
NUL_PARAMS = ["a%00b", "%00", "x%00%00"]


@pytest.fixture
def owner() -> Any:
    return make_user("owner")


@pytest.fixture
def public(owner: Any) -> Any:
    dataset = make_dataset("pub", owner, Visibility.PUBLIC)
    Layer.objects.create(dataset=dataset, name="image", kind=LayerKind.IMAGE, path="image.ome.zarr")
    return dataset


def _signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _fast_path(path: str) -> tuple[int, bytes]:
    """Status and body of ``path`` through the production WSGI handler's data route."""
    seen: dict[str, int] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = int(status.split()[0])

    body = b"".join(DataFastPathHandler()(RequestFactory().get(path).environ, start_response))
    return seen["status"], body


def _assert_refused(response: Any, status: int = 400, word: str = "NUL") -> None:
    assert response.status_code == status, response.content[:300]
    text = response.content.decode()
    assert word in text, text


# ------------------------------------------------------------------------ NUL characters


@pytest.mark.parametrize("value", NUL_PARAMS)
def test_nul_in_a_query_parameter_is_400_not_500(public: Any, owner: Any, value: str) -> None:
    for client in (Client(), _signed_in(owner)):
        response = client.get(f"/api/v1/datasets/?search={value}")
        _assert_refused(response)
        assert response.json()["message"].startswith("The request contains a NUL")
    # An escaped percent sign is not a NUL: searched for as the text "%00".
    assert Client().get("/api/v1/datasets/?search=a%2500b").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/datasets/pub%00/",
        "/api/v1/datasets/pub/states/ab%00cd/",
        "/datasets/pub%00/",
        "/datasets/pub/?state=a%00b",
        "/s/tok%00en/datasets/pub/",
        "/",  # with a NUL in the query below
    ],
)
def test_nul_in_a_page_or_api_path_is_400(public: Any, path: str) -> None:
    if path == "/":
        path = "/?q=%00"
    _assert_refused(Client().get(path))


@pytest.mark.django_db(transaction=True)  # the fast path ends its request like a server
def test_nul_in_data_urls_is_400_through_django_and_the_fast_path(public: Any) -> None:
    link = make_share_link(public)
    paths = [
        f"/s/{link.token}%00/data/pub/{CHUNK_PATH}",
        f"/data/pub/{CHUNK_PATH}%00",
        f"/data/pub/{CHUNK_PATH}?x=%00",
    ]
    for path in paths:
        _assert_refused(Client().get(path))
        status, body = _fast_path(path)
        assert status == 400 and b"NUL" in body
    # The same URLs without the NUL still serve the chunk.
    assert Client().get(f"/s/{link.token}/data/pub/{CHUNK_PATH}").status_code == 200


def test_nul_in_a_header_is_400(public: Any) -> None:
    response = Client().get(
        "/internal/data-auth", HTTP_X_DATA_SLUG="pub", HTTP_X_SHARE_TOKEN="to\x00ken"
    )
    _assert_refused(response)
    _assert_refused(Client().get("/api/v1/datasets/", HTTP_AUTHORIZATION="Token ab\x00cd"))


def test_a_cookie_with_nul_is_ignored_not_fatal(public: Any, owner: Any) -> None:
    client = _signed_in(owner)
    client.cookies["sessionid"] = "abcdefgh\x00ijkl"  # as Python unquotes "\\000" in a cookie
    response = client.get("/api/v1/datasets/")
    assert response.status_code == 200 and response.json()["count"] == 1  # anonymous view


@pytest.mark.parametrize(
    "state",
    [{"a": "x\u0000y"}, {"a\u0000": 1}, {"layers": [{"name": "\u0000"}]}],
)
def test_nul_in_a_json_body_is_400(public: Any, state: Any) -> None:
    response = Client().post(
        "/api/v1/datasets/pub/states/", {"state": state}, content_type="application/json"
    )
    _assert_refused(response)
    assert SavedState.objects.count() == 0


def test_nul_in_a_form_field_is_400(public: Any, owner: Any) -> None:
    response = _signed_in(owner).patch(
        "/api/v1/datasets/pub/",
        json.dumps({"description": "a\u0000b"}),
        content_type="application/json",
    )
    _assert_refused(response)
    response = _signed_in(owner).post("/api/v1/datasets/pub/share-links/", {"label": "a\x00b"})
    _assert_refused(response, word="Null characters are not allowed")


def test_absurdly_nested_json_is_400(public: Any) -> None:
    for depth in (150, 100_000):  # past the limit; past Python's recursion limit
        body = '{"state": {"a": ' + "[" * depth + "]" * depth + "}}"
        response = Client().post(
            "/api/v1/datasets/pub/states/", body, content_type="application/json"
        )
        _assert_refused(response, word="nested")


# ------------------------------------------------------------------ numbers and routes


@pytest.mark.parametrize(
    "query", ["limit=9223372036854775808", "limit=99999999999999999999999", "limit=1000000"]
)
def test_a_huge_limit_is_capped_not_500(public: Any, query: str) -> None:
    response = Client().get(f"/api/v1/datasets/?{query}")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["count"] == 1 and len(response.json()["results"]) == 1
    assert f"limit={MAX_PAGE_SIZE}" not in (response.json()["next"] or "")


def test_a_huge_offset_is_an_empty_page(public: Any) -> None:
    response = Client().get("/api/v1/datasets/?offset=9223372036854775808&limit=5")
    assert response.status_code == 200 and response.json()["results"] == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/jobs/null,null/",
        "/api/v1/jobs/99999999999999999999999/",
        "/api/v1/datasets/%C2%9D/states/abc/",
        "/api/v1/no-such-thing/",
    ],
)
def test_unmatched_api_paths_are_json_404(owner: Any, path: str) -> None:
    response = _signed_in(owner).get(path)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["message"]


def test_anonymous_writes_are_401_before_any_lookup(public: Any) -> None:
    private = make_dataset("priv", public.owner, Visibility.PRIVATE)
    for slug in (public.slug, private.slug, "absent"):
        for response in (
            Client().delete(f"/api/v1/datasets/{slug}/"),
            Client().patch(f"/api/v1/datasets/{slug}/", "{}", content_type="application/json"),
        ):
            assert response.status_code in (401, 403), (slug, response.content)
            assert response.json()["message"]
    token = Client().delete(f"/api/v1/datasets/{private.slug}/", HTTP_AUTHORIZATION="Token x")
    assert token.status_code == 401


# ------------------------------------------------------------------- the schema's truth


@pytest.fixture
def schema() -> dict[str, Any]:
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return dict(response.json())


def test_schema_documents_error_answers(schema: dict[str, Any]) -> None:
    assert set(schema["components"]["schemas"]["Error"]["required"]) == {"message"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"400", "401"} <= codes, (method, path, codes)
            if "{" in path:
                assert "404" in codes, (method, path, codes)
            error = operation["responses"]["400"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}
    cancel = schema["paths"]["/api/v1/jobs/{id}/cancel/"]["post"]["responses"]
    assert {"403", "404", "409"} <= set(cancel)
    assert "413" in schema["paths"]["/api/v1/imports/"]["post"]["responses"]
    assert "429" in schema["paths"]["/api/v1/datasets/{slug}/states/"]["post"]["responses"]


def test_schema_says_what_anonymous_visitors_may_call(schema: dict[str, Any], public: Any) -> None:
    def anonymous_ok(path: str, method: str) -> bool:
        return {} in schema["paths"][path][method]["security"]

    assert anonymous_ok("/api/v1/datasets/{slug}/", "get")
    assert Client().get("/api/v1/datasets/pub/").status_code == 200
    assert anonymous_ok("/api/v1/datasets/", "get")
    assert not anonymous_ok("/api/v1/datasets/{slug}/", "patch")
    assert not anonymous_ok("/api/v1/datasets/{slug}/share-links/", "get")
    assert not anonymous_ok("/api/v1/jobs/", "get")


def test_layer_source_layer_is_nullable_and_null(
    schema: dict[str, Any], public: Any, owner: Any
) -> None:
    prop = schema["components"]["schemas"]["Layer"]["properties"]["source_layer"]
    assert prop["type"] == "string" and prop["nullable"] is True
    layer = Client().get("/api/v1/datasets/pub/").json()["layers"][0]
    assert layer["name"] == "image" and layer["source_layer"] is None


def test_share_links_are_a_plain_list_as_documented(
    schema: dict[str, Any], public: Any, owner: Any
) -> None:
    make_share_link(public, label="one")
    documented = schema["paths"]["/api/v1/datasets/{slug}/share-links/"]["get"]["responses"]
    assert documented["200"]["content"]["application/json"]["schema"]["type"] == "array"
    body = _signed_in(owner).get("/api/v1/datasets/pub/share-links/").json()
    assert isinstance(body, list) and [link["label"] for link in body] == ["one"]


def test_token_auth_reaches_the_same_rules(public: Any, owner: Any) -> None:
    token = Token.objects.create(user=owner)
    job = DatasetJob.objects.create(kind=JobKind.IMPORT, owner=owner, params={"name": "x"})
    headers = {"HTTP_AUTHORIZATION": f"Token {token.key}"}
    assert Client().get(f"/api/v1/jobs/{job.id}/", **headers).status_code == 200
    assert Client().get(f"/api/v1/jobs/{job.id}/").status_code == 401
    other = Token.objects.create(user=make_user("other"))
    stranger = {"HTTP_AUTHORIZATION": f"Token {other.key}"}
    assert Client().get(f"/api/v1/jobs/{job.id}/", **stranger).status_code == 404
    assert Client().post(f"/api/v1/jobs/{job.id}/cancel/", **stranger).status_code == 404
