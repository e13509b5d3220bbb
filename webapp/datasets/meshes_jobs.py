"""(Re)build the meshes of a segmentation layer in a job: build aside, then swap in.

The new meshes are built in the job's work directory; one transaction then updates (or creates)
the mesh layer, renames the old directory aside and the new one into place, and marks the job
succeeded. A failure puts the old meshes back.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.contrib.auth.models import User
from django.db import transaction
from django.utils.text import slugify

from pipeline.layout import mesh_dir_path
from pipeline.meshing import build_meshes
from pipeline.naming import is_label_name, mesh_layer_name
from pipeline.progress import ProgressCallback
from webapp.core.jobs.progress import JobProgressWriter
from webapp.datasets.dataset_jobs import DatasetJobRunner, dataset_job_create, stage_prefixed
from webapp.datasets.import_publish import mesh_layer_fields
from webapp.datasets.models import Dataset, DatasetJob, JobKind, Layer, LayerKind
from webapp.datasets.services_errors import InvalidRequest, NotAllowed


def meshes_build_start(
    dataset: Dataset,
    layer: Layer,
    *,
    user: User | None = None,
    enqueue: bool = True,
) -> DatasetJob:
    """Record a job rebuilding the meshes of segmentation ``layer`` and queue it on commit."""
    if layer.dataset_id != dataset.id:
        raise InvalidRequest(f"Layer {layer.name!r} is not part of dataset {dataset.slug!r}.")
    if layer.kind != LayerKind.SEGMENTATION:
        raise InvalidRequest(f"Layer {layer.name!r} is not a segmentation layer.")
    if user is not None and not Dataset.objects.allows(user, "change", dataset):
        raise NotAllowed("Only the dataset's owner can rebuild its meshes.")
    return dataset_job_create(
        enqueue=enqueue,
        kind=JobKind.MESHES,
        owner=user or dataset.owner,
        dataset=dataset,
        params={"layer_id": layer.id, "layer_name": layer.name},
    )


def _mesh_dir_for(segmentation: Layer, existing: Layer | None) -> str:
    if existing is not None:
        return existing.path
    if is_label_name(segmentation.name):
        return mesh_dir_path(segmentation.name)
    return mesh_dir_path(slugify(segmentation.name) or f"layer-{segmentation.id}")


class MeshesRunner(DatasetJobRunner):
    """Build the meshes of one segmentation layer and swap them in with its mesh layer row."""

    work_prefix = "meshes"
    failure_message = (
        "Building meshes failed because of an internal error ({kind}); see the job log."
    )

    def work(self, job: DatasetJob, work_dir: Path, progress: JobProgressWriter) -> None:
        segmentation = (
            Layer.objects.select_related("dataset").filter(id=job.params["layer_id"]).first()
        )
        if segmentation is None:
            raise InvalidRequest("The segmentation layer no longer exists.")
        dataset = segmentation.dataset
        existing = Layer.objects.filter(
            dataset=dataset, kind=LayerKind.MESH, source_layer=segmentation
        ).first()
        rel_path = _mesh_dir_for(segmentation, existing)
        built = work_dir / "new"
        build_meshes(
            dataset.root / segmentation.path,
            built,
            progress=stage_prefixed(progress, f"meshes {segmentation.name}"),
        )
        progress.check_cancelled()
        progress.write("publishing", 0, 1)
        self._swap_in(dataset, segmentation, rel_path, built, work_dir / "old")

    def _swap_in(
        self, dataset: Dataset, segmentation: Layer, rel_path: str, built: Path, old: Path
    ) -> None:
        target = dataset.root / rel_path
        swapped = False
        try:
            with transaction.atomic():
                mesh_layer = Layer.objects.filter(
                    dataset=dataset, kind=LayerKind.MESH, source_layer=segmentation
                ).first()
                fields = mesh_layer_fields(segmentation, rel_path)
                if mesh_layer is None:
                    Layer.objects.create(
                        dataset=dataset,
                        name=_free_mesh_layer_name(dataset, segmentation.name),
                        kind=LayerKind.MESH,
                        source_layer=segmentation,
                        **fields,
                    )
                else:
                    Layer.objects.filter(id=mesh_layer.id).update(**fields)
                target.parent.mkdir(parents=True, exist_ok=True)
                if os.path.lexists(target):
                    os.rename(target, old)
                os.rename(built, target)
                swapped = True
                self.succeed()
        except BaseException:
            if swapped:
                os.rename(target, built)
                if os.path.lexists(old):
                    os.rename(old, target)
            raise


def _free_mesh_layer_name(dataset: Dataset, segmentation_name: str) -> str:
    name = mesh_layer_name(segmentation_name)
    n = 2
    while Layer.objects.filter(dataset=dataset, name=name).exists():
        name = f"{mesh_layer_name(segmentation_name)}-{n}"
        n += 1
    return name


def meshes_build_run(job_id: int, *, progress: ProgressCallback | None = None) -> DatasetJob:
    """Run mesh job ``job_id``: build in a work directory, then swap it in with the Layer row."""
    return MeshesRunner(job_id, progress=progress).run()
