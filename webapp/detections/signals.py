"""Build the detections table of every segmentation layer whose dataset's layers changed."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def detections_on_layers_changed(
    sender: Any, dataset: Any, layers: Any = None, **kwargs: Any
) -> None:
    """``layers_changed`` receiver: queue a build for each segmentation layer of ``dataset``,
    or only of ``layers`` when the sender says which changed (a publication adds one layer and
    leaves the others' tables as they are); nothing when ``DETECTIONS_AUTO_BUILD`` is off."""
    if not getattr(settings, "DETECTIONS_AUTO_BUILD", True):
        return
    from webapp.detections.services import detections_build_on_layers_changed

    detections_build_on_layers_changed(dataset, layers=layers)


def cards_on_layer_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``post_delete`` of a layer: its gallery cards (a cache) go with it."""
    from webapp.detections.cards import cards_forget_layer

    cards_forget_layer(instance.id)
