"""A curated copy of a segmentation: only the objects kept (e.g. proofreading's true positives).

Three parts, each with bounded memory whatever the volume or object count:

- :func:`curate_labels`: an OME-Zarr label image (NGFF 0.4 or 0.5, every pyramid level) copied
  with every id outside ``keep`` set to 0. The metadata (``zarr.json`` / ``.zattrs`` /
  ``.zarray``) is copied as it is, so codecs, chunking, sharding, axes and scales stay those of
  the source; the voxels go block by block (one storage unit, a shard or a chunk, at a time)
  through ``fastremap.mask_except``. Blocks left all zero are not written (absent = fill value).
- :func:`curate_meshes`: the objects' precomputed meshes copied without decoding: sharded
  multi-resolution meshes by their stored bytes (manifest and Draco fragments) into new shard
  files, legacy meshes file by file. Re-meshing with zmesh would give the same surfaces at the
  cost of a pass over the voxels and the simplification; copying is exact and cheaper.
- the segment properties restricted to the kept objects (every property, any type), plus an
  optional tags property (the verdicts), and the meshing step's morphometrics table
  (``morphometrics.csv`` / ``.parquet``: surface areas, which only the meshes give) restricted
  to them, so that the curated layer's detections table has the source's surface areas.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastremap
import numpy as np
import zarr

from pipeline.errors import InvalidInputError
from pipeline.ome_zarr_io import open_multiscale
from pipeline.precomputed import (
    MESH_INFO_TYPE,
    TagsProperty,
    fragment_name,
    manifest_name,
    payload_subset,
    payload_with_tags,
    read_segment_properties_payload,
    segment_properties_file,
    write_json_atomically,
)
from pipeline.precomputed_multires import MULTIRES_INFO_TYPE
from pipeline.precomputed_sharding import ShardingSpec, ShardWriter, read_sharded
from pipeline.progress import ProgressCallback

METADATA_NAMES = frozenset({"zarr.json", ".zattrs", ".zarray", ".zgroup", ".zmetadata"})
# Voxels read per block at most (a block is a whole number of storage units): 64 Mi voxels.
MAX_BLOCK_VOXELS = 64 * 1024 * 1024


def _noop(stage: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class CurateResult:
    """What a curation wrote: objects kept (and found), voxels blocks written, meshes copied."""

    kept_ids: list[int]
    blocks_total: int
    blocks_written: int
    meshes_copied: int


def keep_array(keep: Collection[int]) -> np.ndarray:
    """The ids to keep as a sorted uint64 array (0, the background, is never an object)."""
    ids: np.ndarray = np.unique(np.asarray([int(k) for k in keep], dtype=np.uint64))
    kept: np.ndarray = ids[ids != 0]
    return kept


def _copy_metadata(src: Path, dst: Path) -> None:
    """Copy the Zarr metadata files of ``src`` (a group and its arrays), no chunks."""
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        # Chunk directories (v3 "c", v2 nested numbers) hold no metadata: skip them.
        dirs[:] = [
            d for d in dirs if (d != "c" and not d.isdigit()) or _has_metadata(Path(root) / d)
        ]
        for name in files:
            if name in METADATA_NAMES:
                (dst / rel).mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(root) / name, dst / rel / name)


def _has_metadata(path: Path) -> bool:
    return any((path / name).is_file() for name in METADATA_NAMES)


def _storage_unit(array: Any) -> tuple[int, ...]:
    shards = getattr(array, "shards", None)
    return tuple(int(n) for n in (shards or array.chunks))


def block_shape(array_shape: Sequence[int], unit: Sequence[int], max_voxels: int) -> list[int]:
    """A block of whole storage units, grown along the last axes first, at most ``max_voxels``
    (at least one unit)."""
    block = list(unit)
    for axis in reversed(range(len(block))):
        while (
            block[axis] < array_shape[axis]
            and math.prod(block) * 2 <= max_voxels
            and block[axis] * 2 <= max(array_shape[axis], unit[axis])
        ):
            block[axis] *= 2
    return block


def _blocks(shape: Sequence[int], block: Sequence[int]) -> Iterator[tuple[slice, ...]]:
    ranges = [range(0, n, b) for n, b in zip(shape, block, strict=True)]
    for starts in itertools.product(*ranges):
        yield tuple(slice(s, min(s + b, n)) for s, b, n in zip(starts, block, shape, strict=True))


def curate_labels(
    src: Path,
    dst: Path,
    keep: Collection[int],
    *,
    progress: ProgressCallback = _noop,
    max_block_voxels: int = MAX_BLOCK_VOXELS,
) -> tuple[int, int]:
    """Write label image ``src`` to ``dst`` (which must not exist) keeping only ``keep``'s ids,
    every pyramid level; returns (blocks read, blocks written)."""
    src, dst = Path(src), Path(dst)
    if os.path.lexists(dst):
        raise InvalidInputError(f"{dst} exists already")
    multiscale = open_multiscale(src)
    ids = keep_array(keep)
    keep_list = ids.tolist()
    _copy_metadata(src, dst)
    plans = []
    for level in multiscale.levels:
        unit = _storage_unit(level)
        block = block_shape(level.shape, unit, max_block_voxels)
        plans.append(
            (
                level,
                block,
                math.prod(math.ceil(n / b) for n, b in zip(level.shape, block, strict=True)),
            )
        )
    total = sum(count for _, _, count in plans)
    done = written = 0
    progress("labels", 0, total)
    for level, block, _ in plans:
        target = zarr.open_array(store=str(dst / level.path), mode="r+")
        if target.shape != level.shape:
            raise InvalidInputError(f"copied metadata of {level.path} does not match its source")
        for where in _blocks(level.shape, block):
            data = np.asarray(level[where])
            if data.any():
                if len(keep_list):
                    data = fastremap.mask_except(data, keep_list, in_place=True)
                else:
                    data[...] = 0
                if data.any():
                    target[where] = data
                    written += 1
            done += 1
            progress("labels", done, total)
    return total, written


def _mesh_kind(mesh_dir: Path) -> tuple[str, dict[str, Any]]:
    try:
        info = json.loads((mesh_dir / "info").read_text())
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"{mesh_dir}/info is not readable: {error}") from None
    kind = info.get("@type") if isinstance(info, dict) else None
    if kind not in (MULTIRES_INFO_TYPE, MESH_INFO_TYPE):
        raise InvalidInputError(f"{mesh_dir}/info: unknown mesh type {kind!r}")
    return str(kind), info


def curate_meshes(
    src: Path,
    dst: Path,
    keep: Collection[int],
    *,
    tags: TagsProperty | None = None,
    tags_of: Mapping[int, str] | None = None,
    progress: ProgressCallback = _noop,
) -> int:
    """Copy the meshes of ``keep``'s objects from mesh directory ``src`` to ``dst`` (which must
    not exist) with their segment properties (only theirs); returns how many meshes were
    copied (an id without a mesh is skipped). ``tags``, when given, is put into the properties
    (its values indexed like the *kept* ids in the properties' order: build it with
    ``tags_of`` instead, a tag name per id, to let this function order it)."""
    src, dst = Path(src), Path(dst)
    if os.path.lexists(dst):
        raise InvalidInputError(f"{dst} exists already")
    kind, info = _mesh_kind(src)
    ids = keep_array(keep).tolist()
    dst.mkdir(parents=True)
    copied = 0
    progress("meshes", 0, len(ids))
    if kind == MULTIRES_INFO_TYPE:
        spec = ShardingSpec.from_json(info.get("sharding"))
        with ShardWriter(dst, spec) as shards:
            for n, segment_id in enumerate(ids, 1):
                found = read_sharded(src, spec, int(segment_id))
                if found is not None:
                    from pipeline.precomputed_multires import Manifest

                    manifest = Manifest.decode(found.data)
                    size = int(sum(int(s.sum()) for s in manifest.sizes))
                    start = found.offset - size
                    if start < spec.shard_index_bytes:
                        raise InvalidInputError(f"mesh of segment {segment_id} is damaged")
                    with found.shard_path.open("rb") as handle:
                        handle.seek(start)
                        fragments = handle.read(size)
                    shards.add(int(segment_id), found.data, prefix=fragments)
                    copied += 1
                progress("meshes", n, len(ids))
    else:
        for n, segment_id in enumerate(ids, 1):
            manifest_path = src / manifest_name(int(segment_id))
            if manifest_path.is_file():
                names = json.loads(manifest_path.read_text()).get("fragments", [])
                for name in names:
                    if "/" in str(name) or str(name) in ("", ".", ".."):
                        raise InvalidInputError(f"mesh manifest of {segment_id} names {name!r}")
                    shutil.copy2(src / str(name), dst / str(name))
                shutil.copy2(manifest_path, dst / manifest_path.name)
                copied += 1
            elif (src / fragment_name(int(segment_id))).is_file():
                raise InvalidInputError(f"mesh of segment {segment_id} has no manifest")
            progress("meshes", n, len(ids))
    payload = read_segment_properties_payload(src)
    properties = segment_properties_file(src)
    if payload is not None and properties is not None:
        subset = payload_subset(payload, ids)
        if tags_of is not None and tags is not None:
            from pipeline.precomputed import tags_property_for

            kept_order = [int(i) for i in subset["inline"]["ids"]]
            tags = tags_property_for(
                kept_order,
                tags_of,
                tags.tags,
                property_id=tags.id,
                description=tags.description,
                tag_descriptions=tags.tag_descriptions,
            )
        if tags is not None:
            subset = payload_with_tags(subset, tags)
        write_json_atomically(dst / properties.relative_to(src), subset)
    curate_morphometrics(src, dst, ids)
    write_json_atomically(dst / "info", info)
    return copied


MORPHOMETRICS_FILES = ("morphometrics.parquet", "morphometrics.csv")


def curate_morphometrics(src: Path, dst: Path, keep: Collection[int]) -> int:
    """Copy mesh directory ``src``'s morphometrics table (each of ``morphometrics.parquet`` and
    ``morphometrics.csv`` that exists, same format) to ``dst`` with only ``keep``'s rows, each
    file written atomically; returns the rows kept (0 when there is no table)."""
    import pandas as pd

    ids = keep_array(keep).astype(np.int64)
    rows = 0
    for name in MORPHOMETRICS_FILES:
        path = Path(src) / name
        if not path.is_file():
            continue
        try:
            table = pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path)
            kept = table[table["id"].astype(np.int64).isin(ids)].reset_index(drop=True)
        except (ValueError, KeyError, OSError) as error:
            raise InvalidInputError(f"{path} is not readable: {type(error).__name__}") from None
        target = Path(dst) / name
        partial = target.with_name(f".{name}.partial")
        if name.endswith(".parquet"):
            kept.to_parquet(partial, index=False)
        else:
            kept.to_csv(partial, index=False)
        os.replace(partial, target)
        rows = len(kept)
    return rows


def curate(
    labels: Path,
    labels_out: Path,
    keep: Collection[int],
    *,
    meshes: Path | None = None,
    meshes_out: Path | None = None,
    tags: TagsProperty | None = None,
    tags_of: Mapping[int, str] | None = None,
    progress: ProgressCallback = _noop,
    max_block_voxels: int = MAX_BLOCK_VOXELS,
) -> CurateResult:
    """Labels and (when given) meshes of only ``keep``'s objects; see the module docstring."""
    total, written = curate_labels(
        labels, labels_out, keep, progress=progress, max_block_voxels=max_block_voxels
    )
    copied = 0
    if meshes is not None:
        if meshes_out is None:
            raise InvalidInputError("meshes_out is needed with meshes")
        copied = curate_meshes(
            meshes, meshes_out, keep, tags=tags, tags_of=tags_of, progress=progress
        )
    return CurateResult(keep_array(keep).tolist(), total, written, copied)


