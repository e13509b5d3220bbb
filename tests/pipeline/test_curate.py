"""Curation: a label image and its meshes keeping exactly the accepted objects, block by block."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.cli import main
from pipeline.curate import add_label_name, block_shape, curate, curate_labels
from pipeline.errors import InvalidInputError
from pipeline.ome_zarr_io import open_multiscale
from pipeline.precomputed import (
    VERDICT_PROPERTY,
    TagsProperty,
    read_segment_properties,
    segment_properties_set_tags,
    stored_segment_ids,
)
from pipeline.precomputed_multires import read_multires_object
from tests.pipeline.test_meshing import ball, write_label_zarr

VOXEL_NM = (200.0, 100.0, 100.0)


def _labels() -> np.ndarray:
    labels = np.zeros((40, 70, 90), dtype=np.uint32)
    centres = [(10, 15, 20), (10, 50, 25), (30, 20, 70), (28, 52, 60), (20, 35, 45)]
    for n, centre in enumerate(centres, 1):
        labels[ball(labels.shape, centre, 900.0, VOXEL_NM)] = n * 10
    return labels


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, np.ndarray]:
    from pipeline.meshing import build_meshes

    root = tmp_path_factory.mktemp("curate")
    labels = _labels()
    path = write_label_zarr(root / "image.zarr", labels, VOXEL_NM, chunks=16)
    build_meshes(path, root / "multires")
    build_meshes(path, root / "legacy", mesh_format="legacy")
    return path, root / "multires", root / "legacy", labels


@pytest.mark.parametrize("ngff04", [False, True])
def test_curated_labels_hold_exactly_the_kept_ids_at_every_level(
    tmp_path: Path, ngff04: bool
) -> None:
    labels = _labels()
    # Two pyramid levels, as imports write them.
    group = zarr.open_group(str(tmp_path / "img.zarr"), mode="w", zarr_format=2 if ngff04 else 3)
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_labels

    write_labels(
        labels,
        group,
        name="nuclei",
        scaler=None,
        scale_factors=[{"z": 2, "y": 2, "x": 2}],
        axes="zyx",
        scale=dict(zip("zyx", VOXEL_NM, strict=True)),
        axes_units=dict.fromkeys("zyx", "nanometer"),
        storage_options={"chunks": (16, 16, 16)},
        fmt=FormatV04() if ngff04 else None,
    )
    src = tmp_path / "img.zarr" / "labels" / "nuclei"
    keep = [20, 40, 999]  # 999 is in no voxel: nothing to keep for it
    # A tiny block bound: many blocks, each of whole chunks (the bounded-memory path).
    total, written = curate_labels(src, tmp_path / "out", keep, max_block_voxels=16**3 * 2)
    original = open_multiscale(src)
    curated = open_multiscale(tmp_path / "out")
    assert curated.ngff_version == original.ngff_version
    assert curated.scales == original.scales
    assert len(curated.levels) == 2
    for before, after in zip(original.levels, curated.levels, strict=True):
        a, b = np.asarray(before), np.asarray(after)
        assert a.shape == b.shape and a.dtype == b.dtype
        expected = np.where(np.isin(a, keep), a, 0)
        np.testing.assert_array_equal(b, expected)
    assert set(np.unique(np.asarray(curated.levels[0]))) == {0, 20, 40}
    assert total > 2 * written > 0  # blocks of dropped objects were never written


def test_block_shape_is_whole_storage_units_within_the_bound() -> None:
    assert block_shape((100, 100, 100), (16, 16, 16), 16**3) == [16, 16, 16]
    block = block_shape((100, 1000, 1000), (16, 64, 64), 16 * 64 * 64 * 8)
    assert all(b % u == 0 for b, u in zip(block, (16, 64, 64), strict=True))
    assert np.prod(block) <= 16 * 64 * 64 * 8


@pytest.mark.parametrize("which", ["multires", "legacy"])
def test_curated_meshes_and_properties_hold_only_the_kept_objects(
    layer: tuple[Path, Path, Path, np.ndarray], tmp_path: Path, which: str
) -> None:
    path, multires, legacy, _ = layer
    meshes = multires if which == "multires" else legacy
    keep = [10, 30, 50]
    result = curate(
        path,
        tmp_path / "labels",
        keep,
        meshes=meshes,
        meshes_out=tmp_path / "meshes",
        tags=TagsProperty(VERDICT_PROPERTY, "verdict", ["tp", "fp"], []),
        tags_of={10: "tp", 30: "tp", 50: "fp"},
    )
    assert result.meshes_copied == 3
    assert sorted(stored_segment_ids(tmp_path / "meshes")) == keep
    props = read_segment_properties(tmp_path / "meshes")
    original = read_segment_properties(meshes)
    assert props is not None and original is not None
    assert props.ids == keep
    # The kept objects' other properties are those of the source, row for row.
    for number in original.numbers:
        kept = props.number(number.id)
        assert kept is not None
        assert list(kept.values) == [number.values[original.ids.index(i)] for i in keep]
    verdicts = props.tag_property(VERDICT_PROPERTY)
    assert verdicts is not None
    assert [verdicts.tags_of(i) for i in range(3)] == [["tp"], ["tp"], ["fp"]]
    if which == "multires":  # the copied bytes decode to the same mesh
        a = read_multires_object(multires, 30)
        b = read_multires_object(tmp_path / "meshes", 30)
        assert a is not None and b is not None
        np.testing.assert_array_equal(a.level_mesh(0)[0], b.level_mesh(0)[0])


def test_verdict_tags_keep_the_other_properties_and_replace_themselves(
    layer: tuple[Path, Path, Path, np.ndarray], tmp_path: Path
) -> None:
    import shutil

    _, multires, _, _ = layer
    mesh_dir = tmp_path / "m"
    shutil.copytree(multires, mesh_dir)
    before = read_segment_properties(mesh_dir)
    assert before is not None
    segment_properties_set_tags(mesh_dir, {10: "fp", 20: "tp"}, ["tp", "fp"])
    segment_properties_set_tags(mesh_dir, {10: "tp"}, ["tp", "fp", "uncertain"])
    after = read_segment_properties(mesh_dir)
    assert after is not None
    assert after.ids == before.ids and after.labels == before.labels
    assert [p.id for p in after.numbers] == [p.id for p in before.numbers]
    assert len(after.tags) == 1
    verdicts = after.tag_property(VERDICT_PROPERTY)
    assert verdicts is not None and list(verdicts.tags) == ["tp", "fp", "uncertain"]
    assert verdicts.tags_of(after.ids.index(10)) == ["tp"]
    assert verdicts.tags_of(after.ids.index(20)) == []
    raw = json.loads((mesh_dir / "segment_properties" / "info").read_text())
    tags = next(p for p in raw["inline"]["properties"] if p["type"] == "tags")
    assert tags["values"][after.ids.index(10)] == [0]  # Neuroglancer's form: tag indices
    assert not list((mesh_dir / "segment_properties").glob("*.tmp"))
    with pytest.raises(InvalidInputError, match="not declared"):
        segment_properties_set_tags(mesh_dir, {10: "nope"}, ["tp"])


def test_add_label_name_lists_the_new_label_once(tmp_path: Path) -> None:
    write_label_zarr(tmp_path / "img.zarr", _labels(), VOXEL_NM)
    add_label_name(tmp_path / "img.zarr", "curated")
    add_label_name(tmp_path / "img.zarr", "curated")
    from pipeline.ome_zarr_io import list_labels

    assert list_labels(tmp_path / "img.zarr") == ["nuclei", "curated"]


def test_cli_curates_from_an_id_file(
    layer: tuple[Path, Path, Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, multires, _, labels = layer
    ids = tmp_path / "keep.csv"
    ids.write_text("segment_id\n10\n40\n")
    code = main(
        [
            "curate",
            str(path),
            str(tmp_path / "out"),
            "--keep",
            f"@{ids}",
            "--meshes",
            str(multires),
            "--meshes-out",
            str(tmp_path / "m"),
        ]
    )
    assert code == 0
    assert "kept 2 ids" in capsys.readouterr().out
    out = np.asarray(open_multiscale(tmp_path / "out").levels[0])
    np.testing.assert_array_equal(out, np.where(np.isin(labels, [10, 40]), labels, 0))
    assert main(["curate", str(path), str(tmp_path / "out"), "--keep", "1"]) == 2  # exists


def test_curation_reads_at_most_one_bounded_block_at_a_time(
    layer: tuple[Path, Path, Path, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fastremap

    import pipeline.curate as curate_module

    path, _, _, labels = layer
    seen: list[int] = []
    real = fastremap.mask_except

    def recording(data: np.ndarray, keep: list[int], **kwargs: object) -> np.ndarray:
        seen.append(data.size)
        return real(data, keep, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(curate_module.fastremap, "mask_except", recording)
    bound = 16**3 * 4
    curate_labels(path, tmp_path / "out", [10, 20], max_block_voxels=bound)
    assert seen and max(seen) <= bound  # never the whole volume (40x70x90 voxels)
    assert labels.size > 10 * bound


def test_curated_meshes_carry_the_kept_objects_morphometrics(
    layer: tuple[Path, Path, Path, np.ndarray], tmp_path: Path
) -> None:
    import pandas as pd

    from pipeline.detections import mesh_areas_um2

    path, multires, _, _ = layer
    assert (multires / "morphometrics.parquet").is_file()
    keep = [20, 40]
    curate(path, tmp_path / "labels", keep, meshes=multires, meshes_out=tmp_path / "meshes")
    out = tmp_path / "meshes"
    source = pd.read_parquet(multires / "morphometrics.parquet")
    for name, read in (
        ("morphometrics.parquet", pd.read_parquet),
        ("morphometrics.csv", pd.read_csv),
    ):
        table = read(out / name)
        assert list(table.columns) == list(source.columns)
        assert sorted(table["id"].tolist()) == keep
    expected = {k: v for k, v in mesh_areas_um2(multires).items() if k in keep}
    assert len(expected) == 2 and mesh_areas_um2(out) == pytest.approx(expected)
    assert not list(out.glob(".*partial"))
