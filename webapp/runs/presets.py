"""Named run presets and the overrides a run may give, checked before any work is queued.

A preset is a partial pipeline configuration (:mod:`pipeline.config` sections); what it leaves
out the pipeline chooses from the data and the machine (``pipeline.training_auto``). Overrides
are ``section.key`` names with a type and a range: anything else is refused with a message.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from webapp.core.errors import InvalidRequest


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    description: str
    config: dict[str, Any]


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "standard",
            "Standard",
            "The pipeline's own choices for the data and this machine: U-Net size, patch and "
            "steps from the voxel size, the objects' size and whether a GPU is present.",
            {},
        ),
        Preset(
            "tiny",
            "Tiny (minutes on a CPU)",
            "A small U-Net trained for 150 steps: a first model in minutes, for trying "
            "the loop or on small data.",
            {
                "model": {"width": 4},
                "training": {
                    "batch_size": 2,
                    "max_epochs": 6,
                    "iterations_per_epoch": 25,
                    "lr": 1e-2,
                    "val_interval": 2,
                    "max_val_patches": 2,
                },
            },
        ),
    )
}


@dataclass(frozen=True)
class Override:
    kind: type
    low: float
    high: float
    help: str


OVERRIDES: dict[str, Override] = {
    "training.max_epochs": Override(int, 1, 1000, "epochs of training"),
    "training.iterations_per_epoch": Override(int, 1, 10_000, "steps per epoch"),
    "training.batch_size": Override(int, 1, 64, "patches per step"),
    "training.lr": Override(float, 1e-6, 1.0, "learning rate"),
    "model.width": Override(int, 2, 64, "channels of the first U-Net level"),
    "segment.seed_threshold": Override(float, 0.0, 1e6, "seed threshold on the distance, nm"),
    "segment.min_seed_voxels": Override(int, 0, 10**6, "smallest seed kept, voxels"),
}

#: Fraction of the approved boxes held out for evaluation (at least one, when there are two).
HELD_OUT_FRACTION = 0.2


def preset_config(name: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The preset's configuration with ``overrides`` applied; 400 for an unknown preset, an
    unknown override or a value of the wrong type or out of range."""
    preset = PRESETS.get(name)
    if preset is None:
        raise InvalidRequest(f"Unknown preset {name!r}; presets: {', '.join(sorted(PRESETS))}.")
    config = copy.deepcopy(preset.config)
    for key, value in (overrides or {}).items():
        rule = OVERRIDES.get(key)
        if rule is None:
            known = ", ".join(sorted(OVERRIDES))
            raise InvalidRequest(f"Unknown parameter {key!r}; parameters: {known}.")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"Parameter {key!r} must be a number.")
        if rule.kind is int and not float(value).is_integer():
            raise InvalidRequest(f"Parameter {key!r} must be a whole number.")
        if not rule.low <= value <= rule.high:
            raise InvalidRequest(
                f"Parameter {key!r} ({rule.help}) must be between {rule.low:g} and "
                f"{rule.high:g}, not {value:g}."
            )
        section = config
        *parents, leaf = key.split(".")
        for part in parents:
            section = section.setdefault(part, {})
        section[leaf] = rule.kind(value)
    return config
