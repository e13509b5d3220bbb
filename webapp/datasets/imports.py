"""Import volumes into datasets: validate and record the job, then run it in a worker.

An import job converts (or registers) its input in its work directory under ``DATA_ROOT/tmp``,
builds the meshes of every label image there, then publishes it (``import_publish``): the
directory becomes ``DATA_ROOT/datasets/<slug>`` and the Dataset and its Layers are created in
the same transaction. A failure or cancellation before that leaves no Dataset row and no files.
The command line (``import_volume``, ``load_demo``) and the Celery task run ``import_job_run``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.utils.text import slugify

from pipeline.archives import safe_extract_zip
from pipeline.importers import convert_to_ome_zarr, read_ome_zarr_info
from pipeline.layout import IMAGE_STORE, mesh_dir_path
from pipeline.meshing import build_meshes
from pipeline.progress import ProgressCallback
from webapp.core.jobs.progress import JobProgressWriter
from webapp.datasets.dataset_jobs import DatasetJobRunner, dataset_job_create, stage_prefixed
from webapp.datasets.import_publish import dataset_publish, prefixed
from webapp.datasets.import_rules import (
    label_name_check,
    origin_check,
    source_inspect,
    spatial_shape,
    team_check,
    unit_parse,
    visibility_check,
    volume_voxels_check,
    voxel_size_parse,
)
from webapp.datasets.models import Dataset, DatasetJob, JobKind, Visibility
from webapp.datasets.services_errors import ImportRejected
from webapp.datasets.signals import layers_changed


def import_job_create(
    owner: User,
    *,
    name: str,
    source_path: Path | str,
    voxel_size: Sequence[float] | None = None,
    unit: str | None = None,
    labels: Mapping[str, Path | str] | None = None,
    visibility: str = Visibility.PRIVATE,
    description: str = "",
    register_in_place: bool = False,
    team_id: int | None = None,
    slug: str | None = None,
    upload_dir: Path | str | None = None,
    enqueue: bool = True,
) -> DatasetJob:
    """Validate an import cheaply, record its job and (with ``enqueue``) queue it on commit.

    ``upload_dir`` is removed when the job ends (uploads are copied into the dataset);
    ``slug`` asks for an exact slug instead of a unique one derived from ``name``.
    Raises ImportRejected/InvalidRequest with a message for the person importing.
    """
    name = (name or "").strip()
    if not name:
        raise ImportRejected("A dataset name is required.")
    if len(name) > 200:
        raise ImportRejected("The dataset name is longer than 200 characters.")
    visibility_check(visibility)
    voxels = voxel_size_parse(voxel_size)
    unit_value = unit_parse(unit)
    labels = dict(labels or {})
    for label_name in labels:
        label_name_check(label_name)
    team_check(owner, visibility, team_id)
    if slug is not None and (slugify(slug) != slug or not slug):
        raise ImportRejected(f"Invalid slug {slug!r}.")

    source = Path(source_path).expanduser()
    if not source.exists():
        raise ImportRejected(f"The input {source.name or source} does not exist.")
    source = source.resolve()
    label_paths = {n: Path(p).expanduser() for n, p in labels.items()}
    for label_name, label_path in label_paths.items():
        if not label_path.exists():
            raise ImportRejected(f"The label image {label_name!r} ({label_path.name}) is missing.")
    _source_check(source, voxels, label_paths, register_in_place)

    params: dict[str, Any] = {
        "name": name,
        "description": description or "",
        "visibility": visibility,
        "team_id": team_id,
        "source_path": str(source),
        "voxel_size": voxels,
        "unit": unit_value,
        "labels": {n: str(p.resolve()) for n, p in label_paths.items()},
        "register_in_place": bool(register_in_place),
        "slug": slug,
        "upload_dir": str(upload_dir) if upload_dir else None,
    }
    return dataset_job_create(enqueue=enqueue, kind=JobKind.IMPORT, owner=owner, params=params)


def _source_check(
    source: Path,
    voxels: list[float] | None,
    label_paths: Mapping[str, Path],
    register_in_place: bool,
) -> None:
    """What can be checked before queueing: readable headers, sizes, matching label shapes."""
    if register_in_place:
        if label_paths:
            raise ImportRejected(
                "Label files cannot be added when registering in place: label images are read "
                "from the store's labels/ group."
            )
        if not source.is_dir():
            raise ImportRejected("Only an OME-Zarr directory can be registered in place.")
        info = source_inspect(source, "Cannot register the store")
        if info.ngff_version not in ("0.4", "0.5"):
            raise ImportRejected(
                "Only OME-Zarr (NGFF 0.4 or 0.5) stores can be registered in place; "
                "import other formats by copying."
            )
        volume_voxels_check(info.shape)
        origin_check(source)
        return
    if source.is_file() and source.suffix.lower() == ".zip":
        # The archive's content is inspected after extraction, in the job.
        if not zipfile.is_zipfile(source):
            raise ImportRejected(f"{source.name} is not a readable ZIP archive.")
        return
    info = source_inspect(source, f"Cannot read {source.name}")
    volume_voxels_check(info.shape)
    image_spatial = spatial_shape(info.shape, info.axes)
    if voxels is not None and len(voxels) < len(image_spatial):
        raise ImportRejected(
            f"Voxel size needs {len(image_spatial)} numbers for this "
            f"{len(image_spatial)}D image (z, y, x), got {len(voxels)}."
        )
    for label_name, label_path in label_paths.items():
        label_info = source_inspect(label_path, f"Cannot read label image {label_name!r}")
        label_spatial = spatial_shape(label_info.shape, label_info.axes)
        if label_spatial != image_spatial:
            raise ImportRejected(
                f"Label image {label_name!r} has shape {label_spatial}, but the image's "
                f"spatial shape is {image_spatial}: they must match voxel for voxel."
            )


class ImportRunner(DatasetJobRunner):
    """Convert (or register) the input, mesh its labels, publish the dataset."""

    work_prefix = "import"
    failure_message = (
        "The import failed because of an internal error ({kind}). The job log has the details; "
        "please report it if it happens again."
    )

    def work(self, job: DatasetJob, work_dir: Path, progress: JobProgressWriter) -> None:
        params = job.params
        source = Path(params["source_path"])
        out = work_dir / "out"
        out.mkdir()
        if params.get("register_in_place"):
            progress("reading store", 0, 1)
            image_info, label_infos = read_ome_zarr_info(source)
            volume_voxels_check(image_info.shape)
            os.symlink(source, out / IMAGE_STORE, target_is_directory=True)
            image = prefixed(image_info)
            labels = {n: prefixed(li) for n, li in label_infos.items()}
        else:
            if source.suffix.lower() == ".zip":
                progress("extracting archive", 0, 1)
                source = safe_extract_zip(
                    source,
                    work_dir / "extracted",
                    max_total_bytes=getattr(
                        settings, "MAX_EXTRACTED_BYTES", 4 * settings.MAX_UPLOAD_BYTES
                    ),
                    max_files=getattr(settings, "MAX_ARCHIVE_FILES", 1_000_000),
                )
                progress("extracting archive", 1, 1)
                volume_voxels_check(
                    source_inspect(source, "Cannot read the archive's content").shape
                )
            progress.check_cancelled()
            result = convert_to_ome_zarr(
                source,
                out,
                voxel_size=tuple(params["voxel_size"]) if params.get("voxel_size") else None,
                unit=params.get("unit"),
                labels={n: Path(p) for n, p in (params.get("labels") or {}).items()},
                chunk=getattr(settings, "IMPORT_CHUNK", 64),
                max_voxels=settings.MAX_VOLUME_VOXELS,
                progress=progress,
            )
            image, labels = result.image, dict(result.labels)
        for name in labels:
            label_name_check(name)

        meshes: dict[str, str] = {}
        for name, label_info in labels.items():
            progress.check_cancelled()
            mesh_path = mesh_dir_path(name)
            build_meshes(
                out / label_info.path,
                out / mesh_path,
                progress=stage_prefixed(progress, f"meshes {name}"),
            )
            meshes[name] = mesh_path
        progress.check_cancelled()
        progress.write("publishing", 0, 1)
        dataset = dataset_publish(job, out, image, labels, meshes, self.succeed)
        layers_changed.send(sender=Dataset, dataset=dataset)


def import_job_run(job_id: int, *, progress: ProgressCallback | None = None) -> DatasetJob:
    """Run import job ``job_id`` to its end; idempotent (an ended job is left as it is).

    ``progress`` also receives every report (the command line draws tqdm bars with it).
    """
    return ImportRunner(job_id, progress=progress).run()
