"""Gallery card API: one detection's card as PNG (ETag, conditional GET), and the layer's card
build (GET status, POST rebuild). Permissions are the detections views': viewing the dataset
(404 otherwise), changing it to rebuild."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from webapp.core.errors import InvalidRequest
from webapp.core.jobs.models import JobState
from webapp.core.users import signed_in_user
from webapp.datasets.models import Layer, Visibility
from webapp.detections.api.views import _LayerView
from webapp.detections.cards import (
    MAX_PAGE_CARDS,
    CardFile,
    card_file,
    card_page,
    cards_build_start,
    cards_status,
    current_card_key,
)
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


def _numbers(help_text: str) -> serializers.ListField:
    return serializers.ListField(child=serializers.FloatField(), help_text=help_text)


class CardGeometrySerializer(serializers.Serializer[Any]):
    """Where a card's pixels lie in the layer (``pipeline.gallery.CardGeometry``): a position
    (px, py) on a slice tile maps to the voxel it shows as ``pipeline.gallery.card_pixel_to_voxel``
    does. A 3D card is 2 x 2 tiles of ``tile`` pixels with ``gap`` between (xy | zy over xz |
    mesh); a 2D card one tile of ``size`` pixels. A tile pixel's centre lies ``(i + 0.5) *
    field_nm / edge - field_nm / 2`` from ``centre_nm`` along the tile's axis."""

    ndim = serializers.IntegerField(help_text="2 or 3: the layer's spatial axes.")
    tile = serializers.IntegerField(help_text="Pixels per tile edge (3D cards).")
    gap = serializers.IntegerField(help_text="Pixels between tiles (3D cards).")
    size = serializers.IntegerField(help_text="Pixels per card edge.")
    field_nm = serializers.FloatField(help_text="Edge of the square field every tile shows (nm).")
    centre_nm = _numbers("The field's centre, z y x (or y x) nm in the layer's coordinates.")
    slices_nm = _numbers("Position of the xy, xz and zy slices along z, y, x (nm); [] in 2D.")
    voxel_size_nm = _numbers("The label image's full-resolution voxel size, z y x (or y x).")
    origin_nm = _numbers("Position of voxel 0's centre, z y x (or y x) nm.")
    shape = serializers.ListField(
        child=serializers.IntegerField(), help_text="The label image's full-resolution shape."
    )


class PageCardSerializer(serializers.Serializer[Any]):
    segment_id = serializers.IntegerField()
    png = serializers.CharField(
        allow_null=True, help_text="The card, base64 PNG (as card.png); null without a card."
    )
    error = serializers.CharField(help_text="Why there is no card ('' when there is one).")
    geometry = CardGeometrySerializer(
        allow_null=True,
        help_text="Where the card's pixels lie in the layer; null without a card (or when its "
        "geometry cannot be read).",
    )


class CardPageSerializer(serializers.Serializer[Any]):
    key = serializers.CharField(help_text="The card set the cards come from.")
    cards = PageCardSerializer(many=True, help_text="In the order asked for.")


def _segment_list(raw: str) -> list[int]:
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts or len(parts) > MAX_PAGE_CARDS:
        raise InvalidRequest(
            f"segments must name 1 to {MAX_PAGE_CARDS} segment ids, separated by commas."
        )
    ids = []
    for part in parts:
        if not part.isdigit() or len(part) > 19 or int(part) >= 2**63:
            raise InvalidRequest(f"segments must be segment ids (integers), not {part[:20]!r}.")
        ids.append(int(part))
    if len(set(ids)) != len(ids):
        raise InvalidRequest("segments must not repeat a segment id.")
    return ids


def _page_etag(key: str, ids: list[int]) -> str:
    return '"' + hashlib.sha256(f"{key}:{ids}".encode()).hexdigest()[:32] + '"'


@extend_schema(
    parameters=[
        OpenApiParameter(
            "segments",
            OpenApiTypes.STR,
            required=True,
            pattern=r"^\d{1,19}(,\d{1,19}){0,99}$",
            description=f"Up to {MAX_PAGE_CARDS} segment ids, comma-separated.",
        )
    ],
    responses={
        200: CardPageSerializer,
        304: OpenApiResponse(description="If-None-Match names these cards as they are."),
    },
)
class CardPageView(_LayerView):
    """Several detections' cards in one answer (a gallery page: one request instead of one
    per card), as base64 PNGs in the order asked for, each with its geometry (where its pixels
    lie in the layer); each is the card job's or drawn now. A detection without a card (not in
    the layer, or not drawable) gets its reason instead. ETag (the card set and the segments)
    and Cache-Control as for one card."""

    serializer_class = CardPageSerializer

    def get(self, request: Request, slug: str, layer_name: str) -> HttpResponse:
        layer = self.layer()
        ids = _segment_list(request.query_params.get("segments", ""))
        key = current_card_key(layer)
        etag = _page_etag(key, ids)
        headers = {"Cache-Control": _cache_control(layer), "ETag": etag}
        inm = request.META.get("HTTP_IF_NONE_MATCH")
        if inm and _matches(inm, etag):
            response = HttpResponse(status=304)
        else:
            key, cards = card_page(layer, ids)
            body = {
                "key": key,
                "cards": [
                    {
                        "segment_id": c.segment_id,
                        "png": base64.b64encode(c.png).decode() if c.png is not None else None,
                        "error": c.error,
                        "geometry": c.geometry.to_json() if c.geometry is not None else None,
                    }
                    for c in cards
                ],
            }
            response = HttpResponse(json.dumps(body), content_type="application/json")
            headers["ETag"] = _page_etag(key, ids)
        for name, value in headers.items():
            response[name] = value
        return response
