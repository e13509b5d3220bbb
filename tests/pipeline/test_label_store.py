"""Versioned label volumes of a task box: chunks, copy-on-write versions, conflicts, exports."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import zarr
from numcodecs import Zstd
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Multiscales, Reader
from ome_zarr_models.v05.image_label import ImageLabel

from pipeline.box_table import box_table_read
from pipeline.errors import InvalidInputError
from pipeline.evaluation import boxes_read_csv
from pipeline.label_export import (
    GroundTruthBox,
    export_training_labels,
    ome_zarr_files,
    zarr_chunk_index,
    zarr_chunk_path,
)
from pipeline.label_store import (
    MAX_ID,
    BlobError,
    BlobStore,
    LabelGeometry,
    PayloadTooLargeError,
    chunk_check,
    chunk_from_payload,
    chunks_changed,
    chunks_cut,
    chunks_touching,
    chunks_write,
    labels_read,
)
from pipeline.label_versions import (
    FileVersionLog,
    LabelVersion,
    VersionConflict,
    version_empty,
    version_next,
    version_restore,
)
from pipeline.label_volume import LabelVolume
from pipeline.ome_zarr_io import open_spatial_level
from pipeline.volumes import open_volume

# Not a multiple of the chunk on any axis, so edge chunks are clipped.
GEOMETRY = LabelGeometry(
    shape=(40, 70, 90),
    chunk=(16, 32, 32),
    voxel_size_nm=(400.0, 250.0, 200.0),
    start=(10, 20, 30),
    image_origin_nm=(1000.0, -500.0, 0.0),
)


def painted(shape: tuple[int, int, int] = GEOMETRY.shape) -> np.ndarray:
    """A few objects, one against the far edges, one spanning several chunks; some chunks empty."""
    labels = np.zeros(shape, np.uint32)
    labels[2:12, 3:30, 5:28] = 1
    labels[20:38, 40:69, 33:80] = 7
    labels[-4:, -5:, -6:] = MAX_ID
    return labels


def blob_files(volume: LabelVolume) -> set[str]:
    return {p.name for p in volume.blobs.root.rglob("*") if p.is_file()}


@pytest.fixture
def volume(tmp_path: Path) -> LabelVolume:
    return LabelVolume.create(tmp_path / "volume", GEOMETRY)


# --- geometry ------------------------------------------------------------------------------------


def test_geometry_grid_clipped_chunks_origin_and_json() -> None:
    assert GEOMETRY.grid == (3, 3, 3)
    assert GEOMETRY.chunk_shape_at((2, 2, 2)) == (8, 6, 26)
    assert GEOMETRY.chunk_slices((1, 2, 0)) == (slice(16, 32), slice(64, 70), slice(0, 32))
    assert GEOMETRY.origin_nm == (1000.0 + 10 * 400.0, -500.0 + 20 * 250.0, 30 * 200.0)
    assert LabelGeometry.from_json(json.loads(json.dumps(GEOMETRY.to_json()))) == GEOMETRY
    # A chunk larger than a thin box is clipped to it: no blob pads a 2D box to 64 slices.
    assert LabelGeometry(shape=(1, 50, 200)).chunk == (1, 50, 64)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (0, 10, 10)},
        {"shape": (10.0, 10, 10)},
        {"shape": (10, 10)},
        {"shape": (True, 10, 10)},
        {"shape": (10, 10, 10), "voxel_size_nm": (0, 1, 1)},
        {"shape": (10, 10, 10), "start": (-1, 0, 0)},
        {"shape": (2048, 1024, 1024)},
        {"shape": (512, 512, 512), "chunk": (1, 1, 1)},
    ],
)
def test_bad_geometry_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        LabelGeometry(**kwargs)  # type: ignore[arg-type]


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "array", "message"),
    [
        ((0, 0, 0), np.zeros((16, 32, 31), np.uint32), "shape"),
        ((2, 2, 2), np.zeros((16, 32, 32), np.uint32), "shape"),  # edge chunk must be clipped
        ((3, 0, 0), np.zeros((16, 32, 32), np.uint32), "outside the box"),
        ((0, -1, 0), np.zeros((16, 32, 32), np.uint32), "at least 0"),
        ((0, 0.0, 0), np.zeros((16, 32, 32), np.uint32), "integers"),
        ((0, 0, 0), np.zeros((16, 32, 32), np.float32), "float32"),
        ((0, 0, 0), np.zeros((16, 32, 32), bool), "bool"),
        ((0, 0, 0), np.full((16, 32, 32), -3, np.int64), "negative"),
        ((0, 0, 0), np.full((16, 32, 32), 2**32, np.int64), "32 bits"),
        ((0, 0, 0), [[["a"]]], "shape"),
        ((0, 0, 0), [[[1, 2], [3]]], "not an array"),
    ],
)
def test_bad_chunks_are_refused_with_the_reason(
    volume: LabelVolume, index: object, array: object, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        chunk_check(array, GEOMETRY, index)
    with pytest.raises(InvalidInputError, match=message):
        volume.save(0, {index: array})


def test_integer_ids_that_fit_are_accepted_in_any_integer_dtype() -> None:
    ids = np.arange(16 * 32 * 32, dtype=np.int64).reshape(16, 32, 32)
    out = chunk_check(ids, GEOMETRY, (0, 0, 0))
    assert out.dtype == np.dtype("<u4") and out.flags.c_contiguous and (out == ids).all()
    big_endian = chunk_check(ids.astype(">u4"), GEOMETRY, (0, 0, 0))
    assert big_endian.dtype == np.dtype("<u4") and (big_endian == ids).all()


def test_a_bad_chunk_among_good_ones_saves_nothing(volume: LabelVolume) -> None:
    chunks = chunks_cut(painted(), GEOMETRY)
    chunks[(1, 1, 1)] = np.ones((16, 32, 32), np.float64)
    with pytest.raises(InvalidInputError, match="float64"):
        volume.save(0, chunks)
    assert blob_files(volume) == set()
    assert volume.current().number == 0
    with pytest.raises(InvalidInputError, match="outside"):
        chunks_write(
            volume.blobs, GEOMETRY, {(0, 0, 0): np.ones((16, 32, 32), np.uint32), (9, 0, 0): 0}
        )
    assert blob_files(volume) == set()


def test_payloads_raw_and_gzip_exact_size_only() -> None:
    index = (2, 2, 2)  # clipped edge chunk: (8, 6, 26)
    chunk = np.arange(8 * 6 * 26, dtype="<u4").reshape(8, 6, 26)
    raw = chunk.tobytes()
    assert (chunk_from_payload(raw, GEOMETRY, index) == chunk).all()
    assert (chunk_from_payload(gzip.compress(raw), GEOMETRY, index, "gzip") == chunk).all()
    with pytest.raises(PayloadTooLargeError, match="too many"):
        chunk_from_payload(raw + b"\0\0\0\0", GEOMETRY, index)
    with pytest.raises(InvalidInputError, match="too few") as short:
        chunk_from_payload(raw[:-4], GEOMETRY, index)
    assert not isinstance(short.value, PayloadTooLargeError)
    bomb = gzip.compress(bytes(100 * len(raw)))
    with pytest.raises(PayloadTooLargeError, match="inflates"):
        chunk_from_payload(bomb, GEOMETRY, index, "gzip")
    with pytest.raises(PayloadTooLargeError):
        chunk_from_payload(os.urandom(len(raw) + (1 << 17)), GEOMETRY, index, "gzip")
    with pytest.raises(InvalidInputError, match="truncated"):
        chunk_from_payload(gzip.compress(raw)[:-20], GEOMETRY, index, "gzip")
    with pytest.raises(InvalidInputError, match="not valid gzip"):
        chunk_from_payload(b"not gzip at all", GEOMETRY, index, "gzip")
    with pytest.raises(InvalidInputError, match="encoding"):
        chunk_from_payload(raw, GEOMETRY, index, "br")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="outside"):
        chunk_from_payload(raw, GEOMETRY, (0, 3, 0))


# --- versions ------------------------------------------------------------------------------------


def test_save_read_and_zero_chunks_absent(volume: LabelVolume) -> None:
    labels = painted()
    v1 = volume.save(0, chunks_cut(labels, GEOMETRY))
    assert (v1.number, v1.based_on) == (1, 0)
    nonzero = {i for i, c in chunks_cut(labels, GEOMETRY).items() if c.any()}
    assert set(v1.chunks) == nonzero and set(v1.changed) == nonzero
    assert len(nonzero) < GEOMETRY.chunk_count  # some chunks are empty and stored as nothing
    assert (volume.read() == labels).all()
    assert (volume.read(0) == 0).all()
    empty = next(i for i in GEOMETRY.chunk_indices() if i not in nonzero)
    assert volume.chunk_bytes(empty) is None
    region = (slice(5, 33), slice(25, 70), slice(10, 61))
    assert (volume.read(region=region) == labels[region]).all()
    with pytest.raises(InvalidInputError, match="leaves the box"):
        volume.read(region=(slice(0, 41), slice(None), slice(None)))


def test_copy_on_write_one_chunk_one_blob_older_versions_unchanged(volume: LabelVolume) -> None:
    before = painted()
    v1 = volume.save(0, chunks_cut(before, GEOMETRY))
    files_v1 = blob_files(volume)
    after = before.copy()
    after[17:20, 33:36, 40:45] = 99  # inside chunk (1, 1, 1) only
    changed = chunks_changed(before, after, GEOMETRY)
    assert changed == [(1, 1, 1)]
    v2 = volume.save(1, chunks_cut(after, GEOMETRY, changed))
    assert v2.changed == ((1, 1, 1),)
    assert len(blob_files(volume) - files_v1) == 1 and files_v1 <= blob_files(volume)
    assert {i: k for i, k in v2.chunks.items() if i != (1, 1, 1)} == {
        i: k for i, k in v1.chunks.items() if i != (1, 1, 1)
    }
    assert (volume.read(1) == before).all()
    assert (volume.read(2) == after).all()
    # Sending a chunk again unchanged writes nothing new and changes nothing.
    v3 = volume.save(2, chunks_cut(after, GEOMETRY, [(0, 0, 0)]))
    assert (
        v3.changed == () and v3.chunks == v2.chunks and len(blob_files(volume)) == len(files_v1) + 1
    )


def test_erasing_a_chunk_removes_it_from_the_map(volume: LabelVolume) -> None:
    labels = painted()
    volume.save(0, chunks_cut(labels, GEOMETRY))
    v2 = volume.save(1, {(0, 0, 0): np.zeros((16, 32, 32), np.uint32)})
    assert v2.changed == ((0, 0, 0),) and (0, 0, 0) not in v2.chunks
    assert volume.chunk_bytes((0, 0, 0)) is None
    assert volume.chunk_bytes((0, 0, 0), 1) is not None
    labels[GEOMETRY.chunk_slices((0, 0, 0))] = 0
    assert (volume.read() == labels).all()


def test_restore_is_a_new_version_equal_to_an_old_one(volume: LabelVolume) -> None:
    first = painted()
    second = first.copy()
    second[0:16, 0:32, 0:64] = 5
    volume.save(0, chunks_cut(first, GEOMETRY))
    v2 = volume.save(1, chunks_cut(second, GEOMETRY, chunks_changed(first, second, GEOMETRY)))
    v3 = volume.restore(2, 1)
    assert (v3.number, v3.based_on, v3.restored_from) == (3, 2, 1)
    assert set(v3.changed) == set(v2.changed) == {(0, 0, 0), (0, 0, 1)}
    assert v3.chunks == volume.version(1).chunks
    assert (volume.read() == first).all() and (volume.read(2) == second).all()
    assert volume.log.numbers() == [1, 2, 3]
    with pytest.raises(InvalidInputError, match="no label version 9"):
        volume.restore(3, 9)


def test_stale_base_is_a_conflict_carrying_the_current_version(volume: LabelVolume) -> None:
    labels = painted()
    volume.save(0, chunks_cut(labels, GEOMETRY))
    volume.save(1, {(0, 0, 0): np.full((16, 32, 32), 3, np.uint32)})
    files = blob_files(volume)
    with pytest.raises(VersionConflict) as stale:
        volume.save(1, {(0, 0, 1): np.full((16, 32, 32), 4, np.uint32)})
    assert (stale.value.current, stale.value.base) == (2, 1)
    assert blob_files(volume) == files  # refused before any blob was written
    assert "current version 2" in str(stale.value)
    with pytest.raises(VersionConflict):
        volume.restore(0, 1)
    assert volume.log.numbers() == [1, 2]
    assert not isinstance(stale.value, InvalidInputError)  # 409 at the site, not 400


def test_two_saves_from_one_base_only_one_lands(tmp_path: Path) -> None:
    """The race a lock would serialise: both computed from version 0, the second is refused."""
    log = FileVersionLog(tmp_path / "versions", GEOMETRY)
    key_a, key_b = "a" * 64, "b" * 64
    first = version_next(log.current(), 0, {(0, 0, 0): key_a})
    second = version_next(log.current(), 0, {(0, 0, 1): key_b})
    log.append(first)
    with pytest.raises(VersionConflict) as lost:
        log.append(second)
    assert lost.value.current == 1
    assert log.current().chunks == {(0, 0, 0): key_a}
    assert [p.name for p in log.root.iterdir()] == ["00000001.json"]  # no temporary left


def test_pure_functions_take_and_return_manifests_a_database_can_hold() -> None:
    v0 = version_empty()
    v1 = version_next(v0, 0, {(0, 0, 0): "c" * 64, (2, 2, 2): "d" * 64, (1, 1, 1): None})
    assert v1.changed == ((0, 0, 0), (2, 2, 2))
    stored = json.loads(json.dumps(v1.to_json()))
    assert stored["chunks"] == {"0.0.0": "c" * 64, "2.2.2": "d" * 64}
    assert LabelVersion.from_json(stored, GEOMETRY) == v1
    v2 = version_restore(v1, 1, v0)
    assert v2.chunks == {} and v2.changed == v1.changed and v2.restored_from == 0
    with pytest.raises(VersionConflict):
        version_next(v2, 1, {})


@pytest.mark.parametrize(
    "change",
    [
        {"chunks": {"0.0.0": "../../../etc/passwd"}},
        {"chunks": {"3.0.0": "c" * 64}},
        {"chunks": {"0.0": "c" * 64}},
        {"changed": ["0.0.x"]},
        {"number": -1},
        {"number": "2"},
        {"chunks": []},
    ],
)
def test_a_tampered_manifest_is_refused(change: dict[str, object]) -> None:
    data = {**version_next(version_empty(), 0, {(0, 0, 0): "c" * 64}).to_json(), **change}
    with pytest.raises(InvalidInputError):
        LabelVersion.from_json(data, GEOMETRY)


# --- blobs ---------------------------------------------------------------------------------------


def test_blobs_are_checked_when_read_and_unreferenced_ones_collected(volume: LabelVolume) -> None:
    labels = painted()
    v1 = volume.save(0, chunks_cut(labels, GEOMETRY))
    v2 = volume.save(1, {(0, 0, 0): np.full((16, 32, 32), 2, np.uint32)})
    assert not [p for p in volume.blobs.root.rglob("*.tmp")]
    assert set(volume.blobs.keys()) == set(v1.chunks.values()) | set(v2.chunks.values())
    dropped = v1.chunks[(0, 0, 0)]
    assert volume.blobs.remove_unreferenced(set(v2.chunks.values())) == 0  # too young
    assert volume.blobs.remove_unreferenced(set(v2.chunks.values()), min_age_s=-1) == 1
    assert dropped not in set(volume.blobs.keys())
    assert (volume.read(2)[16:] == labels[16:]).all()
    victim = volume.blobs.path(v2.chunks[(1, 2, 1)])
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    with pytest.raises(BlobError, match="damaged"):
        volume.read(2)
    victim.unlink()
    with pytest.raises(BlobError, match="missing"):
        volume.read(2)
    with pytest.raises(InvalidInputError, match="blob key"):
        volume.blobs.get("../geometry.json")


def test_blobs_are_the_chunk_files_zarr_writes(volume: LabelVolume, tmp_path: Path) -> None:
    """Byte for byte, v2 and v3: the site can serve blobs as Zarr chunk files as they are."""
    from zarr.codecs import ZstdCodec

    labels = painted()
    v1 = volume.save(0, chunks_cut(labels, GEOMETRY))
    formats: tuple[tuple[Literal[2, 3], str, object], ...] = (
        (3, "s0/c/{}/{}/{}", ZstdCodec(level=1)),
        (2, "s0/{}/{}/{}", Zstd(level=1)),
    )
    for fmt, path_of, codec in formats:
        root = tmp_path / f"ref{fmt}.zarr"
        group = zarr.open_group(str(root), mode="w", zarr_format=fmt)
        array = group.create_array(
            "s0",
            shape=GEOMETRY.shape,
            chunks=GEOMETRY.chunk,
            dtype="<u4",
            fill_value=0,
            chunk_key_encoding={"name": "v2" if fmt == 2 else "default", "separator": "/"},
            compressors=codec,  # type: ignore[arg-type]
        )
        array[:] = labels
        written = {
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and not p.name.startswith((".z", "zarr.json"))
        }
        assert written == {path_of.format(*i) for i in v1.chunks}
        for index in v1.chunks:
            assert zarr_chunk_path(index, fmt) == path_of.format(*index)
            assert volume.chunk_bytes(index) == (root / path_of.format(*index)).read_bytes()


# --- diffing -------------------------------------------------------------------------------------


def test_changed_chunks_of_whole_arrays_and_of_a_painted_region() -> None:
    old = painted()
    new = old.copy()
    new[15:17, 31:33, 63:65] = 42  # a 2x2x2 stroke across eight chunks
    assert chunks_changed(old, new, GEOMETRY) == [
        (z, y, x) for z in (0, 1) for y in (0, 1) for x in (1, 2)
    ]
    region = (slice(10, 20), slice(30, 40), slice(60, 70))
    before, after = old[region], new[region]
    assert chunks_changed(before, after, GEOMETRY, offset=(10, 30, 60)) == chunks_changed(
        old, new, GEOMETRY
    )
    assert chunks_changed(old, old.copy(), GEOMETRY) == []
    assert chunks_touching(GEOMETRY, region) == chunks_changed(old, new, GEOMETRY)
    with pytest.raises(InvalidInputError, match="one shape"):
        chunks_changed(old, new[1:], GEOMETRY)
    with pytest.raises(InvalidInputError, match="leaves the box"):
        chunks_changed(before, after, GEOMETRY, offset=(35, 0, 0))


# --- export --------------------------------------------------------------------------------------


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_export_round_trips_through_ome_zarr_py_at_the_physical_position(
    volume: LabelVolume, tmp_path: Path, zarr_format: int
) -> None:
    labels = painted()
    v1 = volume.save(0, chunks_cut(labels, GEOMETRY))
    volume.save(1, {(0, 0, 0): np.zeros((16, 32, 32), np.uint32)})
    path = volume.export(tmp_path / "box.ome.zarr", 1, name="nuclei", zarr_format=zarr_format)  # type: ignore[arg-type]
    nodes = [n for n in Reader(parse_url(str(path)))() if n.load(Multiscales)]
    assert len(nodes) == 1 and nodes[0].load(Label) is not None
    read = np.asarray(nodes[0].data[0])
    assert read.dtype == np.uint32 and (read == labels).all()
    transforms = nodes[0].metadata["coordinateTransformations"][0]
    assert {t["type"]: t[t["type"]] for t in transforms} == {
        "scale": list(GEOMETRY.voxel_size_nm),
        "translation": list(GEOMETRY.origin_nm),
    }
    assert nodes[0].metadata["name"] == "nuclei"
    assert [a["unit"] for a in nodes[0].metadata["axes"]] == ["nanometer"] * 3
    # The pipeline's own opener sees the same voxels, voxel size and origin.
    level = open_spatial_level(path, 0, "labels")
    assert level.voxel_size_nm == GEOMETRY.voxel_size_nm
    assert level.translation_nm == GEOMETRY.origin_nm
    assert (np.asarray(open_volume(path, what="labels").array[:]) == labels).all()
    # The chunk files are the blobs, and only the non-zero chunks exist.
    chunk_files = {
        p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and p.name.isdigit()
    }
    assert chunk_files == {zarr_chunk_path(i, zarr_format) for i in v1.chunks}  # type: ignore[arg-type]
    if zarr_format == 3:
        ImageLabel.from_zarr(zarr.open_group(str(path), mode="r"))
    with pytest.raises(InvalidInputError, match="already exists"):
        volume.export(path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_serving_paths_map_to_chunks_or_nothing() -> None:
    files = ome_zarr_files(GEOMETRY, zarr_format=3)
    assert set(files) == {"zarr.json", "s0/zarr.json"}
    assert json.loads(files["s0/zarr.json"])["codecs"][1]["name"] == "zstd"
    assert set(ome_zarr_files(GEOMETRY, zarr_format=2)) == {".zgroup", ".zattrs", "s0/.zarray"}
    assert zarr_chunk_index("s0/c/2/0/1", GEOMETRY) == (2, 0, 1)
    assert zarr_chunk_index("s0/2/0/1", GEOMETRY, 2) == (2, 0, 1)
    for bad in (
        "s0/c/3/0/0",
        "s0/c/0/0",
        "s0/c/0/0/0/0",
        "s0/c/0/../0",
        "s0/c/-1/0/0",
        "x/c/0/0/0",
    ):
        assert zarr_chunk_index(bad, GEOMETRY) is None
    assert zarr_chunk_index("s0/c/0/0/0", GEOMETRY, 2) is None


def _ground_truth_box(
    tmp_path: Path, name: str, labels: np.ndarray, start: tuple[int, int, int]
) -> GroundTruthBox:
    """A box's labels saved as one version in its own blob store."""
    g = LabelGeometry(
        shape=labels.shape,
        chunk=(16, 32, 32),
        voxel_size_nm=GEOMETRY.voxel_size_nm,
        start=start,
        image_origin_nm=GEOMETRY.image_origin_nm,
    )
    blobs = BlobStore(tmp_path / name)
    version = version_next(version_empty(), 0, chunks_write(blobs, g, chunks_cut(labels, g)))
    return GroundTruthBox(name, g, version.chunks, blobs)


