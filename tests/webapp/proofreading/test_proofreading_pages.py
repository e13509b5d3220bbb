"""The proofreading pages: the campaign list with its creation form, and the queue page."""

from __future__ import annotations

import json
import re
from typing import Any

from django.test import Client

from webapp.datasets.models import Layer
from webapp.detections.models import Detection
from webapp.proofreading import services
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
    base = {"name": "x", "layer": str(layer.id)}
    refusals = [
        ({"layer": "999999"}, "Choose a segmentation layer"),
        ({"layer": "not-a-number"}, "Choose a segmentation layer"),
        ({"name": "  "}, "name must not be empty"),
        ({"reviewers_per_item": "many"}, "Reviewers per detection must be a whole number"),
        ({"reviewers_per_item": "0"}, "Reviewers per detection must be between 1 and 10"),
        ({"reviewers_per_item": "11"}, "between 1 and 10"),
        ({"selection": "some"}, "Selection must be one of"),
        ({"order": "alphabetical"}, "Order must be one of"),
        ({"selection": "filter"}, "needs volume_min or sphericity_min"),
        ({"selection": "filter", "volume_min": "big"}, "Minimum volume must be a number"),
        ({"selection": "filter", "sphericity_min": "nan"}, "must be a finite number"),
        ({"selection": "filter", "volume_min": "inf"}, "must be a finite number"),
        ({"selection": "filter", "volume_min": "1e30"}, "The filter selects no detection"),
        ({"selection": "sample"}, "A random sample needs its size K"),
        ({"selection": "sample", "sample_size": "2.5"}, "Sample size K must be a whole number"),
        ({"selection": "sample", "sample_size": "0"}, "Sample size K must be between"),
        ({"selection": "sample", "sample_size": "41"}, "larger than the 40 detections"),
        ({"seed": "-1"}, "Seed must be between"),
        ({"seed": str(2**70)}, "Seed must be between"),
        ({"reviewers": "nobody_here"}, "No user named &#x27;nobody_here&#x27;"),
        ({"reviewers": "r1, r1"}, "named twice"),
        ({"experts": "r1;nobody"}, "No user named"),
        ({"name": "y" * 201}, "name must be at most 200 characters"),
    ]
    for change, text in refusals:
        response = client.post("/proofreading/", {**base, **change})
        page = response.content.decode()
        assert response.status_code == 400, change
        assert 'class="message error"' in page, change
        assert text in page, (change, text)
        if change.get("reviewers") == "nobody_here":
            # The form keeps what was typed.
            assert 'value="nobody_here"' in page and 'value="x"' in page
    assert ProofreadingCampaign.objects.count() == 0
    # Someone else's layer is not offered and not accepted.
    response = _client(people["r1"]).post(
        "/proofreading/", {"name": "mine", "layer": str(layer.id)}
    )
    assert response.status_code == 400
    assert not ProofreadingCampaign.objects.filter(name="mine").exists()


