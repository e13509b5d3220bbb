"""Detections API: paging, ordering, filters, bad input, permissions, exports, meshes."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import trimesh
from detections_testdata import synthetic_frame
from rest_framework.test import APIClient

from pipeline.detections import DETECTION_COLUMNS
from pipeline.mesh_export import read_object_mesh
from webapp.accounts.models import Team
from webapp.datasets.models import Layer, LayerKind, Visibility
from webapp.detections import exports, selectors
from webapp.detections.builds import mesh_layer_of
from webapp.detections.filters import FilterValues, layer_filter_set
from webapp.detections.models import Detection, DetectionBuild
from webapp.detections.selectors import DetectionQuery, ExtraColumn

pytestmark = pytest.mark.django_db

ROWS = 300


def url(layer: Layer, tail: str = "") -> str:
    return f"/api/v1/datasets/{layer.dataset.slug}/layers/{layer.name}/detections/{tail}"


def body(response: Any) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return bytes(response.content)


@pytest.fixture
def layer(make_layer: Any) -> Layer:
    return make_layer(rows=ROWS)


@pytest.fixture
def signed_in(api: APIClient, owner: Any) -> APIClient:
    api.force_authenticate(owner)
    return api


def frame_of(layer: Layer) -> pd.DataFrame:
    return pd.DataFrame.from_records(
        Detection.objects.filter(layer=layer).values(*DETECTION_COLUMNS)
    ).set_index("segment_id", drop=False)


# --- listing --------------------------------------------------------------------------------


def test_pages_cover_the_table_once(signed_in: APIClient, layer: Layer) -> None:
    seen: list[int] = []
    offset = 0
    while True:
        answer = signed_in.get(url(layer), {"limit": 70, "offset": offset})
        assert answer.status_code == 200, answer.json()
        data = answer.json()
        assert data["count"] == ROWS
        seen += [row["segment_id"] for row in data["results"]]
        if not data["next"]:
            break
        offset += 70
    assert seen == list(range(1, ROWS + 1))
    row = signed_in.get(url(layer), {"limit": 1}).json()["results"][0]
    assert set(row) == {"id", *DETECTION_COLUMNS}


@pytest.mark.parametrize(
    "ordering",
    ["volume", "-volume", "surface_area", "-sphericity", "voxels", "-centroid_x_um", "bbox_z1"],
)
def test_ordering_by_any_column_with_segment_id_ties(
    signed_in: APIClient, layer: Layer, ordering: str
) -> None:
    rows = signed_in.get(url(layer), {"ordering": ordering, "limit": 1000}).json()["results"]
    column = ordering.removeprefix("-")
    descending = ordering.startswith("-")
    assert len(rows) == ROWS
    keys = [(r[column] is None, r[column], r["segment_id"]) for r in rows]
    # PostgreSQL and SQLite put nulls differently; only compare the non-null run.
    values = [(v, s) for null, v, s in keys if not null]
    assert values == sorted(values, reverse=descending)
    if column == "voxels":  # sorted through volume: ties of volume keep voxels in order
        volumes = [r["volume"] for r in rows]
        assert volumes == sorted(volumes)


def test_range_filters_on_float_and_integer_columns(signed_in: APIClient, layer: Layer) -> None:
    frame = frame_of(layer)
    params = {"volume_min": "5", "volume_max": "20.5", "bbox_z0_min": "100.5", "limit": 1000}
    rows = signed_in.get(url(layer), params).json()["results"]
    want = frame[(frame.volume >= 5) & (frame.volume <= 20.5) & (frame.bbox_z0 >= 101)]
    assert [r["segment_id"] for r in rows] == sorted(want.segment_id)
    assert 0 < len(rows) < ROWS
    # a range on a column with missing values leaves those out
    rows = signed_in.get(url(layer), {"surface_area_min": "0", "limit": 1000}).json()
    assert rows["count"] == int(frame.surface_area.notna().sum())


def test_huge_bounds_are_bounds_not_overflows(signed_in: APIClient, layer: Layer) -> None:
    for params, count in [
        ({"bbox_z0_min": "1e30"}, 0),
        ({"bbox_z0_max": "1e30"}, ROWS),
        ({"segment_id_max": "-1e300"}, 0),
        ({"voxels_min": "-9223372036854775809"}, ROWS),
        ({"volume_max": "1e308"}, ROWS),
    ]:
        answer = signed_in.get(url(layer), params)
        assert answer.status_code == 200, (params, answer.json())
        assert answer.json()["count"] == count, params


def test_region_filter_intersects_boxes(signed_in: APIClient, layer: Layer) -> None:
    frame = frame_of(layer)
    z0, y0, x0, z1, y1, x1 = 100, 200, 300, 400, 500, 600
    rows = signed_in.get(
        url(layer), {"region": f"{z0},{y0},{x0},{z1},{y1},{x1}", "limit": 1000}
    ).json()["results"]
    inside = frame[
        (frame.bbox_z0 < z1)
        & (frame.bbox_z1 > z0)
        & (frame.bbox_y0 < y1)
        & (frame.bbox_y1 > y0)
        & (frame.bbox_x0 < x1)
        & (frame.bbox_x1 > x0)
    ]
    assert [r["segment_id"] for r in rows] == sorted(inside.segment_id)
    assert 0 < len(rows) < ROWS


@pytest.mark.parametrize(
    "params",
    [
        {"volume_min": "abc"},
        {"volume_min": "NaN"},
        {"volume_max": "nan"},
        {"sphericity_max": "inf"},
        {"volume_min": "-Infinity"},
        {"volume_min": ""},
        {"colour_min": "1"},
        {"id_max": "3"},
        {"ordering": "colour"},
        {"ordering": "--volume"},
        {"region": "1,2,3"},
        {"region": "1,2,3,4,5,x"},
        {"region": "5,0,0,5,1,1"},
        {"region": "0,0,0,99999999999,1,1"},
    ],
)
def test_bad_filters_are_400_with_a_message(
    signed_in: APIClient, layer: Layer, params: dict[str, str]
) -> None:
    answer = signed_in.get(url(layer), params)
    assert answer.status_code == 400, answer.content
    assert answer.json()["message"]
    # the exports parse the same way
    assert signed_in.get(url(layer, "export.csv"), params).status_code == 400


def test_detail_and_absent_detections(signed_in: APIClient, layer: Layer) -> None:
    row = signed_in.get(url(layer, "7/")).json()
    assert row["segment_id"] == 7
    assert row["volume"] == pytest.approx(frame_of(layer).loc[7, "volume"])
    assert signed_in.get(url(layer, "100000/")).status_code == 404
    assert signed_in.get(url(layer, "99999999999999999999999/")).status_code == 404


def test_only_segmentation_layers_have_detections(signed_in: APIClient, layer: Layer) -> None:
    image = Layer.objects.get(dataset=layer.dataset, kind=LayerKind.IMAGE)
    assert signed_in.get(url(image)).status_code == 404
    assert signed_in.get(url(image, "table/")).status_code == 404
    assert signed_in.post(url(image, "table/")).status_code == 404


# --- permissions ----------------------------------------------------------------------------

READS = ["", "1/", "table/", "export.csv", "export.parquet", "1/mesh.ply", "meshes.zip"]


@pytest.mark.parametrize("tail", READS)
def test_private_layers_are_invisible_to_anonymous_and_other_users(
    api: APIClient, make_layer: Any, other: Any, tail: str
) -> None:
    layer = make_layer(rows=5)
    answer = api.get(url(layer, tail))
    assert answer.status_code == 404, answer.content
    api.force_authenticate(other)
    assert api.get(url(layer, tail)).status_code == 404
    assert api.get(f"/api/v1/datasets/{layer.dataset.slug}/detections/").status_code == 404


def test_public_and_team_datasets(api: APIClient, make_layer: Any, other: Any) -> None:
    public = make_layer(Visibility.PUBLIC, slug="public", rows=5)
    assert api.get(url(public)).json()["count"] == 5
    team = Team.objects.create(name="Lab", slug="lab")
    shared = make_layer(Visibility.TEAM, slug="shared", rows=3, team=team)
    api.force_authenticate(other)
    assert api.get(url(shared)).status_code == 404
    team.members.add(other)
    assert api.get(url(shared)).json()["count"] == 3


def test_rebuild_needs_the_owner(
    api: APIClient, make_layer: Any, owner: Any, other: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from webapp.detections import tasks

    monkeypatch.setattr(tasks.detections_build_task, "apply_async", lambda **kw: None)
    layer = make_layer(Visibility.PUBLIC, rows=5)
    assert api.post(url(layer, "table/")).status_code == 401
    api.force_authenticate(other)
    answer = api.post(url(layer, "table/"))
    assert answer.status_code == 403 and "owner" in answer.json()["message"]
    api.force_authenticate(owner)
    answer = api.post(url(layer, "table/"))
    assert answer.status_code == 202, answer.content
    data = answer.json()
    assert data["table_state"] == "queued"
    assert data["latest_build"]["reason"] == "rebuild"
    assert data["count"] == 5  # the current rows stay until the new build replaces them
    again = api.post(url(layer, "table/")).json()
    assert again["latest_build"]["id"] == data["latest_build"]["id"]
    assert DetectionBuild.objects.filter(layer=layer, status="queued").count() == 1


def test_table_status_and_dataset_summary(signed_in: APIClient, layer: Layer) -> None:
    status = signed_in.get(url(layer, "table/")).json()
    assert status["table_state"] == "succeeded"
    assert status["count"] == ROWS and status["unit"] == "micrometer"
    assert status["downloads"]["csv"] == url(layer, "export.csv")
    assert status["downloads"]["meshes_zip"] is None and status["has_meshes"] is False
    summary = signed_in.get(f"/api/v1/datasets/{layer.dataset.slug}/detections/").json()
    assert [s["layer"] for s in summary] == ["nuclei"]
    assert summary[0]["count"] == ROWS


def test_never_built_layer(signed_in: APIClient, make_layer: Any) -> None:
    layer = make_layer(slug="fresh")
    status = signed_in.get(url(layer, "table/")).json()
    assert status["table_state"] == "none" and status["count"] == 0
    assert status["latest_build"] is None and status["built"] is None


# --- exports --------------------------------------------------------------------------------


def test_csv_round_trip(signed_in: APIClient, layer: Layer) -> None:
    answer = signed_in.get(url(layer, "export.csv"))
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/csv")
    assert "attachment" in answer["Content-Disposition"]
    table = pd.read_csv(io.BytesIO(body(answer)))
    assert list(table.columns) == list(DETECTION_COLUMNS)
    pd.testing.assert_frame_equal(
        table.set_index("segment_id"),
        synthetic_frame(ROWS).set_index("segment_id"),
        check_dtype=False,
    )


def test_parquet_round_trip_in_batches_with_filters(signed_in: APIClient, layer: Layer) -> None:
    answer = signed_in.get(url(layer, "export.parquet"), {"volume_min": "10"})
    assert answer.status_code == 200
    table = pq.read_table(io.BytesIO(body(answer))).to_pandas()
    want = synthetic_frame(ROWS)
    want = want[want.volume >= 10].reset_index(drop=True)
    pd.testing.assert_frame_equal(table, want, check_dtype=False)
    assert str(table["segment_id"].dtype) == "int64"
    assert str(table["surface_area"].dtype) == "float64"


def test_exports_take_extra_columns_and_stream_in_batches(layer: Layer) -> None:
    """Proofreading adds ``verdict``: one value per detection id of each batch."""
    ids = dict(Detection.objects.filter(layer=layer).values_list("id", "segment_id"))
    calls: list[int] = []

    def verdicts(batch: Any) -> list[str | None]:
        calls.append(len(batch))
        return ["tp" if ids[i] % 2 else None for i in batch]

    extra = [ExtraColumn("verdict", verdicts)]
    batches = list(selectors.export_batches(layer, DetectionQuery(), extra=extra, batch_rows=64))
    assert calls == [64, 64, 64, 64, 44]
    data = b"".join(exports.parquet_stream(iter(batches), extra))
    table = pq.read_table(io.BytesIO(data)).to_pandas()
    assert list(table.columns) == [*DETECTION_COLUMNS, "verdict"]
    assert table.loc[table.segment_id % 2 == 1, "verdict"].eq("tp").all()
    assert table.loc[table.segment_id % 2 == 0, "verdict"].isna().all()
    assert pq.ParquetFile(io.BytesIO(data)).num_row_groups == 5
    text = b"".join(exports.csv_stream(iter(batches), exports.export_columns(extra))).decode()
    assert text.splitlines()[0].endswith(",verdict") and len(text.splitlines()) == ROWS + 1
    with pytest.raises(ValueError, match="clash"):
        list(selectors.export_batches(layer, extra=[ExtraColumn("volume", verdicts)]))


def test_exports_flag_what_the_layers_filter_keeps(signed_in: APIClient, layer: Layer) -> None:
    """With a filter on the layer (a run's fitted one, or the owner's), a ``kept`` column says
    whether each detection passes it; without one, no such column."""
    assert "kept" not in body(signed_in.get(url(layer, "export.csv"))).decode().splitlines()[0]
    layer_filter_set(
        layer, layer.dataset.owner, FilterValues(volume_min=10.0, sphericity_min=0.5),
        check_permission=False,
    )  # fmt: skip
    table = pd.read_csv(io.BytesIO(body(signed_in.get(url(layer, "export.csv")))))
    assert list(table.columns) == [*DETECTION_COLUMNS, "kept"]
    want = (table["volume"] >= 10.0) & (table["sphericity"] >= 0.5)
    assert 0 < want.sum() < len(table)
    assert table["kept"].tolist() == want.tolist()
    parquet = pq.read_table(io.BytesIO(body(signed_in.get(url(layer, "export.parquet")))))
    assert parquet.column("kept").to_pylist() == want.tolist()


def test_empty_table_exports_are_valid_files(signed_in: APIClient, make_layer: Any) -> None:
    layer = make_layer(slug="empty")
    text = body(signed_in.get(url(layer, "export.csv"))).decode()
    assert text.strip() == ",".join(DETECTION_COLUMNS)
    table = pq.read_table(io.BytesIO(body(signed_in.get(url(layer, "export.parquet")))))
    assert table.num_rows == 0 and table.column_names == list(DETECTION_COLUMNS)


def test_unknown_export_format(signed_in: APIClient, layer: Layer) -> None:
    assert signed_in.get(url(layer, "export.xlsx")).status_code == 400


# --- meshes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("file_format", ["ply", "obj", "glb"])
def test_mesh_of_one_detection_in_each_format(
    api: APIClient, imported: Any, file_format: str
) -> None:
    dataset, layer, _, _ = imported
    api.force_authenticate(dataset.owner)
    row = Detection.objects.get(layer=layer, segment_id=2)
    answer = api.get(url(layer, f"2/mesh.{file_format}"))
    assert answer.status_code == 200, answer.content
    assert f'2.{file_format}"' in answer["Content-Disposition"]
    loaded = trimesh.load(
        io.BytesIO(body(answer)), file_type=file_format, force="mesh", process=False
    )
    stored = read_object_mesh(dataset.root / mesh_layer_of(layer).path, 2)  # type: ignore[union-attr]
    assert stored is not None
    assert len(loaded.vertices) == len(stored.vertices)
    assert len(loaded.faces) == len(stored.faces)
    lo = np.array([row.bbox_x0_um, row.bbox_y0_um, row.bbox_z0_um])
    hi = np.array([row.bbox_x1_um, row.bbox_y1_um, row.bbox_z1_um])
    slack = 0.05 * (hi - lo)
    assert np.all(loaded.bounds[0] >= lo - slack) and np.all(loaded.bounds[1] <= hi + slack)


def test_mesh_errors(api: APIClient, imported: Any, make_layer: Any) -> None:
    dataset, layer, _, _ = imported
    api.force_authenticate(dataset.owner)
    assert api.get(url(layer, "2/mesh.stl")).status_code == 400
    assert api.get(url(layer, "3/mesh.ply")).status_code == 404  # no such detection
    no_meshes = make_layer(slug="no-meshes", rows=3, dataset_owner=dataset.owner)
    answer = api.get(url(no_meshes, "1/mesh.ply"))
    assert answer.status_code == 404 and "no mesh" in answer.json()["message"]
    assert api.get(url(no_meshes, "meshes.zip")).status_code == 404
    # a mesh layer whose files are missing: 404 saying so, without the server's paths
    Layer.objects.create(
        dataset=no_meshes.dataset, name="nuclei-meshes", kind=LayerKind.MESH,
        path="meshes/nuclei", source_layer=no_meshes,
    )  # fmt: skip
    for tail in ("1/mesh.glb", "meshes.zip"):
        answer = api.get(url(no_meshes, tail))
        assert answer.status_code == 404 and "cannot be read" in answer.json()["message"]
        assert str(dataset.root.parent) not in answer.json()["message"]
    # any Accept header: the error is still JSON
    answer = api.get(url(layer, "2/mesh.stl"), HTTP_ACCEPT="model/obj")
    assert answer.status_code == 400


def test_meshes_zip_holds_every_detection(api: APIClient, imported: Any) -> None:
    dataset, layer, _, _ = imported
    api.force_authenticate(dataset.owner)
    status = api.get(url(layer, "table/")).json()
    assert status["has_meshes"] and status["downloads"]["meshes_zip"] == url(layer, "meshes.zip")
    answer = api.get(url(layer, "meshes.zip"), {"mesh_format": "obj"})
    assert answer.status_code == 200 and answer["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(body(answer)))
    assert archive.namelist() == ["1.obj", "2.obj", "40.obj"]
    mesh = trimesh.load(io.BytesIO(archive.read("40.obj")), file_type="obj", force="mesh")
    assert len(mesh.faces) > 0
    assert api.get(url(layer, "meshes.zip"), {"mesh_format": "fbx"}).status_code == 400
