#!/usr/bin/env sh
# Prints the path of a Python 3.11 interpreter: $PYTHON if set, else python3.11, else python3 or
# python when they are 3.11. Exits 1 with a message when there is none.
for candidate in ${PYTHON:-} python3.11 python3 python; do
  path=$(command -v "$candidate" 2>/dev/null) || continue
  if "$path" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    echo "$path"
    exit 0
  fi
done
echo "Python 3.11 is needed: install it (Debian: apt-get install python3.11 python3.11-venv) or set PYTHON=/path/to/python3.11" >&2
exit 1
