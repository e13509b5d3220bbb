"""API views of the shared machinery."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """404 in the API's JSON error shape for an API path no route matches.

    Without it, ``/api/v1/jobs/x/`` (an id that is not a number) gets Django's HTML 404 page,
    which an API client cannot read and the schema does not describe.
    """
    return JsonResponse({"message": f"No such API endpoint or object: {request.path}"}, status=404)
