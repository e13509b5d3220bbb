"""Reads of the detections app: which layer, which rows (filters, order), table status, exports.

Listing scales to layers of 100,000+ objects: a caller's query is reduced to one ``layer_id``
equality (the permission was checked once, on the dataset) plus ranges and an order on indexed
columns (``models.INDEXED_COLUMNS``, ``ORDERING_PROXY``), so PostgreSQL walks one index.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from django.db.models import Q, QuerySet

from pipeline.detections import DETECTION_COLUMNS
from webapp.core.errors import InvalidRequest, NotFound
from webapp.core.permissions import VIEW
from webapp.core.users import AnyUser
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.detections.models import (
    NUMERIC_COLUMNS,
    ORDERING_PROXY,
    Detection,
    DetectionBuild,
    JobStatus,
)
from webapp.detections.verdict_filter import detection_ids_with_verdict

INTEGER_COLUMNS = frozenset(
    {"segment_id", "voxels", *(f"bbox_{a}{e}" for a in "zyx" for e in "01")}
)
# Bounds of the database columns: a filter value beyond them matches everything or nothing,
# and must not reach the database as an overflowing integer.
_BIGINT = 2**63 - 1
_INT = 2**31 - 1
DEFAULT_ORDERING = "segment_id"
REGION_PARAM = "region"
VERDICT_PARAM = "verdict"


def layer_for_detections(
    user: AnyUser, slug: str, layer_name: str, action: str = VIEW
) -> tuple[Dataset, Layer]:
    """The dataset and segmentation layer a detections URL names, if ``user`` may see it.

    404 for a dataset the user may not see, a missing layer, or a layer with no detections
    table (image and mesh layers); the caller checks actions other than viewing.
    """
    dataset = Dataset.objects.restrict(user, VIEW).filter(slug=slug).first()
    if dataset is None:
        raise NotFound("No such dataset, or you may not see it.")
    layer = (
        Layer.objects.select_related("dataset")
        .filter(dataset=dataset, name=layer_name, kind=LayerKind.SEGMENTATION)
        .first()
    )
    if layer is None:
        raise NotFound(f"Dataset {slug!r} has no segmentation layer {layer_name!r}.")
    return dataset, layer


# --- filters and order ------------------------------------------------------------------------


def _number(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number, not {raw[:40]!r}.")
    if not math.isfinite(value):
        raise InvalidRequest(f"{name} must be a finite number, not {raw[:40]!r}.")
    return value


def _bound(column: str, value: float, side: Literal["min", "max"]) -> float | int:
    """``value`` as a bound on ``column``: integers rounded inwards and clamped to the column's
    range (so 1e30 means "no bound" rather than an overflow)."""
    if column not in INTEGER_COLUMNS:
        return value
    limit = _BIGINT if column in ("segment_id", "voxels") else _INT
    rounded = math.ceil(value) if side == "min" else math.floor(value)
    return max(-limit - 1, min(limit, rounded))


def _range_q(column: str, side: Literal["min", "max"], value: float) -> Q:
    bound = _bound(column, value, side)
    if column in INTEGER_COLUMNS:
        limit = _BIGINT if column in ("segment_id", "voxels") else _INT
        if side == "min" and value > limit:
            return Q(pk__in=[])
        if side == "max" and value < -limit - 1:
            return Q(pk__in=[])
    return Q(**{f"{column}__{'gte' if side == 'min' else 'lte'}": bound})


def parse_region(raw: str) -> tuple[int, int, int, int, int, int]:
    """``z0,y0,x0,z1,y1,x1`` in voxels (half-open, like the bounding boxes)."""
    parts = raw.split(",")
    if len(parts) != 6:
        raise InvalidRequest(
            f"region must be six integers z0,y0,x0,z1,y1,x1 (voxels), not {raw[:60]!r}."
        )
    values = []
    for part in parts:
        try:
            values.append(int(part.strip()))
        except ValueError:
            raise InvalidRequest(f"region values must be integers, not {part.strip()[:20]!r}.")
    if any(abs(v) > _INT for v in values):
        raise InvalidRequest("region values must lie within +-2147483647.")
    z0, y0, x0, z1, y1, x1 = values
    if z1 <= z0 or y1 <= y0 or x1 <= x0:
        raise InvalidRequest("region must have z1 > z0, y1 > y0 and x1 > x0.")
    return z0, y0, x0, z1, y1, x1


@dataclass(frozen=True)
class DetectionQuery:
    """What a list or export asks for: ranges per column, a region, a verdict, an order."""

    ranges: tuple[tuple[str, Literal["min", "max"], float], ...] = ()
    region: tuple[int, int, int, int, int, int] | None = None
    ordering: str = DEFAULT_ORDERING
    verdict: str | None = None

    @property
    def filters(self) -> bool:
        """Whether it selects fewer than all rows."""
        return bool(self.ranges) or self.region is not None or self.verdict is not None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> DetectionQuery:
        """Parse ``<column>_min``, ``<column>_max``, ``region`` and ``ordering``; 400 for a
        value that is not a finite number or a column that does not exist."""
        ranges: list[tuple[str, Literal["min", "max"], float]] = []
        for name, raw in params.items():
            side: Literal["min", "max"]
            if name.endswith("_min"):
                column, side = name[: -len("_min")], "min"
            elif name.endswith("_max"):
                column, side = name[: -len("_max")], "max"
            else:
                continue
            if column not in NUMERIC_COLUMNS:
                raise InvalidRequest(
                    f"Unknown column {column[:40]!r} in {name[:50]!r}; filter on one of: "
                    f"{', '.join(NUMERIC_COLUMNS)}."
                )
            ranges.append((column, side, _number(name, raw)))
        region = parse_region(params[REGION_PARAM]) if params.get(REGION_PARAM) else None
        ordering = params.get("ordering") or DEFAULT_ORDERING
        if ordering.removeprefix("-") not in NUMERIC_COLUMNS:
            raise InvalidRequest(
                f"Cannot order by {ordering[:40]!r}; use one of: {', '.join(NUMERIC_COLUMNS)} "
                "(with a leading '-' for descending)."
            )
        verdict = params.get(VERDICT_PARAM)
        if verdict is not None and not 0 < len(verdict) <= 40:
            raise InvalidRequest("verdict: give a verdict name of 1 to 40 characters.")
        return cls(tuple(ranges), region, ordering, verdict)

    def order_by(self) -> list[str]:
        """The SQL order: the column, then the segment id, in the same direction, so that one
        index serves both directions. A column without an index of its own is sorted by the
        indexed column it grows with first (voxels by volume...), then by itself: the index
        delivers the order, and only ties (if rounding makes any) are sorted."""
        descending = self.ordering.startswith("-")
        column = self.ordering.removeprefix("-")
        sign = "-" if descending else ""
        if column == "segment_id":
            return [f"{sign}segment_id"]
        proxy = ORDERING_PROXY.get(column)
        first = [f"{sign}{proxy}"] if proxy else []
        return [*first, f"{sign}{column}", f"{sign}segment_id"]

    def apply(self, queryset: QuerySet[Detection]) -> QuerySet[Detection]:
        for column, side, value in self.ranges:
            queryset = queryset.filter(_range_q(column, side, value))
        if self.region is not None:
            z0, y0, x0, z1, y1, x1 = self.region
            queryset = queryset.filter(
                bbox_z0__lt=z1,
                bbox_z1__gt=z0,
                bbox_y0__lt=y1,
                bbox_y1__gt=y0,
                bbox_x0__lt=x1,
                bbox_x1__gt=x0,
            )
        return queryset.order_by(*self.order_by())


def detections_of_layer(layer: Layer, query: DetectionQuery | None = None) -> QuerySet[Detection]:
    """The layer's detections, filtered and ordered by ``query``."""
    query = query or DetectionQuery()
    queryset = Detection.objects.filter(layer_id=layer.id)
    if query.verdict is not None:
        queryset = queryset.filter(id__in=detection_ids_with_verdict(layer, query.verdict))
    return query.apply(queryset)


