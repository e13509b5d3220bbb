"""A dataset of synthetic nuclei with a painted campaign whose boxes hold approved ground truth:
what a retraining run starts from, for the runs app's API and integration tests.

The image is ``make_nuclei_volume`` (the demo's generator) at 200 nm; the campaign's boxes tile
it, and the first ``approved`` of them are painted with the true labels, submitted and approved.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from rest_framework.test import APIClient

from pipeline.importers import convert_to_ome_zarr
from pipeline.ome_zarr_io import create_single_level_image
from pipeline.synthetic import make_nuclei_volume
from tests.model_factories import DatasetFactory, LayerFactory, UserFactory
from webapp.annotation import services
from webapp.annotation.models import AnnotationCampaign, Role
from webapp.datasets.import_publish import layer_fields
from webapp.datasets.models import Layer, LayerKind

RUNS_API = "/api/v1/runs/"
VOXEL_NM = 200.0
SHAPE = (64, 96, 96)
BOX = (32, 48, 48)  # 8 boxes
NUCLEI = 24  # the demo's density: 300 in 256^3


def people() -> dict[str, Any]:
    """owner (dataset owner, campaign manager), manager (a second manager), annotator a1,
    reviewer rv, an outsider."""
    return {
        name: UserFactory(username=name) for name in ("owner", "manager", "a1", "rv", "outsider")
    }


def retrain_campaign(
    who: dict[str, Any],
    *,
    approved: int = 5,
    painted: bool = True,
    visibility: str = "public",
    shape: tuple[int, int, int] = SHAPE,
    box: tuple[int, int, int] = BOX,
) -> tuple[AnnotationCampaign, np.ndarray]:
    """The campaign (boxes tiled, the first ``approved`` painted with the truth and approved)
    and the true labels of the whole image."""
    image, labels = make_nuclei_volume(
        shape=shape, n_nuclei=NUCLEI * int(np.prod(shape)) // int(np.prod(SHAPE)), seed=3,
        voxel_size_nm=VOXEL_NM,
    )  # fmt: skip
    dataset = DatasetFactory(owner=who["owner"], visibility=visibility)
    layer = LayerFactory(
        dataset=dataset, shape=list(shape), voxel_size=[VOXEL_NM] * 3, dtype="uint16"
    )
    path = dataset.root / layer.path
    path.parent.mkdir(parents=True, exist_ok=True)
    array = create_single_level_image(
        path, shape, dtype=np.uint16, chunks=box, voxel_size=(VOXEL_NM,) * 3, name="image"
    )
    array[...] = image
    spec = services.CampaignSpec(
        name="Nuclei",
        instructions="Paint every nucleus.",
        label_schema=None,
        box_size_um=[n * VOXEL_NM / 1000 for n in box],
        redundancy=1,
        painted=painted,
    )
    campaign = services.campaign_create(who["owner"], dataset, layer, spec)
    services.member_add(campaign, who["owner"], who["manager"].username, Role.MANAGER)
    services.member_add(campaign, who["owner"], who["a1"].username, Role.ANNOTATOR)
    services.member_add(campaign, who["owner"], who["rv"].username, Role.REVIEWER)
    services.boxes_tile(campaign, who["owner"])
    approve_next(campaign, who, labels, approved)
    return campaign, labels


DSB2018 = Path(__file__).resolve().parent / "data" / "dsb2018_2d"
PIXEL_NM = 100.0


def painted_campaign_2d(owner: Any, channels: int = 1) -> AnnotationCampaign:
    """A 2D dataset (the real dsb2018 crop, 256 x 256 pixels of 100 nm, axes y, x) and a
    painted campaign over it tiled with four 128 x 128 boxes (one pixel deep). With
    ``channels`` 3, an immunofluorescence-like image imported from a TIFF as a user would
    (axes c, y, x): the nuclei, the nuclei mirrored, and a flat dim channel."""
    image = tifffile.imread(DSB2018 / "img2d_crop.tif")
    dataset = DatasetFactory(owner=owner, visibility="public")
    if channels == 1:
        layer = LayerFactory(
            dataset=dataset, shape=list(image.shape), axes=["y", "x"],
            voxel_size=[PIXEL_NM] * 2, dtype=str(image.dtype),
        )  # fmt: skip
        path = dataset.root / layer.path
        path.parent.mkdir(parents=True, exist_ok=True)
        create_single_level_image(
            path, image.shape, dtype=image.dtype, chunks=(128, 128), voxel_size=(PIXEL_NM,) * 2,
            name="image",
        )[...] = image  # fmt: skip
    else:
        assert channels == 3
        stack = np.stack([image, image[:, ::-1], np.full_like(image, 20)])
        with tempfile.TemporaryDirectory() as upload:
            tif = Path(upload) / "if.tif"
            tifffile.imwrite(tif, stack, metadata={"axes": "CYX"}, photometric="minisblack")
            info = convert_to_ome_zarr(
                tif, dataset.root, voxel_size=(PIXEL_NM / 1000,) * 2, unit="micrometer"
            ).image
        layer = Layer.objects.create(
            dataset=dataset, name="image", kind=LayerKind.IMAGE, **layer_fields(info)
        )
    spec = services.CampaignSpec(
        name="Nuclei 2D", box_size_um=[PIXEL_NM / 1000, 12.8, 12.8], painted=True
    )
    campaign = services.campaign_create(owner, dataset, layer, spec)
    services.boxes_tile(campaign, owner)
    return campaign


def retrain_campaign_2d(who: dict[str, Any], channels: int = 1) -> AnnotationCampaign:
    """``painted_campaign_2d``'s four boxes, all painted with the true nuclei by a1 and
    approved by rv."""
    labels = tifffile.imread(DSB2018 / "mask2d_crop.tif").astype(np.uint32)
    campaign = painted_campaign_2d(who["owner"], channels)
    services.member_add(campaign, who["owner"], who["manager"].username, Role.MANAGER)
    services.member_add(campaign, who["owner"], who["a1"].username, Role.ANNOTATOR)
    services.member_add(campaign, who["owner"], who["rv"].username, Role.REVIEWER)
    approve_next(campaign, who, labels[None], 4)
    return campaign


def approve_next(
    campaign: AnnotationCampaign, who: dict[str, Any], labels: np.ndarray, count: int = 1
) -> None:
    """a1 paints the next ``count`` boxes with the true labels (a point campaign: nothing) and
    submits them; rv approves them."""
    for _ in range(count):
        row = services.next_task(campaign, who["a1"])
        assert row is not None
        start = [int(n) for n in row.box.start]
        size = [int(n) for n in row.box.size]
        crop = labels[tuple(slice(a, a + n) for a, n in zip(start, size, strict=True))]
        if campaign.painted:
            services.labels_save(row, who["a1"], row.version, _chunks(crop))
            row.refresh_from_db()
        row = services.submit(row, who["a1"], row.version)
        services.approve(row, who["rv"])


def _chunks(crop: np.ndarray, side: int = 64) -> dict[tuple[int, int, int], np.ndarray]:
    """A box's labels cut into the label store's chunks (64 voxels a side, a 2D box's depth of
    one whole); a 3D test box is one chunk."""
    if crop.shape[0] > 1:
        return {(0, 0, 0): crop.copy()}
    return {
        (0, y // side, x // side): crop[:, y : y + side, x : x + side].copy()
        for y in range(0, crop.shape[1], side)
        for x in range(0, crop.shape[2], side)
    }


def client(user: Any = None) -> APIClient:
    """An API client signed in as ``user`` (anonymous without)."""
    api = APIClient()
    if user is not None:
        api.force_authenticate(user)
    return api


def token_session(user: Any) -> Any:
    """A ``requests`` session signed in to the API with a new token of ``user``."""
    import requests
    from rest_framework.authtoken.models import Token

    api = requests.Session()
    api.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
    return api


def run_finished(api: Any, url: str, timeout: float = 600) -> dict[str, Any]:
    """The run at ``url`` once it has ended; a failed run raises with its error and log."""
    from celery_harness import wait_for

    from webapp.runs.models import PipelineRun

    body: dict[str, Any] = wait_for(
        lambda: (b := api.get(url, timeout=30).json())["status"] in ("succeeded", "failed") and b,
        timeout,
        "the run to end",
        interval=0.5,
    )
    if body["status"] != "succeeded":
        log = PipelineRun.objects.get(pk=body["id"]).log
        raise AssertionError(f"run {body['id']} failed: {body['error']}\n{log[-3000:]}")
    return body


def open_proofreading(api: Any, base: str, model_id: int) -> dict[str, Any]:
    """POST ``models/<id>/proofreading/`` (``api`` a signed-in ``requests`` session) until it
    opens a campaign (201): it answers 400 until the version's detections table is built, after
    publishing. A timeout says the last answer and the detections builds' errors."""
    from celery_harness import wait_for

    from webapp.detections.models import DetectionBuild

    answers: list[Any] = []

    def opened() -> dict[str, Any] | None:
        answers.append(api.post(f"{base}/models/{model_id}/proofreading/", timeout=30))
        return answers[-1].json() if answers[-1].status_code == 201 else None

    try:
        body: dict[str, Any] = wait_for(opened, 120, "the detections to be built", interval=1.0)
    except AssertionError:
        builds = list(DetectionBuild.objects.values("status", "error"))
        raise AssertionError(f"{answers[-1].status_code}: {answers[-1].text} {builds}") from None
    return body
