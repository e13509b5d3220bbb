"""Viewer state for a dataset, and saved states behind "copy link" URLs."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

from pipeline.annotation_points import RELATIONSHIP
from pipeline.errors import InvalidInputError
from pipeline.precomputed import read_segment_properties, stored_segment_ids
from webapp.core.errors import InvalidRequest
from webapp.core.users import AnyUser
from webapp.datasets.data_urls import layer_source_url
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.detections.points import layer_points_source_url
from webapp.viewer.models import SavedState
from webapp.viewer.state import (
    AnnotationLayer,
    Dimension,
    ImageLayer,
    Layout,
    SegmentationLayer,
    ViewerLayer,
    ViewerState,
    camera_for_extent,
)

CHANNEL_COLORS = ["#ff00ff", "#00ff00", "#00ffff", "#ff0000", "#ffff00", "#0000ff", "#ffffff"]
NON_SPATIAL_AXES = {"c", "t"}
QUAD_PANEL_PIXELS = 360  # about one of four panels on a laptop screen
PLANE_PANEL_PIXELS = 640  # the single xy panel of a 2D image
LOCAL_SOURCE_PREFIX = "local://"  # annotation layers kept in the state itself


class StateError(InvalidRequest):
    """A viewer state that cannot be stored; the message says why."""


def spatial_axes(layer: Layer) -> list[tuple[str, float, int]]:
    """(name, voxel size, extent) of the spatial axes of ``layer`` in storage order (z, y, x)."""
    axes = [str(a).lower() for a in (layer.axes or [])]
    shape = list(layer.shape or [])
    spatial = [(a, n) for a, n in zip(axes, shape, strict=False) if a not in NON_SPATIAL_AXES]
    sizes = list(layer.voxel_size or [])
    if len(sizes) < len(spatial):
        sizes = [1.0] * (len(spatial) - len(sizes)) + sizes
    sizes = sizes[-len(spatial) :] if spatial else []
    return [(a, float(s), int(n)) for (a, n), s in zip(spatial, sizes, strict=True)]


def default_contrast(layer: Layer) -> tuple[float, float]:
    """The layer's stored contrast window, else the full range of its dtype."""
    if layer.contrast_min is not None and layer.contrast_max is not None:
        return float(layer.contrast_min), float(layer.contrast_max)
    try:
        dtype = np.dtype(layer.dtype or "uint8")
    except TypeError:
        return 0.0, 255.0
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return float(max(info.min, 0)), float(info.max)
    return 0.0, 1.0


def mesh_segment_ids(mesh_dir: Path) -> list[int]:
    """Ids of the objects in a precomputed mesh directory (sorted; 0 is never an object).

    Read from the segment properties through ``pipeline.precomputed``; without properties, the
    ids the meshes are stored under. An unreadable directory gives no ids: the viewer still
    opens, without meshes.
    """
    try:
        props = read_segment_properties(mesh_dir)
        ids = props.ids if props is not None and props.ids else stored_segment_ids(mesh_dir)
    except (InvalidInputError, OSError):
        return []
    return sorted(i for i in set(ids) if i != 0)


def default_segments(ids: list[int], limit: int | None = None) -> list[int]:
    """The objects a dataset opens with selected: all of them when there are at most ``limit``
    (``settings.VIEWER_DEFAULT_SEGMENTS``), else none.

    Why not the largest few: Neuroglancer draws unselected objects faintly in 2D, so a partial
    selection would dim most of the picture; with none selected it colours every object, and
    each selected object costs two requests (manifest and fragment) before the view is ready.
    """
    limit = settings.VIEWER_DEFAULT_SEGMENTS if limit is None else limit
    return list(ids) if len(ids) <= limit else []


def detections_points_layer(
    layer: Layer,
    base_url: str,
    share_token: str | None = None,
    *,
    visible: bool = False,
    taken: set[str] | None = None,
) -> AnnotationLayer | None:
    """The detections of segmentation ``layer`` as a read-only point annotation layer named
    "<layer> detections", linked to the segmentation layer of the same name (selecting a point
    shows its segment); None until a detections build has written them
    (``detections.points``). Hidden unless ``visible``: the viewer lists it, a click shows it.
    ``taken``: names already in the state (a clash gets a numbered name)."""
    source = layer_points_source_url(layer, base_url, share_token)
    if source is None:
        return None
    name = f"{layer.name} detections"
    n = 2
    while taken is not None and name in taken:
        name = f"{layer.name} detections {n}"
        n += 1
    return AnnotationLayer(
        name=name,
        source=source,
        linked={RELATIONSHIP: layer.name},
        visible=visible,
    )


