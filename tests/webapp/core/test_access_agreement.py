"""The data-serving access check and the visibility query agree, for every role and visibility.

The rule lives once (``DatasetQuerySet.rules``) and is read two ways: as a query
(``Dataset.objects.restrict``, behind the API, the pages and the viewer's share-link lookup) and
on cached facts (``data_access``, behind the embedded data views, the data fast path and
nginx's ``/internal/data-auth``). Every reading must give the answer of the table below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, RequestFactory
from django.utils import timezone

from tests.serving.conftest import STORE_FILES, make_dataset, make_share_link, make_team, make_user
from webapp.datasets.data_access import data_access, data_access_cache_clear
from webapp.datasets.data_wsgi import DataFastPathHandler
from webapp.datasets.models import Dataset, Visibility
from webapp.datasets.selectors import dataset_for_share_token

# transaction=True: the data fast path ends its request like a server (closing the connection).
pytestmark = pytest.mark.django_db(transaction=True)

VISIBILITIES = [Visibility.PRIVATE, Visibility.TEAM, Visibility.PUBLIC]
CHUNK_PATH = STORE_FILES["chunk"][0]

# Which datasets each role may read. Every dataset belongs to "owner" and names the team "lab"
# (so a private or public dataset with a team must not open to the team beyond its visibility).
EXPECTED: dict[str, set[str]] = {
    "anonymous": {"public"},
    "other user": {"public"},
    "member of another team": {"public"},
    "owner": {"private", "team", "public"},
    "team member": {"team", "public"},
    "superuser": {"private", "team", "public"},
    "active share link": {"private", "team", "public"},
    "revoked share link": set(),
    "expired share link": set(),
    "share link of another dataset": set(),
}


@dataclass(frozen=True)
class Role:
    user: Any  # None: anonymous
    link_for: str | None = None  # share link kind: "active", "revoked", "expired", "other"


@pytest.fixture
def roles() -> dict[str, Role]:
    owner = make_user("owner")
    member = make_user("member")
    outsider = make_user("outsider")
    make_team("lab", [owner, member])
    make_team("elsewhere", [outsider])
    return {
        "anonymous": Role(None),
        "other user": Role(make_user("other")),
        "member of another team": Role(outsider),
        "owner": Role(owner),
        "team member": Role(member),
        "superuser": Role(make_user("root", is_superuser=True, is_staff=True)),
        "active share link": Role(None, "active"),
        "revoked share link": Role(None, "revoked"),
        "expired share link": Role(None, "expired"),
        "share link of another dataset": Role(None, "other"),
    }


@pytest.fixture
def datasets(roles: dict[str, Role]) -> dict[str, tuple[Dataset, dict[str, str]]]:
    """One dataset per visibility, each with its share links by kind (token strings)."""
    owner = roles["owner"].user
    team = owner.teams.get(slug="lab")
    now = timezone.now()
    unrelated = make_dataset("unrelated", owner, Visibility.PRIVATE)
    unrelated_token = make_share_link(unrelated).token
    result = {}
    for visibility in VISIBILITIES:
        dataset = make_dataset(f"ds-{visibility}", owner, visibility, team)
        links = {
            "active": make_share_link(dataset, expires_at=now + timedelta(days=1)).token,
            "revoked": make_share_link(dataset, revoked_at=now).token,
            "expired": make_share_link(dataset, expires_at=now - timedelta(seconds=1)).token,
            "other": unrelated_token,
        }
        result[str(visibility)] = (dataset, links)
    return result


def _client(user: Any) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _fast_path_status(path: str, client: Client) -> int:
    """The status the production WSGI handler's data route answers, with the client's cookies."""
    factory = RequestFactory()
    factory.cookies = client.cookies
    seen: dict[str, int] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = int(status.split()[0])

    body = DataFastPathHandler()(factory.get(path).environ, start_response)
    getattr(body, "close", lambda: None)()
    return seen["status"]


def _readings(role: Role, dataset: Dataset, links: dict[str, str]) -> dict[str, bool]:
    """Every place that decides whether ``role`` may read ``dataset``: allowed or not."""
    slug = dataset.slug
    token = links[role.link_for] if role.link_for else None
    client = _client(role.user)
    data_prefix = f"/s/{token}/data/{slug}/" if token else f"/data/{slug}/"
    page = f"/s/{token}/datasets/{slug}/" if token else f"/datasets/{slug}/"
    auth_headers = {"HTTP_X_DATA_SLUG": slug, "HTTP_X_SHARE_TOKEN": token or ""}
    if token:
        query = dataset_for_share_token(token, slug) is not None
    else:
        query = Dataset.objects.restrict(role.user, "view").filter(slug=slug).exists()
    data_access_cache_clear()
    readings = {
        "query": query,
        "data_access": data_access(slug, role.user, token, use_cache=False) is not None,
        "data_access cached": data_access(slug, role.user, token) is not None,
        "data_access cache hit": data_access(slug, role.user, token) is not None,
        "/internal/data-auth": client.get("/internal/data-auth", **auth_headers).status_code == 204,
        "data URL": client.get(data_prefix + CHUNK_PATH).status_code == 200,
        "data fast path": _fast_path_status(data_prefix + CHUNK_PATH, client) == 200,
        "viewer page": client.get(page).status_code == 200,
    }
    if not token:
        readings["API detail"] = client.get(f"/api/v1/datasets/{slug}/").status_code == 200
    return readings


@pytest.mark.parametrize("role_name", list(EXPECTED))
def test_every_reading_of_the_rule_agrees(
    role_name: str, roles: dict[str, Role], datasets: dict[str, Any]
) -> None:
    role = roles[role_name]
    for visibility, (dataset, links) in datasets.items():
        expected = visibility in EXPECTED[role_name]
        readings = _readings(role, dataset, links)
        wrong = {where: allowed for where, allowed in readings.items() if allowed != expected}
        assert not wrong, (
            f"{role_name} on a {visibility} dataset: expected "
            f"{'allowed' if expected else 'refused'}, but {wrong}"
        )


def test_the_rule_table_covers_every_role_and_visibility() -> None:
    assert len(EXPECTED) == 10 and all(
        v <= {"private", "team", "public"} for v in EXPECTED.values()
    )
