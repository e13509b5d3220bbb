"""The gallery page and the queue page's ``?item=``: who sees them, the card job they start,
pages claimed through next/, one named item handed to the reviewer."""

from __future__ import annotations

import json
import re
from typing import Any

from django.test import Client
from rest_framework.test import APIClient

from webapp.datasets.models import Dataset, Visibility
from webapp.detections.models import CardBuild
from webapp.proofreading import gallery_views, services
from webapp.proofreading.gallery_services import item_claim
from webapp.proofreading.models import CampaignItem, Claim, ProofreadingCampaign


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _config(html: str, name: str) -> dict[str, Any]:
    match = re.search(rf'<script id="{name}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no {name} on the page"
    return dict(json.loads(match.group(1)))


def _queue_config(client: Client, campaign: ProofreadingCampaign, query: str) -> dict[str, Any]:
    response = client.get(f"/proofreading/{campaign.id}/{query}")
    assert response.status_code == 200
    return _config(response.content.decode(), "queue-config")


def test_gallery_is_for_members_only(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    url = f"/proofreading/{campaign.id}/gallery/"
    response = Client().get(url)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert _client(people["outsider"]).get(url).status_code == 404
    assert _client(people["outsider"]).get("/proofreading/999999/gallery/").status_code == 404
    # A member who can no longer see the dataset sees no gallery either.
    Dataset.objects.filter(id=campaign.layer.dataset_id).update(visibility=Visibility.PRIVATE)
    assert _client(people["r1"]).get(url).status_code == 404
    assert _client(people["owner"]).get(url).status_code == 200


def test_gallery_page_configures_pages_cards_and_keys_and_queues_the_cards(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    response = _client(people["r1"]).get(f"/proofreading/{campaign.id}/gallery/")
    assert response.status_code == 200
    html = response.content.decode()
    config = _config(html, "gallery-config")
    layer = campaign.layer
    assert config["campaignId"] == campaign.id and config["round"] == 1
    assert config["pageSize"] == gallery_views.GALLERY_PAGE_SIZE
    assert [v["key"] for v in config["verdictSet"]] == ["1", "2", "3", "4"]
    assert config["cardBase"] == (
        f"/api/v1/datasets/{layer.dataset.slug}/layers/{layer.name}/detections/"
    )
    assert config["queueUrl"] == f"/proofreading/{campaign.id}/"
    assert "proofreading_gallery.js" in html and "gallery.css" in html
    # Missed-object points: the key is documented, the count, list and CSV are on the page.
    missed_csv = f"/api/v1/proofreading/campaigns/{campaign.id}/missed.csv"
    assert config["missedCsvUrl"] == missed_csv and f'href="{missed_csv}"' in html
    assert "<kbd>Alt</kbd>+click" in html and "<kbd>M</kbd>" in html
    assert 'id="gallery-missed-count"' in html and 'id="gallery-missed-list"' in html
    # The layer's cards are queued, the campaign's next pending items first.
    build = CardBuild.objects.get(layer=layer)
    assert build.reason == "gallery" and build.status == "queued"
    first = list(
        CampaignItem.objects.filter(campaign=campaign)
        .order_by("queue_key")
        .values_list("segment_id", flat=True)
    )
    assert build.params["priority"] == first[: gallery_views.PRIORITY_ITEMS]
    # Opening it again queues nothing new.
    _client(people["r2"]).get(f"/proofreading/{campaign.id}/gallery/")
    assert CardBuild.objects.filter(layer=layer).count() == 1
    assert config["planar"] is False and "xy, zy or xz slice" in html
    # A 2D image's layer: its cards have one image, its objects an area.
    type(layer).objects.filter(pk=layer.pk).update(axes=["y", "x"])
    html = _client(people["r1"]).get(f"/proofreading/{campaign.id}/gallery/").content.decode()
    assert _config(html, "gallery-config")["planar"] is True
    assert "+click it on a card's image" in html and "zy or xz" not in html


def test_an_expert_only_member_gets_the_second_round(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    html = _client(people["expert"]).get(f"/proofreading/{campaign.id}/gallery/").content
    assert _config(html.decode(), "gallery-config")["round"] == 2


def test_the_list_and_the_queue_link_the_gallery(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    client = _client(people["r1"])
    gallery = f'href="/proofreading/{campaign.id}/gallery/"'
    assert gallery in client.get("/proofreading/").content.decode()
    assert gallery in client.get(f"/proofreading/{campaign.id}/").content.decode()


def test_a_gallery_page_is_claimed_through_next(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    api = APIClient()
    api.force_authenticate(people["r1"])
    size = gallery_views.GALLERY_PAGE_SIZE
    url = f"/api/v1/proofreading/campaigns/{campaign.id}/next/"
    page = api.post(url, {"count": size, "round": 1}, format="json")
    assert page.status_code == 200
    ids = [h["item"]["id"] for h in page.json()]
    assert len(ids) == size
    assert set(
        Claim.objects.filter(reviewer=people["r1"]).values_list("item_id", flat=True)
    ) == set(ids)
    # Asking again (a reload) returns the same page.
    again = api.post(url, {"count": size, "round": 1}, format="json").json()
    assert [h["item"]["id"] for h in again] == ids
    # One verdict for three of them; the next page keeps the other 21 and fills up.
    bulk = api.post(
        f"/api/v1/proofreading/campaigns/{campaign.id}/verdicts/bulk/",
        {"items": ids[:3], "verdict": "fp"},
        format="json",
    )
    assert bulk.status_code == 201 and len(bulk.json()) == 3
    after = [h["item"]["id"] for h in api.post(url, {"count": size}, format="json").json()]
    assert set(ids[3:]) <= set(after) and not set(ids[:3]) & set(after)
    assert len(after) == size


def test_queue_item_parameter_hands_that_item_to_the_reviewer(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    client = _client(people["r1"])
    last = CampaignItem.objects.filter(campaign=campaign).order_by("-queue_key").first()
    assert last is not None
    config = _queue_config(client, campaign, f"?item={last.id}")
    assert config["focusItem"] == last.id
    assert Claim.objects.filter(item=last, reviewer=people["r1"]).exists()
    # Without the parameter, or with a malformed one, nothing is focused.
    assert _queue_config(client, campaign, "")["focusItem"] is None
    assert _queue_config(client, campaign, "?item=abc")["focusItem"] is None
    assert _queue_config(client, campaign, "?item=99999999")["focusItem"] is None


def test_queue_item_parameter_refuses_items_the_reviewer_cannot_decide(
    campaign: ProofreadingCampaign, people: dict[str, Any], layer: Any
) -> None:
    items = list(CampaignItem.objects.filter(campaign=campaign).order_by("queue_key"))
    r1, r2, r3 = people["r1"], people["r2"], people["r3"]
    # Decided by r1 already.
    services.verdict_create(campaign, r1, items[0].id, "tp")
    assert item_claim(campaign, r1, items[0].id, round_=1) is None
    # Both places (N = 2) held by others.
    assert item_claim(campaign, r2, items[1].id, round_=1) is not None
    assert item_claim(campaign, r3, items[1].id, round_=1) is not None
    assert item_claim(campaign, r1, items[1].id, round_=1) is None
    # Held by r1 already: the claim is extended, not doubled.
    held = item_claim(campaign, r1, items[2].id, round_=1)
    again = item_claim(campaign, r1, items[2].id, round_=1)
    assert held is not None and again is not None and again.claim.id == held.claim.id
    # Not a reviewer (the outsider, a manager only), a closed campaign, another round.
    assert item_claim(campaign, people["owner"], items[3].id, round_=1) is None
    assert item_claim(campaign, r1, items[3].id, round_=2) is None
    services.campaign_update(campaign, people["owner"], state="closed")
    campaign.refresh_from_db()
    assert item_claim(campaign, r1, items[3].id, round_=1) is None
    # An item of another campaign is no item of this one.
    other = services.campaign_create(
        people["owner"],
        layer,
        services.CampaignSettings(name="Other"),
        members=[("r1", "reviewer")],
    )
    foreign = CampaignItem.objects.filter(campaign=other).first()
    assert foreign is not None
    campaign.state = "open"
    campaign.save()
    assert item_claim(campaign, r1, foreign.id, round_=1) is None