def build_viewer_state(
    dataset: Dataset,
    base_url: str,
    share_token: str | None = None,
    *,
    show: str | Sequence[str] | None = None,
) -> ViewerState:
    """The default view of ``dataset``: images, then labels with their meshes, then each
    segmentation's detections as points (hidden) when they are built, four panels.
    ``show`` (a segmentation layer's name) shows that one alone among the segmentations (the
    others stay in the state, hidden) and selects it: a curated layer is seen without its
    source drawn over it. Several names (model versions compared) show those and select the
    first."""
    shown = None if not show else [show] if isinstance(show, str) else list(show)
    layers = list(dataset.layers.all().order_by("id"))
    images = [la for la in layers if la.kind == LayerKind.IMAGE]
    segmentations = [la for la in layers if la.kind == LayerKind.SEGMENTATION]
    meshes = [la for la in layers if la.kind == LayerKind.MESH]
    reference = next(iter(images or segmentations), None)

    axes = spatial_axes(reference) if reference is not None else []
    by_name = {name: (size, extent) for name, size, extent in axes}
    names: list[str] = [n for n in ("x", "y", "z") if n in by_name] or [
        a[0] for a in reversed(axes)
    ]
    unit = reference.unit if reference is not None else "nanometer"
    dimensions = [Dimension.from_voxel(n, by_name[n][0], unit) for n in names]
    extent_xyz = [by_name[n][1] for n in names]
    # A plane gets one large xy panel; a volume the four panels (xy, xz, yz, 3D).
    planar = len(names) < 3
    position, cross_scale, projection_scale = camera_for_extent(
        extent_xyz, panel_pixels=PLANE_PANEL_PIXELS if planar else QUAD_PANEL_PIXELS
    )

    view_layers: list[ViewerLayer] = []
    derived: set[str] = set()  # images made from a segmentation (a run's probability map)
    for image in images:
        contrast = default_contrast(image)
        source = layer_source_url(image, base_url, share_token)
        if image.source_layer_id is not None:
            # Listed, hidden: drawn over the raw image it would hide it.
            derived.add(image.name)
            view_layers.append(
                ImageLayer(name=image.name, source=source, contrast=contrast, visible=False)
            )
            continue
        if image.channels > 1:
            for c in range(image.channels):
                view_layers.append(
                    ImageLayer(
                        name=f"{image.name} c{c}",
                        source=source,
                        contrast=contrast,
                        color=CHANNEL_COLORS[c % len(CHANNEL_COLORS)],
                        channel=c,
                    )
                )
        else:
            view_layers.append(ImageLayer(name=image.name, source=source, contrast=contrast))

    selected: str | None = None
    for seg in segmentations:
        sources = [layer_source_url(seg, base_url, share_token)]
        segments: list[int] = []
        for mesh in (m for m in meshes if m.source_layer_id == seg.id):
            sources.append(layer_source_url(mesh, base_url, share_token))
            segments = sorted(set(segments) | set(mesh_segment_ids(dataset.root / mesh.path)))
        view_layers.append(
            SegmentationLayer(
                name=seg.name,
                sources=sources,
                segments=default_segments(segments),
                n_objects=len(segments),
                visible=shown is None or seg.name in shown,
            )
        )
        selected = selected or seg.name
    segmentation_ids = {s.id for s in segmentations}
    for mesh in meshes:
        if mesh.source_layer_id not in segmentation_ids:
            ids = mesh_segment_ids(dataset.root / mesh.path)
            view_layers.append(
                SegmentationLayer(
                    name=mesh.name,
                    sources=[layer_source_url(mesh, base_url, share_token)],
                    segments=default_segments(ids),
                    n_objects=len(ids),
                    visible=shown is None or mesh.name in shown,
                )
            )
            selected = selected or mesh.name
    layer_names = {layer.name for layer in view_layers}
    for seg in segmentations:
        points = detections_points_layer(seg, base_url, share_token, taken=layer_names)
        if points is not None:
            view_layers.append(points)
            layer_names.add(points.name)

    panels: Layout = "xy" if planar else "4panel"
    return ViewerState(
        dimensions=dimensions,
        position=position,
        cross_section_scale=cross_scale,
        projection_scale=projection_scale,
        layers=view_layers,
        selected_layer=shown[0] if shown else selected,
        layout=(
            side_by_side([la for la in view_layers if la.name not in derived], shown, panels)
            if shown and len(shown) > 1
            else panels
        ),
    )