def test_training_export_is_what_the_pipeline_reads(tmp_path: Path) -> None:
    image_shape = (60, 100, 130)
    boxes = [
        _ground_truth_box(tmp_path, "north", painted(), (10, 20, 30)),
        _ground_truth_box(tmp_path, "south", np.full((50, 8, 90), 11, np.uint32), (5, 92, 40)),
    ]
    truth = np.zeros(image_shape, np.uint32)
    for box in boxes:
        g = box.geometry
        truth[tuple(slice(s, s + n) for s, n in zip(g.start, g.shape, strict=True))] = labels_read(
            box.blobs, g, box.chunks
        )
    out = export_training_labels(tmp_path / "export", image_shape, boxes, mask=True)
    volume = open_volume(out.labels, what="training labels")
    # The mask of annotated regions: 1 on the boxes' voxels (labelled or not), 0 elsewhere.
    assert out.mask is not None
    annotated = np.zeros(image_shape, np.uint8)
    for box in boxes:
        g = box.geometry
        annotated[tuple(slice(s, s + n) for s, n in zip(g.start, g.shape, strict=True))] = 1
    mask = open_volume(out.mask, what="mask")
    assert mask.voxel_size == GEOMETRY.voxel_size_nm
    assert (np.asarray(mask.array[:]) == annotated).all()
    assert volume.voxel_size == GEOMETRY.voxel_size_nm
    assert open_spatial_level(out.labels).translation_nm == GEOMETRY.image_origin_nm
    assert (np.asarray(volume.array[:]) == truth).all()
    read = boxes_read_csv(out.boxes)
    assert [(b.name, b.start, b.size) for b in read] == [
        (b.name, b.geometry.start, b.geometry.shape) for b in boxes
    ]
    # Only the image's 64^3 chunks holding labels are written: 5 of its 1 x 2 x 3.
    written = {
        tuple(int(p) for p in f.relative_to(out.labels / "s0" / "c").parts)
        for f in (out.labels / "s0" / "c").rglob("*")
        if f.is_file()
    }
    holding = {
        (z, y, x)
        for z in range(1)
        for y in range(2)
        for x in range(3)
        if truth[z * 64 : z * 64 + 64, y * 64 : y * 64 + 64, x * 64 : x * 64 + 64].any()
    }
    assert written == holding and len(holding) == 5
    overlapping = GroundTruthBox("overlap", boxes[0].geometry, {}, boxes[0].blobs)
    with pytest.raises(InvalidInputError, match="overlap"):
        export_training_labels(tmp_path / "again", image_shape, [boxes[0], overlapping])
    with pytest.raises(InvalidInputError, match="leaves the image"):
        export_training_labels(tmp_path / "small", (40, 40, 40), boxes)
    with pytest.raises(InvalidInputError, match="already exists"):
        export_training_labels(tmp_path / "export", image_shape, boxes)


