"""Post-processing parameters scaled to the objects: seed threshold, smoothing, minimum seed, clamp.

The published values (seeds where the distance exceeds 705.6 nm, targets clamped at 4,000 nm) are
absolute lengths measured on brain nuclei in X-ray nanotomography, with an equivalent radius of
roughly 2.5-3 um. On other data the same lengths are too deep (small nuclei get no seed) or too
shallow (large ones get several). Expressed relative to the ground truth's median equivalent
radius ``r`` they carry over: seeds at ``SEED_FACTOR * r`` (the X-ray preset is about 0.25 r),
smoothing sigma ``SMOOTH_FACTOR * r``, targets clamped at ``CLAMP_FACTOR * r`` (the distance inside
an object never exceeds its radius; the clamp only has to leave room above it), and seeds smaller
than ``MIN_SEED_FRACTION`` of the median object's voxels dropped as noise, and a seed kept only on
a peak of the distance that stands ``DYNAMIC_FACTOR * r`` above its saddle to a higher peak (its
dynamic: :mod:`pipeline.watershed`). These derived values are the starting point that fitting on
the validation boxes refines.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cc3d
import numpy as np

from pipeline.errors import InvalidInputError

SEED_FACTOR = 0.3
SMOOTH_FACTOR = 0.1
CLAMP_FACTOR = 1.5
MIN_SEED_FRACTION = 0.01
DYNAMIC_FACTOR = 0.1


@dataclass(frozen=True)
class SegmentParams:
    """Seeded-watershed settings in physical units (nm), and where they came from."""

    seed_threshold_nm: float
    smooth_nm: float
    min_seed_voxels: int
    clamp_nm: float
    source: str  # "preset:<name>", "derived" or "fitted"
    object_radius_nm: float | None = None  # the ground truth's median equivalent radius
    seed_dynamic_nm: float = 0.0  # a seed's peak must rise this far above its saddle; 0: off

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentParams:
        try:
            radius = data.get("object_radius_nm")
            return cls(
                seed_threshold_nm=float(data["seed_threshold_nm"]),
                smooth_nm=float(data["smooth_nm"]),
                min_seed_voxels=int(data["min_seed_voxels"]),
                clamp_nm=float(data["clamp_nm"]),
                source=str(data["source"]),
                object_radius_nm=None if radius is None else float(radius),
                # Models recorded before the dynamic existed seeded by the threshold alone.
                seed_dynamic_nm=float(data.get("seed_dynamic_nm", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"segmentation parameters are incomplete: {exc}")


PRESETS: dict[str, SegmentParams] = {
    # Cell nuclei in X-ray holographic nanotomography of mouse olfactory bulb (the published run).
    "xray-nuclei": SegmentParams(
        seed_threshold_nm=705.6,
        smooth_nm=0.0,
        min_seed_voxels=0,
        clamp_nm=4000.0,
        source="preset:xray-nuclei",
    ),
}


def preset(name: str) -> SegmentParams:
    """A named preset; an unknown name is an error listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown segmentation preset {name!r}; known: {', '.join(sorted(PRESETS))}"
        )


def object_volumes_nm(labels: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    """Physical volume (nm^3; nm^2 in 2D) of every object of an instance label array."""
    labels = np.asarray(labels)
    if len(voxel_size) != labels.ndim:
        shape = f"{labels.ndim}D labels"
        raise InvalidInputError(f"voxel size {tuple(voxel_size)} does not fit {shape}")
    stats = cc3d.statistics(np.ascontiguousarray(labels))
    counts = np.asarray(stats["voxel_counts"][1:], dtype=np.float64)
    return counts[counts > 0] * float(np.prod(voxel_size))


def equivalent_radius_nm(volume: np.ndarray, ndim: int) -> np.ndarray:
    """Radius of the sphere (3D) or disc (2D) with the given volume or area."""
    if ndim == 3:
        return np.cbrt(3.0 * volume / (4.0 * math.pi))
    return np.sqrt(volume / math.pi)


def median_object_radius_nm(
    labels: Sequence[np.ndarray], voxel_size: Sequence[float]
) -> tuple[float, float]:
    """(median equivalent radius in nm, median object size in voxels) over several label arrays."""
    volumes = [object_volumes_nm(a, voxel_size) for a in labels]
    every = np.concatenate(volumes) if volumes else np.zeros(0)
    if every.size == 0:
        raise InvalidInputError("the ground truth holds no objects to scale the segmentation by")
    ndim = len(voxel_size)
    radius = float(np.median(equivalent_radius_nm(every, ndim)))
    voxels = float(np.median(every)) / float(np.prod(voxel_size))
    return radius, voxels


def derive_segment_params(
    labels: Sequence[np.ndarray], voxel_size: Sequence[float]
) -> SegmentParams:
    """Parameters scaled to the median object of the ground truth (see the module docstring)."""
    radius, voxels = median_object_radius_nm(labels, voxel_size)
    return SegmentParams(
        seed_threshold_nm=SEED_FACTOR * radius,
        smooth_nm=SMOOTH_FACTOR * radius,
        min_seed_voxels=max(1, round(MIN_SEED_FRACTION * voxels)),
        clamp_nm=CLAMP_FACTOR * radius,
        source="derived",
        object_radius_nm=radius,
        seed_dynamic_nm=DYNAMIC_FACTOR * radius,
    )


def smooth_sigma_voxels(smooth_nm: float, voxel_size: Sequence[float]) -> tuple[float, ...]:
    """The smoothing sigma per axis in voxels (anisotropic voxels get fewer along the long axis)."""
    return tuple(float(smooth_nm) / float(v) for v in voxel_size)


AUTO = "auto"


@dataclass(frozen=True)
class ChosenSegmentParams:
    """The settings a segmentation uses, why, and which single values the user overrode."""

    params: SegmentParams
    reason: str
    overrides: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**self.params.to_dict(), "reason": self.reason, "overrides": list(self.overrides)}

    def describe(self) -> str:
        """One line for the CLI."""
        return describe_chosen(self.to_dict())