def side_by_side(
    layers: Sequence[ViewerLayer], shown: Sequence[str], panels: Layout
) -> dict[str, Any]:
    """Neuroglancer's layout of a row of viewers, one per shown segmentation (model versions
    compared), each with the images under it; their positions and zoom stay linked, so both
    show the same place."""
    images = [layer.name for layer in layers if isinstance(layer, ImageLayer)]
    return {
        "type": "row",
        "children": [
            {"type": "viewer", "layers": [*images, name], "layout": panels} for name in shown
        ],
    }


def _data_url_pattern(dataset: Dataset) -> re.Pattern[str]:
    slug = re.escape(dataset.slug)
    # ``scheme://http://...`` or Neuroglancer's pipeline form ``http://...|scheme:`` (mesh
    # sources with a version query, see ``datasets.data_urls.layer_source_url``).
    return re.compile(
        rf"^(?P<scheme>[a-z0-9]+://)?https?://[^/]+(?:/s/[^/]+)?/data/{slug}/(?P<rest>.*)$"
    )


def map_source_urls(source: Any, fn: Callable[[Any], Any]) -> Any:
    """``source`` (a Neuroglancer layer source: a URL, ``{"url": ...}``, or a list of those) with
    ``fn`` applied to every URL in it."""
    if isinstance(source, list):
        return [map_source_urls(item, fn) for item in source]
    if isinstance(source, dict):
        return {**source, "url": fn(source.get("url"))}
    return fn(source)


def rebase_state_sources(
    state: dict[str, Any], dataset: Dataset, base_url: str, share_token: str | None = None
) -> dict[str, Any]:
    """Point a saved state's data sources of ``dataset`` at this request's origin and access path.

    A state saved through a share link names that link's URLs (and the saver's host); whoever
    opens it later reads the data through their own access path instead.
    """
    pattern = _data_url_pattern(dataset)
    prefix = base_url.rstrip("/") + (
        f"/s/{share_token}/data/{dataset.slug}/" if share_token else f"/data/{dataset.slug}/"
    )

    def rebase_url(url: Any) -> Any:
        if not isinstance(url, str):
            return url
        match = pattern.match(url)
        return f"{match['scheme'] or ''}{prefix}{match['rest']}" if match else url

    result = dict(state)
    layers = state.get("layers")
    if isinstance(layers, list):
        result["layers"] = [
            {**layer, "source": map_source_urls(layer.get("source"), rebase_url)}
            if isinstance(layer, dict)
            else layer
            for layer in layers
        ]
    return result


def validate_state(state: Any) -> dict[str, Any]:
    """Accept a Neuroglancer state: a JSON object whose ``layers``, if any, is a list of objects."""
    if not isinstance(state, dict):
        raise StateError("state must be a JSON object (the result of viewer.state.toJSON()).")
    layers = state.get("layers", [])
    if not isinstance(layers, list) or not all(isinstance(la, dict) for la in layers):
        raise StateError("state.layers must be a list of layer objects.")
    return state


def check_state_sources(state: dict[str, Any], dataset: Dataset) -> None:
    """Refuse a state whose layers read anything but ``dataset``'s data (or local annotations).

    A saved state is opened by other people through a link: it must not make their browsers
    fetch from a server of the saver's choosing, nor mix in another dataset's data.
    """
    pattern = _data_url_pattern(dataset)

    def check_url(url: Any, layer_name: Any) -> Any:
        if not isinstance(url, str):
            raise StateError("a layer source must be a URL string.")
        if not (pattern.match(url) or url.startswith(LOCAL_SOURCE_PREFIX)):
            raise StateError(
                f"layer {layer_name!r} reads {url[:200]!r}: a saved view may only use this "
                f"dataset's data sources."
            )
        return url

    for layer in state.get("layers", []):
        if layer.get("source") is not None:  # a layer without a source reads nothing
            name = layer.get("name", "?")
            map_source_urls(layer["source"], partial(check_url, layer_name=name))


@transaction.atomic
def saved_state_create(dataset: Dataset, state: Any, user: AnyUser) -> SavedState:
    """Store ``state`` for ``dataset`` and return the row (its ``key`` goes in the URL)."""
    state = validate_state(state)
    check_state_sources(state, dataset)
    return SavedState.objects.create(
        dataset=dataset,
        state=state,
        created_by=user if user.is_authenticated else None,
    )


def saved_state_url(saved: SavedState, share_token: str | None = None) -> str:
    """Site-relative URL that reopens ``saved``."""
    slug = saved.dataset.slug
    if share_token:
        return f"/s/{share_token}/datasets/{slug}/?state={saved.key}"
    return f"/datasets/{slug}/?state={saved.key}"
