"""Where things live inside a dataset directory: the one description of the store layout.

::

    <dataset>/image.ome.zarr/               the image (OME-Zarr), its label images under
    <dataset>/image.ome.zarr/labels/<name>/ labels/ as the NGFF specification says
    <dataset>/meshes/<name>/                Neuroglancer precomputed meshes of label <name>
    <dataset>/annotations/<name>-detections/ the detections of label <name> as Neuroglancer
                                            precomputed point annotations (derived from its
                                            detections table, rewritten with it)
    <dataset>/thumbnail.png                 the dataset list's picture

Paths are relative to the dataset directory, with ``/`` separators, as layers record them and as
they appear in data URLs.
"""

from __future__ import annotations

IMAGE_STORE = "image.ome.zarr"
LABELS_GROUP = "labels"
MESHES_DIR = "meshes"
ANNOTATIONS_DIR = "annotations"
DETECTIONS_SUFFIX = "-detections"
THUMBNAIL_NAME = "thumbnail.png"


def label_store_path(name: str, image_store: str = IMAGE_STORE) -> str:
    """Path of label image ``name`` inside the dataset (``image.ome.zarr/labels/<name>``)."""
    return f"{image_store}/{LABELS_GROUP}/{name}"


def label_group_path(name: str) -> str:
    """Path of label image ``name`` relative to its image store (``labels/<name>``)."""
    return f"{LABELS_GROUP}/{name}"


def mesh_dir_path(name: str) -> str:
    """Path of the meshes of label image ``name`` inside the dataset (``meshes/<name>``)."""
    return f"{MESHES_DIR}/{name}"


def detection_points_dir_path(name: str) -> str:
    """Path of the detections of label image ``name`` as a precomputed annotation source
    (``annotations/<name>-detections``)."""
    return f"{ANNOTATIONS_DIR}/{name}{DETECTIONS_SUFFIX}"
