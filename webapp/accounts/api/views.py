"""Who am I, and API token management (obtain with a password, show, rotate, revoke)."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, BaseThrottle
from rest_framework.views import APIView

from webapp.accounts.api.serializers import CredentialsSerializer, MeSerializer, TokenSerializer
from webapp.accounts.services import api_token_get_or_create, api_token_revoke, api_token_rotate
from webapp.core.users import signed_in_user


class MeView(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=MeSerializer)
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(signed_in_user(request)).data)


class LoginThrottle(AnonRateThrottle):
    rate = "20/min"


class TokenView(APIView):
    """GET: your token (signed in). POST with username/password: obtain it. DELETE: revoke it."""

    def get_permissions(self) -> list[permissions.BasePermission]:
        if self.request.method == "POST":
            return [permissions.AllowAny()]
        return [permissions.IsAuthenticated()]

    def get_throttles(self) -> list[BaseThrottle]:
        return [LoginThrottle()] if self.request.method == "POST" else []

    @extend_schema(responses=TokenSerializer)
    def get(self, request: Request) -> Response:
        return Response({"token": api_token_get_or_create(signed_in_user(request)).key})

    @extend_schema(request=CredentialsSerializer, responses=TokenSerializer)
    def post(self, request: Request) -> Response:
        creds = CredentialsSerializer(data=request.data)
        creds.is_valid(raise_exception=True)
        user = authenticate(
            request,
            username=creds.validated_data["username"],
            password=creds.validated_data["password"],
        )
        if not isinstance(user, User) or not user.is_active:  # None: wrong credentials
            raise AuthenticationFailed("Wrong username or password.")
        return Response({"token": api_token_get_or_create(user).key})

    @extend_schema(responses={204: None})
    def delete(self, request: Request) -> Response:
        api_token_revoke(signed_in_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenRotateView(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses=TokenSerializer)
    def post(self, request: Request) -> Response:
        return Response({"token": api_token_rotate(signed_in_user(request)).key})
