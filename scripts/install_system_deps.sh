#!/usr/bin/env bash
# Installs the Debian packages the tests need (Chromium for browser tests, nginx for the production
# configuration tests, wrk for the serving benchmark) when they are missing. Uses apt-get as root,
# or sudo without a password; otherwise says what to install and fails.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "Installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "Missing ${missing[*]}: install them as root (apt-get install ${missing[*]}) and rerun." >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "Missing ${missing[*]} and no apt-get here: install them with your package manager." >&2
  exit 1
fi
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
