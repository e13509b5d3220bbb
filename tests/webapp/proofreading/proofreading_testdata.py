"""Factories and tables shared by the proofreading tests (imported by name: a unique module)."""

from __future__ import annotations

from typing import Any

import factory
import numpy as np
import pandas as pd

from pipeline.detections import DETECTION_COLUMNS
from tests import model_factories
from tests.model_factories import UserFactory  # noqa: F401  (re-exported)
from webapp.datasets.models import JobStatus, Layer, LayerKind, Visibility
from webapp.detections.builds import detections_replace
from webapp.detections.models import DetectionBuild
from webapp.proofreading import services
from webapp.proofreading.models import ProofreadingCampaign, Role
from webapp.proofreading.services import CampaignSettings

SHAPE = (100, 1000, 1000)  # z, y, x voxels
VOXEL_NM = (400.0, 200.0, 200.0)


class DatasetFactory(model_factories.DatasetFactory):
    visibility = Visibility.PUBLIC


class SegmentationLayerFactory(model_factories.LayerFactory):
    dataset = factory.SubFactory(DatasetFactory)
    name = "nuclei"
    kind = LayerKind.SEGMENTATION
    path = "image.ome.zarr/labels/nuclei"
    shape = factory.LazyFunction(lambda: list(SHAPE))
    dtype = "uint32"
    voxel_size = factory.LazyFunction(lambda: list(VOXEL_NM))


def synthetic_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` made-up objects inside ``SHAPE``; physical columns from ``VOXEL_NM`` with an
    origin of (1, 2, 3) um, so that voxel -> um conversions can be checked."""
    rng = np.random.default_rng(seed)
    lo = np.stack([rng.integers(0, s - 20, size=n) for s in SHAPE], axis=1)
    size = rng.integers(2, 20, size=(n, 3))
    voxels = rng.integers(10, 5000, size=n)
    voxel_um = np.asarray(VOXEL_NM) / 1000
    origin = np.array([1.0, 2.0, 3.0])
    data: dict[str, Any] = {
        "segment_id": np.arange(1, n + 1, dtype=np.int64),
        "voxels": voxels,
        "volume": voxels * float(np.prod(voxel_um)),
        "surface_area": rng.uniform(1, 100, n),
        "sphericity": rng.uniform(0.3, 1.0, n),
        "mean_intensity": rng.uniform(0, 4000, n),
        "mean_probability": np.full(n, np.nan),
    }
    centroid = lo + size / 2
    for axis, name in enumerate("zyx"):
        data[f"centroid_{name}"] = centroid[:, axis]
        data[f"centroid_{name}_um"] = origin[axis] + centroid[:, axis] * voxel_um[axis]
    for axis, name in enumerate("zyx"):
        data[f"bbox_{name}0"] = lo[:, axis]
        data[f"bbox_{name}1"] = lo[:, axis] + size[:, axis]
        data[f"bbox_{name}0_um"] = origin[axis] + (lo[:, axis] - 0.5) * voxel_um[axis]
        data[f"bbox_{name}1_um"] = (
            origin[axis] + (lo[:, axis] + size[:, axis] - 0.5) * voxel_um[axis]
        )
    return pd.DataFrame(data, columns=list(DETECTION_COLUMNS))


def table_with(layer: Layer, frame: pd.DataFrame) -> DetectionBuild:
    """Write ``frame`` as ``layer``'s detections table, as a finished build."""
    build = DetectionBuild.objects.create(
        layer=layer, owner=layer.dataset.owner, status=JobStatus.RUNNING, attempts=1
    )
    detections_replace(layer, build, frame)
    DetectionBuild.objects.filter(id=build.id).update(
        status=JobStatus.SUCCEEDED, n_detections=len(frame), finished=build.created
    )
    return build


def layer_with_detections(n: int, owner: Any = None, seed: int = 0, **kw: Any) -> Layer:
    dataset = DatasetFactory(owner=owner) if owner is not None else DatasetFactory()
    layer = SegmentationLayerFactory(dataset=dataset, **kw)
    table_with(layer, synthetic_frame(n, seed))
    return layer


def campaign_with(
    layer: Layer,
    manager: Any,
    *,
    reviewers: tuple[Any, ...] = (),
    experts: tuple[Any, ...] = (),
    **settings: Any,
) -> ProofreadingCampaign:
    """A campaign made by the service, with members."""
    members = [(u.username, Role.REVIEWER) for u in reviewers]
    members += [(u.username, Role.EXPERT) for u in experts]
    settings.setdefault("name", "Proofread nuclei")
    return services.campaign_create(manager, layer, CampaignSettings(**settings), members=members)
