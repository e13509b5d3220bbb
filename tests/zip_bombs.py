"""Zip bombs for tests, generated in a blink: never compressing, holding or writing the bytes."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def zeros_deflate_zip(path: Path, name: str, expanded: int, declared: int | None = None) -> Path:
    """A zip whose one entry inflates to ``expanded`` zero bytes, built without ever holding or
    compressing them: a full-flushed deflate block of 1 MiB of zeros, repeated. ``declared``
    forges the sizes in both headers (the real CRC is kept, so only the size lies)."""
    block = 1 << 20
    assert expanded % block == 0
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    unit = packer.compress(bytes(block)) + packer.flush(zlib.Z_FULL_FLUSH)
    tail = packer.flush()
    crc = 0
    zero_block = bytes(block)
    for _ in range(expanded // block):
        crc = zlib.crc32(zero_block, crc)
    compressed = len(unit) * (expanded // block) + len(tail)
    size = expanded if declared is None else declared
    name_bytes = name.encode()
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, compressed, size, len(name_bytes), 0
    )
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, compressed, size,
        len(name_bytes), 0, 0, 0, 0, 0o100644 << 16, 0,
    )  # fmt: skip
    with path.open("wb") as out:
        out.write(local + name_bytes)
        for _ in range(expanded // block):
            out.write(unit)
        out.write(tail)
        central_offset = out.tell()
        out.write(central + name_bytes)
        end = struct.pack(
            "<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central) + len(name_bytes), central_offset, 0
        )
        out.write(end)
    return path
