#!/usr/bin/env bash
# Creates the virtual environment $1 (default .venv) with Python 3.11 and installs requirement
# files given after it. On Debian, installs pythonX.Y-venv with apt when `venv` is missing (root).
# TORCH_INDEX_URL (optional) is where the pinned torch comes from, e.g. the CPU-only index.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
shift || true
if [ ! -x "$venv/bin/python" ]; then
  python=$(sh scripts/find_python.sh)
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    pkg="python$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv"
    if command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
      echo "Installing $pkg (the venv module is missing)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg"
      "$python" -m venv "$venv"
    else
      echo "$python cannot create a virtual environment: install $pkg (as root: apt-get install $pkg)" >&2
      exit 1
    fi
  fi
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
for requirements in "$@"; do
  # TORCH_INDEX_URL (e.g. PyTorch's CPU-only wheel index): the pinned torch without CUDA.
  torch_pin=$(grep -E '^torch==' "$requirements" || true)
  if [ -n "${TORCH_INDEX_URL:-}" ] && [ -n "$torch_pin" ]; then
    "$venv/bin/python" -m pip install -q --index-url "$TORCH_INDEX_URL" "$torch_pin"
  fi
  "$venv/bin/python" -m pip install -q -r "$requirements"
done
