"""A training set of several images, each with labels, boxes and voxel size, as training boxes.

``train`` and ``run`` both build their :class:`pipeline.training.TrainingBox` list here, so a
list of images trains the same from either command. Each image keeps its own voxel size (the
distance targets are in nm, so images at different scales teach the same physical sizes); the
box names carry the image's name when there are several images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipeline.box_table import box_table_read
from pipeline.config import TrainingImage
from pipeline.errors import InvalidInputError
from pipeline.layout import IMAGE_STORE
from pipeline.training import TrainingBox
from pipeline.volumes import open_volume

ENTRY_KEYS = frozenset({"image", "labels", "boxes", "voxel_size", "level", "semantic"})


def image_name(path: Path) -> str:
    """A short name for an image path (``a.ome.zarr`` -> ``a``, ``f.h5:/raw`` -> ``f``, and
    a dataset folder's ``d/image.ome.zarr`` -> ``d``)."""
    file = Path(str(path).split(":")[0])
    stem = file.name.split(".")[0]
    if file.name == IMAGE_STORE and file.parent.name:
        return file.parent.name
    return stem or str(path)


def training_boxes(
    images: Sequence[TrainingImage], *, channels: int = 1
) -> tuple[list[TrainingBox], tuple[float, ...]]:
    """Every box of every image, and the first image's voxel size (nm, recorded with the model).

    Each image's labels (and semantic masks) must match its shape, and there must be a labelled
    voxel in some box of each image.
    """
    if not images:
        raise InvalidInputError("no training images: give labels and boxes (or data.images)")
    boxes: list[TrainingBox] = []
    first_voxel: tuple[float, ...] | None = None
    names = [image_name(entry.image) for entry in images]
    unique = len(set(names)) == len(names)
    for k, entry in enumerate(images):
        image = open_volume(entry.image, entry.level, entry.voxel_size, "image", channels=channels)
        shape = tuple(int(n) for n in image.array.shape)[1 if channels > 1 else 0 :]
        if image.voxel_size is None:
            raise InvalidInputError(f"image {entry.image} records no voxel size: give voxel_size")
        labels = open_volume(entry.labels, entry.level, None, "labels").array
        if tuple(labels.shape) != shape:
            raise InvalidInputError(
                f"labels {entry.labels} have shape {tuple(labels.shape)}, the image {shape}"
            )
        semantic: dict[str, Any] = {}
        for head, path in (entry.semantic or {}).items():
            mask = open_volume(path, entry.level, None, f"{head} mask").array
            if tuple(mask.shape) != shape:
                raise InvalidInputError(
                    f"{head} mask {path} has shape {tuple(mask.shape)}, not {shape}"
                )
            semantic[head] = mask
        table = box_table_read(entry.boxes, shape=shape, voxel_size=image.voxel_size)
        if not any(np.any(np.asarray(labels[box.slices()])) for box in table):
            raise InvalidInputError(
                f"empty ground truth: no labelled voxel of {entry.labels} in any box"
            )
        prefix = "" if len(images) == 1 else f"{names[k] if unique else k}/"
        for box in table:
            boxes.append(
                TrainingBox(
                    image=image.array,
                    labels=labels,
                    box=box.corners,
                    name=prefix + box.name,
                    semantic=semantic or None,
                    voxel_size=image.voxel_size,
                )
            )
        first_voxel = first_voxel or image.voxel_size
    assert first_voxel is not None
    return boxes, first_voxel


def training_images_read(path: Path) -> list[TrainingImage]:
    """A YAML list of ``{image, labels, boxes, voxel_size?, level?, semantic?}`` entries (paths
    relative to the file), as the ``train`` command's ``--images`` takes it."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(
            f"{path}: cannot read the list of training images ({exc})"
        ) from None
    if isinstance(data, Mapping) and "images" in data:
        data = data["images"]
    if not isinstance(data, list) or not data:
        raise InvalidInputError(f"{path}: expected a list of {{image, labels, boxes}} entries")
    base = Path(path).resolve().parent
    out = []
    for i, raw in enumerate(data):
        if not isinstance(raw, Mapping):
            raise InvalidInputError(f"{path}: entry {i} is not a table of keys")
        unknown = sorted(set(map(str, raw)) - ENTRY_KEYS)
        missing = sorted({"image", "labels", "boxes"} - set(raw))
        if unknown or missing:
            raise InvalidInputError(
                f"{path}: entry {i}: "
                + (f"unknown key(s) {', '.join(unknown)}" if unknown else "")
                + (f"missing {', '.join(missing)}" if missing else "")
            )

        def resolve(value: Any) -> Path:
            p = Path(str(value)).expanduser()
            return p if p.is_absolute() else base / p

        voxel = raw.get("voxel_size")
        out.append(
            TrainingImage(
                image=resolve(raw["image"]),
                labels=resolve(raw["labels"]),
                boxes=resolve(raw["boxes"]),
                voxel_size=None if voxel is None else tuple(float(v) for v in np.ravel(voxel)),
                level=int(raw.get("level", 0)),
                semantic={str(k): resolve(v) for k, v in (raw.get("semantic") or {}).items()}
                or None,
            )
        )
    return out
