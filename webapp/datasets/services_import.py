"""Import volumes into datasets and (re)build their meshes: the writes behind jobs.

An import job converts (or registers) its input in ``DATA_ROOT/tmp/import-<job id>``, builds the
meshes of every label image there, then renames the finished directory to
``DATA_ROOT/datasets/<slug>`` and creates the Dataset and its Layers in the same transaction. Any
failure or cancellation before that point leaves no Dataset row and no files behind. The command
line (``import_volume``, ``load_demo``) and the Celery task run the same ``import_job_run``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import traceback
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from pipeline.archives import safe_extract_zip
from pipeline.errors import PipelineError
from pipeline.importers import convert_to_ome_zarr, inspect_source, read_ome_zarr_info
from pipeline.meshing import build_meshes
from pipeline.volume_info import LayerInfo
from webapp.datasets.job_progress import JobCancelled, JobProgressWriter
from webapp.datasets.models import (
    Dataset,
    DatasetJob,
    JobKind,
    JobStatus,
    Layer,
    LayerKind,
    Visibility,
)
from webapp.datasets.selectors import datasets_editable_by
from webapp.datasets.services_errors import ImportRejected, InvalidRequest, NotAllowed
from webapp.datasets.signals import layers_changed

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

IMAGE_STORE = "image.ome.zarr"
IMAGE_LAYER_NAME = "image"
# Slugs that would shadow page URLs under /datasets/.
RESERVED_SLUGS = frozenset({"import", "new", "api", "data", "s", "v", "static"})
LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# Spatial units of the OME-NGFF specification (UDUNITS-2 names).
NGFF_SPACE_UNITS = frozenset(
    {
        "angstrom", "attometer", "centimeter", "decimeter", "exameter", "femtometer", "foot",
        "gigameter", "hectometer", "inch", "kilometer", "megameter", "meter", "micrometer",
        "mile", "millimeter", "nanometer", "parsec", "petameter", "picometer", "terameter",
        "yard", "yoctometer", "yottameter", "zeptometer", "zettameter",
    }
)  # fmt: skip
UNIT_ALIASES = {"nm": "nanometer", "um": "micrometer", "µm": "micrometer", "mm": "millimeter"}
JOB_ERROR_INTERNAL = (
    "The import failed because of an internal error ({kind}). The job log has the details; "
    "please report it if it happens again."
)


# ---------------------------------------------------------------------------------------------
# Validation shared by the API, the command line and the services
# ---------------------------------------------------------------------------------------------


def voxel_size_parse(values: Sequence[Any] | None) -> list[float] | None:
    """Two or three positive finite numbers (z, y, x), or None to take the source's."""
    if values is None:
        return None
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise InvalidRequest("Voxel size must be numbers, e.g. 200,200,200 (z, y, x).")
    if len(numbers) not in (2, 3):
        raise InvalidRequest(
            f"Voxel size needs three numbers (z, y, x), got {len(numbers)}: {values!r}."
        )
    if not all(math.isfinite(n) and n > 0 for n in numbers):
        raise InvalidRequest("Voxel size values must be positive, finite numbers.")
    return numbers


def unit_parse(unit: str | None) -> str | None:
    """An OME-NGFF spatial unit name ("nanometer", "micrometer", ...); "nm"/"um" accepted."""
    if unit is None or not str(unit).strip():
        return None
    value = str(unit).strip().lower()
    value = UNIT_ALIASES.get(value, value)
    if value not in NGFF_SPACE_UNITS:
        raise InvalidRequest(
            f"Unknown unit {unit!r}: use an OME-NGFF spatial unit such as nanometer or micrometer."
        )
    return value


def label_name_check(name: str) -> str:
    """A label image name usable as a directory and layer name."""
    if (
        not LABEL_NAME_RE.match(name or "")
        or name == IMAGE_LAYER_NAME
        or ".." in name
        or name.endswith("-meshes")
    ):
        raise InvalidRequest(
            f"Invalid label name {name!r}: use letters, digits, '-', '_' or '.' "
            f"(not {IMAGE_LAYER_NAME!r}, not ending in '-meshes')."
        )
    return name


def _visibility_check(visibility: str) -> str:
    if visibility not in Visibility.values:
        raise InvalidRequest(
            f"Unknown visibility {visibility!r}: use one of {', '.join(Visibility.values)}."
        )
    return visibility


