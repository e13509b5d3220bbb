"""The viewer page offers the Share panel to the dataset's owner and superusers, nobody else."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from webapp.accounts.models import Team
from webapp.datasets.models import Visibility

pytestmark = pytest.mark.django_db

SHARE_BUTTON = 'id="share-toggle"'
SHARE_SCRIPT = "/static/share_links.js"


def share_offered(html: str) -> bool:
    """True when the page has the Share button and loads its script; both or neither."""
    button, script = SHARE_BUTTON in html, SHARE_SCRIPT in html
    assert button == script, "button and script must come together"
    return button


@pytest.mark.parametrize("visibility", [Visibility.PRIVATE, Visibility.PUBLIC])
def test_owner_sees_share_button_and_its_api_url_works(
    client: Client, make_dataset: Any, owner: Any, visibility: str
) -> None:
    make_dataset("cells", visibility)
    client.force_login(owner)
    html = client.get("/datasets/cells/").content.decode()
    assert share_offered(html)
    assert "Copy link" in html
    match = re.search(r'id="share-panel"[^>]*data-url="([^"]+)"', html, re.S)
    assert match is not None
    url = match.group(1)
    assert url == "/api/v1/datasets/cells/share-links/"
    # The panel's URL is the real API: the owner can list and create links through it.
    assert client.get(url).json() == []
    created = client.post(url, {"label": "reviewers"}, content_type="application/json")
    assert created.status_code == 201
    assert created.json()["viewer_url"].startswith("http://testserver/s/")


def test_superuser_sees_share_button_on_someone_elses_dataset(
    client: Client, make_dataset: Any
) -> None:
    make_dataset("cells", Visibility.PRIVATE)
    admin = get_user_model().objects.create_superuser("admin", password="admin-pass-123")
    client.force_login(admin)
    assert share_offered(client.get("/datasets/cells/").content.decode())


@pytest.mark.parametrize("who", ["anonymous", "other"])
def test_others_see_no_share_button(
    client: Client, make_dataset: Any, other: Any, who: str
) -> None:
    make_dataset("cells", Visibility.PUBLIC)
    if who == "other":
        client.force_login(other)
    response = client.get("/datasets/cells/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Copy link" in html
    assert not share_offered(html)
    # And the API agrees: they may not list the links.
    assert client.get("/api/v1/datasets/cells/share-links/").status_code in (401, 403)


def test_team_member_sees_no_share_button(client: Client, make_dataset: Any, other: Any) -> None:
    dataset = make_dataset("cells", Visibility.TEAM)
    team = Team.objects.create(name="lab", slug="lab")
    team.members.add(other)
    dataset.team = team
    dataset.save()
    client.force_login(other)
    response = client.get("/datasets/cells/")
    assert response.status_code == 200
    assert not share_offered(response.content.decode())


@pytest.mark.parametrize("who", ["anonymous", "owner", "superuser"])
def test_share_link_visitors_see_no_share_button(
    client: Client, make_dataset: Any, share_link: Any, owner: Any, who: str
) -> None:
    link = share_link(make_dataset("cells", Visibility.PRIVATE))
    if who == "owner":
        client.force_login(owner)
    elif who == "superuser":
        client.force_login(
            get_user_model().objects.create_superuser("admin", password="admin-pass-123")
        )
    response = client.get(f"/s/{link.token}/datasets/cells/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Shared link" in html
    assert not share_offered(html)
