"""File downloads from API views: one renderer and one way to name the attachment."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from rest_framework.renderers import BaseRenderer


class DownloadRenderer(BaseRenderer):
    """Lets a download view answer any ``Accept``: its successes are Django responses no
    renderer touches; an error body (a dict) is written as JSON."""

    media_type = "*/*"
    format = "download"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        return json.dumps(data).encode()


def attachment(response: HttpResponse | StreamingHttpResponse, filename: str) -> None:
    """Mark ``response`` as a file named ``filename`` to save, never to sniff and render."""
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
