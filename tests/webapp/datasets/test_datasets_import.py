"""Import and mesh services, run directly (no Celery): datasets, layers, files and failures."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr
from datasets_testdata import SHAPE, make_volume
from ome_zarr.format import FormatV04
from ome_zarr.writer import write_image, write_labels

from pipeline.ome_zarr_io import create_single_level_image
from pipeline.precomputed import stored_segment_ids
from tests.zip_bombs import zeros_deflate_zip
from webapp.core.jobs.errors import JobCancelled
from webapp.core.jobs.lifecycle import job_start
from webapp.core.jobs.progress import JobProgressWriter
from webapp.datasets import services
from webapp.datasets.models import Dataset, DatasetJob, JobStatus, Layer, LayerKind
from webapp.datasets.services import ImportRejected

pytestmark = pytest.mark.django_db


def _import(owner: Any, image: Path, labels: dict[str, Path] | None = None, **kw: Any) -> Any:
    kw.setdefault("name", "Cells")
    kw.setdefault("voxel_size", (400, 200, 200))
    kw.setdefault("unit", "nanometer")
    job = services.import_job_create(
        owner, source_path=image, labels=labels or {}, enqueue=False, **kw
    )
    return services.import_job_run(job.id)


def _nothing_left(settings: Any) -> None:
    assert not Dataset.objects.exists()
    root = Path(settings.DATA_ROOT)
    leftovers = [p for p in root.rglob("*") if p.is_file() or p.is_symlink()]
    assert leftovers == []
    assert not (root / "datasets").exists() or not any((root / "datasets").iterdir())


def test_import_tiff_with_labels_creates_dataset_layers_and_files(
    owner: Any, tiff_pair: tuple[Path, Path], settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    image, labels = tiff_pair
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = services.import_job_create(
            owner,
            name="Cells",
            source_path=image,
            voxel_size=(400, 200, 200),
            unit="nanometer",
            labels={"nuclei": labels},
            visibility="public",
            description="two balls",
        )
    assert len(callbacks) == 1  # the Celery task is queued once the job row is committed
    assert job.status == JobStatus.QUEUED and job.celery_task_id

    seen: list[tuple[str, int, int]] = []
    job = services.import_job_run(job.id, progress=lambda *a: seen.append(a))
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.error == "" and job.finished is not None and job.progress == 1.0
    assert any(stage.startswith("meshes nuclei") for stage, _, _ in seen)

    dataset = job.dataset
    assert (dataset.slug, dataset.name, dataset.visibility) == ("cells", "Cells", "public")
    assert dataset.owner == owner and dataset.description == "two balls"
    layers = {layer.name: layer for layer in dataset.layers.all()}
    assert set(layers) == {"image", "nuclei", "nuclei-meshes"}
    img, seg, mesh = layers["image"], layers["nuclei"], layers["nuclei-meshes"]
    assert (img.kind, img.path, img.ngff_version) == (LayerKind.IMAGE, "image.ome.zarr", "0.5")
    assert img.shape == list(SHAPE) and img.axes == ["z", "y", "x"] and img.dtype == "uint16"
    assert img.voxel_size == [400.0, 200.0, 200.0] and img.unit == "nanometer"
    assert img.contrast_min is not None and img.contrast_max > img.contrast_min
    assert seg.kind == LayerKind.SEGMENTATION and seg.path == "image.ome.zarr/labels/nuclei"
    assert seg.shape == list(SHAPE) and seg.voxel_size == [400.0, 200.0, 200.0]
    assert mesh.kind == LayerKind.MESH and mesh.path == "meshes/nuclei"
    assert mesh.source_layer == seg and mesh.ngff_version == ""

    root = Path(settings.DATA_ROOT) / "datasets" / "cells"
    assert dataset.root == root
    assert json.loads((root / "image.ome.zarr" / "zarr.json").read_text())["attributes"]["ome"]
    written = zarr.open_group(str(root / "image.ome.zarr" / "labels" / "nuclei"), mode="r")
    level0_path = written.attrs["ome"]["multiscales"][0]["datasets"][0]["path"]
    level0 = np.asarray(written[level0_path])
    np.testing.assert_array_equal(level0, make_volume()[1])
    mesh_info = json.loads((root / "meshes" / "nuclei" / "info").read_text())
    assert mesh_info["@type"] == "neuroglancer_multilod_draco"
    assert stored_segment_ids(root / "meshes" / "nuclei") == [1, 2]
    # The work directory is gone; the inputs (outside the upload root) are untouched.
    assert not (Path(settings.DATA_ROOT) / "tmp" / f"import-{job.id}").exists()
    assert image.exists() and labels.exists()


def test_rerunning_a_finished_job_does_nothing(owner: Any, tiff_pair: tuple[Path, Path]) -> None:
    job = _import(owner, tiff_pair[0])
    assert job.status == JobStatus.SUCCEEDED
    again = services.import_job_run(job.id)
    assert again.status == JobStatus.SUCCEEDED and again.dataset_id == job.dataset_id
    assert Dataset.objects.count() == 1


def test_corrupt_file_is_rejected_up_front(owner: Any, tmp_path: Path, settings: Any) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + b"\x00garbage" * 10)
    with pytest.raises(ImportRejected) as err:
        _import(owner, bad)
    assert "bad.tif" in str(err.value)
    assert not DatasetJob.objects.exists()
    _nothing_left(settings)


def test_file_corrupted_after_queueing_fails_cleanly(
    owner: Any, tiff_pair: tuple[Path, Path], settings: Any
) -> None:
    image, labels = tiff_pair
    job = services.import_job_create(
        owner,
        name="Cells",
        source_path=image,
        voxel_size=(1, 1, 1),
        labels={"nuclei": labels},
        enqueue=False,
    )
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])  # truncated while the job waited
    job = services.import_job_run(job.id)
    assert job.status == JobStatus.FAILED
    assert job.error and "Traceback" not in job.error
    assert "Traceback" in job.log
    _nothing_left(settings)


def test_label_shape_mismatch_is_rejected(
    owner: Any, tiff_pair: tuple[Path, Path], tmp_path: Path, settings: Any
) -> None:
    image, _ = tiff_pair
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.zeros((16, 24, 30), dtype=np.uint16))
    with pytest.raises(ImportRejected) as err:
        _import(owner, image, {"nuclei": small})
    assert "shape" in str(err.value)
    _nothing_left(settings)


def test_label_shape_mismatch_at_run_time_fails_without_leftovers(
    owner: Any, tiff_pair: tuple[Path, Path], settings: Any
) -> None:
    image, labels = tiff_pair
    job = services.import_job_create(
        owner, name="Cells", source_path=image, voxel_size=(1, 1, 1),
        labels={"nuclei": labels}, enqueue=False,
    )  # fmt: skip
    tifffile.imwrite(labels, np.zeros((8, 24, 32), dtype=np.uint16))
    job = services.import_job_run(job.id)
    assert job.status == JobStatus.FAILED and "shape" in job.error
    _nothing_left(settings)


def test_cancelling_a_running_import_stops_it_and_cleans_up(
    owner: Any, tiff_pair: tuple[Path, Path], settings: Any
) -> None:
    image, labels = tiff_pair
    job = services.import_job_create(
        owner, name="Cells", source_path=image, voxel_size=(1, 1, 1),
        labels={"nuclei": labels}, enqueue=False,
    )  # fmt: skip
    reports: list[str] = []

    def cancel_on_first_report(stage: str, done: int, total: int) -> None:
        reports.append(stage)
        if len(reports) == 1:
            services.job_cancel(DatasetJob.objects.get(id=job.id), owner)

    job = services.import_job_run(job.id, progress=cancel_on_first_report)
    assert job.status == JobStatus.CANCELLED and job.finished is not None
    assert len(reports) == 1  # the next progress write noticed the cancellation
    _nothing_left(settings)


def test_cancelled_queued_job_never_runs(owner: Any, tiff_pair: tuple[Path, Path]) -> None:
    job = services.import_job_create(
        owner, name="Cells", source_path=tiff_pair[0], voxel_size=(1, 1, 1), enqueue=False
    )
    services.job_cancel(job, owner)
    job = services.import_job_run(job.id)
    assert job.status == JobStatus.CANCELLED and job.started is None
    with pytest.raises(services.Conflict):
        services.job_cancel(job, owner)


def test_only_the_owner_cancels(owner: Any, other: Any, tiff_pair: tuple[Path, Path]) -> None:
    job = services.import_job_create(
        owner, name="Cells", source_path=tiff_pair[0], voxel_size=(1, 1, 1), enqueue=False
    )
    with pytest.raises(services.NotAllowed):
        services.job_cancel(job, other)


def test_progress_writer_throttles_and_detects_cancellation(owner: Any) -> None:
    job = DatasetJob.objects.create(kind="import", owner=owner)
    attempt = job_start(DatasetJob, job.id)
    assert attempt is not None
    now = [0.0]
    writer = JobProgressWriter(DatasetJob, attempt, min_interval=0.5, clock=lambda: now[0])
    for i in range(1000):  # 1000 chunk reports within 0.1 s: stage start and end only
        now[0] = i * 1e-4
        writer("image", i + 1, 1000)
    assert writer.writes == 2
    now[0] = 1.0
    writer("image", 5, 10)
    assert writer.writes == 3
    job.refresh_from_db()
    assert (job.stage, job.done, job.total) == ("image", 5, 10)
    DatasetJob.objects.filter(id=job.id).update(status=JobStatus.CANCELLED)
    with pytest.raises(JobCancelled):
        writer("meshes", 0, 3)


def test_slugs_are_unique_and_avoid_reserved_names_and_orphans(
    owner: Any, tiff_pair: tuple[Path, Path], settings: Any
) -> None:
    first = _import(owner, tiff_pair[0], name="My Cells!")
    second = _import(owner, tiff_pair[0], name="My Cells!")
    assert (first.dataset.slug, second.dataset.slug) == ("my-cells", "my-cells-2")
    (Path(settings.DATA_ROOT) / "datasets" / "my-cells-3").mkdir()  # orphaned directory
    assert services.slug_unique("My cells") == "my-cells-4"
    assert services.slug_unique("import") == "import-2"  # /datasets/import/ is the upload page
    assert services.slug_unique("¿?") == "dataset"


def test_volume_over_the_voxel_limit_is_rejected(
    owner: Any, tiff_pair: tuple[Path, Path], settings: Any
) -> None:
    settings.MAX_VOLUME_VOXELS = 1000
    with pytest.raises(ImportRejected, match="limit"):
        _import(owner, tiff_pair[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"voxel_size": (1, 0, 1)}, "positive"),
        ({"voxel_size": (1, 1, 1, 1)}, "three numbers"),
        ({"unit": "furlong"}, "Unknown unit"),
        ({"name": "  "}, "name is required"),
        ({"visibility": "secret"}, "visibility"),
        ({"labels": {"../x": Path("/etc/passwd")}}, "Invalid label name"),
    ],
)
def test_bad_parameters_are_rejected(
    owner: Any, tiff_pair: tuple[Path, Path], kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(services.InvalidRequest, match=match):
        _import(owner, tiff_pair[0], **kwargs)


def _write_ngff_04(path: Path) -> Path:
    image, labels = make_volume()
    fmt = FormatV04()
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    axes = ["z", "y", "x"]
    common = {
        "fmt": fmt,
        "axes": axes,
        "scale": {"z": 0.4, "y": 0.2, "x": 0.2},
        "axes_units": dict.fromkeys(axes, "micrometer"),
        "scale_factors": [dict.fromkeys(axes, 2)],
    }
    write_image(image, group, storage_options={"chunks": (16, 16, 16)}, **common)
    write_labels(labels, group, "cells", **common)
    return path


def test_register_in_place_links_the_store_and_keeps_its_version(
    owner: Any, tmp_path: Path, settings: Any
) -> None:
    store = _write_ngff_04(tmp_path / "existing.ome.zarr")
    before = sorted(str(p) for p in store.rglob("*"))
    job = services.import_job_create(
        owner, name="Registered", source_path=store, register_in_place=True, enqueue=False
    )
    job = services.import_job_run(job.id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    root = job.dataset.root
    link = root / "image.ome.zarr"
    assert link.is_symlink() and link.resolve() == store.resolve()
    assert sorted(str(p) for p in store.rglob("*")) == before  # nothing written into the store
    layers = {layer.name: layer for layer in job.dataset.layers.all()}
    assert set(layers) == {"image", "cells", "cells-meshes"}
    assert layers["image"].ngff_version == "0.4" and layers["image"].path == "image.ome.zarr"
    assert layers["cells"].path == "image.ome.zarr/labels/cells"
    assert layers["cells"].ngff_version == "0.4"
    assert layers["image"].voxel_size == [0.4, 0.2, 0.2]
    assert layers["image"].unit == "micrometer"
    assert (root / "meshes" / "cells" / "info").exists()

    # Deleting the dataset removes the link and meshes, never the registered store.
    services.dataset_delete(job.dataset, owner)
    assert store.exists() and sorted(str(p) for p in store.rglob("*")) == before
    assert not os.path.lexists(root)


def test_register_in_place_refuses_non_zarr(owner: Any, tiff_pair: tuple[Path, Path]) -> None:
    with pytest.raises(ImportRejected, match="OME-Zarr"):
        services.import_job_create(
            owner, name="x", source_path=tiff_pair[0], register_in_place=True, enqueue=False
        )


def test_register_in_place_refuses_a_translated_store(owner: Any, tmp_path: Path) -> None:
    """The pages place an image at the origin: a translated store would be looked for beside
    where Neuroglancer draws it. The refusal says so and what to do; a copy is fine."""
    store = tmp_path / "crop.ome.zarr"
    array = create_single_level_image(
        store, (8, 16, 16), dtype="uint8", chunks=(8, 16, 16), voxel_size=(0.4, 0.2, 0.2),
        unit="micrometer", name="crop", translation=(4.0, 0.0, 2.5),
    )  # fmt: skip
    array[:] = 1
    with pytest.raises(ImportRejected, match=r"translated by 4 micrometer, 0 micrometer, 2\.5"):
        services.import_job_create(
            owner, name="x", source_path=store, register_in_place=True, enqueue=False
        )
    copy = services.import_job_create(owner, name="Crop", source_path=store, enqueue=False)
    assert services.import_job_run(copy.id).status == JobStatus.SUCCEEDED


def test_upload_directory_is_removed_after_the_job(
    owner: Any, tiff_pair: tuple[Path, Path], settings: Any
) -> None:
    upload_dir = Path(settings.UPLOAD_ROOT) / "abc"
    upload_dir.mkdir()
    copy = upload_dir / "image.tif"
    copy.write_bytes(tiff_pair[0].read_bytes())
    job = _import(owner, copy, upload_dir=upload_dir)
    assert job.status == JobStatus.SUCCEEDED
    assert not upload_dir.exists() and Path(settings.UPLOAD_ROOT).exists()


def test_zip_of_a_tiff_is_extracted_and_imported(
    owner: Any, tiff_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    archive = tmp_path / "volume.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tiff_pair[0], "volume.tif")
    job = _import(owner, archive)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.dataset.layers.get(name="image").shape == list(SHAPE)


def test_zip_with_path_traversal_fails_without_leftovers(
    owner: Any, tiff_pair: tuple[Path, Path], tmp_path: Path, settings: Any
) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tiff_pair[0], "../../evil.tif")
    job = _import(owner, archive)
    assert job.status == JobStatus.FAILED and job.error
    assert not (tmp_path / "evil.tif").exists()
    _nothing_left(settings)


def test_zip_bomb_import_fails_before_writing_anything(
    owner: Any, tmp_path: Path, settings: Any
) -> None:
    # 512 MiB of zeros in a ~0.5 MB archive: under the site's size limits, refused by ratio
    # before a byte lands under DATA_ROOT/tmp.
    archive = zeros_deflate_zip(tmp_path / "bomb.zip", "volume.npy", 512 << 20)
    job = _import(owner, archive)
    assert job.status == JobStatus.FAILED
    assert "unpacks to 536,870,912 bytes" in job.error and "unzipped" in job.error
    _nothing_left(settings)
    tmp = Path(settings.DATA_ROOT) / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_meshes_rebuild_swaps_files_and_keeps_one_mesh_layer(
    owner: Any, other: Any, tiff_pair: tuple[Path, Path]
) -> None:
    job = _import(owner, tiff_pair[0], {"nuclei": tiff_pair[1]})
    dataset = job.dataset
    seg = dataset.layers.get(name="nuclei")
    with pytest.raises(services.NotAllowed):
        services.meshes_build_start(dataset, seg, user=other, enqueue=False)
    with pytest.raises(services.InvalidRequest):
        services.meshes_build_start(
            dataset, dataset.layers.get(name="image"), user=owner, enqueue=False
        )
    mesh_dir = dataset.root / "meshes" / "nuclei"
    (mesh_dir / "stale-file").write_text("old build")
    rebuild = services.meshes_build_start(dataset, seg, user=owner, enqueue=False)
    rebuild = services.meshes_build_run(rebuild.id)
    assert rebuild.status == JobStatus.SUCCEEDED, rebuild.error
    assert not (mesh_dir / "stale-file").exists() and 1 in stored_segment_ids(mesh_dir)
    meshes = Layer.objects.filter(dataset=dataset, kind=LayerKind.MESH)
    assert [(m.name, m.source_layer_id) for m in meshes] == [("nuclei-meshes", seg.id)]


def test_mesh_layer_is_created_when_missing(owner: Any, tiff_pair: tuple[Path, Path]) -> None:
    job = _import(owner, tiff_pair[0], {"nuclei": tiff_pair[1]})
    dataset = job.dataset
    Layer.objects.filter(dataset=dataset, kind=LayerKind.MESH).delete()
    seg = dataset.layers.get(name="nuclei")
    rebuild = services.meshes_build_run(services.meshes_build_start(dataset, seg, enqueue=False).id)
    assert rebuild.status == JobStatus.SUCCEEDED
    mesh = dataset.layers.get(kind=LayerKind.MESH)
    assert (mesh.name, mesh.path, mesh.source_layer_id) == (
        "nuclei-meshes",
        "meshes/nuclei",
        seg.id,
    )


def test_commit_enqueues_the_celery_task_that_runs_the_import(
    owner: Any,
    tiff_pair: tuple[Path, Path],
    django_capture_on_commit_callbacks: Any,
) -> None:
    from webapp.celery import app

    # Eager mode runs the real task body in this process (the worker test uses a real worker).
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            job = services.import_job_create(
                owner, name="Queued", source_path=tiff_pair[0], voxel_size=(1, 1, 1)
            )
    finally:
        app.conf.task_always_eager = previous
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.dataset.slug == "queued"
