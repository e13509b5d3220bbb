"""Who am I, and API token management (obtain with a password, show, rotate, revoke)."""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from webapp.accounts.api.serializers import CredentialsSerializer, MeSerializer, TokenSerializer
from webapp.accounts.services import api_token_get_or_create, api_token_revoke, api_token_rotate


class MeView(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=MeSerializer)
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(request.user).data)


class LoginThrottle(AnonRateThrottle):
    rate = "20/min"


class TokenView(APIView):
    """GET: your token (signed in). POST with username/password: obtain it. DELETE: revoke it."""

    def get_permissions(self) -> list[permissions.BasePermission]:
        if self.request.method == "POST":
            return [permissions.AllowAny()]
        return [permissions.IsAuthenticated()]

    def get_throttles(self) -> list:
        return [LoginThrottle()] if self.request.method == "POST" else []

    @extend_schema(responses=TokenSerializer)
    def get(self, request: Request) -> Response:
        return Response({"token": api_token_get_or_create(request.user).key})

    @extend_schema(request=CredentialsSerializer, responses=TokenSerializer)
    def post(self, request: Request) -> Response:
        creds = CredentialsSerializer(data=request.data)
        creds.is_valid(raise_exception=True)
        user = authenticate(
            request,
            username=creds.validated_data["username"],
            password=creds.validated_data["password"],
        )
        if user is None or not user.is_active:
            raise AuthenticationFailed("Wrong username or password.")
        return Response({"token": api_token_get_or_create(user).key})

    @extend_schema(responses={204: None})
    def delete(self, request: Request) -> Response:
        api_token_revoke(request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenRotateView(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses=TokenSerializer)
    def post(self, request: Request) -> Response:
        return Response({"token": api_token_rotate(request.user).key})
