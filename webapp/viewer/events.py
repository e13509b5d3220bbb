"""Stub endpoints the Neuroglancer Python-integration client talks to.

The client keeps an ``EventSource`` open on ``/neuroglancer/events/<token>`` (without it, it shows
"Disconnected from Python server") and POSTs its state, actions and credential requests. We push
no state through them (the viewer page calls ``viewer.state.restoreState``), so the stream only
carries comments and the POSTs store nothing.

The stream sleeps with ``time.sleep``: under gunicorn's gevent workers (monkey-patched) that
yields to other requests, so an open viewer costs a greenlet, not a worker. It ends after
``NEUROGLANCER_EVENTS_MAX_SECONDS`` so workers can be recycled and a test server can stop; the
client reconnects by itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from webapp.viewer.neuroglancer_client import NEUROGLANCER_TOKEN

DEFAULT_KEEPALIVE_SECONDS = 15.0
DEFAULT_MAX_SECONDS = 300.0


def _check_token(token: str) -> None:
    if token != NEUROGLANCER_TOKEN:
        raise Http404("Unknown viewer token.")


def keepalive_events(keepalive_s: float, max_s: float) -> Iterator[bytes]:
    """An SSE body of comments: one at once, then one every ``keepalive_s`` until ``max_s``."""
    # The retry field tells a plain EventSource to reconnect quickly when the stream ends.
    yield b"retry: 500\n: annotome viewer events\n\n"
    deadline = time.monotonic() + max_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(keepalive_s, remaining))
        yield b": keep-alive\n\n"


@require_GET
def events(request: HttpRequest, token: str) -> StreamingHttpResponse:
    """Held-open ``text/event-stream`` that never sends state."""
    _check_token(token)
    keepalive_s = float(
        getattr(settings, "NEUROGLANCER_EVENTS_KEEPALIVE_SECONDS", DEFAULT_KEEPALIVE_SECONDS)
    )
    max_s = float(getattr(settings, "NEUROGLANCER_EVENTS_MAX_SECONDS", DEFAULT_MAX_SECONDS))
    response = StreamingHttpResponse(
        keepalive_events(keepalive_s, max_s), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx must pass each comment through at once
    return response


@csrf_exempt
@require_POST
def generation_stub(request: HttpRequest, token: str, rest: str = "") -> HttpResponse:
    """Answer state/action/credentials/volume_response POSTs; nothing is stored."""
    _check_token(token)
    return JsonResponse({"g": "0"})
