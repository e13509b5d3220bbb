"""The task box's image for the painting editor: raw uint8 voxels, one request per task.

The editor draws its xy, xz and yz slices from memory, so it fetches the whole box once (a 256^3
box is 16 MiB) rather than a tile per slice; the stretch to uint8 is the one of
``pipeline.box_image`` that the assistance sees too. Who may read: as ``labels/`` (the annotator
of the assignment, its reviewers and managers); anyone else gets 404.
"""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from pipeline.errors import InvalidInputError
from webapp.annotation import selectors
from webapp.annotation.api.views import _AssignmentView
from webapp.core.api_schema import ErrorSerializer
from webapp.core.downloads import DownloadRenderer
from webapp.core.errors import NotFound

# The box's image never changes for a task; a page reloaded within the hour reuses it.
CACHE_CONTROL = "private, max-age=3600"


class LabelImageView(_AssignmentView):
    """GET: the box's image as uint8 bytes in z y x C order, its shape in ``X-Shape`` (d,h,w;
    clipped where the box reaches past the image) and the raw values shown as 0 and 255 in
    ``X-Value-Range``; 404 when the image cannot be read or has no voxels in the box."""

    renderer_classes = [JSONRenderer, DownloadRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "X-Shape",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200],
                description="depth,height,width of the voxels sent",
            ),
            OpenApiParameter(
                "X-Value-Range",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200],
                description="low,high: the image values stretched to 0 and 255",
            ),
        ],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="uint8 voxels of the box in z y x C order (depth*height*width bytes).",
            ),
            404: OpenApiResponse(
                ErrorSerializer, description="No such task, not yours, or no image in the box."
            ),
        },
    )
    def get(self, request: Request, assignment_id: int) -> HttpResponse:
        row = self.assignment()
        try:
            image = selectors.box_image(row)
        except (InvalidInputError, OSError) as error:
            raise NotFound(f"The image of this task's box cannot be read: {error}") from None
        d, h, w = image.voxels.shape
        low, high = image.value_range
        response = HttpResponse(image.voxels.tobytes(), content_type="application/octet-stream")
        response["X-Shape"] = f"{d},{h},{w}"
        response["X-Value-Range"] = f"{low:g},{high:g}"
        response["Cache-Control"] = CACHE_CONTROL
        return response
