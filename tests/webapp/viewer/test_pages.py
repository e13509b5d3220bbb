"""Dataset list, viewer pages (own, other's, public, share links) and thumbnails."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from django.test import Client
from django.utils import timezone
from PIL import Image

from webapp.datasets.models import Dataset, Layer, LayerKind, Visibility
from webapp.viewer.models import SavedState

pytestmark = pytest.mark.django_db


def page_state(response: Any) -> dict[str, Any]:
    html = response.content.decode()
    start = html.index('<script id="viewer-state" type="application/json">') + len(
        '<script id="viewer-state" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_list_shows_only_visible_datasets(client: Client, make_dataset: Any, owner: Any) -> None:
    make_dataset("mine", Visibility.PRIVATE)
    make_dataset("open", Visibility.PUBLIC)
    anonymous = client.get("/").content.decode()
    assert "Cells open" in anonymous and "Cells mine" not in anonymous
    client.force_login(owner)
    html = client.get("/").content.decode()
    assert "Cells mine" in html and "Cells open" in html
    assert "40 \u00d7 60 \u00d7 80" in html  # shape
    assert "192,000 voxels" in html and "375.0" in html  # 40*60*80 uint16 = 375 KB
    assert "400 \u00d7 200 \u00d7 100 nm (zyx)" in html
    assert "/datasets/mine/thumbnail.png" in html
    assert 'href="/datasets/import/"' in html


def test_a_2d_multichannel_card_counts_pixels_not_channels(
    client: Client, make_dataset: Any, owner: Any
) -> None:
    """Three channels of 256 x 384 uint8: 98,304 pixels (not 294,912 "voxels"), 288 KB."""
    dataset = make_dataset("if2d", Visibility.PUBLIC)
    Layer.objects.filter(dataset=dataset, kind=LayerKind.IMAGE).update(
        shape=[3, 256, 384], axes=["c", "y", "x"], voxel_size=[500.0, 500.0], dtype="uint8"
    )
    html = client.get("/").content.decode()
    assert "3 \u00d7 256 \u00d7 384 (cyx)" in html
    assert "98,304 pixels, 288.0\u00a0KB" in html
    # A run's probability map (an image derived from a segmentation) is counted as such.
    seg = Layer.objects.get(dataset=dataset, kind=LayerKind.SEGMENTATION)
    Layer.objects.create(
        dataset=dataset, name="model-v1-probability", kind=LayerKind.IMAGE, path="p",
        source_layer=seg, shape=[256, 384], axes=["y", "x"], voxel_size=[500.0, 500.0],
    )  # fmt: skip
    html = client.get("/").content.decode()
    assert "1 image, 1 segmentation, 1 mesh, 1 probability map" in html
    # A row whose axes are unknown counts its whole shape, rather than failing the page.
    Layer.objects.filter(dataset=dataset, kind=LayerKind.IMAGE).update(axes=[])
    html = client.get("/").content.decode()
    assert "294,912 voxels" in html


@pytest.mark.parametrize(
    ("visibility", "who", "status"),
    [
        (Visibility.PRIVATE, "anonymous", 404),
        (Visibility.PRIVATE, "other", 404),
        (Visibility.PRIVATE, "owner", 200),
        (Visibility.PUBLIC, "anonymous", 200),
        (Visibility.PUBLIC, "other", 200),
    ],
)
def test_viewer_page_permissions(
    client: Client,
    make_dataset: Any,
    owner: Any,
    other: Any,
    visibility: str,
    who: str,
    status: int,
) -> None:
    make_dataset("cells", visibility)
    if who != "anonymous":
        client.force_login(owner if who == "owner" else other)
    response = client.get("/datasets/cells/")
    assert response.status_code == status
    if status == 200:
        html = response.content.decode()
        assert '<iframe id="neuroglancer"' in html and 'src="/neuroglancer/v/annotome/"' in html
        assert "Copy link" in html
        state = page_state(response)
        assert state["layers"][0]["source"].startswith("zarr3://http://testserver/data/cells/")


def test_share_link_viewer(client: Client, make_dataset: Any, share_link: Any) -> None:
    dataset = make_dataset("cells", Visibility.PRIVATE)
    make_dataset("another", Visibility.PRIVATE)
    link = share_link(dataset)
    response = client.get(f"/s/{link.token}/datasets/cells/")
    assert response.status_code == 200
    state = page_state(response)
    assert state["layers"][0]["source"] == (
        f"zarr3://http://testserver/s/{link.token}/data/cells/image.ome.zarr"
    )
    assert client.get(f"/s/{link.token}/datasets/another/").status_code == 404
    assert client.get("/s/not-a-token/datasets/cells/").status_code == 404
    link.revoked_at = timezone.now()
    link.save()
    assert client.get(f"/s/{link.token}/datasets/cells/").status_code == 404


def test_saved_state_opens_only_under_its_dataset(
    client: Client, make_dataset: Any, owner: Any
) -> None:
    cells = make_dataset("cells", Visibility.PUBLIC)
    other = make_dataset("other", Visibility.PUBLIC)
    saved = SavedState.objects.create(
        dataset=cells, state={"position": [1, 2, 3], "layers": []}, created_by=owner
    )
    response = client.get(f"/datasets/cells/?state={saved.key}")
    assert response.status_code == 200
    assert page_state(response)["position"] == [1, 2, 3]
    wrong = client.get(f"/datasets/{other.slug}/?state={saved.key}")
    assert wrong.status_code == 404
    assert "This saved view does not exist" in wrong.content.decode()
    assert page_state(wrong)["position"] == [40.0, 30.0, 20.0]  # default view of "other"


def test_thumbnail_is_rendered_cached_and_permission_checked(
    client: Client, nuclei_dataset: Dataset, owner: Any, other: Any
) -> None:
    assert client.get("/datasets/real/thumbnail.png").status_code == 404
    client.force_login(other)
    assert client.get("/datasets/real/thumbnail.png").status_code == 404
    client.force_login(owner)
    response = client.get("/datasets/real/thumbnail.png")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    picture = np.asarray(Image.open(io.BytesIO(b"".join(response.streaming_content))))
    assert picture.shape == (256, 256, 3)
    assert picture.std() > 10  # image texture, not a flat fill
    saturated = (picture.max(axis=2).astype(int) - picture.min(axis=2)) > 120
    assert saturated.sum() > 200  # coloured label outlines
    assert (nuclei_dataset.root / "thumbnail.png").is_file()


def test_thumbnail_follows_the_layers_not_the_datasets_name(
    client: Client, nuclei_dataset: Dataset, owner: Any
) -> None:
    """Renaming does not redraw it; a new layer (or the layers_changed signal) does."""
    import os

    from webapp.datasets.signals import layers_changed
    from webapp.viewer.thumbnails import thumbnail_current

    assert thumbnail_current(nuclei_dataset) is None
    layers_changed.send(sender=Dataset, dataset=nuclei_dataset)  # what an import job sends
    path = thumbnail_current(nuclei_dataset)
    assert path is not None
    os.utime(path, (1_000_000_000, 1_000_000_000))  # written long ago ...
    Layer.objects.filter(dataset=nuclei_dataset).update(
        created=timezone.datetime(2000, 1, 1, tzinfo=timezone.get_fixed_timezone(0))
    )  # ... after the layers it draws
    nuclei_dataset.name = "Renamed"
    nuclei_dataset.save()
    assert thumbnail_current(nuclei_dataset) == path
    client.force_login(owner)
    assert client.get("/datasets/real/thumbnail.png").status_code == 200
    assert path.stat().st_mtime == 1_000_000_000, "a rename does not redraw the thumbnail"
    Layer.objects.filter(dataset=nuclei_dataset, kind="segmentation").update(created=timezone.now())
    assert thumbnail_current(nuclei_dataset) is None
    assert client.get("/datasets/real/thumbnail.png").status_code == 200
    assert path.stat().st_mtime > 1_000_000_000


def test_legend_counts_objects_and_says_how_to_show_meshes(
    client: Client, nuclei_dataset: Dataset, settings: Any
) -> None:
    nuclei_dataset.visibility = Visibility.PUBLIC
    nuclei_dataset.save()
    settings.VIEWER_DEFAULT_SEGMENTS = 5
    html = client.get(f"/datasets/{nuclei_dataset.slug}/").content.decode()
    assert "(6 objects, meshes: double-click an object to show its mesh)" in html
    # Each layer's swatch says what it draws: an image, a segmentation.
    assert html.count('class="legend-item legend-image"') == 1
    assert html.count('class="legend-item legend-segmentation"') == 1
    settings.VIEWER_DEFAULT_SEGMENTS = 50
    html = client.get(f"/datasets/{nuclei_dataset.slug}/").content.decode()
    assert "(6 objects, meshes)" in html
    # The count is that of the meshes: a segmentation without them (a 2D one) shows none, not
    # "0 objects".
    Layer.objects.filter(dataset=nuclei_dataset, kind="mesh").delete()
    html = client.get(f"/datasets/{nuclei_dataset.slug}/").content.decode()
    assert html.count('class="legend-item legend-segmentation"') == 1
    assert " objects" not in html.split('class="legend"', 1)[1].split("</ul>", 1)[0]


def test_show_parameter_shows_one_segmentation_and_hides_the_others(
    client: Client, make_dataset: Any
) -> None:
    cells = make_dataset("cells", Visibility.PUBLIC)
    from webapp.datasets.models import Layer, LayerKind

    source = Layer.objects.get(dataset=cells, name="nuclei")
    Layer.objects.create(
        dataset=cells,
        name="nuclei-curated",
        kind=LayerKind.SEGMENTATION,
        path="image.ome.zarr/labels/nuclei-curated",
        ngff_version="0.5",
        dtype="uint32",
        shape=source.shape,
        axes=source.axes,
        voxel_size=source.voxel_size,
        unit=source.unit,
    )

    def visibility(state: dict[str, Any]) -> dict[str, bool]:
        return {la["name"]: la.get("visible", True) for la in state["layers"]}

    plain = page_state(client.get("/datasets/cells/"))
    assert visibility(plain) == {"image": True, "nuclei": True, "nuclei-curated": True}
    response = client.get("/datasets/cells/?show=nuclei-curated")
    assert response.status_code == 200
    state = page_state(response)
    assert visibility(state) == {"image": True, "nuclei": False, "nuclei-curated": True}
    assert state["selectedLayer"]["layer"] == "nuclei-curated"
    for bad in ("image", "nuclei meshes", "no-such-layer"):
        wrong = client.get("/datasets/cells/", {"show": bad})
        assert wrong.status_code == 404, bad
        assert "has no segmentation layer named" in wrong.content.decode()
        assert visibility(page_state(wrong)) == visibility(plain)
