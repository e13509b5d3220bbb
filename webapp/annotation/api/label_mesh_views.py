"""The painted objects of a labels version as a Neuroglancer mesh source (read-only files).

``labels/v<n>/meshes/`` is a precomputed legacy mesh source (:mod:`pipeline.label_meshes`):
``info``, ``segment_properties/info`` and one manifest ``<id>:0`` per object, made on the first
request for the version and cached. A manifest names its fragment ``../../fragments/<key>``,
which the browser resolves to ``labels/fragments/<key>``: one URL per object content whatever
the version, so after a save Neuroglancer fetches the manifests of the new version (small) and
only the fragments of the objects that changed; the others come from the browser's cache.

Who may read: as the OME-Zarr files of ``labels/v<n>/`` (the annotator, reviewers, managers;
404 for anyone else, or a version not made yet). A version never changes and a fragment key
names its content, so both are cached for good. Like the zarr files these are files for
Neuroglancer, not API operations: they stay out of the OpenAPI schema.
"""

from __future__ import annotations

import re

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from pipeline.label_meshes import FRAGMENTS
from webapp.annotation import selectors
from webapp.annotation.api.label_files import (
    file_response,
    method_refused,
    not_found,
    visible_assignment,
)

# What a version's mesh source holds: nothing else is served from it.
_SOURCE_FILE = re.compile(r"info|segment_properties/info|[1-9][0-9]{0,9}:0")
_FRAGMENT_KEY = re.compile(r"[0-9a-f]{64}")


@csrf_exempt
def labels_mesh_file(
    request: HttpRequest, assignment_id: int, version: int, path: str
) -> HttpResponse:
    """A file of version ``version``'s mesh source; 404 for what is not there or not yours
    (an object id the version lacks: an empty manifest)."""
    refused = method_refused(request)
    if refused is not None:
        return refused
    row = visible_assignment(request, assignment_id)
    if row is None or version > row.version or not _SOURCE_FILE.fullmatch(path):
        return not_found(request)
    meshes = selectors.label_meshes(row, selectors.labels_at(row, version))
    try:
        body = (meshes.path / path).read_bytes()
    except FileNotFoundError:
        if path.endswith(":0"):
            # An id this version does not hold has no mesh, and never will (a version never
            # changes): an empty manifest. Neuroglancer asks for one when a page shows the ids
            # of a newer version just before its sources have switched to it.
            return file_response(request, b'{"fragments": []}', "application/json")
        return not_found(request)
    return file_response(request, body, "application/json")


@csrf_exempt
def labels_mesh_fragment(request: HttpRequest, assignment_id: int, key: str) -> HttpResponse:
    """An object's mesh fragment by its content key (named by a manifest of this assignment's
    versions); 404 for an unknown key or an assignment that is not yours."""
    refused = method_refused(request)
    if refused is not None:
        return refused
    row = visible_assignment(request, assignment_id)
    if row is None or not _FRAGMENT_KEY.fullmatch(key):
        return not_found(request)
    root = selectors.label_meshes_root(row.box.campaign_id)
    try:
        body = (root / FRAGMENTS / key).read_bytes()
    except FileNotFoundError:
        return not_found(request)
    return file_response(request, body, "application/octet-stream")
