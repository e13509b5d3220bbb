"""The saved-state rate limit holds across processes with the embedded default cache.

Two separate Python processes (as two gunicorn workers would be) save viewer states for one
user through the real view stack, on one database and the default cache configuration (no
CACHE_URL): together they get the configured rate, not each of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from tests.celery_fixtures import database_url_for_test_db
from webapp.datasets.models import Dataset, Layer, LayerKind, Visibility

REPO_ROOT = Path(__file__).resolve().parent.parent

# Saves ``n`` states through Django's full request handling and prints the status codes.
CLIENT = """
import json, sys, django
django.setup()
from rest_framework.test import APIClient
client = APIClient()
client.credentials(HTTP_AUTHORIZATION="Token " + sys.argv[1])
state = {"position": [1, 2, 3], "layers": [{"name": "a"}]}
codes = [
    client.post("/api/v1/datasets/shared/states/", {"state": state}, format="json").status_code
    for _ in range(int(sys.argv[2]))
]
print(json.dumps(codes))
"""


def _save_states(env: dict[str, str], token: str, n: int) -> list[int]:
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, token, str(n)],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_processes_share_one_state_save_budget(transactional_db: Any, tmp_path: Path) -> None:
    user = get_user_model().objects.create_user("saver", password="not-used-here")
    token = Token.objects.create(user=user).key
    dataset = Dataset.objects.create(
        name="Shared", slug="shared", owner=user, visibility=Visibility.PUBLIC
    )
    Layer.objects.create(
        dataset=dataset, name="image", kind=LayerKind.IMAGE, path="image.ome.zarr",
        ngff_version="0.5", shape=[8, 8, 8], axes=["z", "y", "x"], voxel_size=[1, 1, 1],
    )  # fmt: skip
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ANNOTOME_", "CACHE_URL"))  # the embedded default cache
    }
    env.update(
        DJANGO_SETTINGS_MODULE="webapp.settings.dev",
        PYTHONPATH=str(REPO_ROOT),
        DATABASE_URL=database_url_for_test_db(),
        ANNOTOME_VAR_DIR=str(tmp_path / "var"),
        ANNOTOME_STATE_SAVE_RATE="4/min",
    )
    first = _save_states(env, token, 3)
    second = _save_states(env, token, 3)
    assert first == [201, 201, 201]
    assert second == [201, 429, 429], "the second process saw the first one's saves"
    assert any((tmp_path / "var" / "cache").iterdir())
