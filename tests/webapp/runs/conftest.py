"""Fixtures of the runs app's tests: fast password hashing, the people of a retraining
campaign (``tests/runs_testdata.py``) and a campaign with five approved painted boxes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.runs_testdata import people, retrain_campaign
from webapp.annotation.models import AnnotationCampaign


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def who(db: Any) -> dict[str, Any]:
    return people()


@pytest.fixture
def campaign(who: dict[str, Any]) -> AnnotationCampaign:
    return retrain_campaign(who, approved=5)[0]
