"""Fixtures for the annotation tests: people in every role, an image layer, a tiled campaign."""

from __future__ import annotations

from typing import Any

import pytest
from annotation_testdata import UserFactory, campaign_with, image_layer
from rest_framework.test import APIClient

from webapp.annotation import services
from webapp.annotation.models import AnnotationCampaign
from webapp.datasets.models import Layer


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(db: Any) -> dict[str, Any]:
    """owner (manager), annotators a1-a3, reviewer rv, an outsider."""
    return {
        name: UserFactory(username=name) for name in ("owner", "a1", "a2", "a3", "rv", "outsider")
    }


@pytest.fixture
def layer(people: dict[str, Any]) -> Layer:
    return image_layer(people["owner"])


@pytest.fixture
def campaign(layer: Layer, people: dict[str, Any]) -> AnnotationCampaign:
    """N = 2, annotators a1-a3, reviewer rv, 8 tiled boxes."""
    campaign = campaign_with(
        layer,
        people["owner"],
        annotators=(people["a1"], people["a2"], people["a3"]),
        reviewers=(people["rv"],),
        redundancy=2,
    )
    services.boxes_tile(campaign, people["owner"])
    return campaign


@pytest.fixture
def api() -> APIClient:
    return APIClient()
