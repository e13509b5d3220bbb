"""Test data for the annotation app: an image layer, people in every role, a campaign."""

from __future__ import annotations

from typing import Any

from tests.model_factories import DatasetFactory, LayerFactory, UserFactory
from webapp.annotation import services
from webapp.annotation.models import AnnotationCampaign, Role
from webapp.datasets.models import Layer

__all__ = ["UserFactory", "campaign_with", "image_layer", "point_op"]

# z y x voxels of 400 x 200 x 200 nm: 8 x 12.8 x 12.8 um.
SHAPE = (20, 64, 64)


def image_layer(
    owner: Any, shape: tuple[int, int, int] = SHAPE, visibility: str = "public"
) -> Layer:
    dataset = DatasetFactory(owner=owner, visibility=visibility)
    return LayerFactory(dataset=dataset, shape=list(shape))  # type: ignore[no-any-return]


def campaign_with(
    layer: Layer,
    manager: Any,
    *,
    annotators: tuple[Any, ...] = (),
    reviewers: tuple[Any, ...] = (),
    redundancy: int = 1,
    box_size_um: list[float] | None = None,
    label_schema: list[dict[str, str]] | None = None,
) -> AnnotationCampaign:
    spec = services.CampaignSpec(
        name="Nuclei",
        instructions="Click the centre of every **nucleus**.",
        label_schema=label_schema,
        box_size_um=box_size_um or [4.0, 6.4, 6.4],  # 10 x 32 x 32 voxels: 8 boxes
        redundancy=redundancy,
    )
    campaign = services.campaign_create(manager, layer.dataset, layer, spec)
    for user in annotators:
        services.member_add(campaign, manager, user.username, Role.ANNOTATOR)
    for user in reviewers:
        services.member_add(campaign, manager, user.username, Role.REVIEWER)
    return campaign


def painted_campaign(
    people: dict[str, Any],
    shape: tuple[int, int, int],
    box_size_um: list[float],
    origin_um: list[float],
    redundancy: int = 1,
) -> AnnotationCampaign:
    """A painted campaign over a new image of ``shape`` whose origin is ``origin_um``, tiled;
    annotators a1-a3 and reviewer rv of ``people``."""
    campaign = campaign_with(
        image_layer(people["owner"], shape=shape),
        people["owner"],
        annotators=(people["a1"], people["a2"], people["a3"]),
        reviewers=(people["rv"],),
        box_size_um=box_size_um,
        redundancy=redundancy,
    )
    campaign.painted = True
    campaign.geometry = {**campaign.geometry, "origin_um": origin_um}
    campaign.save()
    services.boxes_tile(campaign, people["owner"])
    return campaign


def point_op(uid: str, z: float, y: float, x: float, label: str = "nucleus") -> dict[str, Any]:
    return {
        "op": "upsert",
        "uid": uid,
        "kind": "point",
        "label": label,
        "object_id": 0,
        "coords": [[z, y, x]],
    }
