"""Typed Neuroglancer 2.41 viewer state, as the JSON ``viewer.state.restoreState`` takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pipeline.errors import InvalidInputError
from pipeline.units import UNIT_METRES, normalise_unit

GRAYSCALE_SHADER = """#uicontrol invlerp normalized
void main() {
  emitGrayscale(normalized());
}
"""

COLOR_SHADER = """#uicontrol invlerp normalized
#uicontrol vec3 color color(default="white")
void main() {
  emitRGB(color * normalized());
}
"""

Layout = Literal["4panel", "xy", "xz", "yz", "3d", "xy-3d", "xz-3d", "yz-3d"]


@dataclass(frozen=True)
class Dimension:
    """One global coordinate axis: ``scale`` in ``unit`` per voxel (unit "m" or "")."""

    name: str
    scale: float
    unit: str = "m"

    @classmethod
    def from_voxel(cls, name: str, size: float, unit: str) -> Dimension:
        """Axis of a voxel of ``size`` ``unit``s (an OME unit name), expressed in metres."""
        try:
            factor = UNIT_METRES.get(normalise_unit(unit))
        except InvalidInputError:
            factor = None
        if factor is None:
            return cls(name, float(size), "")
        return cls(name, float(size) * factor, "m")

    def to_json(self) -> list[Any]:
        return [self.scale, self.unit]


@dataclass(frozen=True)
class ImageLayer:
    """A grayscale image, or one colour channel of a multichannel image."""

    name: str
    source: str
    contrast: tuple[float, float]
    opacity: float = 1.0
    color: str | None = None  # "#rrggbb": draw as that colour, blended additively
    channel: int | None = None  # index along the channel axis ("c'" in Neuroglancer)
    visible: bool = True
    legend_kind: ClassVar[str] = "image"  # the page legend's swatch

    def to_json(self) -> dict[str, Any]:
        controls: dict[str, Any] = {"normalized": {"range": [self.contrast[0], self.contrast[1]]}}
        data: dict[str, Any] = {
            "type": "image",
            "source": self.source,
            "name": self.name,
            "opacity": self.opacity,
            "shader": GRAYSCALE_SHADER if self.color is None else COLOR_SHADER,
            "shaderControls": controls,
        }
        if self.color is not None:
            controls["color"] = self.color
            data["blend"] = "additive"
        if self.channel is not None:
            data["localDimensions"] = {"c'": [1, ""]}
            data["localPosition"] = [self.channel]
        if not self.visible:
            data["visible"] = False
        return data


@dataclass(frozen=True)
class SegmentationLayer:
    """Labels plus optional meshes and segment properties, as one Neuroglancer layer."""

    name: str
    sources: list[str]
    segments: list[int] = field(default_factory=list)  # selected at open
    n_objects: int = 0  # objects with meshes, selected or not (shown in the page's legend)
    selected_alpha: float = 0.45
    not_selected_alpha: float = 0.15
    object_alpha: float = 1.0
    tab: str = "segments"
    visible: bool = True
    legend_kind: ClassVar[str] = "segmentation"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": "segmentation",
            "source": self.sources[0] if len(self.sources) == 1 else list(self.sources),
            "name": self.name,
            "tab": self.tab,
            "selectedAlpha": self.selected_alpha,
            "notSelectedAlpha": self.not_selected_alpha,
            "objectAlpha": self.object_alpha,
            "segments": [str(s) for s in self.segments],
        }
        if not self.visible:
            data["visible"] = False
        return data


POINTS_SHADER = """#uicontrol vec3 color color(default="#ffd800")
#uicontrol float size slider(min=2, max=20, default=7)
void main() {
  setColor(color);
  setPointMarkerSize(size);
}
"""


@dataclass(frozen=True)
class AnnotationLayer:
    """Read-only annotations from a precomputed source (e.g. a layer's detections as points).

    ``linked`` maps the source's relationships to segmentation layer names (``{"segment_id":
    "nuclei"}``): selecting a point then shows its segment, and the layer can filter its points
    by the segments selected there.
    """

    name: str
    source: str
    linked: dict[str, str] = field(default_factory=dict)
    visible: bool = True
    shader: str = POINTS_SHADER
    legend_kind: ClassVar[str] = "points"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": "annotation",
            "source": self.source,
            "name": self.name,
            "tab": "annotations",
            "shader": self.shader,
        }
        if self.linked:
            data["linkedSegmentationLayer"] = dict(self.linked)
        if not self.visible:
            data["visible"] = False
        return data


ViewerLayer = ImageLayer | SegmentationLayer | AnnotationLayer


@dataclass(frozen=True)
class ViewerState:
    """Whole-viewer state: global axes, camera and layers."""

    dimensions: list[Dimension]
    position: list[float]  # voxel coordinates, in the order of ``dimensions``
    cross_section_scale: float
    projection_scale: float
    layers: list[ViewerLayer]
    selected_layer: str | None = None
    #: A layout name, or Neuroglancer's layout JSON (e.g. a row of layer-group viewers).
    layout: Layout | dict[str, Any] = "4panel"

    def _layer_json(self, layer: ViewerLayer) -> dict[str, Any]:
        """A layer's JSON; in a layout of several viewers, one that none of them shows is
        archived (Neuroglancer would drop it otherwise; its layer list can bring it back)."""
        data = layer.to_json()
        if isinstance(self.layout, dict) and layer.name not in _layout_layers(self.layout):
            data.pop("visible", None)
            data["archived"] = True
        return data

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "dimensions": {d.name: d.to_json() for d in self.dimensions},
            "position": list(self.position),
            "crossSectionScale": self.cross_section_scale,
            "projectionScale": self.projection_scale,
            "layers": [self._layer_json(layer) for layer in self.layers],
            "layout": self.layout,
        }
        if self.selected_layer is not None:
            data["selectedLayer"] = {"layer": self.selected_layer, "visible": True}
        return data


def layer_without_bounds(layer: dict[str, Any]) -> dict[str, Any]:
    """A Neuroglancer layer whose sources have their ``bounds`` subsource (the volume's outline)
    off; frontend/src/lib/neuroglancer.ts's ``withoutBounds`` does the same in the pages."""
    if "source" not in layer:
        return layer
    sources = layer["source"] if isinstance(layer["source"], list) else [layer["source"]]
    specs: list[dict[str, Any]] = [{"url": s} if isinstance(s, str) else dict(s) for s in sources]
    for spec in specs:
        subsources: dict[str, Any] = dict(spec.get("subsources") or {})
        spec["subsources"] = {**subsources, "bounds": False}
    return {**layer, "source": specs}


def _layout_layers(layout: dict[str, Any]) -> set[str]:
    """The layer names the viewers of a layout JSON show (rows and columns nest)."""
    names = set(layout.get("layers") or [])
    for child in layout.get("children") or []:
        names |= _layout_layers(child)
    return names


def camera_for_extent(
    shape_xyz: list[int], panel_pixels: int = 360
) -> tuple[list[float], float, float]:
    """Centre position, cross-section scale and projection scale that frame a whole volume.

    Neuroglancer puts an OME-Zarr voxel ``i``'s centre at ``i`` (it shifts the NGFF translation
    by half a voxel), so the position is the middle voxel ``shape // 2``: a whole section in every
    panel, not the boundary between two (which Neuroglancer would draw as the later one).
    ``crossSectionScale`` is voxels per screen pixel; ``projectionScale`` is the 3D view's height
    in voxels.
    """
    position = [float(n // 2) for n in shape_xyz]
    extent = max(shape_xyz[:2]) if shape_xyz else 1
    cross_section_scale = max(extent * 1.1 / panel_pixels, 0.05)
    projection_scale = max(shape_xyz) * 2.0 if shape_xyz else 256.0
    return position, round(cross_section_scale, 4), float(projection_scale)
