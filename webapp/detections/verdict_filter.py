"""Filtering a layer's detections by verdict, without this app knowing where verdicts live.

Verdicts belong to apps above ``detections`` (proofreading campaigns; the curation app decides
whose verdicts a layer shows). That app registers a provider at start-up: given a layer and a
verdict name, it returns a query of the matching detections' database ids, or raises
``InvalidRequest`` naming the verdicts there are. Without a provider (or without any verdicts
on the layer) a ``verdict=`` filter is a 400 that says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet

from webapp.core.errors import InvalidRequest
from webapp.datasets.models import Layer

VerdictProvider = Callable[[Layer, str], "QuerySet[Any, int]"]
_provider: list[VerdictProvider] = []


def register_verdict_filter(provider: VerdictProvider) -> None:
    """Register (replacing any earlier one) the provider of verdict filters."""
    _provider[:] = [provider]


def detection_ids_with_verdict(layer: Layer, verdict: str) -> QuerySet[Any, int]:
    """The ids of the layer's detections whose final verdict is ``verdict``."""
    if not _provider:
        raise InvalidRequest("This site records no verdicts, so it cannot filter by verdict.")
    return _provider[0](layer, verdict)
