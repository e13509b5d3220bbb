from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from rest_framework import serializers

from webapp.accounts.models import Team


class MeSerializer(serializers.ModelSerializer[User]):
    teams: serializers.SlugRelatedField[Team] = serializers.SlugRelatedField(
        many=True, read_only=True, slug_field="slug"
    )

    class Meta:
        model = get_user_model()
        fields = ["id", "username", "email", "is_staff", "teams"]


class TokenSerializer(serializers.Serializer[dict[str, Any]]):
    token = serializers.CharField(read_only=True)


class CredentialsSerializer(serializers.Serializer[dict[str, Any]]):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
