"""What the benchmarks share to prepare a site: ``manage.py`` commands and a fresh PostgreSQL
database of the benchmark's own, migrated with static files collected, as ``make up`` prepares
its var directory (the database dropped again at the end)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.viewer import site_env

REPO_ROOT = Path(__file__).resolve().parents[1]


def manage(env: dict[str, str], *args: str) -> str:
    """``manage.py args`` in the site's environment; its output, or exit with its errors."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def admin_sql(server: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(server.rstrip("/") + "/postgres", autocommit=True) as conn:
        conn.execute(statement)


def postgres_site_env(server: str, database: str, var_dir: Path) -> dict[str, str]:
    """A new database ``database`` on ``server`` (an earlier one of that name is dropped) and a
    var directory, migrated and with static files: the environment to start the site with."""
    admin_sql(server, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    admin_sql(server, f"CREATE DATABASE {database}")
    env = site_env(var_dir)
    env["DATABASE_URL"] = server.rstrip("/") + f"/{database}"
    var_dir.mkdir(parents=True, exist_ok=True)
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "collectstatic", "--noinput", "-v0")
    return env


def postgres_drop(server: str, database: str) -> None:
    admin_sql(server, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
