"""A synthetic volume with known truth for the stereology tests (imported by name: unique).

Balls 80-120 um across (radius 4-6 voxels of 10 um), disjoint and whole
(``pipeline.synthetic.make_sphere_labels``); the segmentation is the truth with a known share
of the balls dropped, written as an OME-Zarr label image that the site reads like any layer,
with its detections table built from it by ``pipeline.detections``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from django.contrib.auth import get_user_model

from pipeline.detections import Geometry, measure_detections
from pipeline.ome_zarr_io import create_single_level_image
from pipeline.synthetic import make_sphere_labels
from webapp.datasets.models import Dataset, JobStatus, Layer, LayerKind, Visibility
from webapp.detections.builds import detections_replace
from webapp.detections.models import DetectionBuild
from webapp.proofreading import services as proofreading_services
from webapp.proofreading.models import ProofreadingCampaign, Role
from webapp.proofreading.services import CampaignSettings

VOXEL_NM = (10_000.0, 10_000.0, 10_000.0)
MISS = 0.15


@dataclass
class Truth:
    labels: npt.NDArray[np.uint32]  # every object
    dropped: frozenset[int]  # objects the segmentation misses
    layer: Layer

    @property
    def n_objects(self) -> int:
        return int(self.labels.max())

    def section(self, z: int) -> set[int]:
        return set(np.unique(self.labels[z]).tolist()) - {0}


def user(name: str) -> Any:
    return get_user_model().objects.create_user(name, password="pass-123-word")


@cache
def _volume(
    shape: tuple[int, int, int], seed: int
) -> tuple[npt.NDArray[np.uint32], frozenset[int], npt.NDArray[np.uint32]]:
    """The truth, the objects dropped and the segmentation (made once per shape and seed)."""
    labels, _, radii = make_sphere_labels(shape, 450, radius_voxels=(4.0, 6.0), seed=seed)
    n = len(radii)
    rng = np.random.default_rng(1000 + seed)
    dropped = frozenset((rng.permutation(n)[: round(MISS * n)] + 1).tolist())
    segmentation = np.where(np.isin(labels, list(dropped)), 0, labels).astype(np.uint32)
    labels.setflags(write=False)
    segmentation.setflags(write=False)
    return labels, dropped, segmentation


def synthetic_layer(
    root: Path, owner: Any, *, shape: tuple[int, int, int] = (100, 100, 100), seed: int = 0
) -> Truth:
    """A dataset under ``root`` whose layer ``nuclei`` misses ``MISS`` of the true objects."""
    labels, dropped, segmentation = _volume(shape, seed)
    store = create_single_level_image(
        root / "image.ome.zarr",
        shape,
        dtype="uint32",
        chunks=(32, 64, 64),
        voxel_size=VOXEL_NM,
        name="nuclei",
        label=True,
    )
    store[...] = segmentation
    dataset = Dataset.objects.create(
        name=f"Synthetic {seed}",
        slug=f"synthetic-{seed}",
        owner=owner,
        visibility=Visibility.PUBLIC,
        root_dir=str(root),
    )
    layer = Layer.objects.create(
        dataset=dataset,
        name="nuclei",
        kind=LayerKind.SEGMENTATION,
        path="image.ome.zarr",
        ngff_version="0.5",
        shape=list(shape),
        axes=["z", "y", "x"],
        dtype="uint32",
        voxel_size=list(VOXEL_NM),
        unit="nanometer",
    )
    frame = measure_detections(segmentation, Geometry(VOXEL_NM))
    build = DetectionBuild.objects.create(
        layer=layer, owner=owner, status=JobStatus.RUNNING, attempts=1
    )
    detections_replace(layer, build, frame)
    DetectionBuild.objects.filter(id=build.id).update(
        status=JobStatus.SUCCEEDED, n_detections=len(frame), finished=build.created
    )
    return Truth(labels=labels, dropped=dropped, layer=layer)


def campaign_over(
    layer: Layer, manager: Any, reviewers: tuple[Any, ...] = (), experts: tuple[Any, ...] = ()
) -> ProofreadingCampaign:
    members = [(u.username, Role.REVIEWER) for u in reviewers]
    members += [(u.username, Role.EXPERT) for u in experts]
    return proofreading_services.campaign_create(
        manager, layer, CampaignSettings(name="Nuclei"), members=members
    )


def perfect_marks(
    truth: Truth, plan: dict[str, Any]
) -> list[tuple[int, int, tuple[int, int, int]]]:
    """(pair, object, voxel z y x in the reference section) for every object a perfect reviewer
    marks: in the reference section and not in the look-up section (or the look-up section lies
    beyond the volume)."""
    marks = []
    for pair in plan["pairs"]:
        ref = int(pair["reference"])
        look = truth.section(int(pair["lookup"])) if pair["lookup_in_volume"] else set()
        for obj in sorted(truth.section(ref) - look):
            yx = np.argwhere(truth.labels[ref] == obj)
            y, x = (int(v) for v in yx[len(yx) // 2])
            marks.append((int(pair["index"]), obj, (ref, y, x)))
    return marks
