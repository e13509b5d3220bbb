"""Where a campaign's boxes are: box states, the coverage map over the dataset's thumbnail and
the read-only "task boxes" layer of the viewer.

A box's state, for the maps and the counts, is that of its N slots together: ``flagged`` while
an annotator's flag waits for a manager; ``approved`` when every slot is approved;
``submitted`` when every slot is submitted or approved; ``in_progress`` when any slot is taken
(a rejected slot is back with its annotator, so in progress); else ``todo``.

The dataset's thumbnail (``webapp.viewer.thumbnails``) is the middle z slice of a coarse level
of its first image layer, scaled to fit 256 pixels with its y/x aspect in pixels, covering the
whole y-x extent. A box is drawn on it as its projection along z onto that plane (every box,
whatever its depth): the y and x fractions of the volume the box covers, times the
thumbnail's size in pixels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet

from webapp.annotation.models import AnnotationCampaign, TaskBox
from webapp.annotation.selectors import boxes_of

BOX_STATES = ("todo", "in_progress", "submitted", "approved", "flagged")
STATE_LABELS = {
    "todo": "To do",
    "in_progress": "In progress",
    "submitted": "Submitted",
    "approved": "Approved",
    "flagged": "Flagged",
}
STATE_COLOURS = {
    "todo": "#9e9e9e",
    "in_progress": "#2196f3",
    "submitted": "#ff9800",
    "approved": "#4caf50",
    "flagged": "#e91e63",
}
#: At most this many boxes are drawn on the coverage map and in the viewer's layer.
MAX_DRAWN = 20_000
THUMBNAIL_SIZE = 256


def box_state(
    redundancy: int, n_taken: int, n_submitted: int, n_approved: int, flagged: bool
) -> str:
    if flagged:
        return "flagged"
    if n_approved >= redundancy:
        return "approved"
    if n_submitted + n_approved >= redundancy:
        return "submitted"
    if n_taken > 0:
        return "in_progress"
    return "todo"


ROW_FIELDS = (
    "id",
    "name",
    "campaign_id",
    "z0",
    "y0",
    "x0",
    "depth",
    "height",
    "width",
    "flag_reason",
    "suggested_uncertainty",
    "n_taken",
    "n_submitted",
    "n_approved",
)


def _rows(boxes: QuerySet[TaskBox]) -> Iterable[dict[str, Any]]:
    """Boxes annotated with their slot counts (``selectors.boxes_of``) as plain rows."""
    rows: Iterable[dict[str, Any]] = boxes.values(*ROW_FIELDS)
    return rows


def state_counts(campaigns: Sequence[AnnotationCampaign]) -> dict[int, dict[str, int]]:
    """Boxes per state of each campaign (every state present, zeros included), and ``total``."""
    out: dict[int, Counter[str]] = {c.pk: Counter() for c in campaigns}
    redundancy = {c.pk: c.redundancy for c in campaigns}
    if not campaigns:
        return {}
    annotated = TaskBox.objects.filter(campaign__in=[c.pk for c in campaigns]).annotate(
        n_approved=Count("assignments", filter=Q(assignments__state="approved")),
        n_submitted=Count("assignments", filter=Q(assignments__state="submitted")),
        n_taken=Count("assignments", filter=Q(assignments__annotator__isnull=False)),
    )
    for row in _rows(annotated):
        state = box_state(
            redundancy[row["campaign_id"]],
            row["n_taken"],
            row["n_submitted"],
            row["n_approved"],
            bool(row["flag_reason"]),
        )
        out[row["campaign_id"]][state] += 1
    return {
        pk: {**{s: counts[s] for s in BOX_STATES}, "total": sum(counts.values())}
        for pk, counts in out.items()
    }


def project_box(
    start: Sequence[int],
    size: Sequence[int],
    shape: Sequence[int],
    thumbnail: tuple[int, int],
) -> tuple[float, float, float, float]:
    """A box (z y x voxels) projected along z onto the thumbnail of a volume of ``shape``
    (z y x): ``(x, y, width, height)`` in the thumbnail's pixels (``thumbnail`` is its width
    and height), clipped to the picture."""
    width_px, height_px = thumbnail
    ny, nx = max(int(shape[1]), 1), max(int(shape[2]), 1)
    sx, sy = width_px / nx, height_px / ny
    x0 = min(max(start[2], 0), nx) * sx
    y0 = min(max(start[1], 0), ny) * sy
    x1 = min(max(start[2] + size[2], 0), nx) * sx
    y1 = min(max(start[1] + size[1], 0), ny) * sy
    return (round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3))


def thumbnail_size_for(shape: Sequence[int]) -> tuple[int, int]:
    """The size the thumbnail of a y-x extent gets when its file cannot be read: the longer
    side ``THUMBNAIL_SIZE`` pixels, the aspect kept."""
    ny, nx = max(int(shape[1]), 1), max(int(shape[2]), 1)
    scale = THUMBNAIL_SIZE / max(ny, nx)
    return (max(round(nx * scale), 1), max(round(ny * scale), 1))


def thumbnail_of(campaign: AnnotationCampaign) -> tuple[int, int] | None:
    """The width and height of the dataset's thumbnail (rendered now if it has none), or None
    when it cannot have one."""
    from PIL import Image

    from webapp.viewer.thumbnails import thumbnail_path

    path = thumbnail_path(campaign.dataset)
    if path is None:
        return None
    try:
        with Image.open(path) as picture:
            return (int(picture.width), int(picture.height))
    except OSError:
        return None


@dataclass(frozen=True)
class DrawnBox:
    id: int
    name: str
    start: tuple[int, int, int]
    size: tuple[int, int, int]
    state: str
    suggested: float | None = None


def drawn_boxes(campaign: AnnotationCampaign, limit: int = MAX_DRAWN) -> tuple[list[DrawnBox], int]:
    """The campaign's boxes (the first ``limit``, by id) with their states, and how many there
    are in all."""
    boxes = boxes_of(campaign).order_by("id")
    total = boxes.count()
    out = [
        DrawnBox(
            id=row["id"],
            name=row["name"],
            start=(row["z0"], row["y0"], row["x0"]),
            size=(row["depth"], row["height"], row["width"]),
            state=box_state(
                campaign.redundancy,
                row["n_taken"],
                row["n_submitted"],
                row["n_approved"],
                bool(row["flag_reason"]),
            ),
            suggested=row["suggested_uncertainty"],
        )
        for row in _rows(boxes[:limit])
    ]
    return out, total


def coverage_of(campaign: AnnotationCampaign) -> dict[str, Any]:
    """The coverage map's data: the thumbnail's size, each box's rectangle on it and state."""
    shape = [int(n) for n in campaign.geometry["shape"]]
    size = thumbnail_of(campaign)
    has_thumbnail = size is not None
    if size is None:
        size = thumbnail_size_for(shape)
    boxes, total = drawn_boxes(campaign)
    counts = Counter(b.state for b in boxes)
    return {
        "thumbnail_url": (
            f"/datasets/{campaign.dataset.slug}/thumbnail.png" if has_thumbnail else None
        ),
        "width": size[0],
        "height": size[1],
        "shape": shape,
        "slice_z": shape[0] // 2,
        "total": total,
        "truncated": total > len(boxes),
        "counts": {s: counts[s] for s in BOX_STATES},
        "boxes": [
            {
                "id": b.id,
                "name": b.name,
                "state": b.state,
                "rect": list(project_box(b.start, b.size, shape, size)),
                "crosses_slice": b.start[0] <= shape[0] // 2 < b.start[0] + b.size[0],
                "suggested": b.suggested,
            }
            for b in boxes
        ],
    }


