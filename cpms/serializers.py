"""REST API representations of organizations and API tokens."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import serializers

from chargers.models import Site

from .fields import CharField, ModelSerializer
from .models import ApiToken, Organization, Role


class OrganizationSerializer(ModelSerializer):
    class Meta:
        model = Organization
        fields = ["slug", "name", "created_at"]
        read_only_fields = fields


class ApiTokenSerializer(ModelSerializer):
    sites = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    revoked_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    active = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "role",
            "sites",
            "active",
            "created_at",
            "created_by",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "revoked_by",
        ]
        read_only_fields = fields

    def get_active(self, token: ApiToken) -> bool:
        if token.revoked_at is not None:
            return False
        return token.expires_at is None or token.expires_at > timezone.now()


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    key = serializers.SerializerMethodField(
        help_text="The secret key: shown in this response only, never again"
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "key"]
        read_only_fields = fields

    def get_key(self, token: ApiToken) -> str:
        return self.context["key"]


class ApiTokenCreateSerializer(serializers.Serializer):
    name = CharField(max_length=100)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.INTEGRATOR)
    sites = serializers.PrimaryKeyRelatedField(
        many=True,
        required=False,
        queryset=Site.objects.none(),
        help_text="Ids of the sites a site-host token may see; required for, and only for, site hosts",
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        tenant = self.context.get("tenant")
        if tenant is not None:
            self.fields["sites"].child_relation.queryset = Site.objects.filter(
                organization_id=tenant.organization_id
            )

    def validate_expires_at(self, value: Any) -> Any:
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        sites = attrs.get("sites") or []
        if attrs["role"] == Role.SITE_HOST and not sites:
            raise serializers.ValidationError(
                {"sites": ["A site-host token needs at least one site."]}
            )
        if attrs["role"] != Role.SITE_HOST and sites:
            raise serializers.ValidationError(
                {"sites": ["Only site-host tokens are limited to sites."]}
            )
        return attrs
