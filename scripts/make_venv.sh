#!/usr/bin/env bash
# Creates the virtual environment $1 (default .venv) with Python 3.11, installs requirement
# files given after it, then the project itself (`pip install -e .`, pyproject.toml) so that
# `python -m pipeline`, `annotome-pipeline` and `import webapp` work from any directory.
# On Debian, installs pythonX.Y-venv with apt when `venv` is missing (root).
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
  echo "Created $venv; upgrading pip"
  "$venv/bin/python" -m pip install --progress-bar on --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
fi
# pip's own progress (one line per package, a bar per download) instead of minutes of silence;
# its notes about missing local mirror folders are noise here.
pip_install() {
  set +e
  "$venv/bin/python" -m pip install --progress-bar on "$@" 2>&1 | grep -v "^WARNING: Location"
  local status=${PIPESTATUS[0]}
  set -e
  return "$status"
}
for requirements in "$@"; do
  count=$(grep -cE '^[A-Za-z0-9]' "$requirements" || true)
  echo "Installing $requirements ($count pinned packages) into $venv; the first time takes a few minutes."
  # TORCH_INDEX_URL (e.g. PyTorch's CPU-only wheel index): the pinned torch without CUDA.
  torch_pin=$(grep -E '^torch==' "$requirements" || true)
  if [ -n "${TORCH_INDEX_URL:-}" ] && [ -n "$torch_pin" ]; then
    pip_install --index-url "$TORCH_INDEX_URL" "$torch_pin"
  fi
  pip_install -r "$requirements"
  echo "Installed $requirements."
done
# The project, editable: the venv imports this checkout's pipeline/ and webapp/ from anywhere.
# --no-deps: the pins above are its dependencies; --no-build-isolation: the venv's own setuptools
# builds it (no download when it is 70.1 or newer, which builds editable wheels without `wheel`).
if ! "$venv/bin/python" -c 'import setuptools, sys; v = tuple(int(p) for p in setuptools.__version__.split(".")[:2]); sys.exit(v < (70, 1))' 2>/dev/null; then
  pip_install "setuptools>=70.1"
fi
echo "Installing the project ($(pwd)) into $venv, editable"
# (setuptools warns that same-named folders in the working directory take precedence: that is
# the point of an editable install of this checkout.)
PYTHONWARNINGS="ignore::UserWarning" pip_install --no-deps --no-build-isolation --quiet -e .
echo "Installed the project: python -m pipeline and $venv/bin/annotome-pipeline work from any directory."