def boxes_layer_json(
    campaign: AnnotationCampaign, dimension_names: Sequence[str], name: str = "task boxes"
) -> tuple[dict[str, Any], int]:
    """A Neuroglancer annotation layer with one bounding box per task box (at most
    ``MAX_DRAWN``), in the global space of ``dimension_names`` (e.g. x y z; a 2D dataset's x y
    drops z). Neuroglancer centres voxel i at coordinate i (``frontend/src/lib/voxel_grid.ts``),
    so voxel i spans [i - 0.5, i + 0.5) and a box covers ``start - 0.5`` to
    ``start + size - 0.5``. Each box is drawn in its state's colour, as on the coverage map
    (a ``color`` property and a shader; one colour for all read as the volume's own yellow
    outline). Returns the layer and how many boxes the campaign has in all."""
    boxes, total = drawn_boxes(campaign)
    axis = {"z": 0, "y": 1, "x": 2}

    def point(edges: Sequence[int]) -> list[float]:
        """Voxel edges z y x as the coordinates of the lower faces of those voxels."""
        return [edges[axis[n]] - 0.5 if n in axis else 0.0 for n in dimension_names]

    annotations = [
        {
            "type": "axis_aligned_bounding_box",
            "id": f"box-{b.id}",
            "pointA": point(b.start),
            "pointB": point([s + n for s, n in zip(b.start, b.size, strict=True)]),
            "description": f"{b.name} ({STATE_LABELS[b.state]})",
            "props": [STATE_COLOURS[b.state]],
        }
        # Boxes to do first, so that tiled neighbours sharing an edge draw the coloured (begun)
        # box's edge over the grey one.
        for b in sorted(boxes, key=lambda b: (b.state != "todo", b.id))
    ]
    layer = {
        "type": "annotation",
        "name": name,
        "source": "local://annotations",
        "annotationColor": "#ffcc00",
        "annotationProperties": [{"id": "color", "type": "rgb", "default": "#ffcc00"}],
        "shader": "void main() {\n  setColor(prop_color());\n}\n",
        "annotations": annotations,
    }
    return layer, total
