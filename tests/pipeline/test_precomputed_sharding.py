"""Neuroglancer's uint64 sharded format: hash, bit layout, and shard files decoded independently."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import InvalidInputError
from pipeline.precomputed_sharding import (
    ShardingSpec,
    ShardWriter,
    hash_keys,
    murmurhash3_x86_128_low64,
    read_sharded,
    sharded_keys,
    sharding_for,
    write_fixed_size_shards,
    write_shards,
)

# Computed with Neuroglancer 2.41.2's murmurHash3_x86_128Hash64Bits_Bigint(0, id), the hash its
# sharded reader uses (src/util/hash.ts), run in Node.
NEUROGLANCER_HASHES = {
    0: 5148371408780832321,
    1: 16770674756601302682,
    2: 15433726874232110938,
    42: 13982433266630259834,
    300: 10283220358353951676,
    123456789: 1325596490455455783,
    2**64 - 1: 6291360166951214362,
}


def test_hash_matches_neuroglancer() -> None:
    for key, expected in NEUROGLANCER_HASHES.items():
        assert murmurhash3_x86_128_low64(key) == expected


def test_shard_and_minishard_come_from_the_hash_bits() -> None:
    spec = ShardingSpec(shard_bits=3, minishard_bits=2, preshift_bits=1)
    for key in (0, 7, 42, 300, 2**40 + 5):
        hashed = murmurhash3_x86_128_low64(key >> 1)
        assert spec.minishard_of(key) == hashed & 0b11
        assert spec.shard_of(key) == (hashed >> 2) & 0b111
    identity = ShardingSpec(shard_bits=4, minishard_bits=4, hash="identity")
    assert (identity.shard_of(0x1F3), identity.minishard_of(0x1F3)) == (0xF, 0x3)
    # "<shard>.shard": lowercase hex, zero-padded to ceil(shard_bits / 4) digits
    assert ShardingSpec(shard_bits=0).shard_name(0) == "0.shard"
    assert ShardingSpec(shard_bits=5).shard_name(10) == "0a.shard"
    assert ShardingSpec(shard_bits=12).shard_name(0xABC) == "abc.shard"


def test_spec_json_round_trip_and_validation() -> None:
    spec = ShardingSpec(shard_bits=2, minishard_bits=3, data_encoding="gzip")
    payload = spec.to_json()
    assert payload == {
        "@type": "neuroglancer_uint64_sharded_v1",
        "preshift_bits": 0,
        "hash": "murmurhash3_x86_128",
        "minishard_bits": 3,
        "shard_bits": 2,
        "minishard_index_encoding": "gzip",
        "data_encoding": "gzip",
    }
    assert ShardingSpec.from_json(payload) == spec
    bare = {k: v for k, v in payload.items() if not k.endswith("encoding")}
    assert ShardingSpec.from_json(bare).data_encoding == "raw"  # the spec's default
    with pytest.raises(InvalidInputError, match="hash"):
        ShardingSpec.from_json({**payload, "hash": "md5"})
    with pytest.raises(InvalidInputError, match="shard_bits"):
        ShardingSpec(shard_bits=-1)
    with pytest.raises(InvalidInputError, match="lacks"):
        ShardingSpec.from_json({"@type": "neuroglancer_uint64_sharded_v1"})


def test_sharding_for_keeps_minishards_and_shards_bounded() -> None:
    assert sharding_for(300) == ShardingSpec(shard_bits=0, minishard_bits=0)
    large = sharding_for(80_000)
    assert (large.shard_bits, large.minishard_bits) == (3, 5)
    per_minishard = 80_000 / 2 ** (large.shard_bits + large.minishard_bits)
    assert per_minishard <= 512


def decode_shard(path: Path, spec: ShardingSpec) -> dict[int, tuple[int, bytes]]:
    """Decode a whole shard file straight from the specification (no code shared with the
    writer): key -> (start offset, value bytes)."""
    data = path.read_bytes()
    n = 1 << spec.minishard_bits
    index_end = 16 * n
    out: dict[int, tuple[int, bytes]] = {}
    for minishard in range(n):
        start, end = struct.unpack_from("<QQ", data, 16 * minishard)
        if start == end:
            continue
        raw = data[index_end + start : index_end + end]
        if spec.minishard_index_encoding == "gzip":
            raw = gzip.decompress(raw)
        table = np.frombuffer(raw, dtype="<u8").reshape(3, -1)
        key, offset = 0, index_end
        for i in range(table.shape[1]):
            key += int(table[0, i])
            offset += int(table[1, i])
            size = int(table[2, i])
            value = data[offset : offset + size]
            if spec.data_encoding == "gzip":
                value = gzip.decompress(value)
            assert spec.shard_of(key) == int(path.stem, 16) and spec.minishard_of(key) == minishard
            out[key] = (offset, value)
            offset += size
    return out


@pytest.mark.parametrize(
    "spec",
    [
        ShardingSpec(),
        ShardingSpec(shard_bits=2, minishard_bits=3),
        ShardingSpec(shard_bits=1, minishard_bits=1, hash="identity", data_encoding="gzip"),
        ShardingSpec(minishard_bits=2, minishard_index_encoding="raw", preshift_bits=3),
    ],
)
def test_written_shards_decode_per_the_spec(tmp_path: Path, spec: ShardingSpec) -> None:
    tmp_path = tmp_path / "mesh"
    rng = np.random.default_rng(0)
    values: dict[int, bytes | tuple[bytes, bytes]] = {}
    for key in [1, 2, 3, 17, 300, 2**33 + 1, 2**64 - 2, *rng.integers(4, 10**6, 60).tolist()]:
        value = rng.bytes(int(rng.integers(0, 200)))
        values[key] = (rng.bytes(int(rng.integers(0, 50))), value) if key % 3 == 0 else value
    written = write_shards(tmp_path, spec, values)
    assert written and all(p.suffix == ".shard" for p in written)
    assert not [p for p in tmp_path.iterdir() if p.suffix != ".shard"], "no spill files left"
    decoded: dict[int, tuple[int, bytes]] = {}
    for path in written:
        decoded.update(decode_shard(path, spec))
    assert set(decoded) == set(values)
    for key, item in values.items():
        prefix, value = (b"", item) if isinstance(item, bytes) else item
        offset, got = decoded[key]
        assert got == value
        shard_bytes = (tmp_path / spec.shard_name(spec.shard_of(key))).read_bytes()
        # the unindexed prefix sits right before the value (raw data only)
        if spec.data_encoding == "raw" and prefix:
            assert shard_bytes[offset - len(prefix) : offset] == prefix
        found = read_sharded(tmp_path, spec, key)
        assert found is not None and found.data == value and found.offset == offset
    assert read_sharded(tmp_path, spec, 5) is None
    assert sorted(sharded_keys(tmp_path, spec)) == sorted(values)


def test_duplicate_and_invalid_keys_are_refused(tmp_path: Path) -> None:
    mesh_dir = tmp_path / "mesh"
    writer = ShardWriter(mesh_dir, ShardingSpec())
    with pytest.raises(InvalidInputError, match="twice"), writer:
        writer.add(1, b"a")
        writer.add(1, b"b")
    with pytest.raises(InvalidInputError, match="uint64"):
        write_shards(mesh_dir, ShardingSpec(), {2**64: b"x"})
    assert not list(mesh_dir.iterdir()), "a failed write leaves nothing behind"


@pytest.mark.parametrize(
    "spec",
    [
        ShardingSpec(),
        ShardingSpec(shard_bits=3, minishard_bits=5),
        ShardingSpec(
            shard_bits=2, minishard_bits=1, preshift_bits=2, minishard_index_encoding="raw"
        ),
        ShardingSpec(shard_bits=4, minishard_bits=2, hash="identity"),
    ],
)
def test_fixed_size_writer_writes_the_same_files_as_the_shard_writer(
    tmp_path: Path, spec: ShardingSpec
) -> None:
    rng = np.random.default_rng(5)
    keys = rng.choice(2**40, size=3000, replace=False).astype(np.uint64)
    keys[:2] = (0, 2**64 - 1)
    values = rng.integers(0, 256, size=(len(keys), 36), dtype=np.uint8)
    write_shards(
        tmp_path / "reference",
        spec,
        {int(k): v.tobytes() for k, v in zip(keys, values, strict=True)},
    )
    written = write_fixed_size_shards(tmp_path / "fixed", spec, keys, values)
    reference = sorted((tmp_path / "reference").glob("*.shard"))
    assert [p.name for p in written] == [p.name for p in reference]
    for ours, theirs in zip(written, reference, strict=True):
        assert ours.read_bytes() == theirs.read_bytes()
    found = read_sharded(tmp_path / "fixed", spec, int(keys[7]))
    assert found is not None and found.data == values[7].tobytes()
    # Hashes given by the caller are used as they are.
    hashed = hash_keys(spec, keys)
    assert hashed[5] == spec.hashed(int(keys[5]))
    again = write_fixed_size_shards(tmp_path / "again", spec, keys, values, hashed=hashed)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]


def test_fixed_size_writer_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="distinct"):
        write_fixed_size_shards(tmp_path, ShardingSpec(), [1, 1], np.zeros((2, 4), np.uint8))
    with pytest.raises(InvalidInputError, match="one row"):
        write_fixed_size_shards(tmp_path, ShardingSpec(), [1, 2], np.zeros((3, 4), np.uint8))
    with pytest.raises(InvalidInputError, match="raw"):
        write_fixed_size_shards(
            tmp_path, ShardingSpec(data_encoding="gzip"), [1], np.zeros((1, 4), np.uint8)
        )
    assert write_fixed_size_shards(tmp_path / "none", ShardingSpec(), [], np.zeros((0, 4))) == []