def test_a_2d_images_training_export_is_2d(tmp_path: Path) -> None:
    """Campaigns give a 2D image a depth of one voxel; its export is 2D (y, x) with a
    ``name, x, y, w, h`` table, what training on the 2D image reads."""
    plane = np.zeros((1, 40, 50), np.uint32)
    plane[0, 5:20, 10:30] = 4
    box = _ground_truth_box(tmp_path, "only", plane, (0, 30, 20))
    out = export_training_labels(tmp_path / "export", (1, 100, 130), [box], mask=True, dims=2)
    volume = open_volume(out.labels, what="training labels")
    truth = np.zeros((100, 130), np.uint32)
    truth[30:70, 20:70] = plane[0]
    assert (np.asarray(volume.array[:]) == truth).all()
    assert volume.voxel_size == GEOMETRY.voxel_size_nm[1:]
    assert open_spatial_level(out.labels).translation_nm == GEOMETRY.image_origin_nm[1:]
    assert out.mask is not None
    assert int(np.asarray(open_volume(out.mask, what="mask").array[:]).sum()) == 40 * 50
    assert out.boxes.read_text().splitlines() == ["name,x,y,w,h", "only,20,30,50,40"]
    (read,) = box_table_read(out.boxes, shape=(100, 130))
    assert (read.name, read.start, read.size) == ("only", (30, 20), (40, 50))
    with pytest.raises(InvalidInputError, match="2D export"):
        export_training_labels(tmp_path / "deep", (2, 100, 130), [box], dims=2)


