"""URLs under which a dataset's stores are served, and Neuroglancer source strings for them.

The same URLs work for the embedded server and behind nginx in production:
``/data/<slug>/<path>`` for signed-in users and the public, ``/s/<token>/data/<path>`` for share
links (Neuroglancer cannot add headers, so the token goes in the path).
"""

from __future__ import annotations

from webapp.datasets.models import Dataset, Layer, LayerKind


def data_path(dataset: Dataset, path: str, share_token: str | None = None) -> str:
    """Site-relative URL of ``path`` inside ``dataset``'s directory."""
    path = path.strip("/")
    if share_token:
        return f"/s/{share_token}/data/{dataset.slug}/{path}"
    return f"/data/{dataset.slug}/{path}"


def layer_source_url(layer: Layer, base_url: str, share_token: str | None = None) -> str:
    """Neuroglancer source for ``layer``, e.g. ``zarr3://http://host/data/demo/image.ome.zarr``.

    ``base_url`` is the site's origin (``request.build_absolute_uri("/")``).
    """
    url = base_url.rstrip("/") + data_path(layer.dataset, layer.path, share_token)
    if layer.kind == LayerKind.MESH:
        return f"precomputed://{url}"
    scheme = "zarr2" if layer.ngff_version == "0.4" else "zarr3"
    return f"{scheme}://{url}"
