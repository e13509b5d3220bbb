"""Gallery card API: one detection's card as PNG (ETag, conditional GET), and the layer's card
build (GET status, POST rebuild). Permissions are the detections views': viewing the dataset
(404 otherwise), changing it to rebuild."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from webapp.core.jobs.models import JobState
from webapp.core.users import signed_in_user
from webapp.datasets.models import Layer, Visibility
from webapp.detections.api.views import _LayerView
from webapp.detections.cards import CardFile, card_file, cards_build_start, cards_status
from webapp.detections.models import CardBuild

#: Browsers revalidate after this (the ETag answers 304); a card changes only with its data.
CARD_MAX_AGE = 300


class JsonErrorsNegotiation(BaseContentNegotiation):
    """A card is always a PNG (a plain Django response no renderer touches), so ``Accept`` only
    chooses how an error is written: always JSON, as the schema says, never a JSON body labelled
    ``image/png`` (nor a 406 for a browser's ``Accept: image/*``)."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: Any, format_suffix: str | None = None
    ) -> tuple[Any, str]:
        return renderers[0], renderers[0].media_type


class CardBuildSerializer(serializers.ModelSerializer[CardBuild]):
    """A render of a layer's gallery cards."""

    progress = serializers.FloatField(read_only=True, help_text="done / total of the stage, 0-1.")
    state = serializers.ChoiceField(choices=JobState.choices, read_only=True)

    class Meta:
        model = CardBuild
        fields = [
            "id",
            "status",
            "state",
            "reason",
            "key",
            "stage",
            "done",
            "total",
            "progress",
            "error",
            "n_cards",
            "n_failed",
            "attempts",
            "created",
            "started",
            "finished",
        ]
        read_only_fields = fields


class CardStatusSerializer(serializers.Serializer[dict[str, Any]]):
    layer = serializers.CharField(help_text="The layer's name.")
    latest_build = CardBuildSerializer(allow_null=True, help_text="Null: never rendered.")


def _cache_control(layer: Layer) -> str:
    public = layer.dataset.visibility == Visibility.PUBLIC  # the dataset came with the layer
    return f"{'public' if public else 'private'}, max-age={CARD_MAX_AGE}"


def _matches(header: str, etag: str) -> bool:
    return any(t.strip() in (etag, f"W/{etag}", "*") for t in header.split(","))


@extend_schema(
    responses={
        (200, "image/png"): OpenApiResponse(
            OpenApiTypes.BINARY,
            description="The detection's card: three mid-slices (xy, zy, xz) with its outline "
            "and a render of its mesh, a 194 x 194 palette PNG. Rendered now when the layer's "
            "card job has not reached it yet. ETag and Cache-Control are set.",
        ),
        304: OpenApiResponse(description="If-None-Match names the current card."),
    },
)
class DetectionCardView(_LayerView):
    """One detection's gallery card (PNG); 404 when the layer has no such detection or its card
    cannot be drawn (the layer's files are missing or do not match the table)."""

    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonErrorsNegotiation

    def get(self, request: Request, slug: str, layer_name: str, segment_id: int) -> HttpResponse:
        layer = self.layer()
        headers = {"Cache-Control": _cache_control(layer)}
        known = card_file(layer, segment_id, render=False)
        inm = request.META.get("HTTP_IF_NONE_MATCH")
        if inm and _matches(inm, known.etag):
            return self._answer(HttpResponse(status=304), known, headers)
        card = known if known.path.is_file() else card_file(layer, segment_id)
        try:
            body = card.path.read_bytes()
        except OSError:  # removed by a newer card set between the check and the read
            card = card_file(layer, segment_id)
            body = card.path.read_bytes()
        return self._answer(HttpResponse(body, content_type="image/png"), card, headers)

    def _answer(
        self, response: HttpResponse, card: CardFile, headers: dict[str, str]
    ) -> HttpResponse:
        response["ETag"] = card.etag
        response["X-Content-Type-Options"] = "nosniff"
        for name, value in headers.items():
            response[name] = value
        return response


class CardBuildView(_LayerView):
    """The layer's gallery cards: the latest render job (GET); POST renders them again (the
    dataset's owner; a render of the same data already queued or running is returned)."""

    serializer_class = CardStatusSerializer  # type: ignore[assignment]
    method_actions = {"GET": "view", "HEAD": "view", "OPTIONS": "view", "POST": "change"}
    denied_messages = {"change": "Only the dataset's owner can rebuild its gallery cards."}

    def _status(self, layer: Layer) -> dict[str, Any]:
        return {"layer": layer.name, "latest_build": cards_status(layer)}

    def get(self, request: Request, slug: str, layer_name: str) -> Response:
        return Response(self.get_serializer(self._status(self.layer())).data)

    @extend_schema(request=None, responses={202: CardStatusSerializer})
    def post(self, request: Request, slug: str, layer_name: str) -> Response:
        layer = self.layer("change")
        cards_build_start(layer, user=signed_in_user(request), reason="rebuild", force=True)
        data = self.get_serializer(self._status(layer)).data
        return Response(data, status=status.HTTP_202_ACCEPTED)
