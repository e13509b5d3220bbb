"""Server side of the Neuroglancer client's Python-integration channel.

The client keeps an ``EventSource`` on ``/neuroglancer/events/<token>`` and POSTs its state,
actions and credential requests. The shim inlined into the client's ``index.html``
(``neuroglancer_shim.js``) answers all of these in the browser, so these endpoints only serve a
client loaded without it (an old cached page, a direct visit). The event stream is therefore
finite: one comment, a long reconnection delay, and the end of the response, so it never holds
a worker thread open; the POSTs store nothing.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from webapp.viewer.neuroglancer_client import NEUROGLANCER_TOKEN

#: How long a client without the shim waits before asking again (milliseconds).
RECONNECT_MS = 60_000


def _check_token(token: str) -> None:
    if token != NEUROGLANCER_TOKEN:
        raise Http404("Unknown viewer token.")


@require_GET
def events(request: HttpRequest, token: str) -> HttpResponse:
    """A ``text/event-stream`` that sends no state and ends at once."""
    _check_token(token)
    body = f"retry: {RECONNECT_MS}\n: annotome viewer events (state is set by the page)\n\n"
    response = HttpResponse(body.encode(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response


@csrf_exempt
@require_POST
def generation_stub(request: HttpRequest, token: str, rest: str = "") -> HttpResponse:
    """Answer state/action/credentials/volume_response POSTs; nothing is stored."""
    _check_token(token)
    return JsonResponse({"g": "0"})
