"""URLs under which a dataset's stores are served, and Neuroglancer source strings for them.

The same URLs work for the embedded server and behind nginx in production:
``/data/<slug>/<path>`` for signed-in users and the public, ``/s/<token>/data/<path>`` for share
links (Neuroglancer cannot add headers, so the token goes in the path).
"""

from __future__ import annotations

import os
from pathlib import Path

from webapp.datasets.models import Dataset, Layer, LayerKind

# Files whose rewrite must reach Neuroglancer at once: a mesh source's info and its segment
# properties (verdict tags are rewritten as verdicts come in).
_VERSIONED_MESH_FILES = ("info", "segment_properties/info")


def data_path(dataset: Dataset, path: str, share_token: str | None = None) -> str:
    """Site-relative URL of ``path`` inside ``dataset``'s directory."""
    path = path.strip("/")
    if share_token:
        return f"/s/{share_token}/data/{dataset.slug}/{path}"
    return f"/data/{dataset.slug}/{path}"


def layer_source_url(layer: Layer, base_url: str, share_token: str | None = None) -> str:
    """Neuroglancer source for ``layer``, e.g. ``zarr3://http://host/data/demo/image.ome.zarr``;
    a mesh layer with files: ``http://host/data/demo/meshes/x/?v=<version>|neuroglancer-precomputed:``
    (see :func:`mesh_source_version`).

    ``base_url`` is the site's origin (``request.build_absolute_uri("/")``).
    """
    url = base_url.rstrip("/") + data_path(layer.dataset, layer.path, share_token)
    if layer.kind == LayerKind.MESH:
        version = mesh_source_version(layer)
        if version:
            # Neuroglancer's URL pipeline form: the query belongs to the http part (the
            # ``precomputed://`` form hands it to the data source, which refuses queries).
            return f"{url}/?v={version}|neuroglancer-precomputed:"
        return f"precomputed://{url}"
    scheme = "zarr2" if layer.ngff_version == "0.4" else "zarr3"
    return f"{scheme}://{url}"


def mesh_source_version(layer: Layer) -> str:
    """The version of a mesh layer's metadata (its newest modification time, hex), or "".

    Neuroglancer keeps the query of an ``http`` source on every file it reads from it, so a
    rewritten ``segment_properties/info`` (new verdicts) gets a new URL: neither the browser's
    cache (``max-age``) nor a same-second, same-size rewrite (the ETag is mtime seconds and
    size, as nginx makes it) can hand back the old file. The data server ignores the query.
    """
    return files_version(layer.dataset.root / layer.path, _VERSIONED_MESH_FILES)


def files_version(root: Path, names: tuple[str, ...]) -> str:
    """The newest modification time (ns, hex) of files ``names`` under ``root``, or "" when
    none exists."""
    newest = 0
    for name in names:
        try:
            newest = max(newest, os.stat(root / name).st_mtime_ns)
        except OSError:
            continue
    return f"{newest:x}" if newest else ""


def annotation_source_url(
    dataset: Dataset, path: str, base_url: str, share_token: str | None = None
) -> str:
    """Neuroglancer source for the precomputed annotation source at ``path`` in ``dataset``:
    ``http://host/data/<slug>/<path>/?v=<version>|neuroglancer-precomputed:`` once its
    ``info`` exists (versioned like a mesh source, see :func:`mesh_source_version`: a rebuilt
    source gets a new URL, never the browser's copy of the old one), else
    ``precomputed://http://host/data/<slug>/<path>``."""
    url = base_url.rstrip("/") + data_path(dataset, path, share_token)
    version = files_version(dataset.root / path, ("info",))
    if version:
        return f"{url}/?v={version}|neuroglancer-precomputed:"
    return f"precomputed://{url}"
