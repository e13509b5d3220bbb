"""The import tests' uploads: bright balls on noise with their label image, sent as TIFFs to
`/api/v1/imports/` by a user with an API token."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import requests
import tifffile
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token


def tiff_bytes(volume: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, volume)
    return buffer.getvalue()


def balls_and_labels(
    shape: tuple[int, int, int],
    balls: Sequence[tuple[int, int, int, int]],
    ids: Sequence[int] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A uint16 image with a bright ball per ``(z, y, x, radius)`` and the uint16 labels of the
    balls (ids 1, 2, ... unless ``ids`` are given)."""
    z, y, x = np.indices(shape)
    labels = np.zeros(shape, dtype=np.uint16)
    for label, (cz, cy, cx, r) in zip(ids or range(1, len(balls) + 1), balls, strict=True):
        labels[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= r * r] = label
    image = np.random.default_rng(seed).normal(400, 40, shape) + (labels > 0) * 2000
    return image.clip(0, 65535).astype(np.uint16), labels


def token_session(username: str) -> requests.Session:
    """A new user's API session (token auth, so no CSRF dance)."""
    user = get_user_model().objects.create_user(username, password="not-used-here")
    session = requests.Session()
    session.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
    return session


def upload_volume(
    session: requests.Session,
    base_url: str,
    name: str,
    voxel_size: str,
    image: np.ndarray,
    labels: np.ndarray,
) -> requests.Response:
    """POST an image and its labels as an import (the answer is checked by the caller)."""
    return session.post(
        f"{base_url}/api/v1/imports/",
        data={"name": name, "voxel_size": voxel_size, "unit": "nanometer"},
        files=[
            ("file", ("volume.tif", tiff_bytes(image), "image/tiff")),
            ("labels", ("nuclei.tif", tiff_bytes(labels), "image/tiff")),
        ],
        timeout=60,
    )
