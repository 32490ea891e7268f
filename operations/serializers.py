"""REST API representations of the operations app."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from chargers.models import Charger, Site
from cpms.fields import CharField, ModelSerializer

from .models import (
    ConfigurationBaseline,
    MaintenanceWindow,
    ReconciliationCase,
    ReconciliationEntry,
)


class ReconciliationEntrySerializer(ModelSerializer):
    class Meta:
        model = ReconciliationEntry
        fields = ["step", "note", "actor", "detail", "at"]
        read_only_fields = fields


class ReconciliationCaseSerializer(ModelSerializer):
    charger = serializers.SlugRelatedField(slug_field="identity", read_only=True)
    transaction_id = serializers.CharField(
        source="session.transaction_id", read_only=True, default=None, allow_null=True
    )
    resolution = serializers.ChoiceField(
        choices=ReconciliationCase.Resolution.choices,
        allow_blank=True,
        read_only=True,
        help_text="How it was resolved; empty while it is not",
    )
    entries = ReconciliationEntrySerializer(
        many=True, read_only=True, help_text="The audit trail, oldest first"
    )

    class Meta:
        model = ReconciliationCase
        fields = [
            "id",
            "charger",
            "kind",
            "state",
            "resolution",
            "session",
            "transaction_id",
            "unmatched_stop",
            "command",
            "reason",
            "detected_at",
            "asked_at",
            "resolved_at",
            "entries",
        ]
        read_only_fields = fields


class ReasonSerializer(serializers.Serializer):
    reason = CharField(
        max_length=2000, help_text="Why: kept in the case's audit trail and on the case"
    )


# --- Configuration baselines ---------------------------------------------------------------------


class BaselineSettingSerializer(serializers.Serializer):
    key = CharField(
        max_length=50, required=False, allow_blank=True, help_text="1.6: the configuration key"
    )
    component_name = CharField(max_length=50, required=False, allow_blank=True)
    component_instance = CharField(max_length=50, required=False, allow_blank=True)
    evse_id = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    connector_id = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    variable_name = CharField(max_length=50, required=False, allow_blank=True)
    variable_instance = CharField(max_length=50, required=False, allow_blank=True)
    attribute_type = serializers.ChoiceField(
        choices=["Actual", "Target", "MinSet", "MaxSet"], required=False, default="Actual"
    )
    value = CharField(max_length=500, allow_blank=True, help_text="The desired value, as text")
    ref = CharField(read_only=True)
    label = CharField(read_only=True)


class ConfigurationBaselineSerializer(ModelSerializer):
    settings = BaselineSettingSerializer(many=True, help_text="The desired values")
    protocol = serializers.ChoiceField(
        choices=ConfigurationBaseline.Protocol.choices,
        help_text="1.6 (configuration keys) or 2.x (device model variables); fixed once created",
    )

    class Meta:
        model = ConfigurationBaseline
        fields = [
            "id",
            "name",
            "vendor",
            "model",
            "protocol",
            "notes",
            "settings",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def to_representation(self, instance: Any) -> dict[str, Any]:
        from .baselines import label

        data = super().to_representation(instance)
        data["settings"] = [
            {
                "key": s.key,
                "component_name": s.component_name,
                "component_instance": s.component_instance,
                "evse_id": s.evse_id,
                "connector_id": s.connector_id,
                "variable_name": s.variable_name,
                "variable_instance": s.variable_instance,
                "attribute_type": s.attribute_type,
                "value": s.value,
                "ref": s.ref,
                "label": label(s),
            }
            for s in instance.settings.all()
        ]
        return data

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        from .baselines import SettingIn

        protocol = str(attrs.get("protocol") or getattr(self.instance, "protocol", ""))
        if self.instance is not None and attrs.get("protocol", protocol) != self.instance.protocol:
            raise serializers.ValidationError({"protocol": ["A baseline's protocol is fixed."]})
        if "settings" in attrs:
            items: list[SettingIn] = []
            errors: dict[int, str] = {}
            seen: set[str] = set()
            for index, raw in enumerate(attrs["settings"]):
                item = SettingIn(**raw)
                if protocol == ConfigurationBaseline.Protocol.OCPP16:
                    if not item.key or item.component_name or item.variable_name:
                        errors[index] = "A 1.6 baseline sets configuration keys: give key only."
                        continue
                elif item.key or not item.component_name or not item.variable_name:
                    errors[index] = (
                        "A 2.x baseline sets variables: give component_name and variable_name "
                        "(not key)."
                    )
                    continue
                if item.connector_id is not None and item.evse_id is None:
                    errors[index] = "A connector needs its evse_id."
                    continue
                ref = item.ref(protocol)
                if ref in seen:
                    errors[index] = f"{ref} is set twice."
                    continue
                seen.add(ref)
                items.append(item)
            if errors:
                raise serializers.ValidationError(
                    {"settings": [f"item {i}: {message}" for i, message in errors.items()]}
                )
            attrs["settings"] = items
        return attrs


class DriftRowSerializer(serializers.Serializer):
    ref = CharField()
    label = CharField()
    desired = CharField()
    reported = CharField(allow_null=True)
    state = serializers.ChoiceField(
        choices=["matching", "differing", "missing", "unknown"],
        help_text="unknown: the charger never reported its configuration",
    )
    readonly = serializers.BooleanField()
    applied_status = CharField(
        allow_blank=True,
        help_text="The charger's answer when the value was last applied (Accepted, "
        "RebootRequired, Rejected, NotSupported, ...); empty while under way or never applied",
    )
    applied_value = CharField(allow_null=True)


class DriftReportSerializer(serializers.Serializer):
    charger = CharField()
    baseline = serializers.IntegerField(allow_null=True)
    baseline_name = CharField(allow_blank=True)
    ever_reported = serializers.BooleanField()
    in_line = serializers.BooleanField()
    counts = serializers.DictField(child=serializers.IntegerField())
    rows = DriftRowSerializer(many=True)


class CommandsStartedSerializer(serializers.Serializer):
    commands = serializers.ListField(child=serializers.IntegerField(), help_text="Command ids")


class ChargersQueuedSerializer(serializers.Serializer):
    chargers = serializers.IntegerField(help_text="Chargers the baseline is being applied to")


# --- Uptime ----------------------------------------------------------------------------------------


class MaintenanceWindowSerializer(ModelSerializer):
    charger = serializers.SlugRelatedField(
        slug_field="identity",
        queryset=Charger.objects.none(),
        required=False,
        allow_null=True,
        help_text="Only this charger (its identity)",
    )
    site = serializers.PrimaryKeyRelatedField(
        queryset=Site.objects.none(), required=False, allow_null=True, help_text="Only this site"
    )

    class Meta:
        model = MaintenanceWindow
        fields = ["id", "site", "charger", "connector_id", "starts_at", "ends_at", "reason"]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        tenant = self.context.get("tenant")
        if tenant is not None:
            from chargers.selectors import chargers_for, sites_for

            self.fields["charger"].queryset = chargers_for(tenant)
            self.fields["site"].queryset = sites_for(tenant)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        starts = attrs.get("starts_at", getattr(self.instance, "starts_at", None))
        ends = attrs.get("ends_at", getattr(self.instance, "ends_at", None))
        if starts and ends and ends <= starts:
            raise serializers.ValidationError({"ends_at": ["Must be after starts_at."]})
        charger = attrs.get("charger", getattr(self.instance, "charger", None))
        if attrs.get("connector_id") is not None and charger is None:
            raise serializers.ValidationError({"connector_id": ["Name the charger too."]})
        return attrs


class UptimeRowSerializer(serializers.Serializer):
    site = CharField(allow_blank=True)
    charger = CharField(allow_blank=True, help_text="Empty on site rows")
    connector = serializers.IntegerField(allow_null=True, help_text="Empty on charger/site rows")
    uptime_percent = serializers.FloatField(
        allow_null=True, help_text="Up time over counted time; null when all was excluded"
    )
    up_seconds = serializers.FloatField()
    offline_seconds = serializers.FloatField()
    faulted_seconds = serializers.FloatField()
    unavailable_seconds = serializers.FloatField()
    excluded_seconds = serializers.FloatField(help_text="Planned maintenance, counted neither way")
    timeline = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="Connector rows: segments {start, end, state, reason}",
    )


class UptimeReportSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    level = CharField()
    rows = UptimeRowSerializer(many=True)
