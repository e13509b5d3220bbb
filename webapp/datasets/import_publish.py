"""Publish an import's finished work directory as a dataset: slug, rename, rows, all or nothing.

The directory is renamed to ``DATA_ROOT/datasets/<slug>`` and the Dataset, its Layers and the
job's success are written in one transaction; any failure renames it back, so the work
directory's cleanup removes it and no half-published dataset remains.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from pipeline.layout import IMAGE_STORE
from pipeline.naming import IMAGE_LAYER_NAME, mesh_layer_name
from pipeline.units import DEFAULT_UNIT
from pipeline.volume_info import LayerInfo
from webapp.datasets.models import Dataset, DatasetJob, Layer, LayerKind, Visibility
from webapp.datasets.services_errors import ImportRejected

logger = logging.getLogger(__name__)

# Slugs that would shadow page URLs under /datasets/.
RESERVED_SLUGS = frozenset({"import", "new", "api", "data", "s", "v", "static"})
PUBLISH_TRIES = 5


def datasets_dir() -> Path:
    return Path(settings.DATA_ROOT) / "datasets"


def _slug_taken(slug: str) -> bool:
    return (
        slug in RESERVED_SLUGS
        or Dataset.objects.filter(slug=slug).exists()
        or os.path.lexists(datasets_dir() / slug)
    )


def slug_unique(name: str) -> str:
    """``slugify(name)``, with ``-2``, ``-3``... appended while the slug or its directory exist."""
    base = slugify(name)[:80].strip("-") or "dataset"
    if not _slug_taken(base):
        return base
    n = 2
    while _slug_taken(f"{base}-{n}"):
        n += 1
    return f"{base}-{n}"


def _slug_for(job: DatasetJob) -> str:
    requested: str | None = job.params.get("slug")
    if not requested:
        return slug_unique(job.params["name"])
    if Dataset.objects.filter(slug=requested).exists():
        raise ImportRejected(f"A dataset with slug {requested!r} already exists.")
    orphan = datasets_dir() / requested
    if os.path.lexists(orphan):
        # Files without a Dataset row (e.g. a crash mid-delete): nothing refers to them.
        logger.warning("removing orphaned dataset directory %s", orphan)
        _remove_tree(orphan)
    return requested


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def layer_fields(info: LayerInfo) -> dict[str, Any]:
    """Layer columns from what the pipeline reports about a written (or registered) store."""
    contrast = info.contrast
    return {
        "path": info.path,
        "ngff_version": info.ngff_version,
        "shape": [int(s) for s in info.shape],
        "axes": list(info.axes),
        "dtype": info.dtype,
        "voxel_size": [float(v) for v in info.voxel_size],
        "unit": info.unit or DEFAULT_UNIT,
        "channels": int(info.channels),
        "levels": int(info.levels),
        "contrast_min": float(contrast[0]) if contrast else None,
        "contrast_max": float(contrast[1]) if contrast else None,
    }


def mesh_layer_fields(segmentation: Layer, path: str) -> dict[str, Any]:
    """Layer columns of the mesh layer drawn from ``segmentation``, stored at ``path``."""
    return {
        "path": path,
        "ngff_version": "",
        "shape": segmentation.shape,
        "axes": segmentation.axes,
        "dtype": "",
        "voxel_size": segmentation.voxel_size,
        "unit": segmentation.unit,
        "channels": 1,
        "levels": 1,
    }


def prefixed(info: LayerInfo, prefix: str = IMAGE_STORE) -> LayerInfo:
    """``info`` with its path made relative to the dataset (a registered store's paths are
    relative to the store)."""
    path = f"{prefix}/{info.path}".rstrip("/") if info.path else prefix
    return LayerInfo(
        path=path,
        ngff_version=info.ngff_version,
        shape=info.shape,
        axes=info.axes,
        dtype=info.dtype,
        voxel_size=info.voxel_size,
        unit=info.unit,
        channels=info.channels,
        levels=info.levels,
        contrast=info.contrast,
    )


def dataset_publish(
    job: DatasetJob,
    out: Path,
    image: LayerInfo,
    labels: Mapping[str, LayerInfo],
    meshes: Mapping[str, str],
    succeed: Callable[..., None],
) -> Dataset:
    """Move ``out`` to its final place and create the Dataset and Layers, all or nothing.

    ``succeed(dataset=...)`` marks the job succeeded inside the same transaction (it raises when
    the job was cancelled or taken over meanwhile, which undoes everything).
    """
    params = job.params
    final: Path | None = None
    try:
        for attempt in range(PUBLISH_TRIES):
            try:
                with transaction.atomic():
                    slug = _slug_for(job)
                    dataset = Dataset.objects.create(
                        name=params["name"],
                        slug=slug,
                        description=params.get("description") or "",
                        owner=job.owner,
                        visibility=params.get("visibility") or Visibility.PRIVATE,
                        team_id=params.get("team_id"),
                    )
                    _layers_create(dataset, image, labels, meshes)
                    final = datasets_dir() / slug
                    final.parent.mkdir(parents=True, exist_ok=True)
                    if os.path.lexists(final):
                        raise IntegrityError(f"directory {final} appeared meanwhile")
                    os.rename(out, final)
                    succeed(dataset=dataset)
                return dataset
            except IntegrityError:
                # Another import took the slug between our check and our insert: try the next.
                if final is not None and final.exists() and not out.exists():
                    os.rename(final, out)
                final = None
                if attempt == PUBLISH_TRIES - 1 or params.get("slug"):
                    raise
        raise AssertionError("unreachable")
    except BaseException:
        if final is not None and os.path.lexists(final) and not os.path.lexists(out):
            os.rename(final, out)  # the work directory's cleanup removes it
        raise


def _layers_create(
    dataset: Dataset,
    image: LayerInfo,
    labels: Mapping[str, LayerInfo],
    meshes: Mapping[str, str],
) -> None:
    Layer.objects.create(
        dataset=dataset, name=IMAGE_LAYER_NAME, kind=LayerKind.IMAGE, **layer_fields(image)
    )
    for name, info in labels.items():
        segmentation = Layer.objects.create(
            dataset=dataset, name=name, kind=LayerKind.SEGMENTATION, **layer_fields(info)
        )
        if name in meshes:
            Layer.objects.create(
                dataset=dataset,
                name=mesh_layer_name(name),
                kind=LayerKind.MESH,
                source_layer=segmentation,
                **mesh_layer_fields(segmentation, meshes[name]),
            )
