"""The stereology pages: the campaign's studies (managers create), the counting page (members),
404 for everyone else."""

from __future__ import annotations

import json
import re
from typing import Any

from django.test import Client
from stereology_testdata import Truth

from webapp.proofreading.models import ProofreadingCampaign
from webapp.stereology import services
from webapp.stereology.models import DisectorStudy


def _client(who: Any) -> Client:
    client = Client()
    client.force_login(who)
    return client


def test_campaign_list_links_the_studies(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    page = _client(people["r1"]).get("/proofreading/").content.decode()
    assert f'href="/stereology/campaigns/{campaign.id}/"' in page
    # One name on the link and on the page it opens.
    assert ">Disector studies (miss rate)</a>" in page
    studies = _client(people["r1"]).get(f"/stereology/campaigns/{campaign.id}/").content.decode()
    assert "<title>Disector studies (miss rate)" in studies and "Miss-rate" not in studies


def test_a_manager_creates_a_study_from_the_page(
    truth: Truth, campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    manager = _client(people["owner"])
    url = f"/stereology/campaigns/{campaign.id}/"
    assert 'id="study-form"' in manager.get(url).content.decode()
    answer = manager.post(url, {"name": "Page study", "n_pairs": "6", "h_um": "50", "seed": "4"})
    assert answer.status_code == 302
    study = DisectorStudy.objects.get(name="Page study")
    assert study.n_pairs == 6 and study.seed == 4
    refused = manager.post(url, {"name": "Too tall", "n_pairs": "6", "h_um": "5000"}, follow=True)
    assert "does not fit the volume" in refused.content.decode()
    assert not DisectorStudy.objects.filter(name="Too tall").exists()
    reviewer = _client(people["r1"])
    page = reviewer.get(url).content.decode()
    assert 'id="study-form"' not in page and f'href="/stereology/{study.id}/"' in page
    reviewer.post(url, {"name": "Not mine", "n_pairs": "4"})
    assert not DisectorStudy.objects.filter(name="Not mine").exists()


def test_counting_page_for_members_only(
    truth: Truth, campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    study = services.study_create(people["owner"], campaign, name="S", n_pairs=4, seed=0)
    answer = _client(people["r1"]).get(f"/stereology/{study.id}/")
    assert answer.status_code == 200
    match = re.search(
        r'<script id="disector-config" type="application/json">(.*?)</script>',
        answer.content.decode(),
        re.S,
    )
    assert match is not None
    config = json.loads(match.group(1))
    assert config["canMark"] is True and len(config["study"]["pairs"]) == 4
    assert _client(people["owner"]).get(f"/stereology/{study.id}/").status_code == 200
    assert _client(people["outsider"]).get(f"/stereology/{study.id}/").status_code == 404
    assert (
        _client(people["outsider"]).get(f"/stereology/campaigns/{campaign.id}/").status_code == 404
    )
    assert Client().get(f"/stereology/{study.id}/").status_code == 302  # to the login page


def test_the_form_fits_h_to_the_layer_and_offers_only_label_masks(
    truth: Truth, campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    """The default h fits K = 10 pairs in the layer's depth, which the form shows; the Region
    drop-down lists segmentation layers only (not the raw image)."""
    from webapp.datasets.models import Layer, LayerKind

    common = {"shape": [100, 100, 100], "axes": ["z", "y", "x"], "dtype": "uint8"}
    for name, kind in (("raw", LayerKind.IMAGE), ("organ", LayerKind.SEGMENTATION)):
        Layer.objects.create(
            dataset=truth.layer.dataset, name=name, kind=kind, path=f"{name}.ome.zarr",
            voxel_size=[10_000.0] * 3, unit="nanometer", **common,
        )  # fmt: skip
    manager = _client(people["owner"])
    url = f"/stereology/campaigns/{campaign.id}/"
    page = manager.get(url).content.decode()
    assert 'name="h_um" min="0" step="any" value="50"' in page
    assert "The layer is 1000 µm deep along z" in page
    assert "mask: organ" in page and "mask: raw" not in page
    assert f"mask: {campaign.layer.name}<" not in page
    # A shallow layer (100 sections of 0.2 um: 20 um): 50 um cannot fit; about a tenth of it.
    Layer.objects.filter(id=campaign.layer_id).update(voxel_size=[200.0] * 3)
    page = manager.get(url).content.decode()
    assert 'name="h_um" min="0" step="any" value="2"' in page
    assert "The layer is 20 µm deep along z" in page
    refused = manager.post(url, {"name": "Demo", "n_pairs": "10", "h_um": "50"}, follow=True)
    assert "20 um deep" in refused.content.decode()
    assert "largest h that fits 10 pairs is 18 um" in refused.content.decode()
    manager.post(url, {"name": "Fits", "n_pairs": "10", "h_um": "2"})
    assert DisectorStudy.objects.filter(name="Fits").exists()
