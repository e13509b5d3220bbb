"""Building tables: from a real import, rebuilds that keep rows, signals, load_demo, failures."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from detections_testdata import VOXEL_NM, synthetic_frame, table_with
from django.core.management import call_command

from pipeline.detections import DETECTION_COLUMNS, Geometry, measure_detections
from webapp.core.errors import InvalidRequest, NotAllowed
from webapp.datasets.models import Dataset, JobStatus, Layer, LayerKind
from webapp.datasets.signals import layers_changed
from webapp.detections import services
from webapp.detections.builds import detections_replace, source_image_layer
from webapp.detections.models import Detection, DetectionBuild

pytestmark = pytest.mark.django_db


def test_imported_layer_gets_the_pipeline_table(imported: Any) -> None:
    dataset, layer, image, labels = imported
    rows = {d.segment_id: d for d in Detection.objects.filter(layer=layer)}
    assert sorted(rows) == [1, 2, 40]
    expected = measure_detections(labels, Geometry(VOXEL_NM), image=image)
    for want in expected.to_dict("records"):
        got = rows[int(want["segment_id"])]
        for column in DETECTION_COLUMNS:
            if column in ("surface_area", "sphericity", "mean_probability"):
                continue
            assert getattr(got, column) == pytest.approx(want[column]), column
        # areas come from the meshes the import built
        assert got.surface_area is not None and got.surface_area > 0
        assert got.sphericity is not None and 0.3 < got.sphericity < 1.1
        assert got.mean_probability is None
    box = rows[40]
    assert (box.bbox_z0, box.bbox_y0, box.bbox_x0, box.bbox_z1, box.bbox_y1, box.bbox_x1) == (
        1, 18, 3, 5, 23, 11
    )  # fmt: skip
    assert box.voxels == 4 * 5 * 8
    assert box.volume == pytest.approx(160 * 0.4 * 0.2 * 0.1)
    assert box.bbox_x0_um == pytest.approx(2.5 * 0.1)
    build = DetectionBuild.objects.get(layer=layer)
    assert build.n_detections == 3 and build.stage == "done"
    assert source_image_layer(layer) == dataset.layers.get(kind=LayerKind.IMAGE)


def test_rebuild_keeps_rows_of_segments_that_remain_and_drops_the_others(
    make_layer: Any,
) -> None:
    layer = make_layer(rows=0)
    first = table_with(layer, synthetic_frame(50))
    ids_before = dict(Detection.objects.filter(layer=layer).values_list("segment_id", "id"))
    changed = synthetic_frame(40, seed=1, first_id=21)  # 21..60: 1..20 vanish, 51..60 are new
    second = table_with(layer, changed)
    after = dict(Detection.objects.filter(layer=layer).values_list("segment_id", "id"))
    assert sorted(after) == list(range(21, 61))
    assert all(after[s] == ids_before[s] for s in range(21, 51))  # same rows, new values
    builds = Detection.objects.filter(layer=layer).values_list("build_number", flat=True)
    assert set(builds) == {second.id}
    row = Detection.objects.get(layer=layer, segment_id=30)
    assert row.voxels == int(changed.set_index("segment_id").loc[30, "voxels"])
    assert first.id != second.id


def test_replacing_is_all_or_nothing(make_layer: Any) -> None:
    layer = make_layer(rows=30)
    before = list(Detection.objects.filter(layer=layer).values_list("segment_id", "voxels"))
    build = DetectionBuild.objects.create(layer=layer, owner=layer.dataset.owner)

    def refuse(**fields: Any) -> None:
        raise RuntimeError("the job was cancelled meanwhile")

    with pytest.raises(RuntimeError):
        detections_replace(layer, build, synthetic_frame(10, seed=5), succeed=refuse)
    after = list(Detection.objects.filter(layer=layer).values_list("segment_id", "voxels"))
    assert after == before


def test_missing_values_are_nulls_not_nans(make_layer: Any) -> None:
    layer = make_layer(rows=200)
    assert Detection.objects.filter(layer=layer, surface_area__isnull=True).exists()
    assert not any(
        isinstance(v, float) and math.isnan(v)
        for v in Detection.objects.filter(layer=layer).values_list("surface_area", flat=True)
    )


def test_layers_changed_queues_one_build_per_segmentation_layer_on_commit(
    make_layer: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    from webapp.detections import tasks

    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        tasks.detections_build_task, "apply_async", lambda **kw: sent.append(kw["args"])
    )
    layer = make_layer()
    with django_capture_on_commit_callbacks(execute=True):
        layers_changed.send(sender=Dataset, dataset=layer.dataset)
        # a second signal before the build started does not queue a second build
        layers_changed.send(sender=Dataset, dataset=layer.dataset)
    build = DetectionBuild.objects.get(layer=layer)
    assert build.status == JobStatus.QUEUED and build.reason == "import"
    assert build.owner == layer.dataset.owner
    assert sent == [[build.id]]


def test_rebuild_needs_the_owner_and_a_segmentation_layer(make_layer: Any, other: Any) -> None:
    layer = make_layer()
    with pytest.raises(NotAllowed):
        services.detections_build_start(layer, user=other, enqueue=False)
    image = Layer.objects.get(dataset=layer.dataset, kind=LayerKind.IMAGE)
    with pytest.raises(InvalidRequest, match="segmentation"):
        services.detections_build_start(image, enqueue=False)


def test_a_layer_whose_files_are_missing_fails_with_a_message(make_layer: Any) -> None:
    layer = make_layer()
    build = services.detections_build_now(layer)
    assert build.status == JobStatus.FAILED
    assert build.error  # the pipeline says what it could not read
    assert not Detection.objects.filter(layer=layer).exists()


def test_load_demo_ends_with_the_demo_table(
    django_capture_on_commit_callbacks: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo", "--shape", "32", "32", "32", "--nuclei", "4", "--seed", "3")
    layer = Layer.objects.get(dataset__slug="demo-nuclei", kind=LayerKind.SEGMENTATION)
    build = DetectionBuild.objects.get(layer=layer)
    assert build.status == JobStatus.SUCCEEDED, (build.error, build.log)
    n = Detection.objects.filter(layer=layer).count()
    assert n == build.n_detections and n > 0
    assert not Detection.objects.filter(layer=layer, mean_intensity__isnull=True).exists()
    assert np.all(
        np.array(Detection.objects.filter(layer=layer).values_list("surface_area", flat=True)) > 0
    )


def test_deleting_builds_keeps_rows_and_deleting_the_dataset_removes_them(
    make_layer: Any,
) -> None:
    layer = make_layer(rows=40)
    DetectionBuild.objects.filter(layer=layer).delete()
    assert Detection.objects.filter(layer=layer).count() == 40
    layer.dataset.delete()
    assert not Detection.objects.exists()


def test_build_detections_command(imported: Any, make_layer: Any) -> None:
    from io import StringIO

    from django.core.management.base import CommandError

    dataset = imported[0]
    out = StringIO()
    call_command("build_detections", "--missing", stdout=out)
    assert out.getvalue() == ""  # the imported layer has its table
    call_command("build_detections", dataset.slug, "--layer", "nuclei", stdout=out)
    assert f"{dataset.slug}/nuclei: 3 detections" in out.getvalue()
    make_layer(slug="no-files")
    with pytest.raises(CommandError, match="1 build"):
        call_command("build_detections", "no-files", stdout=out, stderr=StringIO())


def test_the_model_has_a_field_for_every_column_of_the_pipelines_table() -> None:
    from webapp.detections.models import NUMERIC_COLUMNS, Detection

    fields = {field.name for field in Detection._meta.get_fields()}
    assert NUMERIC_COLUMNS == DETECTION_COLUMNS
    assert set(DETECTION_COLUMNS) <= fields
