"""The proofreading pages: the campaign list with its creation form, and the queue page."""

from __future__ import annotations

import json
import re
from typing import Any

from django.test import Client

from webapp.datasets.models import Layer
from webapp.proofreading.models import CampaignMember, ProofreadingCampaign


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_pages_need_a_login(campaign: ProofreadingCampaign) -> None:
    for url in ("/proofreading/", f"/proofreading/{campaign.id}/"):
        response = Client().get(url)
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]


def test_list_shows_my_campaigns_and_the_form_to_owners(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    page = _client(people["r1"]).get("/proofreading/").content.decode()
    assert f'href="/proofreading/{campaign.id}/"' in page
    assert 'id="campaign-form"' not in page  # r1 owns no dataset
    page = _client(people["owner"]).get("/proofreading/").content.decode()
    assert 'id="campaign-form"' in page
    assert (
        "You are not a member" in _client(people["outsider"]).get("/proofreading/").content.decode()
    )


def test_owner_creates_a_campaign_with_the_default_verdicts(
    layer: Layer, people: dict[str, Any]
) -> None:
    client = _client(people["owner"])
    response = client.post(
        "/proofreading/", {"name": "Round one", "layer": str(layer.id), "review": "1"}
    )
    assert response.status_code == 302
    campaign = ProofreadingCampaign.objects.get(name="Round one")
    assert campaign.n_items == 40
    assert [c["key"] for c in campaign.verdict_set] == ["1", "2", "3", "4"]
    roles = set(
        CampaignMember.objects.filter(campaign=campaign, user=people["owner"]).values_list(
            "role", flat=True
        )
    )
    assert roles == {"manager", "reviewer"}
    page = client.get(response["Location"]).content.decode()
    assert "Round one" in page and "40 items" in page


def test_create_refuses_bad_input_with_a_message(layer: Layer, people: dict[str, Any]) -> None:
    client = _client(people["owner"])
    for data in (
        {"name": "x", "layer": "999999"},
        {"name": "  ", "layer": str(layer.id)},
        {"name": "x", "layer": str(layer.id), "reviewers_per_item": "many"},
    ):
        response = client.post("/proofreading/", data, follow=True)
        assert response.status_code == 200
        assert 'class="message error"' in response.content.decode(), data
    assert not ProofreadingCampaign.objects.filter(name="x").exists()
    # Someone else's layer is not offered and not accepted.
    response = _client(people["r1"]).post(
        "/proofreading/", {"name": "mine", "layer": str(layer.id)}, follow=True
    )
    assert not ProofreadingCampaign.objects.filter(name="mine").exists()


def test_queue_page_embeds_the_viewer_with_the_campaign_config(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    response = _client(people["r1"]).get(f"/proofreading/{campaign.id}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="neuroglancer"' in page and "proofreading_queue.js" in page
    config = json.loads(
        re.search(
            r'<script id="queue-config" type="application/json">(.*?)</script>', page, re.S
        ).group(1)  # type: ignore[union-attr]
    )
    assert config["campaignId"] == campaign.id
    assert config["layer"] == campaign.layer.name
    assert config["round"] == 1
    assert [v["key"] for v in config["verdictSet"]] == ["1", "2", "3", "4"]
    state = json.loads(
        re.search(
            r'<script id="viewer-state" type="application/json">(.*?)</script>', page, re.S
        ).group(1)  # type: ignore[union-attr]
    )
    assert campaign.layer.name in [layer["name"] for layer in state["layers"]]
    expert = json.loads(
        re.search(
            r'<script id="queue-config" type="application/json">(.*?)</script>',
            _client(people["expert"]).get(f"/proofreading/{campaign.id}/").content.decode(),
            re.S,
        ).group(1)  # type: ignore[union-attr]
    )
    assert expert["round"] == 2


def test_queue_page_is_404_for_non_members(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    assert _client(people["outsider"]).get(f"/proofreading/{campaign.id}/").status_code == 404
    assert _client(people["r1"]).get("/proofreading/999999/").status_code == 404
    assert _client(people["r1"]).post(f"/proofreading/{campaign.id}/").status_code == 405
