"""Fixtures for the proofreading tests: people in every role, a layer with a table, a campaign."""

from __future__ import annotations

from typing import Any

import pytest
from proofreading_testdata import UserFactory, campaign_with, layer_with_detections
from rest_framework.test import APIClient

from webapp.datasets.models import Layer
from webapp.proofreading.models import ProofreadingCampaign


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(db: Any) -> dict[str, Any]:
    """owner (of the dataset, the campaign's manager), reviewers r1-r3, an expert, an outsider."""
    return {
        name: UserFactory(username=name)
        for name in ("owner", "r1", "r2", "r3", "expert", "outsider")
    }


@pytest.fixture
def layer(people: dict[str, Any]) -> Layer:
    return layer_with_detections(40, owner=people["owner"])


@pytest.fixture
def campaign(layer: Layer, people: dict[str, Any]) -> ProofreadingCampaign:
    """40 items, N = 2, reviewers r1-r3, an expert; random order with a fixed seed."""
    return campaign_with(
        layer,
        people["owner"],
        reviewers=(people["r1"], people["r2"], people["r3"]),
        experts=(people["expert"],),
        reviewers_per_item=2,
        seed=7,
    )


@pytest.fixture
def api() -> APIClient:
    return APIClient()
