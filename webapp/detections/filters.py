"""A segmentation layer's stored detection filter (``models.DetectionFilter``): read and set.

The filter is the one ``pipeline.thresholds`` applies (volume and sphericity lower bounds, plus
an optional volume upper bound). Proofreading campaigns take it as the default of their
"filter" selection, and the thresholds page stores a fitted pair here. Setting it adds a row
(the history is kept); the previous value is also logged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q, QuerySet

from webapp.core.errors import InvalidRequest, NotAllowed
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.detections.models import Detection, DetectionFilter
from webapp.detections.selectors import ExtraColumn

logger = logging.getLogger(__name__)

HISTORY_LENGTH = 20
MAX_SOURCE = 200


@dataclass(frozen=True)
class FilterValues:
    """The bounds of a filter; None means "no bound"."""

    volume_min: float | None = None
    volume_max: float | None = None
    sphericity_min: float | None = None

    @property
    def is_empty(self) -> bool:
        return self.volume_min is None and self.volume_max is None and self.sphericity_min is None

    def q(self) -> Q:
        """The detections the filter keeps, as a query condition (``volume >= volume_min``,
        ``volume <= volume_max``, ``sphericity >= sphericity_min``, as ``pipeline.thresholds``;
        a missing value, e.g. a 2D object's sphericity, does not pass a bound)."""
        condition = Q()
        if self.volume_min is not None:
            condition &= Q(volume__gte=self.volume_min)
        if self.volume_max is not None:
            condition &= Q(volume__lte=self.volume_max)
        if self.sphericity_min is not None:
            condition &= Q(sphericity__gte=self.sphericity_min)
        return condition


def _bound(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{name} must be a number or null.")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidRequest(f"{name} must be a finite number.")
    return number


def filter_values_check(
    volume_min: Any = None, volume_max: Any = None, sphericity_min: Any = None
) -> FilterValues:
    """Checked bounds, or a 400 saying what is wrong (negative volumes, sphericity outside
    [0, 1], a minimum above the maximum)."""
    values = FilterValues(
        _bound("volume_min", volume_min),
        _bound("volume_max", volume_max),
        _bound("sphericity_min", sphericity_min),
    )
    for name in ("volume_min", "volume_max"):
        value = getattr(values, name)
        if value is not None and value < 0:
            raise InvalidRequest(f"{name} must not be negative (volumes are in um^3).")
    if values.sphericity_min is not None and not 0 <= values.sphericity_min <= 1:
        raise InvalidRequest("sphericity_min must be between 0 and 1.")
    if (
        values.volume_min is not None
        and values.volume_max is not None
        and values.volume_min > values.volume_max
    ):
        raise InvalidRequest(
            f"volume_min ({values.volume_min:g}) is larger than volume_max "
            f"({values.volume_max:g}): the filter would keep nothing."
        )
    return values


def layer_filter(layer: Layer) -> DetectionFilter | None:
    """The layer's current filter (its latest row), or None when none was ever set."""
    return DetectionFilter.objects.filter(layer=layer).select_related("created_by").first()


def filter_values_of(row: DetectionFilter | None) -> FilterValues:
    """A filter row's bounds (all None for no row)."""
    if row is None:
        return FilterValues()
    return FilterValues(row.volume_min, row.volume_max, row.sphericity_min)


def layer_filter_values(layer: Layer) -> FilterValues:
    """The current bounds (all None when no filter was set, or it was cleared)."""
    return filter_values_of(layer_filter(layer))


def layer_filter_history(layer: Layer) -> QuerySet[DetectionFilter]:
    """The layer's latest ``HISTORY_LENGTH`` filters, newest first (the first is current)."""
    return DetectionFilter.objects.filter(layer=layer).select_related("created_by")[:HISTORY_LENGTH]


def layer_filter_set(
    layer: Layer,
    user: User,
    values: FilterValues,
    *,
    source: str = "",
    check_permission: bool = True,
) -> DetectionFilter:
    """Store ``values`` as ``layer``'s filter (a new row; earlier ones stay as history).

    Needs the right to change the layer's dataset, unless the caller checked its own rule
    (``check_permission=False``: a proofreading campaign's managers).
    """
    if layer.kind != LayerKind.SEGMENTATION:
        raise InvalidRequest(f"Layer {layer.name!r} is a {layer.kind} layer: it has no detections.")
    if check_permission and not Dataset.objects.allows(user, "change", layer.dataset):
        raise NotAllowed("Only the dataset's owner can set its layers' detection filters.")
    checked = filter_values_check(values.volume_min, values.volume_max, values.sphericity_min)
    source = source.strip()[:MAX_SOURCE]
    if "\x00" in source:
        raise InvalidRequest("source must not contain NUL characters.")
    with transaction.atomic():
        # Serialises concurrent setters of one layer, so that the logged "previous" is right.
        Layer.objects.select_for_update().filter(id=layer.id).first()
        previous = layer_filter(layer)
        row = DetectionFilter.objects.create(
            layer=layer,
            volume_min=checked.volume_min,
            volume_max=checked.volume_max,
            sphericity_min=checked.sphericity_min,
            created_by=user,
            source=source,
        )
    logger.info(
        "detection filter of layer %s set by %s (%s): %s -> %s",
        layer.id,
        user.username,
        source or "no source",
        None if previous is None else str(previous),
        str(row),
    )
    return row


def filter_export_columns(layer: Layer) -> list[ExtraColumn]:
    """The exports' ``kept`` column: whether each detection passes the layer's filter (a run's
    fitted one, or the owner's); none while the layer has no filter."""
    values = layer_filter_values(layer)
    if values.is_empty:
        return []

    def kept(ids: Sequence[int]) -> list[bool]:
        passing = set(Detection.objects.filter(values.q(), pk__in=ids).values_list("pk", flat=True))
        return [i in passing for i in ids]

    return [ExtraColumn("kept", kept, "bool")]
