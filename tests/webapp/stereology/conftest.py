"""Fixtures for the stereology tests: people in every role and a synthetic layer with truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient
from stereology_testdata import Truth, campaign_over, synthetic_layer, user

from webapp.proofreading.models import ProofreadingCampaign


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(db: Any) -> dict[str, Any]:
    """owner (dataset owner and campaign manager), reviewers r1 and r2, an expert, an outsider."""
    return {name: user(name) for name in ("owner", "r1", "r2", "expert", "outsider")}


@pytest.fixture
def truth(tmp_path: Path, people: dict[str, Any]) -> Truth:
    return synthetic_layer(tmp_path, people["owner"])


@pytest.fixture
def campaign(truth: Truth, people: dict[str, Any]) -> ProofreadingCampaign:
    return campaign_over(
        truth.layer, people["owner"], (people["r1"], people["r2"]), (people["expert"],)
    )


@pytest.fixture
def api() -> APIClient:
    return APIClient()
