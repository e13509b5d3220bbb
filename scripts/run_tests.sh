#!/usr/bin/env bash
# Runs the whole suite: ruff (lint + format check), mypy (strict on pipeline/ and webapp/), the frontend
# (build, tsc, vitest: scripts/build_frontend.sh --check), then pytest
# with every marker (unit, integration, nginx, browser). Uses PostgreSQL and Redis when they answer on their usual ports
# (or DATABASE_URL / CELERY_BROKER_URL as given); otherwise SQLite and the file-system broker.
# With CI set, PostgreSQL and Redis are required: no silent fallback to the embedded ones.
# PYTEST_WORKERS=N runs pytest-xdist with N processes (default 3 on 2 or more cores; 1 = plain pytest). Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PY=.venv/bin/python

reachable() {
  $PY - "$1" "$2" <<'PYEOF'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PYEOF
}

if [ -z "${DATABASE_URL:-}" ] && reachable 127.0.0.1 5432; then
  # A database name of this run's own: pytest-django creates test_<name> and drops it at the
  # end, so concurrent runs on one server must not share it.
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/annotome_run$$"
fi
if [ -z "${CELERY_BROKER_URL:-}" ] && reachable 127.0.0.1 6379; then
  export CELERY_BROKER_URL="redis://127.0.0.1:6379/15"
fi
echo "database: ${DATABASE_URL:-sqlite (embedded)}"
echo "broker:   ${CELERY_BROKER_URL:-filesystem (embedded)}"
if [ -n "${CI:-}" ] && [ "${CI}" != "false" ] && [ "${CI}" != "0" ]; then
  case "${DATABASE_URL:-}" in
    postgres://* | postgresql://*) ;;
    *) echo "CI: PostgreSQL is required (not reachable on 127.0.0.1:5432, or DATABASE_URL is not postgres://)" >&2; exit 1 ;;
  esac
  case "${CELERY_BROKER_URL:-}" in
    redis://* | rediss://*) ;;
    *) echo "CI: Redis is required (not reachable on 127.0.0.1:6379, or CELERY_BROKER_URL is not redis://)" >&2; exit 1 ;;
  esac
fi

$PY -m ruff check . || exit 1
$PY -m ruff format --check . || { echo "Run: .venv/bin/ruff format ." >&2; exit 1; }
$PY -m mypy pipeline webapp || { echo "mypy (strict for pipeline/ and webapp/) failed" >&2; exit 1; }
.venv/bin/lint-imports --no-cache || { echo "import-linter: a layering contract (pyproject.toml) is broken" >&2; exit 1; }
# The frontend: build (pytest's pages load it), type-check, vitest unit tests.
bash scripts/build_frontend.sh --check || { echo "frontend build, type-check or unit tests failed" >&2; exit 1; }

# Three pytest processes by default where there are two or more cores (the suite waits on
# subprocesses, browsers and workers much of the time): pytest took 1,676 s with two and 1,322 s
# with three on this 2-core machine (2026-12-07), 994 s with three once the browser tests
# composited in software (1,975 CPU-s: both cores busy, 1.94 on average). Whole files go
# to one process (--dist loadfile) so module-scoped sites, workers and volumes are built once.
workers="${PYTEST_WORKERS:-$(($(nproc) >= 2 ? 3 : 1))}"
xdist=()
if [ "$workers" -gt 1 ]; then
  xdist=(-n "$workers" --dist loadfile --no-loadscope-reorder)
fi
# --durations: every run (CI's too) lists its slowest tests, so the next tail is easy to find.
exec $PY -m pytest "${xdist[@]}" --durations=25 "$@"
