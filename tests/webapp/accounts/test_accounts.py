"""Login/logout pages and API token management."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


@pytest.fixture
def user():
    return get_user_model().objects.create_user("alice", password=PASSWORD)


def test_login_page_signs_in_and_logout_signs_out(client: Client, user) -> None:
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b'name="username"' in page.content and b'name="password"' in page.content

    bad = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert bad.status_code == 200
    assert b"Wrong username or password" in bad.content
    assert "_auth_user_id" not in client.session

    good = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert good.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)

    out = client.post("/accounts/logout/")
    assert out.status_code == 302
    assert "_auth_user_id" not in client.session


def test_token_page_requires_login_and_regenerates(client: Client, user) -> None:
    assert client.get("/accounts/token/").status_code == 302
    client.force_login(user)
    page = client.get("/accounts/token/")
    first = Token.objects.get(user=user).key
    assert first.encode() in page.content
    client.post("/accounts/token/")
    second = Token.objects.get(user=user).key
    assert second != first


def test_token_api_obtain_use_rotate_revoke(user) -> None:
    api = Client()
    wrong = api.post("/api/v1/auth/token/", {"username": "alice", "password": "x"})
    assert wrong.status_code in (401, 403)
    assert "Wrong username or password" in wrong.json()["message"]

    got = api.post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD})
    assert got.status_code == 200
    token = got.json()["token"]

    me = api.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {token}")
    assert me.status_code == 200 and me.json()["username"] == "alice"

    rotated = api.post("/api/v1/auth/token/rotate/", HTTP_AUTHORIZATION=f"Token {token}")
    new_token = rotated.json()["token"]
    assert new_token != token
    assert api.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 401

    gone = api.delete("/api/v1/auth/token/", HTTP_AUTHORIZATION=f"Token {new_token}")
    assert gone.status_code == 204
    assert api.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {new_token}").status_code == 401


def test_me_requires_authentication() -> None:
    res = Client().get("/api/v1/me/")
    assert res.status_code in (401, 403)
    assert res.json()["message"]
