"""Read a sharded multi-resolution mesh over HTTP the way Neuroglancer does: Range requests for
a shard index entry, the minishard index, the manifest, then each fragment just before it."""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Callable

import DracoPy
import numpy as np

from pipeline.precomputed_multires import Manifest
from pipeline.precomputed_sharding import ShardingSpec

# (url, request headers) -> (status, lower-cased response headers, body)
Get = Callable[[str, dict[str, str]], tuple[int, dict[str, str], bytes]]


def _range(get: Get, url: str, start: int, size: int) -> bytes:
    status, headers, body = get(url, {"Range": f"bytes={start}-{start + size - 1}"})
    assert status == 206, (url, status)
    assert headers["content-range"].startswith(f"bytes {start}-{start + size - 1}/")
    assert len(body) == size
    return body


def read_mesh_over_http(get: Get, mesh_url: str, segment_id: int) -> tuple[Manifest, list[int]]:
    """The manifest of ``segment_id`` and the face count of each fragment it lists."""
    status, _, body = get(mesh_url + "info", {})
    assert status == 200
    spec = ShardingSpec.from_json(json.loads(body)["sharding"])
    shard_url = mesh_url + spec.shard_name(spec.shard_of(segment_id))
    minishard = spec.minishard_of(segment_id)
    start, end = struct.unpack("<QQ", _range(get, shard_url, 16 * minishard, 16))
    base = spec.shard_index_bytes
    raw = _range(get, shard_url, base + start, end - start)
    if spec.minishard_index_encoding == "gzip":
        raw = gzip.decompress(raw)
    table = np.frombuffer(raw, dtype="<u8").reshape(3, -1)
    key, offset, found = 0, base, None
    for i in range(table.shape[1]):
        key += int(table[0, i])
        offset += int(table[1, i])
        if key == segment_id:
            found = (offset, int(table[2, i]))
        offset += int(table[2, i])
    assert found is not None, f"segment {segment_id} not in its minishard"
    manifest = Manifest.decode(_range(get, shard_url, *found))
    sizes = [int(s) for level in manifest.sizes for s in level]
    position = found[0] - sum(sizes)
    faces = []
    for size in sizes:
        if size:
            mesh = DracoPy.decode(_range(get, shard_url, position, size))
            faces.append(len(np.asarray(mesh.faces).reshape(-1, 3)))
        position += size
    return manifest, faces
