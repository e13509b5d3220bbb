"""The OpenAPI schema says what the API really answers, errors and anonymous access included.

drf-spectacular documents the success answers; this schema class adds, to every operation, the
error answers the shared machinery can give (all with :class:`ErrorSerializer`'s body):

- 400 always: the edge refuses NUL characters in any path, query string or JSON body;
- 401 always: a wrong API token is refused on every endpoint;
- 403 when a permission or CSRF check can refuse the method;
- 404 when the path names an object;
- 429 when the view throttles the method.

Views add the ones only they give (409, 413) with ``extend_schema(responses=...)``. Views on
restricted querysets (:class:`webapp.core.permissions.RestrictedAPIView`) also say which methods
anonymous visitors may call, so the schema's security lists anonymous access where it exists.
"""

from __future__ import annotations

from typing import Any

import uritemplate
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS, AllowAny


class ErrorSerializer(serializers.Serializer[dict[str, Any]]):
    """The body of every error answer."""

    message = serializers.CharField(help_text="What went wrong, written for a person.")
    # DRF's metaclass moves declared fields out of the class, so ``errors`` stays the property
    # at runtime; the stubs see a field overriding it.
    errors = serializers.JSONField(  # type: ignore[assignment]
        required=False, help_text="Validation errors per field, when the request had some."
    )


ERROR_DESCRIPTIONS = {
    "400": "Invalid request; the message says what to change.",
    "401": "Not signed in, or the API token is wrong.",
    "403": "Signed in, but not allowed to do this (or the CSRF check failed).",
    "404": "No such object, or you may not see it.",
    "429": "Too many requests; try again later.",
}


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema with the error answers and anonymous access documented."""

    def get_auth(self) -> list[dict[str, Any]]:
        auths: list[dict[str, Any]] = super().get_auth()
        allows_anonymous = getattr(self.view, "allows_anonymous", None)
        if {} not in auths and allows_anonymous is not None and allows_anonymous(self.method):
            auths.append({})
        return auths

    def _error_codes(self) -> list[str]:
        codes = ["400"]
        if self.view.get_authenticators():
            codes.append("401")
        only_anyone = all(isinstance(p, AllowAny) for p in self.view.get_permissions())
        if not only_anyone or self.method not in SAFE_METHODS:
            codes.append("403")
        if uritemplate.variables(self.path):
            codes.append("404")
        if self.view.get_throttles():
            codes.append("429")
        return codes

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for code in self._error_codes():
            if code not in responses:
                error = OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code])
                # drf-spectacular leaves this (internal) method unannotated.
                responses[code] = self._get_response_for_code(  # type: ignore[no-untyped-call]
                    error, code, direction=direction
                )
        return responses
