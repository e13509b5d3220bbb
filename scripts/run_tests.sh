#!/usr/bin/env bash
# Runs the whole suite. Uses PostgreSQL and Redis when they answer on their usual ports
# (override with DATABASE_URL / CELERY_BROKER_URL); otherwise SQLite and the file broker.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

reachable() { $PY - "$1" "$2" <<'PYEOF'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PYEOF
}

if [ -z "${DATABASE_URL:-}" ] && reachable 127.0.0.1 5432; then
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/annotome"
fi
if [ -z "${CELERY_BROKER_URL:-}" ] && reachable 127.0.0.1 6379; then
  export CELERY_BROKER_URL="redis://127.0.0.1:6379/15"
fi
echo "database: ${DATABASE_URL:-sqlite (embedded)}"
echo "broker:   ${CELERY_BROKER_URL:-filesystem (embedded)}"
if [ -n "${CI:-}" ]; then
  # CI must exercise the real services: refuse to fall back silently.
  [ -n "${DATABASE_URL:-}" ] || { echo "CI: PostgreSQL not reachable"; exit 1; }
  [ -n "${CELERY_BROKER_URL:-}" ] || { echo "CI: Redis not reachable"; exit 1; }
fi
$PY -m ruff check . || exit 1
exec $PY -m pytest "$@"
