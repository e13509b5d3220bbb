"""The current model of a dataset, for apps below the one that keeps the registry.

The painting editor's assistance (annotation) grows objects from the current model's output,
but the model registry belongs to the runs app above it (``pyproject.toml``'s import-linter
layers): the runs app registers a provider in its ``AppConfig.ready`` and annotation asks here,
as with :mod:`webapp.core.page_panels`. No provider (runs not installed) or no model: None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CurrentModel:
    """What assistance needs of a dataset's current model.

    ``segmentation`` (an OME-Zarr label image) and ``probability`` (its map) are the model's
    output over the asked image layer, on that layer's full-resolution grid; None where the model
    segmented another layer or another grid, so that only ``model_file`` can be used.
    """

    name: str
    model_file: Path
    segmentation: Path | None = None
    probability: Path | None = None


Provider = Callable[[int, int], CurrentModel | None]

_PROVIDERS: list[Provider] = []


def register(provider: Provider) -> None:
    """Add ``provider`` (dataset id, image layer id) -> CurrentModel | None, once."""
    if provider not in _PROVIDERS:
        _PROVIDERS.append(provider)


def current_model(dataset_id: int, image_layer_id: int) -> CurrentModel | None:
    """The first answer of the providers for the dataset's image layer, or None."""
    for provider in _PROVIDERS:
        found = provider(dataset_id, image_layer_id)
        if found is not None:
            return found
    return None