def detection_keys(layer: Layer, query: DetectionQuery) -> QuerySet[Detection, int]:
    """The segment ids of the layer's detections in the query's order.

    Lists page these first and fetch the page's rows afterwards (:func:`detection_rows`): every
    index holds ``(layer, column, segment_id)``, so once the table is vacuumed a page deep in the
    order skips its offset inside the index (index-only) instead of reading every skipped row.
    """
    return detections_of_layer(layer, query).values_list("segment_id", flat=True)


def detection_rows(layer: Layer, segment_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The columns (and database id) of these detections, in the order of ``segment_ids``."""
    position = {segment_id: i for i, segment_id in enumerate(segment_ids)}
    rows = list(
        Detection.objects.filter(layer_id=layer.id, segment_id__in=list(segment_ids)).values(
            "id", *DETECTION_COLUMNS
        )
    )
    rows.sort(key=lambda row: position[row["segment_id"]])
    return rows


def table_count(layer: Layer) -> int:
    """How many detections the layer's table holds, without counting: the build that wrote the
    rows recorded it in the transaction that wrote them."""
    built = (
        DetectionBuild.objects.filter(layer=layer, status=JobStatus.SUCCEEDED)
        .order_by("-finished", "-id")
        .values_list("n_detections", flat=True)
        .first()
    )
    return int(built or 0)


def detection_get(layer: Layer, segment_id: int) -> Detection:
    if not -_BIGINT - 1 <= segment_id <= _BIGINT:
        raise NotFound(f"Layer {layer.name!r} has no detection {segment_id}.")
    detection = Detection.objects.filter(layer_id=layer.id, segment_id=segment_id).first()
    if detection is None:
        raise NotFound(f"Layer {layer.name!r} has no detection {segment_id}.")
    return detection


# --- table status -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableStatus:
    """A layer's table as the page shows it: rows and the latest build."""

    layer: Layer
    count: int
    latest: DetectionBuild | None
    built: DetectionBuild | None  # the build whose rows the table holds
    has_meshes: bool

    @property
    def state(self) -> str:
        """The latest build's state, or ``none`` when the layer was never built."""
        return self.latest.state if self.latest is not None else "none"


def table_status(layer: Layer) -> TableStatus:
    latest = DetectionBuild.objects.filter(layer=layer).order_by("-created", "-id").first()
    built = (
        DetectionBuild.objects.filter(layer=layer, status=JobStatus.SUCCEEDED)
        .order_by("-finished", "-id")
        .first()
    )
    count = (built.n_detections or 0) if built is not None else 0
    has_meshes = Layer.objects.filter(
        dataset_id=layer.dataset_id, kind=LayerKind.MESH, source_layer=layer
    ).exists()
    return TableStatus(layer=layer, count=count, latest=latest, built=built, has_meshes=has_meshes)


def dataset_table_statuses(dataset: Dataset) -> list[TableStatus]:
    """One status per segmentation layer of ``dataset``, in layer order."""
    layers = Layer.objects.select_related("dataset").filter(
        dataset=dataset, kind=LayerKind.SEGMENTATION
    )
    return [table_status(layer) for layer in layers.order_by("id")]


# --- exports ------------------------------------------------------------------------------------

ColumnKind = Literal["string", "float", "int", "bool"]


@dataclass(frozen=True)
class ExtraColumn:
    """A column another app adds to the exports (proofreading: ``verdict``).

    ``values`` receives the database ids of a batch of detections, in order, and returns one
    value per id (None where there is none).
    """

    name: str
    values: Callable[[Sequence[int]], Sequence[Any]]
    kind: ColumnKind = "string"


EXPORT_BATCH_ROWS = 5000


def export_batches(
    layer: Layer,
    query: DetectionQuery | None = None,
    *,
    extra: Sequence[ExtraColumn] = (),
    batch_rows: int = EXPORT_BATCH_ROWS,
    within: QuerySet[Any] | None = None,
) -> Iterator[pd.DataFrame]:
    """The layer's table (``DETECTION_COLUMNS`` plus ``extra``), ``batch_rows`` at a time, by
    segment id: each batch is one keyset query, so memory holds one batch however big the
    table (the order asked for is ignored: exports are in segment id order).

    ``within``: a query of detection ids (``values("detection_id")``) the rows must be among,
    e.g. a proofreading campaign's sample."""
    names = [column.name for column in extra]
    clash = set(names) & {*DETECTION_COLUMNS, "id"}
    if clash or len(set(names)) != len(names):
        raise ValueError(f"extra export columns clash: {sorted(clash) or names}")
    base = detections_of_layer(layer, query).order_by("segment_id")
    if within is not None:
        base = base.filter(id__in=within)
    last: int | None = None
    while True:
        page = base if last is None else base.filter(segment_id__gt=last)
        rows = list(page.values_list("id", *DETECTION_COLUMNS)[:batch_rows])
        if not rows:
            return
        frame = pd.DataFrame.from_records(rows, columns=["id", *DETECTION_COLUMNS])
        ids = frame["id"].tolist()
        for column in extra:
            values = list(column.values(ids))
            if len(values) != len(ids):
                raise ValueError(f"extra column {column.name!r} gave {len(values)} values")
            frame[column.name] = values
        last = int(frame["segment_id"].iloc[-1])
        yield frame.drop(columns=["id"])
        if len(rows) < batch_rows:
            return
