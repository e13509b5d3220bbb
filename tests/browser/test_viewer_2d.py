"""A 2D multichannel image (immunofluorescence-like) imported and drawn in the viewer.

Each of three channels lights a different region of the plane; the viewer shows one layer per
channel in its own colour, so the slice panel must show each region in its channel's colour.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from django.conf import settings
from django.contrib.auth import get_user_model
from nuclei_dataset import _layer
from test_viewer import panel_pixels, wait_ready

from pipeline.importers import convert_to_ome_zarr
from webapp.datasets.models import Dataset, LayerKind, Visibility
from webapp.viewer.services import CHANNEL_COLORS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHAPE = (256, 384)  # y, x


def three_channel_plane() -> np.ndarray:
    """uint16 (c, y, x): channel 0 lights the left third, 1 the middle, 2 the right third."""
    rng = np.random.default_rng(0)
    planes = rng.normal(300, 40, (3, *SHAPE)).clip(0)
    third = SHAPE[1] // 3
    for c in range(3):
        planes[c, 40:-40, c * third + 20 : (c + 1) * third - 20] += 3000
    return planes.astype(np.uint16)


def hue_degrees(hex_colour: str) -> float:
    r, g, b = (int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return colorsys.rgb_to_hsv(r, g, b)[0] * 360


def colour_columns(rgb: np.ndarray, hues: list[float]) -> list[tuple[int, float]]:
    """For each hue: how many saturated, bright pixels have it (within 25 degrees), and their
    mean x position in the image."""
    hsv = np.array(
        [colorsys.rgb_to_hsv(*px) for px in rgb.reshape(-1, 3).astype(np.float32) / 255]
    ).reshape(*rgb.shape[:2], 3)
    bright = (hsv[..., 1] > 0.5) & (hsv[..., 2] > 0.4)
    xs = np.broadcast_to(np.arange(rgb.shape[1]), rgb.shape[:2])
    found = []
    for hue in hues:
        near = bright & (np.abs((hsv[..., 0] * 360 - hue + 180) % 360 - 180) < 25)
        found.append((int(near.sum()), float(xs[near].mean()) if near.any() else -1.0))
    return found


def test_2d_multichannel_image_draws_each_channel_in_its_colour(
    live_server: Any, browser_context: Any, tmp_path: Path, artifacts_dir: Path
) -> None:
    tif = tmp_path / "if.tif"
    tifffile.imwrite(tif, three_channel_plane(), metadata={"axes": "CYX"})
    root = Path(settings.DATA_ROOT) / "datasets" / "if2d"
    result = convert_to_ome_zarr(tif, root, voxel_size=(0.5, 0.5), unit="micrometer")
    owner = get_user_model().objects.create_user("owner")
    dataset = Dataset.objects.create(
        name="IF 2D", slug="if2d", owner=owner, visibility=Visibility.PUBLIC
    )
    _layer(dataset, "image", LayerKind.IMAGE, result.image)
    assert result.image.channels == 3 and result.image.axes == ("c", "y", "x")

    page = browser_context.new_page()
    page.goto(f"{live_server.url}/datasets/if2d/")
    errors = wait_ready(page)
    assert errors == []
    names = page.evaluate("() => annotome.viewer().state.toJSON().layers.map((l) => l.name)")
    assert names == ["image c0", "image c1", "image c2"]

    assert page.evaluate("() => annotome.viewer().state.toJSON().layout") == "xy"
    # One voxel (0.5 um) per screen pixel: the 384 x 256 plane fits the panel. (Set the zoom
    # alone: restoring a whole state into this viewer swapped its two global axes.)
    page.evaluate("() => { annotome.viewer().navigationState.zoomFactor.value = 1; }")
    page.wait_for_timeout(300)
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=60_000)
    page.wait_for_timeout(300)
    pixels = panel_pixels(page, 0, artifacts_dir / "viewer-2d-multichannel.png")
    found = colour_columns(pixels, [hue_degrees(CHANNEL_COLORS[c]) for c in range(3)])
    counts, columns = zip(*found, strict=True)
    # Each bright region is ~88 x 176 px: most of it must show in its channel's colour...
    assert min(counts) > 5_000, found
    # ...and the channels' regions lie left to right, as in the image.
    assert columns[0] < columns[1] < columns[2], found
    assert columns[1] - columns[0] > 80 and columns[2] - columns[1] > 80, found

    # "Copy link" reopens the same plane the same way round.
    page.click("#copy-link")
    page.wait_for_function("() => document.getElementById('copy-link-url').value", timeout=20_000)
    reopened = browser_context.new_page()
    reopened.goto(page.input_value("#copy-link-url"))
    assert wait_ready(reopened) == []
    assert reopened.evaluate("() => annotome.viewer().coordinateSpace.value.names") == ["x", "y"]
    again = colour_columns(
        panel_pixels(reopened, 0, artifacts_dir / "viewer-2d-reopened.png"),
        [hue_degrees(CHANNEL_COLORS[c]) for c in range(3)],
    )
    assert [n for n, _ in again] == pytest.approx(list(counts), rel=0.05), again
    assert [x for _, x in again] == pytest.approx(list(columns), abs=3), again