def describe_chosen(chosen: Mapping[str, Any]) -> str:
    """One line saying which settings a segmentation used and why (from ``to_dict()``)."""
    text = (
        f"segmentation: seeds at {chosen['seed_threshold_nm']:.1f} nm, peak dynamic "
        f"{chosen.get('seed_dynamic_nm', 0.0):.1f} nm, smoothing "
        f"{chosen['smooth_nm']:.1f} nm, minimum seed {chosen['min_seed_voxels']} voxels "
        f"({chosen['source']}: {chosen['reason']}"
    )
    if chosen.get("overrides"):
        text += f"; set explicitly: {', '.join(chosen['overrides'])}"
    return text + ")"


def choose_segment_params(
    name: str = AUTO,
    *,
    model: SegmentParams | None = None,
    model_name: str = "the model",
    derive: Callable[[], SegmentParams] | None = None,
    seed_threshold_nm: float | None = None,
    smooth_nm: float | None = None,
    min_seed_voxels: int | None = None,
    seed_dynamic_nm: float | None = None,
) -> ChosenSegmentParams:
    """Resolve ``preset: auto`` (or a named preset) and explicit single values.

    ``auto``: the settings fitted after training and recorded in the model file; else derived
    from the ground truth (``derive`` is called only then); else the X-ray preset, with a
    reason saying that its absolute lengths suit only nuclei of that size.
    """
    if name == AUTO:
        if model is not None:
            chosen = ChosenSegmentParams(model, f"recorded in {model_name} after training")
        elif derive is not None:
            derived = derive()
            chosen = ChosenSegmentParams(
                derived,
                f"{model_name} records none; derived from the ground truth's median object "
                f"radius of {derived.object_radius_nm:.0f} nm",
            )
        else:
            chosen = ChosenSegmentParams(
                preset("xray-nuclei"),
                f"{model_name} records none and no ground truth was given: the published X-ray "
                "values, absolute lengths that suit nuclei of about 2.5-3 um radius only "
                "(retrain, or give the ground truth, to scale them to your objects)",
            )
    else:
        chosen = ChosenSegmentParams(preset(name), f"preset {name} requested")
    overrides = {
        "seed_threshold_nm": seed_threshold_nm,
        "smooth_nm": smooth_nm,
        "min_seed_voxels": min_seed_voxels,
        "seed_dynamic_nm": seed_dynamic_nm,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return chosen
    if (seed_threshold_nm is not None and seed_threshold_nm < 0) or (
        (smooth_nm or 0) < 0 or (min_seed_voxels or 0) < 0 or (seed_dynamic_nm or 0) < 0
    ):
        raise InvalidInputError(
            "seed threshold, peak dynamic, smoothing and minimum seed must not be negative"
        )
    params = SegmentParams(
        seed_threshold_nm=float(given.get("seed_threshold_nm", chosen.params.seed_threshold_nm)),
        smooth_nm=float(given.get("smooth_nm", chosen.params.smooth_nm)),
        min_seed_voxels=int(given.get("min_seed_voxels", chosen.params.min_seed_voxels)),
        clamp_nm=chosen.params.clamp_nm,
        source=chosen.params.source,
        object_radius_nm=chosen.params.object_radius_nm,
        seed_dynamic_nm=float(given.get("seed_dynamic_nm", chosen.params.seed_dynamic_nm)),
    )
    return ChosenSegmentParams(params, chosen.reason, tuple(given))
