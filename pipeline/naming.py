"""Names of label images and of the layers made from them: one rule for the CLI and the site.

A label image's name becomes a directory (``labels/<name>``, ``meshes/<name>``) and a layer name
beside the image layer (``image``) and its mesh layer (``<name>-meshes``), so it must be a safe
path segment that cannot collide with either.
"""

from __future__ import annotations

import re

from pipeline.errors import InvalidInputError

LABEL_NAME_MAX_LENGTH = 64
LABEL_NAME_PATTERN = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{LABEL_NAME_MAX_LENGTH - 1}}}$")
#: Name of a dataset's image layer.
IMAGE_LAYER_NAME = "image"
#: Suffix of the mesh layer drawn from a segmentation layer.
MESH_LAYER_SUFFIX = "-meshes"


def is_label_name(name: str) -> bool:
    """True when ``name`` may name a label image (see the module's rule)."""
    return (
        bool(LABEL_NAME_PATTERN.match(name or ""))
        and name != IMAGE_LAYER_NAME
        and ".." not in name
        and not name.endswith(MESH_LAYER_SUFFIX)
    )


def label_name_check(name: str) -> str:
    """Return ``name`` if it may name a label image, else raise InvalidInputError saying why."""
    if not is_label_name(name):
        raise InvalidInputError(
            f"Invalid label name {name!r}: use up to {LABEL_NAME_MAX_LENGTH} letters, digits, "
            f"'-', '_' or '.', starting with a letter or digit (not {IMAGE_LAYER_NAME!r}, not "
            f"ending in {MESH_LAYER_SUFFIX!r})."
        )
    return name


def mesh_layer_name(label_name: str) -> str:
    """Name of the mesh layer drawn from segmentation layer ``label_name``."""
    return f"{label_name}{MESH_LAYER_SUFFIX}"
