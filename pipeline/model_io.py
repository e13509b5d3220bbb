"""Model files: U-Net weights with everything needed to apply them (normalisation, voxel size).

A model file is a ``torch.save`` dict of plain values and tensors, loaded with
``weights_only=True`` (no code runs on load). ``metadata`` carries training facts such as
``clamp_nm`` (the distance head predicts distance / clamp_nm) and the training patch shape, and
after training ``segment_params`` (:class:`pipeline.segment_params.SegmentParams` as a dict: the
seeded-watershed settings fitted on the validation boxes, which segmentation uses by default).
``normalisation`` (a :class:`pipeline.normalise.Normalisation` as plain values) says how to
normalise a volume before applying the model; files written before it existed hold only ``mean``
and ``std`` and load as ``meanstd`` with those values, as they were used. Newer files keep
``mean`` and ``std`` too (for a percentile model: the training image's low percentile and
high - low), so that older code reading them applies the training image's map as it used to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import InvalidInputError
from pipeline.normalise import Normalisation
from pipeline.segment_params import SegmentParams
from pipeline.targets import DEFAULT_CLAMP_NM
from pipeline.torch_setup import choose_device
from pipeline.unet import UNet, UNetConfig

MODEL_FORMAT = "annotome-unet"
MODEL_FORMAT_VERSION = 1
SEGMENT_PARAMS_KEY = "segment_params"
SEGMENT_FIT_KEY = "segment_fit"


@dataclass
class LoadedModel:
    """A U-Net in eval mode on its device, with its normalisation and voxel size (nm).

    ``mean`` and ``std`` are the file's legacy values; apply ``normalisation`` instead.
    """

    model: UNet
    config: UNetConfig
    mean: float
    std: float
    voxel_size: tuple[float, ...]
    metadata: dict[str, Any]
    device: torch.device
    normalisation: Normalisation
    path: Path | None = field(default=None)

    @property
    def clamp_nm(self) -> float:
        """Distance head output x clamp_nm = distance in nm."""
        return float(self.metadata.get("clamp_nm", DEFAULT_CLAMP_NM))

    @property
    def segment_params(self) -> SegmentParams | None:
        """The segmentation settings recorded after training (None for older model files)."""
        return _segment_params(self.metadata)


def _segment_params(metadata: dict[str, Any]) -> SegmentParams | None:
    recorded = metadata.get(SEGMENT_PARAMS_KEY)
    return None if recorded is None else SegmentParams.from_dict(recorded)


def _legacy_mean_std(
    mean: float | None, std: float | None, normalisation: Normalisation | None
) -> tuple[float, float, Normalisation]:
    """``mean``/``std`` for the file (what older readers apply) and the normalisation."""
    if normalisation is None:
        if mean is None or std is None:
            raise InvalidInputError("a model file needs a normalisation (or a mean and std)")
        normalisation = Normalisation.mean_std(mean, std)
    if normalisation.values is None:
        raise InvalidInputError("the model's normalisation has no training-image values")
    first, second = normalisation.values
    legacy = (first, second) if normalisation.method == "meanstd" else (first, second - first)
    if mean is None or std is None:
        mean, std = legacy
    if not std > 0:
        raise InvalidInputError("normalisation std must be positive")
    return float(mean), float(std), normalisation


def model_payload(
    model: UNet,
    *,
    mean: float | None = None,
    std: float | None = None,
    normalisation: Normalisation | None = None,
    voxel_size: tuple[float, ...],
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """The dict a model file holds (also embedded in training checkpoints).

    Give ``normalisation``, or only ``mean`` and ``std`` (a fixed ``meanstd`` normalisation).
    """
    mean, std, normalisation = _legacy_mean_std(mean, std, normalisation)
    return {
        "format": MODEL_FORMAT,
        "version": MODEL_FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "mean": mean,
        "std": std,
        "normalisation": normalisation.to_dict(),
        "voxel_size": [float(v) for v in voxel_size],
        "metadata": dict(metadata),
    }


def save_model(
    path: Path,
    model: UNet,
    *,
    mean: float | None = None,
    std: float | None = None,
    normalisation: Normalisation | None = None,
    voxel_size: tuple[float, ...],
    metadata: dict[str, Any],
) -> None:
    """Write a model file atomically (a temporary file renamed into place)."""
    payload = model_payload(
        model,
        mean=mean,
        std=std,
        normalisation=normalisation,
        voxel_size=voxel_size,
        metadata=metadata,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def model_from_payload(payload: dict[str, Any], device: torch.device) -> UNet:
    config = UNetConfig.from_dict(payload["config"])
    model = UNet(config)
    model.load_state_dict(payload["state_dict"])
    return model.to(device)


def _read_payload(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no model file here")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidInputError(f"{path.name} is not a readable model file: {exc}")
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise InvalidInputError(f"{path.name} is not an Annotome U-Net model file")
    if payload.get("version") != MODEL_FORMAT_VERSION:
        raise InvalidInputError(f"{path.name}: model format version {payload.get('version')}")
    return payload


def model_unet_config(path: Path) -> UNetConfig:
    """The U-Net a model file holds (a fine-tune trains that network from its weights)."""
    return UNetConfig.from_dict(_read_payload(path)["config"])


def parent_state_dict(path: Path, unet: UNetConfig) -> dict[str, Any]:
    """The weights of the model file ``path`` for a fine-tune of the network ``unet``; a
    clear error when the file holds another network."""
    payload = _read_payload(path)
    if UNetConfig.from_dict(payload["config"]).to_dict() != unet.to_dict():
        raise InvalidInputError(
            f"{Path(path).name}: its U-Net differs from the one to train (a fine-tune keeps "
            "the parent's network: leave the model section's U-Net keys out)"
        )
    state: dict[str, Any] = payload["state_dict"]
    return state


def model_segment_params(path: Path) -> SegmentParams | None:
    """The segmentation settings a model file records, without building the network."""
    return _segment_params(dict(_read_payload(path)["metadata"]))


def record_segment_params(
    path: Path, params: SegmentParams, fit: dict[str, Any] | None = None
) -> None:
    """Write ``params`` (and a summary of how they were fitted) into a model file's metadata."""
    payload = _read_payload(path)
    metadata = dict(payload["metadata"])
    metadata[SEGMENT_PARAMS_KEY] = params.to_dict()
    if fit is not None:
        metadata[SEGMENT_FIT_KEY] = dict(fit)
    payload["metadata"] = metadata
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_model(path: Path, device: str = "auto") -> LoadedModel:
    """Load a model file onto ``device`` (``auto``: CUDA when available) in eval mode."""
    path = Path(path)
    payload = _read_payload(path)
    target = choose_device(device)
    model = model_from_payload(payload, target).eval()
    mean, std = float(payload["mean"]), float(payload["std"])
    return LoadedModel(
        model=model,
        config=model.config,
        mean=mean,
        std=std,
        voxel_size=tuple(float(v) for v in payload["voxel_size"]),
        metadata=dict(payload["metadata"]),
        device=target,
        normalisation=payload_normalisation(payload, path.name),
        path=path,
    )


def payload_normalisation(payload: dict[str, Any], name: str = "model") -> Normalisation:
    """The model's normalisation; ``meanstd`` with the stored values for older files."""
    stored = payload.get("normalisation")
    if stored is None:
        return Normalisation.mean_std(float(payload["mean"]), float(payload["std"]))
    if not isinstance(stored, dict):
        raise InvalidInputError(f"{name}: normalisation is not a table: {stored!r}")
    try:
        return Normalisation.from_dict(stored)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name}: unreadable normalisation {stored!r}: {exc}")
