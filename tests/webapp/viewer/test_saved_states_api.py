"""POST /api/v1/datasets/<slug>/states/: copy-link states, for whoever may see the dataset."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from webapp.datasets.models import Visibility
from webapp.viewer.models import SavedState

pytestmark = pytest.mark.django_db
STATE = {"position": [10.5, 20, 30], "crossSectionScale": 0.4, "layers": [{"name": "a"}]}


def post_state(client: Client, slug: str, body: Any) -> Any:
    return client.post(
        f"/api/v1/datasets/{slug}/states/", data=json.dumps(body), content_type="application/json"
    )


def test_owner_saves_and_reopens_a_view(client: Client, make_dataset: Any, owner: Any) -> None:
    make_dataset("cells", Visibility.PRIVATE)
    client.force_login(owner)
    response = post_state(client, "cells", {"state": STATE})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["url"] == f"/datasets/cells/?state={body['key']}"
    saved = SavedState.objects.get(key=body["key"])
    assert saved.state == STATE and saved.created_by == owner

    page = client.get(body["url"])
    assert page.status_code == 200
    assert '"position": [10.5, 20, 30]' in page.content.decode()
    detail = client.get(f"/api/v1/datasets/cells/states/{body['key']}/")
    assert detail.json()["state"] == STATE


def test_permissions(client: Client, make_dataset: Any, other: Any) -> None:
    make_dataset("cells", Visibility.PRIVATE)
    make_dataset("open", Visibility.PUBLIC)
    assert post_state(client, "cells", {"state": STATE}).status_code == 404
    client.force_login(other)
    assert post_state(client, "cells", {"state": STATE}).status_code == 404
    assert post_state(client, "open", {"state": STATE}).status_code == 201
    assert post_state(client, "missing", {"state": STATE}).status_code == 404


def test_share_link_visitor_saves_a_share_link_url(
    client: Client, make_dataset: Any, share_link: Any
) -> None:
    cells = make_dataset("cells", Visibility.PRIVATE)
    make_dataset("another", Visibility.PRIVATE)
    link = share_link(cells)
    response = post_state(client, "cells", {"state": STATE, "share_token": link.token})
    assert response.status_code == 201
    url = response.json()["url"]
    assert url.startswith(f"/s/{link.token}/datasets/cells/?state=")
    assert client.get(url).status_code == 200
    assert SavedState.objects.get().created_by is None
    assert (
        post_state(client, "another", {"state": STATE, "share_token": link.token}).status_code
        == 404
    )
    link.revoked_at = timezone.now()
    link.save()
    assert (
        post_state(client, "cells", {"state": STATE, "share_token": link.token}).status_code == 404
    )
    assert client.get(url).status_code == 404


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"state": [1, 2]}, "JSON object"),
        ({"state": "x"}, "JSON object"),
        ({"state": {"layers": "nope"}}, "layers"),
        ({}, "state"),
    ],
)
def test_bad_states_get_clear_400s(
    client: Client, make_dataset: Any, owner: Any, body: Any, needle: str
) -> None:
    make_dataset("cells", Visibility.PUBLIC)
    client.force_login(owner)
    response = post_state(client, "cells", body)
    assert response.status_code == 400
    assert needle in response.json()["message"]


@pytest.mark.parametrize(
    "source",
    [
        "precomputed://https://evil.example/mesh",
        "zarr3://http://testserver/data/other/image.ome.zarr/",
        ["zarr3://http://testserver/data/cells/image.ome.zarr/", "n5://https://x.example/a"],
        {"url": "zarr://https://evil.example/cells/data/cells/x", "subsources": {}},
        17,
    ],
)
def test_states_naming_foreign_sources_are_refused(
    client: Client, make_dataset: Any, owner: Any, source: Any
) -> None:
    make_dataset("cells", Visibility.PUBLIC)
    make_dataset("other", Visibility.PUBLIC)
    client.force_login(owner)
    state = {"layers": [{"name": "img", "source": source}]}
    response = post_state(client, "cells", {"state": state})
    assert response.status_code == 400
    assert "source" in response.json()["message"]
    assert not SavedState.objects.exists()


def test_states_with_own_and_local_sources_are_kept(
    client: Client, make_dataset: Any, owner: Any
) -> None:
    make_dataset("cells", Visibility.PUBLIC)
    client.force_login(owner)
    layers = [
        {"name": "img", "source": "zarr3://http://testserver/data/cells/image.ome.zarr/"},
        {"name": "seg", "source": [{"url": "precomputed://http://h:8000/s/tok/data/cells/m"}]},
        {"name": "notes", "type": "annotation", "source": "local://annotations"},
        {"name": "nothing"},
    ]
    response = post_state(client, "cells", {"state": {"layers": layers}})
    assert response.status_code == 201, response.content


def test_saving_states_is_rate_limited_per_user_and_per_address(
    client: Client, make_dataset: Any, owner: Any, settings: Any
) -> None:
    settings.VIEWER_STATE_SAVE_RATE = "3/min"
    make_dataset("cells", Visibility.PUBLIC)
    codes = [post_state(client, "cells", {"state": STATE}).status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    refused = post_state(client, "cells", {"state": STATE})
    assert refused.status_code == 429 and "throttled" in refused.json()["message"]
    assert SavedState.objects.count() == 3
    key = SavedState.objects.values_list("key", flat=True).first()
    assert client.get(f"/api/v1/datasets/cells/states/{key}/").status_code == 200  # reads: free

    client.force_login(owner)  # a signed-in user has a budget of their own
    assert post_state(client, "cells", {"state": STATE}).status_code == 201


def test_malformed_json_is_400(client: Client, make_dataset: Any, owner: Any) -> None:
    make_dataset("cells", Visibility.PUBLIC)
    client.force_login(owner)
    response = client.post(
        "/api/v1/datasets/cells/states/", data="{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["message"]


def test_oversized_state_is_413(client: Client, make_dataset: Any, owner: Any) -> None:
    make_dataset("cells", Visibility.PUBLIC)
    client.force_login(owner)
    big = {"state": {"layers": [], "blob": "x" * (1024 * 1024 + 10)}}
    response = post_state(client, "cells", big)
    assert response.status_code == 413
    assert "larger than" in response.json()["message"]
    assert not SavedState.objects.exists()


def test_session_posts_need_the_csrf_token(make_dataset: Any, owner: Any) -> None:
    make_dataset("cells", Visibility.PUBLIC)
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert post_state(client, "cells", {"state": STATE}).status_code == 403
    page = client.get("/datasets/cells/")
    token = json.loads(
        page.content.decode()
        .split('<script id="viewer-config" type="application/json">')[1]
        .split("</script>")[0]
    )["csrfToken"]
    response = client.post(
        "/api/v1/datasets/cells/states/",
        data=json.dumps({"state": STATE}),
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 201
