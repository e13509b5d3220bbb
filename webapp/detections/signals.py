"""Build the detections table of every segmentation layer whose dataset's layers changed."""

from __future__ import annotations

from typing import Any


def detections_on_layers_changed(sender: Any, dataset: Any, **kwargs: Any) -> None:
    """``layers_changed`` receiver: queue a build for each segmentation layer of ``dataset``."""
    from webapp.detections.services import detections_build_on_layers_changed

    detections_build_on_layers_changed(dataset)
