from django.contrib.auth import get_user_model
from rest_framework import serializers


class MeSerializer(serializers.ModelSerializer):
    teams = serializers.SlugRelatedField(many=True, read_only=True, slug_field="slug")

    class Meta:
        model = get_user_model()
        fields = ["id", "username", "email", "is_staff", "teams"]


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True)


class CredentialsSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