def test_owner_creates_a_campaign_with_every_setting_of_the_form(
    layer: Layer, people: dict[str, Any]
) -> None:
    client = _client(people["owner"])
    volumes = sorted(Detection.objects.filter(layer=layer).values_list("volume", flat=True))
    response = client.post(
        "/proofreading/",
        {
            "name": "Filtered",
            "layer": str(layer.id),
            "selection": "filter",
            "volume_min": str(volumes[10]),
            "sphericity_min": "",
            "sample_size": "7",  # ignored: not a sample
            "order": "uncertainty",
            "reviewers_per_item": "2",
            "reviewers": "r1, r2",
            "experts": "expert",
            "managers": "r3",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    campaign = ProofreadingCampaign.objects.get(name="Filtered")
    assert campaign.selection == "filter" and campaign.order == "uncertainty"
    assert campaign.selection_params == {"volume_min": volumes[10]}
    assert campaign.n_items == 30 and campaign.reviewers_per_item == 2
    roles = set(
        CampaignMember.objects.filter(campaign=campaign).values_list("user__username", "role")
    )
    assert roles == {
        ("owner", "manager"),
        ("r1", "reviewer"),
        ("r2", "reviewer"),
        ("expert", "expert"),
        ("r3", "manager"),
    }

    response = client.post(
        "/proofreading/",
        {
            "name": "Sample",
            "layer": str(layer.id),
            "selection": "sample",
            "sample_size": "5",
            "seed": "11",
            "order": "region",
            "volume_min": "",
            "review": "1",
        },
    )
    assert response.status_code == 302
    sample = ProofreadingCampaign.objects.get(name="Sample")
    assert (sample.n_items, sample.order, sample.order_seed) == (5, "region", 11)
    assert sample.selection_params["sample_size"] == 5
    assert set(
        CampaignMember.objects.filter(campaign=sample).values_list("user__username", "role")
    ) == {("owner", "manager"), ("owner", "reviewer")}
    # The dataset's link preselects its layer, and the page comes back to the dataset's list.
    slug = layer.dataset.slug
    page = client.get(f"/proofreading/?dataset={slug}").content.decode()
    assert f'<option value="{layer.id}" selected>' in page
    response = client.post(
        f"/proofreading/?dataset={slug}", {"name": "Again", "layer": str(layer.id)}
    )
    assert response["Location"] == f"/proofreading/?dataset={slug}"
    listing = client.get(response["Location"]).content.decode()
    assert "Again" in listing and "Sample" in listing


def _config(page: str) -> dict[str, Any]:
    found = re.search(
        r'<script id="queue-config" type="application/json">(.*?)</script>', page, re.S
    )
    assert found is not None
    return dict(json.loads(found.group(1)))


def test_second_round_page_and_links_for_experts(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    r1, r2, expert = people["r1"], people["r2"], people["expert"]
    expert_client = _client(expert)
    listing = expert_client.get("/proofreading/").content.decode()
    assert "none waiting" in listing and "?round=2" not in listing
    handouts = services.items_next(campaign, r1, count=2)
    assert [h.item.id for h in services.items_next(campaign, r2, count=2)] == [
        h.item.id for h in handouts
    ]
    for handout, (v1, v2) in zip(handouts, [("uncertain", "tp"), ("tp", "fp")], strict=True):
        services.verdict_create(campaign, r1, handout.item.id, v1)
        services.verdict_create(campaign, r2, handout.item.id, v2)
    listing = expert_client.get("/proofreading/").content.decode()
    assert f'href="/proofreading/{campaign.id}/?round=2">2 waiting for an expert' in listing
    # Reviewers are not offered the second round.
    assert "waiting for an expert" not in _client(r1).get("/proofreading/").content.decode()

    page = expert_client.get(f"/proofreading/{campaign.id}/?round=2").content.decode()
    config = _config(page)
    assert config["round"] == 2
    assert config["view"] == {"layout": "xy", "selectedAlpha": 0.2}
    assert config["missedLayer"] == "missed objects"
    assert 'id="queue-earlier"' in page and "<kbd>,</kbd>" in page
    first_round = _client(r1).get(f"/proofreading/{campaign.id}/").content.decode()
    assert _config(first_round)["view"] == {} and 'id="queue-earlier"' not in first_round
    assert "waiting for an expert" not in first_round

    # A manager who is also an expert gets a link from the first round's page.
    services.member_add(campaign, people["owner"], "owner", "expert")
    services.member_add(campaign, people["owner"], "owner", "reviewer")
    owner_page = _client(people["owner"]).get(f"/proofreading/{campaign.id}/").content.decode()
    assert _config(owner_page)["round"] == 1
    assert "Second round: 2 waiting for an expert" in owner_page
    # Bad or forbidden rounds are refused with a reason, never a 500.
    assert _client(r1).get(f"/proofreading/{campaign.id}/?round=2").status_code == 403
    response = expert_client.get(f"/proofreading/{campaign.id}/?round=3")
    assert response.status_code == 400 and b"round must be 1" in response.content


def test_dataset_viewer_links_to_its_campaigns(layer: Layer, people: dict[str, Any]) -> None:
    page = _client(people["owner"]).get(f"/datasets/{layer.dataset.slug}/").content.decode()
    assert f'href="/proofreading/?dataset={layer.dataset.slug}"' in page


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
