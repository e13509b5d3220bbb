"""HTTP file responses for dataset stores: safe paths, content types, ETag, conditional GET, Range.

The ETag has nginx's format (``"<mtime hex>-<size hex>"``) so a browser cache stays valid when a
deployment switches between the embedded server and nginx.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase

# Zarr / OME-Zarr / Neuroglancer precomputed metadata names that hold JSON.
JSON_NAMES = frozenset({"zarr.json", ".zattrs", ".zarray", ".zgroup", ".zmetadata", "info"})
# Legacy precomputed mesh manifests are named "<segment id>:<lod>".
_MANIFEST_RE = re.compile(r"^[0-9]+:[0-9]+$")
_RANGE_RE = re.compile(r"^bytes=\s*(\d*)\s*-\s*(\d*)\s*$")
BLOCK_SIZE = 256 * 1024


def store_path_segments(path: str) -> list[str] | None:
    """Split a URL path inside a store into segments, or None when it is not a safe path.

    The check is lexical on purpose: a dataset directory may symlink a store kept elsewhere
    (registered in place), so containment is decided by the names, not by ``realpath``.
    """
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return None
    segments = path.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            return None
    return segments


def content_type_for(name: str) -> str:
    """Content type of a store file from its base name."""
    if name in JSON_NAMES or name.endswith(".json") or _MANIFEST_RE.match(name):
        return "application/json"
    return "application/octet-stream"


def etag_for(st: os.stat_result) -> str:
    return f'"{int(st.st_mtime):x}-{st.st_size:x}"'


def http_date(timestamp: float) -> str:
    return formatdate(int(timestamp), usegmt=True)


def open_regular_file(path: Path) -> tuple[int, os.stat_result] | None:
    """Open ``path`` read-only if it is a regular file (following symlinks), else None.

    ``O_NONBLOCK`` keeps a FIFO planted in a store from blocking the worker.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


class FileSlice:
    """A read-only window ``[start, start + length)`` of an open file.

    It exposes ``fileno`` so gunicorn sends it with ``sendfile`` (it reads the offset from the
    descriptor and the length from Content-Length); other servers iterate ``read``.
    """

    def __init__(self, fd: int, start: int, length: int) -> None:
        self._file = os.fdopen(fd, "rb", buffering=0)
        self._end = start + length
        self._file.seek(start)
        self._pos = start
        self.mode = "rb"

    def fileno(self) -> int:
        return self._file.fileno()

    def read(self, size: int = -1) -> bytes:
        remaining = self._end - self._pos
        if remaining <= 0:
            return b""
        if size is None or size < 0 or size > remaining:
            size = remaining
        data = self._file.read(size)
        self._pos += len(data)
        return data

    def seekable(self) -> bool:
        # False keeps Django's FileResponse from measuring the file by reading it to the end;
        # seek() stays for socket.sendfile(), which positions the file itself.
        return False

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._pos = self._file.seek(offset, whence)
        return self._pos

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class ByteRange:
    start: int
    length: int


def parse_range(header: str, size: int) -> ByteRange | bool | None:
    """Parse a single ``bytes=`` range.

    Returns a ByteRange, None to serve the whole file (absent, malformed or multi-range header:
    RFC 9110 lets a server ignore Range), or False when the range is unsatisfiable (416).
    """
    match = _RANGE_RE.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0:
            return False
        start = max(size - suffix, 0)
        return ByteRange(start, size - start) if size else False
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        return False
    return ByteRange(start, end - start + 1)


def _etag_matches(header: str, etag: str) -> bool:
    """Weak comparison, as If-None-Match requires."""
    bare = etag.removeprefix("W/")
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == bare:
            return True
    return False


def _not_modified_since(header: str, mtime: float) -> bool:
    try:
        since = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
    return int(mtime) <= since


def _if_range_allows(header: str | None, etag: str, mtime: float) -> bool:
    """A Range applies only when If-Range (if any) still names this exact file version."""
    if header is None:
        return True
    header = header.strip()
    if header.startswith(('"', "W/")):
        return header == etag  # strong comparison; a weak tag never matches
    return header == http_date(mtime)


def file_response(
    request: HttpRequest, path: Path, headers: dict[str, str] | None = None
) -> HttpResponseBase | None:
    """Serve the regular file at ``path`` honouring HEAD, conditionals and Range.

    Returns None when there is no regular file there (the caller answers 404). ``headers`` are
    added to every response (Cache-Control, CORS).
    """
    opened = open_regular_file(path)
    if opened is None:
        return None
    fd, st = opened
    etag = etag_for(st)
    common = {"ETag": etag, "Last-Modified": http_date(st.st_mtime), "Accept-Ranges": "bytes"}
    if headers:
        common.update(headers)
    meta = request.META

    inm = meta.get("HTTP_IF_NONE_MATCH")
    ims = meta.get("HTTP_IF_MODIFIED_SINCE")
    if (inm is not None and _etag_matches(inm, etag)) or (
        inm is None and ims is not None and _not_modified_since(ims, st.st_mtime)
    ):
        os.close(fd)
        response: HttpResponseBase = HttpResponse(status=304)
        _set_headers(response, common)
        return response

    size = st.st_size
    status, start, length = 200, 0, size
    range_header = meta.get("HTTP_RANGE")
    if range_header and _if_range_allows(meta.get("HTTP_IF_RANGE"), etag, st.st_mtime):
        byte_range = parse_range(range_header, size)
        if byte_range is False:
            os.close(fd)
            response = HttpResponse(status=416)
            _set_headers(response, common)
            response["Content-Range"] = f"bytes */{size}"
            return response
        if isinstance(byte_range, ByteRange):
            status, start, length = 206, byte_range.start, byte_range.length

    content_type = content_type_for(path.name)
    if request.method == "HEAD":
        os.close(fd)
        response = HttpResponse(status=status, content_type=content_type)
    else:
        response = FileResponse(
            FileSlice(fd, start, length), status=status, content_type=content_type
        )
        response.block_size = BLOCK_SIZE
    _set_headers(response, common)
    response["Content-Length"] = str(length)
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
    return response


def _set_headers(response: HttpResponseBase, headers: dict[str, str]) -> None:
    for name, value in headers.items():
        response[name] = value
