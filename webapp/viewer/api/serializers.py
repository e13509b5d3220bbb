"""Saved viewer states ("copy link")."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from webapp.viewer.services import StateError, validate_state


class SavedStateCreateSerializer(serializers.Serializer[dict[str, Any]]):
    state = serializers.JSONField(
        help_text="Neuroglancer state, as viewer.state.toJSON() gives it."
    )
    share_token = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=64,
        help_text="Share-link token, when saving from a share-link page.",
    )

    def validate_state(self, value: Any) -> dict[str, Any]:
        try:
            return validate_state(value)
        except StateError as exc:
            raise serializers.ValidationError(str(exc))


class SavedStateSerializer(serializers.Serializer[dict[str, Any]]):
    key = serializers.CharField()
    dataset = serializers.CharField(source="dataset.slug")
    url = serializers.CharField(help_text="Site-relative URL that reopens this view.")
    created = serializers.DateTimeField()


class SavedStateDetailSerializer(SavedStateSerializer):
    state = serializers.JSONField()
