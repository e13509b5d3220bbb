#!/usr/bin/env bash
# Container entry point for the web and worker services: refuses unsafe settings, waits for the
# database, prepares the site (web: `check --deploy`, migrate, collectstatic), then runs the
# command. Role: ANNOTOME_ROLE=web|worker|none, or guessed from the command (gunicorn -> web,
# celery -> worker). Runs outside a container too (tests): ANNOTOME_APP_DIR, PYTHON.
set -euo pipefail

APP_DIR=${ANNOTOME_APP_DIR:-/app}
PYTHON=${PYTHON:-python}
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-webapp.settings.production}
cd "$APP_DIR"

fail() {
  echo "entrypoint: $*" >&2
  exit 64
}
say() { echo "entrypoint: $*"; }

role=${ANNOTOME_ROLE:-}
if [ -z "$role" ]; then
  case "${1:-}" in
    gunicorn | */gunicorn) role=web ;;
    celery | */celery) role=worker ;;
    *) role=none ;;
  esac
fi
case "$role" in web | worker | none) ;; *) fail "ANNOTOME_ROLE must be web, worker or none (got '$role')." ;; esac

# The production settings refuse these too; say it here first, in plain words.
if [ -z "${DJANGO_SECRET_KEY:-}" ]; then
  fail "DJANGO_SECRET_KEY is not set. Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))' and put it in the environment (docker/.env)."
fi
case "$(printf '%s' "${DJANGO_DEBUG:-}" | tr '[:upper:]' '[:lower:]')" in
  1 | true | yes | on) fail "DJANGO_DEBUG is on; production containers refuse to start with debug pages. Unset it or set DJANGO_DEBUG=0." ;;
esac

# Settings load (the production module raises ImproperlyConfigured with a message), then the
# database answers, within ANNOTOME_DB_WAIT seconds.
"$PYTHON" - <<'PYEOF' || fail "settings or database not usable (see the message above)."
import os
import sys
import time

import django
from django.core.exceptions import ImproperlyConfigured

try:
    django.setup()
except ImproperlyConfigured as exc:
    print(f"entrypoint: settings refused: {exc}", file=sys.stderr)
    sys.exit(1)
from django.db import connection
from django.db.utils import OperationalError

deadline = time.monotonic() + float(os.environ.get("ANNOTOME_DB_WAIT", "60"))
while True:
    try:
        connection.ensure_connection()
        break
    except OperationalError as exc:
        if time.monotonic() > deadline:
            print(f"entrypoint: database not reachable: {exc}", file=sys.stderr)
            sys.exit(1)
        print("entrypoint: waiting for the database...", file=sys.stderr)
        time.sleep(1)
PYEOF

if [ "$role" = web ]; then
  say "checking the deployment settings"
  "$PYTHON" manage.py check --deploy --fail-level "${ANNOTOME_CHECK_FAIL_LEVEL:-ERROR}"
  if [ "${ANNOTOME_MIGRATE:-1}" != 0 ]; then
    say "applying migrations"
    "$PYTHON" manage.py migrate --noinput
  fi
  if [ "${ANNOTOME_COLLECTSTATIC:-1}" != 0 ]; then
    say "collecting static files"
    "$PYTHON" manage.py collectstatic --noinput -v0
  fi
elif [ "$role" = worker ]; then
  "$PYTHON" manage.py check
fi

if [ $# -eq 0 ]; then
  fail "no command given (for example: gunicorn -c webapp/gunicorn_conf.py)."
fi
exec "$@"
