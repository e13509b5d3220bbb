"""A box's label version as OME-Zarr: metadata for serving it, exports for readers and training.

A version's blobs already are Zarr chunk files (:mod:`pipeline.label_store`), so an OME-Zarr
label image of a version is a few metadata documents plus those bytes under their chunk keys.
:func:`ome_zarr_files` gives the documents and :func:`zarr_chunk_index` maps a requested path
to a chunk, so the site can serve any version to Neuroglancer (``zarr3://`` for NGFF 0.5,
``zarr2://`` for 0.4) without writing anything; :func:`export_ome_zarr` writes the same files
into a directory. Scale and translation put the box at its physical position.

:func:`export_training_labels` writes what ``pipeline`` training reads (``data.labels`` and
``data.boxes`` of :mod:`pipeline.config`): one label image the shape of the whole image, holding
each box's labels at its voxels (only their chunks written), and the boxes table; on request a
uint8 mask image of the annotated regions (1 inside a box, where 0 means background; 0 outside,
where nothing is known), for readers that take a mask rather than a boxes table.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import InvalidInputError
from pipeline.label_store import (
    LABEL_DTYPE,
    ZSTD_LEVEL,
    BlobStore,
    ChunkIndex,
    LabelGeometry,
    labels_read,
)

ZarrFormat = Literal[2, 3]
LEVEL_PATH = "s0"
UNIT = "nanometer"
AXES = ("z", "y", "x")
TRAINING_LABELS = "labels.ome.zarr"
TRAINING_BOXES = "boxes.csv"
TRAINING_MASK = "mask.ome.zarr"


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=1).encode()


def _multiscales(geometry: LabelGeometry, name: str, version: str | None) -> list[dict[str, Any]]:
    entry: dict[str, Any] = {
        "name": name,
        "axes": [{"name": a, "type": "space", "unit": UNIT} for a in AXES],
        "datasets": [
            {
                "path": LEVEL_PATH,
                "coordinateTransformations": [
                    {"type": "scale", "scale": list(geometry.voxel_size_nm)},
                    {"type": "translation", "translation": list(geometry.origin_nm)},
                ],
            }
        ],
    }
    return [entry if version is None else {**entry, "version": version}]


def ome_zarr_files(
    geometry: LabelGeometry, *, name: str = "labels", zarr_format: ZarrFormat = 3
) -> dict[str, bytes]:
    """The metadata documents of the box's OME-Zarr label image, by path inside the store.

    Zarr v3 gives NGFF 0.5 (``zarr.json`` of group and array), v2 NGFF 0.4 (``.zgroup``,
    ``.zattrs``, ``.zarray``); both name the chunks' codec (zstd) and ``/``-separated keys.
    """
    shape, chunks = list(geometry.shape), list(geometry.chunk)
    if zarr_format == 3:
        ome = {
            "version": "0.5",
            "multiscales": _multiscales(geometry, name, None),
            "image-label": {"version": "0.5"},
        }
        array = {
            "zarr_format": 3,
            "node_type": "array",
            "shape": shape,
            "data_type": "uint32",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0,
            "codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "zstd", "configuration": {"level": ZSTD_LEVEL, "checksum": False}},
            ],
            "attributes": {},
            "dimension_names": list(AXES),
        }
        return {
            "zarr.json": _json(
                {"zarr_format": 3, "node_type": "group", "attributes": {"ome": ome}}
            ),
            f"{LEVEL_PATH}/zarr.json": _json(array),
        }
    if zarr_format == 2:
        attrs = {
            "multiscales": _multiscales(geometry, name, "0.4"),
            "image-label": {"version": "0.4"},
        }
        zarray = {
            "zarr_format": 2,
            "shape": shape,
            "chunks": chunks,
            "dtype": LABEL_DTYPE.str,
            "compressor": {"id": "zstd", "level": ZSTD_LEVEL},
            "fill_value": 0,
            "order": "C",
            "filters": None,
            "dimension_separator": "/",
        }
        return {
            ".zgroup": _json({"zarr_format": 2}),
            ".zattrs": _json(attrs),
            f"{LEVEL_PATH}/.zarray": _json(zarray),
        }
    raise InvalidInputError(f"zarr_format must be 2 or 3, not {zarr_format!r}")


def neuroglancer_source(url: str) -> str:
    """Neuroglancer's data source for a label image served by :func:`ome_zarr_files` at ``url``.

    NGFF 0.5 (``zarr3://``: one ``zarr.json`` per group and array). With ``zarr2://`` Neuroglancer
    also probes files a 0.4 label image does not have (a ``.zarray`` at the group, ``s0/.zattrs``):
    404s in the console of every page that shows one.
    """
    return f"zarr3://{url}"


def zarr_chunk_path(index: ChunkIndex, zarr_format: ZarrFormat = 3) -> str:
    """The store path of chunk ``index``'s file (``s0/c/z/y/x`` in v3, ``s0/z/y/x`` in v2)."""
    keys = "/".join(str(i) for i in index)
    return f"{LEVEL_PATH}/c/{keys}" if zarr_format == 3 else f"{LEVEL_PATH}/{keys}"


def zarr_chunk_index(
    path: str, geometry: LabelGeometry, zarr_format: ZarrFormat = 3
) -> ChunkIndex | None:
    """The chunk a requested store path names, or None when it names no chunk of the box."""
    prefix = f"{LEVEL_PATH}/c/" if zarr_format == 3 else f"{LEVEL_PATH}/"
    if not path.startswith(prefix):
        return None
    parts = path[len(prefix) :].split("/")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) < 10 for p in parts):
        return None
    index = (int(parts[0]), int(parts[1]), int(parts[2]))
    if any(i >= n for i, n in zip(index, geometry.grid, strict=True)):
        return None
    return index


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _publish(tmp: Path, path: Path) -> None:
    try:
        os.rename(tmp, path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InvalidInputError(f"{path} already exists: export into a new path") from None


def export_ome_zarr(
    blobs: BlobStore,
    geometry: LabelGeometry,
    chunk_map: Mapping[ChunkIndex, str],
    path: Path,
    *,
    name: str = "labels",
    zarr_format: ZarrFormat = 3,
) -> Path:
    """Write a version (its ``chunks`` map) as an OME-Zarr label image at ``path`` (new).

    The chunk files are the blobs' bytes, checked as they are read; the store is built beside
    ``path`` and renamed into place, so a reader never sees half of it.
    """
    path = Path(path)
    if path.exists():
        raise InvalidInputError(f"{path} already exists: export into a new path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        for rel, data in ome_zarr_files(geometry, name=name, zarr_format=zarr_format).items():
            _write_file(tmp / rel, data)
        for index, key in sorted(chunk_map.items()):
            geometry.index_check(index)
            _write_file(tmp / zarr_chunk_path(index, zarr_format), blobs.get(key))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish(tmp, path)
    return path


@dataclass(frozen=True)
class GroundTruthBox:
    """One box's approved labels for :func:`export_training_labels`."""

    name: str
    geometry: LabelGeometry
    chunks: Mapping[ChunkIndex, str]  # the chosen version's map
    blobs: BlobStore


@dataclass(frozen=True)
class TrainingExport:
    """What :func:`export_training_labels` wrote: ``data.labels`` and ``data.boxes``."""

    labels: Path
    boxes: Path
    mask: Path | None = None  # the annotated regions, when asked for


def _boxes_check(image_shape: tuple[int, int, int], boxes: Sequence[GroundTruthBox]) -> None:
    if not boxes:
        raise InvalidInputError("no boxes to export")
    first = boxes[0].geometry
    names: set[str] = set()
    for box in boxes:
        g = box.geometry
        if not box.name or box.name in names or any(c in box.name for c in ',"\n\r'):
            raise InvalidInputError(f"box name {box.name!r} is empty, repeated or not CSV-safe")
        names.add(box.name)
        if g.voxel_size_nm != first.voxel_size_nm or g.image_origin_nm != first.image_origin_nm:
            raise InvalidInputError(f"box {box.name} lies on another image grid than the others")
        if any(s + n > m for s, n, m in zip(g.start, g.shape, image_shape, strict=True)):
            raise InvalidInputError(f"box {box.name} leaves the image of shape {image_shape}")
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            ga, gb = a.geometry, b.geometry
            if all(
                sa < sb + nb and sb < sa + na
                for sa, na, sb, nb in zip(ga.start, ga.shape, gb.start, gb.shape, strict=True)
            ):
                raise InvalidInputError(f"boxes {a.name} and {b.name} overlap: export one of them")


def export_training_labels(
    out_dir: Path,
    image_shape: Sequence[int],
    boxes: Sequence[GroundTruthBox],
    *,
    chunk: int = 64,
    mask: bool = False,
    dims: int = 3,
) -> TrainingExport:
    """Write ``out_dir`` (new) with ``labels.ome.zarr`` and ``boxes.csv`` for training.

    The label image has the image's shape, voxel size and origin (NGFF 0.5); voxels outside
    the boxes are 0 and only chunks holding labels are written. Boxes must not overlap.
    ``boxes.csv`` has ``name, x, y, z, w, h, d`` in voxels, as ``boxes_read_csv`` reads it.
    With ``mask``, also ``mask.ome.zarr``: uint8, 1 on every box's voxels, same grid (only the
    chunks the boxes touch are written).

    With ``dims=2`` the image is 2D (``image_shape`` and the boxes keep a depth of one, as the
    label store does): the files are 2D (y, x) and the table ``name, x, y, w, h``, which is
    what training on the 2D image itself reads.
    """
    from pipeline.ome_zarr_io import create_single_level_image

    shape = tuple(int(n) for n in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InvalidInputError(f"the image shape must be three positive sizes, not {shape}")
    if dims not in (2, 3) or (dims == 2 and shape[0] != 1):
        raise InvalidInputError(f"a {dims}D export of an image of shape {shape}")
    image = (shape[0], shape[1], shape[2])
    _boxes_check(image, boxes)
    flat = dims == 2
    keep = 1 if flat else 0  # the written files' axes of (z, y, x) start at keep
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise InvalidInputError(f"{out_dir} already exists: export into a new directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        first = boxes[0].geometry
        shape_written = image[keep:]

        def label_image(name: str, title: str, dtype: Any) -> Any:
            return create_single_level_image(
                tmp / name,
                shape_written,
                dtype=dtype,
                chunks=tuple(min(chunk, n) for n in shape_written),
                voxel_size=first.voxel_size_nm[keep:],
                translation=first.image_origin_nm[keep:],
                unit=UNIT,
                name=title,
                label=True,
            )

        array = label_image(TRAINING_LABELS, "ground truth", LABEL_DTYPE)
        regions = [
            tuple(slice(s, s + n) for s, n in zip(b.geometry.start, b.geometry.shape, strict=True))
            for b in boxes
        ]
        for box, region in zip(boxes, regions, strict=True):
            labels = labels_read(box.blobs, box.geometry, box.chunks)
            array[region[keep:]] = labels[0] if flat else labels
        if mask:
            annotated = label_image(TRAINING_MASK, "annotated regions", "uint8")
            for region in regions:
                annotated[region[keep:]] = 1
        with open(tmp / TRAINING_BOXES, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(
                ["name", "x", "y", "w", "h"] if flat else ["name", "x", "y", "z", "w", "h", "d"]
            )
            for box in boxes:
                (z, y, x), (d, h, w) = box.geometry.start, box.geometry.shape
                writer.writerow([box.name, x, y, w, h] if flat else [box.name, x, y, z, w, h, d])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish(tmp, out_dir)
    return TrainingExport(
        labels=out_dir / TRAINING_LABELS,
        boxes=out_dir / TRAINING_BOXES,
        mask=out_dir / TRAINING_MASK if mask else None,
    )
