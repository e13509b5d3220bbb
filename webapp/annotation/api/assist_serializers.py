"""Serializers of the assistance endpoints: the issue-10 contract's Proposal and job."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from webapp.annotation.models import ASSIST_STATES, PROPOSAL_SOURCES

MAX_VOXEL = 2**31 - 1


class ClickInputSerializer(serializers.Serializer[dict[str, Any]]):
    z = serializers.IntegerField(min_value=0, max_value=MAX_VOXEL, help_text="Box-local voxel.")
    y = serializers.IntegerField(min_value=0, max_value=MAX_VOXEL)
    x = serializers.IntegerField(min_value=0, max_value=MAX_VOXEL)


class ProposalSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.CharField(help_text="Unique within the assignment.")
    bbox = serializers.ListField(
        child=serializers.IntegerField(),
        min_length=6,
        max_length=6,
        help_text="Box-local, half-open: z0, y0, x0, z1, y1, x1.",
    )
    rle = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Runs of 1s over the C-order flattening of the bbox: start, length, ...",
    )
    voxels = serializers.IntegerField()
    score = serializers.FloatField(min_value=0.0, max_value=1.0)
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=PROPOSAL_SOURCES,
        help_text="The current model's predictions, or the classical watershed on the image.",
    )
    model = serializers.CharField(
        required=False,
        help_text='The model version that proposed it ("model v3"), when source is model.',
    )


class ClickResultSerializer(serializers.Serializer[dict[str, Any]]):
    proposal = ProposalSerializer(allow_null=True, help_text="Null when nothing was found.")
    reason = serializers.CharField(help_text="What was found, or why nothing was.")


class AssistJobSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.IntegerField()
    state = serializers.ChoiceField(choices=ASSIST_STATES)
    progress = serializers.FloatField(min_value=0.0, max_value=1.0)
    message = serializers.CharField(allow_blank=True)
    proposals = ProposalSerializer(many=True, help_text="Empty until the job is done.")