def _team_check(owner: AbstractBaseUser, visibility: str, team_id: int | None) -> None:
    if visibility == Visibility.TEAM and team_id is None:
        raise ImportRejected("Choose a team for a dataset with visibility 'team'.")
    if team_id is None:
        return
    from webapp.accounts.models import Team

    team = Team.objects.filter(id=team_id).first()
    if team is None:
        raise ImportRejected("That team does not exist.")
    if not (owner.is_superuser or team.members.filter(id=owner.id).exists()):
        raise NotAllowed("You can only share a dataset with a team you belong to.")


def _spatial_shape(shape: Sequence[int], axes: Sequence[str]) -> tuple[int, ...]:
    if axes and len(axes) == len(shape):
        return tuple(int(s) for s, a in zip(shape, axes, strict=True) if a in ("z", "y", "x"))
    return tuple(int(s) for s in shape)


def _voxels_check(shape: Sequence[int], what: str = "The volume") -> None:
    voxels = math.prod(int(s) for s in shape)
    limit = settings.MAX_VOLUME_VOXELS
    if voxels > limit:
        raise ImportRejected(
            f"{what} has {voxels:,} voxels (shape {tuple(shape)}), above this site's limit of "
            f"{limit:,} (ANNOTOME_MAX_VOLUME_VOXELS)."
        )


def _inspect(path: Path, what: str) -> Any:
    try:
        return inspect_source(path)
    except PipelineError as exc:
        raise ImportRejected(f"{what}: {exc}")


# ---------------------------------------------------------------------------------------------
# Import jobs
# ---------------------------------------------------------------------------------------------