def add_label_name(image_store: Path, name: str) -> None:
    """List label image ``name`` in ``<image_store>/labels``'s metadata (NGFF ``labels``), written
    atomically (the group is made when the image has none); nothing to do when it is listed
    already."""
    labels_dir = Path(image_store) / "labels"
    v3 = labels_dir / "zarr.json"
    if v3.is_file():
        meta = json.loads(v3.read_text())
        ome = meta.setdefault("attributes", {}).setdefault("ome", {})
        names = ome.setdefault("labels", [])
        if name not in names:
            names.append(name)
            write_json_atomically(v3, meta)
        return
    v2 = labels_dir / ".zattrs"
    if v2.is_file() or (labels_dir / ".zgroup").is_file():
        attrs = json.loads(v2.read_text()) if v2.is_file() else {}
        names = attrs.setdefault("labels", [])
        if name not in names:
            names.append(name)
            write_json_atomically(v2, attrs)
        return
    image_v3 = Path(image_store) / "zarr.json"
    if image_v3.is_file():  # an image without labels yet: its first label image
        version = json.loads(image_v3.read_text()).get("attributes", {}).get("ome", {})
        ome = {"version": version.get("version", "0.5"), "labels": [name]}
        labels_dir.mkdir(exist_ok=True)
        group = {"zarr_format": 3, "node_type": "group", "attributes": {"ome": ome}}
        write_json_atomically(v3, group)
        return
    if (Path(image_store) / ".zattrs").is_file():
        labels_dir.mkdir(exist_ok=True)
        write_json_atomically(labels_dir / ".zgroup", {"zarr_format": 2})
        write_json_atomically(v2, {"labels": [name]})
        return
    raise InvalidInputError(f"{image_store} is not an OME-Zarr image")


def remove_label_name(image_store: Path, name: str) -> None:
    """Undo :func:`add_label_name` (for a publication that is rolled back)."""
    labels_dir = Path(image_store) / "labels"
    for meta_name, nested in (("zarr.json", True), (".zattrs", False)):
        path = labels_dir / meta_name
        if path.is_file():
            meta = json.loads(path.read_text())
            holder = meta.get("attributes", {}).get("ome", {}) if nested else meta
            names = holder.get("labels", [])
            if name in names:
                names.remove(name)
                write_json_atomically(path, meta)
            return
