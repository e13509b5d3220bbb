"""Schemathesis hooks for ``test_schemathesis.py`` (loaded with ``SCHEMATHESIS_HOOKS``).

Generated path parameters are random strings, so on their own they only ever reach 404s. These
hooks send about half of them to objects that exist (named by ``ANNOTOME_FUZZ_OBJECTS``, a JSON
map from parameter name to values), chosen by a checksum of the generated value so that a run
is as deterministic as its seed. DELETE of a dataset only ever reaches the one dataset meant to
be deleted, so the other operations keep their objects.
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any

import schemathesis

_OBJECTS: dict[str, list[Any]] = json.loads(os.environ.get("ANNOTOME_FUZZ_OBJECTS", "{}"))
_DOOMED = os.environ.get("ANNOTOME_FUZZ_DOOMED_SLUG", "")


def _pick(name: str, value: Any) -> Any:
    choices = _OBJECTS.get(name) or []
    if not choices:
        return value
    digest = zlib.crc32(repr((name, value)).encode())
    if digest % 2:
        return value
    return choices[(digest // 2) % len(choices)]


@schemathesis.hook
def map_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    if not path_parameters:
        return path_parameters
    operation = context.operation
    deleting = operation is not None and operation.method.upper() == "DELETE"
    mapped = dict(path_parameters)
    for name, value in path_parameters.items():
        if deleting and name == "slug" and _DOOMED:
            mapped[name] = _DOOMED if zlib.crc32(repr(value).encode()) % 2 == 0 else value
        else:
            mapped[name] = _pick(name, value)
    return mapped
