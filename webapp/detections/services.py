"""Writes of the detections app: starting table builds (the builds themselves: ``builds``)."""

from __future__ import annotations

from webapp.datasets.models import Dataset


def detections_build_on_layers_changed(dataset: Dataset) -> None:
    """Queue a table build for every segmentation layer of ``dataset`` (not yet wired)."""
