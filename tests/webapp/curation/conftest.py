"""Fixtures for the curation tests: a real pipeline-built dataset (labels, meshes, properties),
its detections table, a campaign over it and verdicts given through the services."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from curation_testdata import PASSWORD, PLAN, give_verdicts, make_campaign
from django.contrib.auth import get_user_model

from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.detections.services import detections_build_now
from webapp.proofreading.models import ProofreadingCampaign

_BUILDER = Path(__file__).resolve().parents[2] / "browser" / "nuclei_dataset.py"


def _load_builder() -> Any:
    spec = importlib.util.spec_from_file_location("curation_nuclei_dataset", _BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(db: Any) -> dict[str, Any]:
    users = get_user_model().objects
    return {n: users.create_user(n, password=PASSWORD) for n in ("owner", "rev", "outsider")}


@pytest.fixture
def dataset(people: dict[str, Any]) -> Dataset:
    builder = _load_builder()
    dataset: Dataset = builder.build_nuclei_dataset(
        people["owner"], slug="cur", shape=(64, 64, 64), n_nuclei=10, seed=4
    )
    detections_build_now(Layer.objects.get(dataset=dataset, kind=LayerKind.SEGMENTATION))
    return dataset


@pytest.fixture
def layer(dataset: Dataset) -> Layer:
    return Layer.objects.get(dataset=dataset, kind=LayerKind.SEGMENTATION)


@pytest.fixture
def campaign(layer: Layer, people: dict[str, Any]) -> ProofreadingCampaign:
    campaign: ProofreadingCampaign = make_campaign(layer, people)
    return campaign


@pytest.fixture
def given(campaign: ProofreadingCampaign, people: dict[str, Any]) -> dict[int, str]:
    return give_verdicts(campaign, people["rev"], PLAN)