def import_job_create(
    owner: AbstractBaseUser,
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
    _visibility_check(visibility)
    voxels = voxel_size_parse(voxel_size)
    unit_value = unit_parse(unit)
    labels = dict(labels or {})
    for label_name in labels:
        label_name_check(label_name)
    _team_check(owner, visibility, team_id)
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

    if register_in_place:
        if label_paths:
            raise ImportRejected(
                "Label files cannot be added when registering in place: label images are read "
                "from the store's labels/ group."
            )
        if not source.is_dir():
            raise ImportRejected("Only an OME-Zarr directory can be registered in place.")
        info = _inspect(source, "Cannot register the store")
        if info.ngff_version not in ("0.4", "0.5"):
            raise ImportRejected(
                "Only OME-Zarr (NGFF 0.4 or 0.5) stores can be registered in place; "
                "import other formats by copying."
            )
        _voxels_check(info.shape)
    elif source.is_file() and source.suffix.lower() == ".zip":
        # The archive's content is inspected after extraction, in the job.
        if not zipfile.is_zipfile(source):
            raise ImportRejected(f"{source.name} is not a readable ZIP archive.")
    else:
        info = _inspect(source, f"Cannot read {source.name}")
        _voxels_check(info.shape)
        image_spatial = _spatial_shape(info.shape, info.axes)
        if voxels is not None and len(voxels) < len(image_spatial):
            raise ImportRejected(
                f"Voxel size needs {len(image_spatial)} numbers for this "
                f"{len(image_spatial)}D image (z, y, x), got {len(voxels)}."
            )
        for label_name, label_path in label_paths.items():
            label_info = _inspect(label_path, f"Cannot read label image {label_name!r}")
            label_spatial = _spatial_shape(label_info.shape, label_info.axes)
            if label_spatial != image_spatial:
                raise ImportRejected(
                    f"Label image {label_name!r} has shape {label_spatial}, but the image's "
                    f"spatial shape is {image_spatial}: they must match voxel for voxel."
                )

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
    task_id = str(uuid.uuid4()) if enqueue else ""
    with transaction.atomic():
        job = DatasetJob.objects.create(
            kind=JobKind.IMPORT, owner=owner, params=params, celery_task_id=task_id
        )
        if enqueue:
            transaction.on_commit(partial(_enqueue, "import", job.id, task_id))
    return job


def _enqueue(kind: str, job_id: int, task_id: str) -> None:
    from webapp.datasets import tasks

    task = tasks.dataset_import_task if kind == "import" else tasks.meshes_build_task
    task.apply_async(args=[job_id], task_id=task_id)


def _job_start(job_id: int) -> bool:
    """Mark the job running; False when it already ended (so a rerun does nothing)."""
    return bool(
        DatasetJob.objects.filter(
            id=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
        ).update(
            status=JobStatus.RUNNING,
            started=timezone.now(),
            updated=timezone.now(),
            stage="starting",
            done=0,
            total=0,
            error="",
        )
    )


def _job_end(job_id: int, status: str, *, error: str = "", log: str = "") -> None:
    """Record a failure or cancellation (a job already cancelled stays cancelled)."""
    now = timezone.now()
    fields: dict[str, Any] = {"finished": now, "updated": now}
    if status == JobStatus.FAILED:
        DatasetJob.objects.filter(id=job_id, status=JobStatus.RUNNING).update(
            status=JobStatus.FAILED, error=error, log=log, **fields
        )
    else:
        DatasetJob.objects.filter(id=job_id).update(stage="cancelled", **fields)


def _job_succeed(job_id: int, **fields: Any) -> None:
    """Mark a running job succeeded; raise JobCancelled when it was cancelled meanwhile."""
    now = timezone.now()
    ended = DatasetJob.objects.filter(id=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.SUCCEEDED,
        stage="done",
        done=1,
        total=1,
        finished=now,
        updated=now,
        **fields,
    )
    if not ended:
        raise JobCancelled(f"job {job_id} is no longer running")


def _tmp_dir(prefix: str, job_id: int) -> Path:
    return Path(settings.DATA_ROOT) / "tmp" / f"{prefix}-{job_id}"


def _run_job(
    job_id: int,
    prefix: str,
    work_fn: Callable[[DatasetJob, Path, JobProgressWriter], None],
    progress: Progress | None,
    failure_label: str,
) -> DatasetJob:
    """Run ``work_fn`` for a queued/running job with a clean work directory and error handling."""
    if not _job_start(job_id):
        return DatasetJob.objects.get(id=job_id)
    job = DatasetJob.objects.select_related("owner", "dataset").get(id=job_id)
    writer = JobProgressWriter(job_id, also=progress)
    work = _tmp_dir(prefix, job_id)
    try:
        shutil.rmtree(work, ignore_errors=True)  # a redelivered job starts over
        work.mkdir(parents=True)
        work_fn(job, work, writer)
    except JobCancelled:
        logger.info("%s job %s cancelled", prefix, job_id)
        _job_end(job_id, JobStatus.CANCELLED)
    except (PipelineError, InvalidRequest) as exc:
        logger.info("%s job %s rejected its input: %s", prefix, job_id, exc)
        _job_end(job_id, JobStatus.FAILED, error=str(exc), log=traceback.format_exc())
    except Exception as exc:
        logger.exception("%s job %s failed", prefix, job_id)
        _job_end(
            job_id,
            JobStatus.FAILED,
            error=failure_label.format(kind=type(exc).__name__),
            log=traceback.format_exc(),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        upload_dir = (job.params or {}).get("upload_dir")
        if upload_dir:
            _remove_upload(Path(upload_dir))
    return DatasetJob.objects.get(id=job_id)


def _remove_upload(path: Path) -> None:
    """Delete an upload directory, but only one inside UPLOAD_ROOT."""
    root = Path(settings.UPLOAD_ROOT).resolve()
    path = path.resolve()
    if path != root and root in path.parents:
        shutil.rmtree(path, ignore_errors=True)


def import_job_run(job_id: int, *, progress: Progress | None = None) -> DatasetJob:
    """Run import job ``job_id`` to its end; idempotent (an ended job is left as it is).

    ``progress`` also receives every report (the command line draws tqdm bars with it).
    """
    return _run_job(job_id, "import", _import_work, progress, JOB_ERROR_INTERNAL)


def _stage_named(writer: Progress, prefix: str) -> Progress:
    def report(stage: str, done: int, total: int) -> None:
        writer(f"{prefix}: {stage}" if stage else prefix, done, total)

    return report


def _prefixed(info: LayerInfo, prefix: str) -> LayerInfo:
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


def _import_work(job: DatasetJob, work: Path, writer: JobProgressWriter) -> None:
    params = job.params
    source = Path(params["source_path"])
    out = work / "out"
    out.mkdir()
    if params.get("register_in_place"):
        writer("reading store", 0, 1)
        image_info, label_infos = read_ome_zarr_info(source)
        _voxels_check(image_info.shape)
        os.symlink(source, out / IMAGE_STORE, target_is_directory=True)
        image = _prefixed(image_info, IMAGE_STORE)
        labels = {n: _prefixed(li, IMAGE_STORE) for n, li in label_infos.items()}
    else:
        if source.suffix.lower() == ".zip":
            writer("extracting archive", 0, 1)
            source = safe_extract_zip(
                source,
                work / "extracted",
                max_total_bytes=getattr(
                    settings, "MAX_EXTRACTED_BYTES", 4 * settings.MAX_UPLOAD_BYTES
                ),
                max_files=getattr(settings, "MAX_ARCHIVE_FILES", 1_000_000),
            )
            writer("extracting archive", 1, 1)
            _voxels_check(_inspect(source, "Cannot read the archive's content").shape)
        writer.check_cancelled()
        result = convert_to_ome_zarr(
            source,
            out,
            voxel_size=tuple(params["voxel_size"]) if params.get("voxel_size") else None,
            unit=params.get("unit"),
            labels={n: Path(p) for n, p in (params.get("labels") or {}).items()},
            chunk=getattr(settings, "IMPORT_CHUNK", 64),
            max_voxels=settings.MAX_VOLUME_VOXELS,
            progress=writer,
        )
        image, labels = result.image, dict(result.labels)
    for name in labels:
        label_name_check(name)

    meshes: dict[str, str] = {}
    for name, label_info in labels.items():
        writer.check_cancelled()
        mesh_path = f"meshes/{name}"
        build_meshes(
            out / label_info.path, out / mesh_path, progress=_stage_named(writer, f"meshes {name}")
        )
        meshes[name] = mesh_path
    writer.check_cancelled()
    writer.write("publishing", 0, 1)
    dataset = _publish(job, out, image, labels, meshes)
    layers_changed.send(sender=Dataset, dataset=dataset)


def _datasets_dir() -> Path:
    return Path(settings.DATA_ROOT) / "datasets"


def _slug_taken(slug: str) -> bool:
    return (
        slug in RESERVED_SLUGS
        or Dataset.objects.filter(slug=slug).exists()
        or os.path.lexists(_datasets_dir() / slug)
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
    requested = job.params.get("slug")
    if not requested:
        return slug_unique(job.params["name"])
    if Dataset.objects.filter(slug=requested).exists():
        raise ImportRejected(f"A dataset with slug {requested!r} already exists.")
    orphan = _datasets_dir() / requested
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


def _layer_fields(info: LayerInfo) -> dict[str, Any]:
    contrast = info.contrast
    return {
        "path": info.path,
        "ngff_version": info.ngff_version,
        "shape": [int(s) for s in info.shape],
        "axes": list(info.axes),
        "dtype": info.dtype,
        "voxel_size": [float(v) for v in info.voxel_size],
        "unit": info.unit or "nanometer",
        "channels": int(info.channels),
        "levels": int(info.levels),
        "contrast_min": float(contrast[0]) if contrast else None,
        "contrast_max": float(contrast[1]) if contrast else None,
    }


def mesh_layer_name(segmentation_name: str) -> str:
    return f"{segmentation_name}-meshes"


def _mesh_layer_fields(segmentation: Layer, path: str) -> dict[str, Any]:
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


def _publish(
    job: DatasetJob,
    out: Path,
    image: LayerInfo,
    labels: Mapping[str, LayerInfo],
    meshes: Mapping[str, str],
) -> Dataset:
    """Move ``out`` to its final place and create the Dataset and Layers, all or nothing."""
    params = job.params
    final: Path | None = None
    try:
        for attempt in range(5):
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
                    Layer.objects.create(
                        dataset=dataset,
                        name=IMAGE_LAYER_NAME,
                        kind=LayerKind.IMAGE,
                        **_layer_fields(image),
                    )
                    for name, info in labels.items():
                        segmentation = Layer.objects.create(
                            dataset=dataset,
                            name=name,
                            kind=LayerKind.SEGMENTATION,
                            **_layer_fields(info),
                        )
                        if name in meshes:
                            Layer.objects.create(
                                dataset=dataset,
                                name=mesh_layer_name(name),
                                kind=LayerKind.MESH,
                                source_layer=segmentation,
                                **_mesh_layer_fields(segmentation, meshes[name]),
                            )
                    final = _datasets_dir() / slug
                    final.parent.mkdir(parents=True, exist_ok=True)
                    if os.path.lexists(final):
                        raise IntegrityError(f"directory {final} appeared meanwhile")
                    os.rename(out, final)
                    _job_succeed(job.id, dataset=dataset)
                return dataset
            except IntegrityError:
                # Another import took the slug between our check and our insert: try the next.
                if final is not None and final.exists() and not out.exists():
                    os.rename(final, out)
                final = None
                if attempt == 4 or params.get("slug"):
                    raise
        raise AssertionError("unreachable")
    except BaseException:
        if final is not None and os.path.lexists(final) and not os.path.lexists(out):
            os.rename(final, out)  # the work directory's cleanup removes it
        raise


# ---------------------------------------------------------------------------------------------
# Mesh (re)build jobs
# ---------------------------------------------------------------------------------------------


def meshes_build_start(
    dataset: Dataset,
    layer: Layer,
    *,
    user: AbstractBaseUser | None = None,
    enqueue: bool = True,
) -> DatasetJob:
    """Record a job rebuilding the meshes of segmentation ``layer`` and queue it on commit."""
    if layer.dataset_id != dataset.id:
        raise InvalidRequest(f"Layer {layer.name!r} is not part of dataset {dataset.slug!r}.")
    if layer.kind != LayerKind.SEGMENTATION:
        raise InvalidRequest(f"Layer {layer.name!r} is not a segmentation layer.")
    if user is not None and not datasets_editable_by(user).filter(id=dataset.id).exists():
        raise NotAllowed("Only the dataset's owner can rebuild its meshes.")
    task_id = str(uuid.uuid4()) if enqueue else ""
    with transaction.atomic():
        job = DatasetJob.objects.create(
            kind=JobKind.MESHES,
            owner=user or dataset.owner,
            dataset=dataset,
            params={"layer_id": layer.id, "layer_name": layer.name},
            celery_task_id=task_id,
        )
        if enqueue:
            transaction.on_commit(partial(_enqueue, "meshes", job.id, task_id))
    return job


def meshes_build_run(job_id: int, *, progress: Progress | None = None) -> DatasetJob:
    """Run mesh job ``job_id``: build in a work directory, then swap it in with the Layer row."""
    return _run_job(
        job_id,
        "meshes",
        _meshes_work,
        progress,
        "Building meshes failed because of an internal error ({kind}); see the job log.",
    )


def _meshes_work(job: DatasetJob, work: Path, writer: JobProgressWriter) -> None:
    segmentation = Layer.objects.select_related("dataset").filter(id=job.params["layer_id"]).first()
    if segmentation is None:
        raise InvalidRequest("The segmentation layer no longer exists.")
    dataset = segmentation.dataset
    existing = Layer.objects.filter(
        dataset=dataset, kind=LayerKind.MESH, source_layer=segmentation
    ).first()
    if existing is not None:
        rel_path = existing.path
    elif LABEL_NAME_RE.match(segmentation.name):
        rel_path = f"meshes/{segmentation.name}"
    else:
        rel_path = f"meshes/{slugify(segmentation.name) or f'layer-{segmentation.id}'}"
    built = work / "new"
    build_meshes(
        dataset.root / segmentation.path,
        built,
        progress=_stage_named(writer, f"meshes {segmentation.name}"),
    )
    writer.check_cancelled()
    writer.write("publishing", 0, 1)
    target = dataset.root / rel_path
    old = work / "old"
    swapped = False
    try:
        with transaction.atomic():
            mesh_layer = Layer.objects.filter(
                dataset=dataset, kind=LayerKind.MESH, source_layer=segmentation
            ).first()
            fields = _mesh_layer_fields(segmentation, rel_path)
            if mesh_layer is None:
                name = mesh_layer_name(segmentation.name)
                n = 2
                while Layer.objects.filter(dataset=dataset, name=name).exists():
                    name = f"{mesh_layer_name(segmentation.name)}-{n}"
                    n += 1
                Layer.objects.create(
                    dataset=dataset,
                    name=name,
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
            _job_succeed(job.id)
    except BaseException:
        if swapped:
            os.rename(target, built)
            if os.path.lexists(old):
                os.rename(old, target)
        raise