@pytest.mark.slow
def test_a_tiny_model_trains_on_an_exported_campaign(tmp_path: Path) -> None:
    """The export goes through the run's own readers into training (as ``data.labels/boxes``)."""
    from pipeline.ome_zarr_io import create_single_level_image
    from pipeline.synthetic import make_nuclei_volume
    from tests.label_training import train_tiny_model

    voxel = (200.0, 200.0, 200.0)
    image, labels = make_nuclei_volume((24, 56, 56), 10, seed=1, voxel_size_nm=voxel[0])
    image_path = tmp_path / "image.ome.zarr"
    create_single_level_image(
        image_path, image.shape, dtype=image.dtype, chunks=(24, 56, 56), voxel_size=voxel, name="i"
    )[:] = image
    boxes = []
    for name, (z, y, x, d, h, w) in {
        "north": (0, 0, 0, 24, 28, 56),
        "south-west": (0, 28, 0, 24, 28, 28),
        "south-east": (0, 28, 28, 24, 28, 28),
    }.items():
        g = LabelGeometry(shape=(d, h, w), chunk=(16, 16, 16), voxel_size_nm=voxel, start=(z, y, x))
        blobs = BlobStore(tmp_path / "blobs")
        cut = labels[z : z + d, y : y + h, x : x + w]
        version = version_next(version_empty(), 0, chunks_write(blobs, g, chunks_cut(cut, g)))
        boxes.append(GroundTruthBox(name, g, version.chunks, blobs))
    out = export_training_labels(tmp_path / "export", image.shape, boxes)
    train_tiny_model(image_path, out.labels, out.boxes, tmp_path / "run")


def test_command_line_lists_and_exports_versions(
    volume: LabelVolume, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main as cli_main

    labels = painted()
    volume.save(0, chunks_cut(labels, GEOMETRY))
    volume.save(1, {(0, 0, 0): np.zeros((16, 32, 32), np.uint32)})
    assert cli_main(["label-export", str(volume.root), "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[1].startswith("version 2: based on 1, 1 chunks changed")
    out = tmp_path / "v1.ome.zarr"
    assert cli_main(["label-export", str(volume.root), str(out), "--version", "1"]) == 0
    assert (np.asarray(open_volume(out).array[:]) == labels).all()
    assert cli_main(["label-export", str(volume.root), str(tmp_path / "x"), "--version", "7"]) == 2
    assert cli_main(["label-export", str(tmp_path / "none"), str(tmp_path / "y")]) == 2
    assert "holds no label volume" in capsys.readouterr().err
