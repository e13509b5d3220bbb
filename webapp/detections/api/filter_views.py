"""The layer's detection filter: ``datasets/<slug>/layers/<layer>/detections/filter/``.

GET (anyone who may view the dataset) answers the current filter and its recent history;
POST (the dataset's owner) stores a new one (a new row: the history keeps the old ones). Kept
apart from ``views.py`` because it is a setting of the layer rather than a read of its table.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from webapp.core.parsers import StrictJSONParser
from webapp.core.users import signed_in_user
from webapp.detections import filters
from webapp.detections.api.views import _LayerView
from webapp.detections.models import DetectionFilter


class DetectionFilterSerializer(serializers.ModelSerializer[DetectionFilter]):
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = DetectionFilter
        fields = [
            "id",
            "volume_min",
            "volume_max",
            "sphericity_min",
            "created_by",
            "created",
            "source",
        ]
        read_only_fields = fields


class LayerFilterSerializer(serializers.Serializer[dict[str, Any]]):
    filter = DetectionFilterSerializer(
        allow_null=True, help_text="The current filter (null when none was ever set)."
    )
    history = DetectionFilterSerializer(
        many=True, help_text=f"The latest {filters.HISTORY_LENGTH} filters, newest first."
    )


class FilterInputSerializer(serializers.Serializer[dict[str, Any]]):
    """Bounds of a filter; a missing or null bound does not filter."""

    volume_min = serializers.FloatField(
        required=False, allow_null=True, min_value=0, help_text="Keep volume >= this, um^3."
    )
    volume_max = serializers.FloatField(
        required=False, allow_null=True, min_value=0, help_text="Keep volume <= this, um^3."
    )
    sphericity_min = serializers.FloatField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=1,
        help_text="Keep sphericity >= this.",
    )
    source = serializers.CharField(  # type: ignore[assignment]
        required=False,
        allow_blank=True,
        max_length=filters.MAX_SOURCE,
        help_text="Why, for people.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        filters.filter_values_check(
            attrs.get("volume_min"), attrs.get("volume_max"), attrs.get("sphericity_min")
        )
        return attrs


def layer_filter_body(layer: Any) -> dict[str, Any]:
    history = list(filters.layer_filter_history(layer))
    return LayerFilterSerializer(
        {"filter": history[0] if history else None, "history": history}
    ).data


class LayerFilterView(_LayerView):
    """The layer's detection filter (volume min/max, sphericity min, as the pipeline's
    thresholds) and its history. POST stores a new filter (the dataset's owner); all bounds
    null clears it. A minimum above the maximum, a negative volume or a sphericity outside
    [0, 1] is a 400."""

    serializer_class = LayerFilterSerializer  # type: ignore[assignment]  # not a Detection
    parser_classes = [StrictJSONParser]
    method_actions = {"GET": "view", "HEAD": "view", "OPTIONS": "view", "POST": "change"}
    denied_messages = {"change": "Only the dataset's owner can set its detection filter."}

    def get(self, request: Request, slug: str, layer_name: str) -> Response:
        return Response(layer_filter_body(self.layer()))

    @extend_schema(request=FilterInputSerializer, responses={201: LayerFilterSerializer})
    def post(self, request: Request, slug: str, layer_name: str) -> Response:
        layer = self.layer("change")
        form = FilterInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        filters.layer_filter_set(
            layer,
            signed_in_user(request),
            filters.FilterValues(
                data.get("volume_min"), data.get("volume_max"), data.get("sphericity_min")
            ),
            source=data.get("source") or "API",
        )
        return Response(layer_filter_body(layer), status=status.HTTP_201_CREATED)
