"""Saved viewer states: anyone who may see a dataset (share-link visitors too) may save a view."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, UserRateThrottle
from rest_framework.views import APIView

from webapp.datasets.models import Dataset
from webapp.viewer.api.serializers import (
    SavedStateCreateSerializer,
    SavedStateDetailSerializer,
    SavedStateSerializer,
)
from webapp.viewer.models import SavedState
from webapp.viewer.selectors import saved_state_for, viewer_dataset
from webapp.viewer.services import StateError, saved_state_create, saved_state_url

DEFAULT_MAX_STATE_BYTES = 1024 * 1024


def max_state_bytes() -> int:
    return int(getattr(settings, "VIEWER_STATE_MAX_BYTES", DEFAULT_MAX_STATE_BYTES))


class StateSaveThrottle(UserRateThrottle):
    """``VIEWER_STATE_SAVE_RATE`` saves per user, or per client address when anonymous."""

    scope = "viewer-state-save"

    def get_rate(self) -> str:
        return str(settings.VIEWER_STATE_SAVE_RATE)


def _dataset_or_404(request: Request, slug: str, share_token: str | None) -> Dataset:
    dataset = viewer_dataset(slug, request.user, share_token=share_token or None)
    if dataset is None:
        raise Http404("No such dataset, or you may not see it (or the share link is not active).")
    return dataset


def _payload(saved: SavedState, share_token: str | None) -> dict[str, Any]:
    return {
        "key": saved.key,
        "dataset": saved.dataset,
        "url": saved_state_url(saved, share_token or None),
        "created": saved.created,
        "state": saved.state,
    }


class SavedStateListView(APIView):
    permission_classes = [AllowAny]  # access is the dataset's (or share link's), checked below

    def get_throttles(self) -> list[BaseThrottle]:
        return [StateSaveThrottle()] if self.request.method == "POST" else []

    @extend_schema(request=SavedStateCreateSerializer, responses={201: SavedStateSerializer})
    def post(self, request: Request, slug: str) -> Response:
        limit = max_state_bytes()
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > limit or len(request.body) > limit:
            return Response(
                {"message": f"The state is larger than {limit} bytes; it cannot be saved."},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        serializer = SavedStateCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = serializer.validated_data.get("share_token") or None
        dataset = _dataset_or_404(request, slug, token)
        try:
            saved = saved_state_create(dataset, serializer.validated_data["state"], request.user)
        except StateError as exc:
            return Response({"message": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        body = SavedStateSerializer(_payload(saved, token)).data
        return Response(body, status=status.HTTP_201_CREATED)


class SavedStateDetailView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[OpenApiParameter("share_token", str, description="Share-link token")],
        responses={200: SavedStateDetailSerializer},
    )
    def get(self, request: Request, slug: str, key: str) -> Response:
        token = request.query_params.get("share_token") or None
        dataset = _dataset_or_404(request, slug, token)
        saved = saved_state_for(dataset, key)
        if saved is None:
            raise Http404("No saved view with this key for this dataset.")
        return Response(SavedStateDetailSerializer(_payload(saved, token)).data)
