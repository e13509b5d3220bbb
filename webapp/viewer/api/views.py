"""Saved viewer states: anyone who may see a dataset (share-link visitors too) may save a view."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, UserRateThrottle

from webapp.core.api_schema import ErrorSerializer
from webapp.core.errors import NotFound, TooLarge
from webapp.core.permissions import VIEW, RestrictedAPIView
from webapp.datasets.models import Dataset
from webapp.datasets.selectors import dataset_for_share_token
from webapp.viewer.api.serializers import (
    SavedStateCreateSerializer,
    SavedStateDetailSerializer,
    SavedStateSerializer,
)
from webapp.viewer.models import SavedState
from webapp.viewer.selectors import saved_state_for
from webapp.viewer.services import saved_state_create, saved_state_url

DEFAULT_MAX_STATE_BYTES = 1024 * 1024
NO_DATASET = "No such dataset, or you may not see it (or the share link is not active)."


def max_state_bytes() -> int:
    return int(getattr(settings, "VIEWER_STATE_MAX_BYTES", DEFAULT_MAX_STATE_BYTES))


def _declared_length(request: Request) -> int:
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


class StateSaveThrottle(UserRateThrottle):
    """``VIEWER_STATE_SAVE_RATE`` saves per user, or per client address when anonymous."""

    scope = "viewer-state-save"

    def get_rate(self) -> str:
        return str(settings.VIEWER_STATE_SAVE_RATE)


def _payload(saved: SavedState, share_token: str | None) -> dict[str, Any]:
    return {
        "key": saved.key,
        "dataset": saved.dataset,
        "url": saved_state_url(saved, share_token or None),
        "created": saved.created,
        "state": saved.state,
    }


class SavedStateView(RestrictedAPIView[SavedState]):
    """Saving and reading a view both need only the right to view the dataset (or its link)."""

    queryset = SavedState.objects.all()
    permission_classes = [AllowAny]  # the dataset's access rule decides, in dataset()
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": VIEW}

    def dataset(self, slug: str, share_token: str | None) -> Dataset:
        if share_token:
            dataset = dataset_for_share_token(share_token, slug)
            if dataset is None:
                raise NotFound(NO_DATASET)
            return dataset
        return self.get_restricted(Dataset.objects.all(), VIEW, not_found=NO_DATASET, slug=slug)


class SavedStateListView(SavedStateView):
    # The saved-state views answer with a payload dict, not the row; the stubs tie
    # ``serializer_class`` to the queryset's model.
    serializer_class = SavedStateCreateSerializer  # type: ignore[assignment]

    def get_throttles(self) -> list[BaseThrottle]:
        return [StateSaveThrottle()] if self.request.method == "POST" else []

    @extend_schema(
        request=SavedStateCreateSerializer,
        responses={201: SavedStateSerializer, 413: ErrorSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        limit = max_state_bytes()
        if _declared_length(request) > limit or len(request.body) > limit:
            raise TooLarge(f"The state is larger than {limit} bytes; it cannot be saved.")
        serializer = SavedStateCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = serializer.validated_data.get("share_token") or None
        dataset = self.dataset(slug, token)
        saved = saved_state_create(dataset, serializer.validated_data["state"], request.user)
        body = SavedStateSerializer(_payload(saved, token)).data
        return Response(body, status=status.HTTP_201_CREATED)


class SavedStateDetailView(SavedStateView):
    serializer_class = SavedStateDetailSerializer  # type: ignore[assignment]  # a payload dict

    @extend_schema(
        parameters=[OpenApiParameter("share_token", str, description="Share-link token")],
        responses={200: SavedStateDetailSerializer},
    )
    def get(self, request: Request, slug: str, key: str) -> Response:
        token = request.query_params.get("share_token") or None
        dataset = self.dataset(slug, token)
        saved = saved_state_for(dataset, key)
        if saved is None:
            raise NotFound("No saved view with this key for this dataset.")
        return Response(SavedStateDetailSerializer(_payload(saved, token)).data)
