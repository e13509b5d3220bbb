"""Columns other apps add to a layer's detections exports, without this app knowing them.

An app above ``detections`` (the curation app: ``verdict``, ``verdict_campaign``) registers a
provider at start-up; the layer's CSV and Parquet exports then carry the columns it returns for
that layer (none when it returns none).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from webapp.datasets.models import Layer
from webapp.detections.selectors import ExtraColumn

ColumnProvider = Callable[[Layer], Sequence[ExtraColumn]]
_providers: dict[str, ColumnProvider] = {}


def register_export_columns(key: str, provider: ColumnProvider) -> None:
    """Register (or replace, by ``key``) a provider of extra export columns."""
    _providers[key] = provider


def layer_export_columns(layer: Layer) -> list[ExtraColumn]:
    """Every registered provider's columns for ``layer``, in registration order."""
    columns: list[ExtraColumn] = []
    for provider in _providers.values():
        columns.extend(provider(layer))
    return columns
