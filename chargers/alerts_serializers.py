"""REST API representations of alerts, their figures, webhook endpoints and deliveries."""

from __future__ import annotations

from rest_framework import serializers

from cpms.fields import CharField, ModelSerializer

from .alert_rules import NOTIFY_EVENTS
from .models import Alert, AlertDelivery, AlertSubscription, WebhookEndpoint


class AlertSerializer(ModelSerializer):
    charger = serializers.SlugRelatedField(slug_field="identity", read_only=True)
    site = serializers.IntegerField(source="charger.site_id", read_only=True, allow_null=True)
    acknowledged_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    resolved_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    details = serializers.DictField(read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "kind",
            "severity",
            "state",
            "charger",
            "site",
            "connector_id",
            "message",
            "details",
            "suppressed",
            "suppressed_by",
            "fault_at",
            "raised_at",
            "last_seen_at",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "resolved_by",
            "resolution",
            "occurrences",
            "reopen_count",
            "mttd_seconds",
            "mttr_seconds",
        ]
        read_only_fields = fields


class AlertActionSerializer(serializers.Serializer):
    note = CharField(
        max_length=200, required=False, default="", allow_blank=True, help_text="Why, briefly"
    )


class DurationStatsSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    mean = serializers.FloatField(allow_null=True, help_text="Seconds")
    median = serializers.FloatField(allow_null=True, help_text="Seconds")
    p90 = serializers.FloatField(allow_null=True, help_text="Seconds, 90th percentile")
    max = serializers.FloatField(allow_null=True, help_text="Seconds")


class KindStatsSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Alert.Kind.choices)
    count = serializers.IntegerField()
    mttd = DurationStatsSerializer()
    mttr = DurationStatsSerializer()


class AlertStatsSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    open = serializers.IntegerField()
    acknowledged = serializers.IntegerField()
    resolved = serializers.IntegerField()
    suppressed = serializers.IntegerField()
    reopened = serializers.IntegerField()
    mttd = DurationStatsSerializer(help_text="Time to detect: from the fault to the alert")
    mttr = DurationStatsSerializer(help_text="Time to resolve: from the alert to its resolution")
    by_kind = KindStatsSerializer(many=True)


class WebhookEndpointSerializer(ModelSerializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=list(NOTIFY_EVENTS)),
        required=False,
        default=list,
        help_text="The alert events to send; empty for all",
    )
    secret = CharField(
        max_length=128,
        min_length=16,
        required=False,
        help_text="Signs every delivery; generated when left out. Shown to operator admins only",
    )
    url = CharField(max_length=500)

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "name",
            "url",
            "secret",
            "events",
            "min_severity",
            "enabled",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_url(self, value: str) -> str:
        from django.core.exceptions import ValidationError as DjangoValidationError
        from django.core.validators import URLValidator

        try:
            URLValidator(schemes=["http", "https"])(value)
        except DjangoValidationError:
            raise serializers.ValidationError("Enter an http:// or https:// URL.") from None
        return value

    def validate_name(self, value: str) -> str:
        tenant = self.context.get("tenant")
        if tenant is not None:
            clash = WebhookEndpoint.objects.filter(
                organization_id=tenant.organization_id, name=value
            )
            if self.instance is not None:
                clash = clash.exclude(pk=self.instance.pk)
            if clash.exists():
                raise serializers.ValidationError("An endpoint with this name exists already.")
        return value

    def validate_events(self, value: list[str]) -> list[str]:
        return sorted(set(value))


class AlertDeliverySerializer(ModelSerializer):
    payload = serializers.DictField(read_only=True, help_text="The body as sent")

    class Meta:
        model = AlertDelivery
        fields = [
            "id",
            "alert",
            "channel",
            "endpoint",
            "recipient",
            "event",
            "status",
            "attempts",
            "response_code",
            "error",
            "next_attempt_at",
            "last_attempt_at",
            "delivered_at",
            "created_at",
            "payload",
        ]
        read_only_fields = fields


class AlertSubscriptionSerializer(ModelSerializer):
    kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=Alert.Kind.choices),
        required=False,
        default=list,
        help_text="The alert kinds to e-mail; empty for all",
    )
    email = serializers.EmailField(source="user.email", read_only=True)

    class Meta:
        model = AlertSubscription
        fields = ["min_severity", "kinds", "email", "created_at"]
        read_only_fields = ["email", "created_at"]
