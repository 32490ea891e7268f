"""REST API representations of load management. Input serializers validate at the edge (a
circuit under itself, an event that ends before it starts, a charger on a single-phase circuit
wired to three phases); views hand the result to services."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from cpms.fields import CharField, ModelSerializer

from .models import (
    ChargerLoad,
    Circuit,
    LimitEvent,
    LimitSchedule,
    PhaseRotation,
    SiteCapacity,
)

LIMIT = {"max_digits": 8, "decimal_places": 1, "min_value": Decimal("0")}


class SiteCapacitySerializer(ModelSerializer):
    limit = serializers.DecimalField(
        max_digits=10,
        decimal_places=1,
        min_value=Decimal("0"),
        help_text="The grid connection's limit, in limit_unit",
    )

    class Meta:
        model = SiteCapacity
        fields = ["managed", "limit", "limit_unit", "phases", "voltage", "updated_at"]
        read_only_fields = ["updated_at"]


class CircuitSerializer(ModelSerializer):
    limit_a = serializers.DecimalField(**LIMIT, help_text="Amperes per phase")
    parent = serializers.PrimaryKeyRelatedField(
        queryset=Circuit.objects.none(),
        required=False,
        allow_null=True,
        help_text="The circuit above it; empty: straight under the grid connection",
    )
    name = CharField(max_length=100)

    class Meta:
        model = Circuit
        fields = ["id", "name", "parent", "limit_a", "phases"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        site = self.context.get("site")
        if site is not None:
            self.fields["parent"].queryset = Circuit.objects.filter(site=site)  # type: ignore[attr-defined]

    def validate_parent(self, parent: Circuit | None) -> Circuit | None:
        current = self.instance
        ancestor = parent
        while ancestor is not None and current is not None:
            if ancestor.pk == current.pk:
                raise serializers.ValidationError("A circuit cannot hang below itself.")
            ancestor = ancestor.parent
        return parent

    def validate_name(self, name: str) -> str:
        site = self.context.get("site")
        clash = Circuit.objects.filter(site=site, name=name)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError("This site has a circuit with this name already.")
        return name


class ChargerLoadSerializer(ModelSerializer):
    charger = serializers.CharField(source="charger.identity", read_only=True)
    circuit = serializers.PrimaryKeyRelatedField(
        queryset=Circuit.objects.none(),
        required=False,
        allow_null=True,
        help_text="Empty: straight on the grid connection",
    )
    max_current_a = serializers.DecimalField(**LIMIT, required=False)
    min_current_a = serializers.DecimalField(**LIMIT, required=False)
    profile_rejected_at = serializers.DateTimeField(read_only=True, allow_null=True)
    profile_rejected_reason = serializers.CharField(read_only=True)
    failsafe_limit_a = serializers.DecimalField(
        max_digits=6, decimal_places=1, read_only=True, allow_null=True
    )

    class Meta:
        model = ChargerLoad
        fields = [
            "charger",
            "circuit",
            "phase_rotation",
            "max_current_a",
            "min_current_a",
            "pause_allowed",
            "rate_unit",
            "priority",
            "profile_rejected_at",
            "profile_rejected_reason",
            "failsafe_limit_a",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        site = self.context.get("site")
        if site is not None:
            self.fields["circuit"].queryset = Circuit.objects.filter(site=site)  # type: ignore[attr-defined]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance = self.instance if isinstance(self.instance, ChargerLoad) else None

        def value(name: str, default: Any) -> Any:
            if name in attrs:
                return attrs[name]
            return getattr(instance, name) if instance is not None else default

        minimum = value("min_current_a", Decimal("6"))
        maximum = value("max_current_a", Decimal("32"))
        if minimum > maximum:
            raise serializers.ValidationError(
                {"min_current_a": ["The minimum current cannot exceed the maximum."]}
            )
        circuit = value("circuit", None)
        rotation = value("phase_rotation", PhaseRotation.RST)
        if circuit is not None and circuit.phases == 1 and rotation not in ("L1", "L2", "L3"):
            raise serializers.ValidationError(
                {"phase_rotation": ["A charger on a single-phase circuit draws from one phase."]}
            )
        return attrs


class LimitScheduleSerializer(ModelSerializer):
    weekdays = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=7),
        min_length=1,
        help_text="ISO weekdays, 1 (Monday) to 7 (Sunday)",
    )
    limit_a = serializers.DecimalField(**LIMIT, help_text="Amperes per phase")
    price_per_kwh = serializers.DecimalField(
        max_digits=8, decimal_places=4, min_value=Decimal("0"), required=False, allow_null=True
    )
    name = CharField(max_length=100, required=False, allow_blank=True)

    class Meta:
        model = LimitSchedule
        fields = ["id", "name", "weekdays", "start_time", "end_time", "limit_a", "price_per_kwh"]

    def validate_weekdays(self, days: list[int]) -> list[int]:
        return sorted(set(days))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["start_time"] == attrs["end_time"]:
            raise serializers.ValidationError(
                {"end_time": ["The window must not start and end at the same time."]}
            )
        return attrs


class LimitEventSerializer(ModelSerializer):
    limit_a = serializers.DecimalField(**LIMIT, help_text="Amperes per phase")
    reason = CharField(max_length=200, required=False, allow_blank=True)
    source = CharField(max_length=100, required=False, allow_blank=True)
    active = serializers.SerializerMethodField()

    class Meta:
        model = LimitEvent
        fields = [
            "id",
            "starts_at",
            "ends_at",
            "limit_a",
            "reason",
            "source",
            "created_at",
            "cancelled_at",
            "active",
        ]
        read_only_fields = ["created_at", "cancelled_at"]

    def get_active(self, event: LimitEvent) -> bool:
        from django.utils import timezone

        now = timezone.now()
        return event.cancelled_at is None and event.starts_at <= now < event.ends_at

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["ends_at"] <= attrs["starts_at"]:
            raise serializers.ValidationError({"ends_at": ["An event must end after it starts."]})
        return attrs


class SessionLoadSerializer(serializers.Serializer):
    session = serializers.IntegerField()
    charger = serializers.CharField()
    connector = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    allocated_a = serializers.FloatField()
    commanded_a = serializers.FloatField(allow_null=True)
    measured_a = serializers.FloatField(allow_null=True)
    verified_a = serializers.FloatField(allow_null=True)
    accepted = serializers.BooleanField(allow_null=True)
    ignoring_profile = serializers.BooleanField()


class LoadPointSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    capacity_a = serializers.FloatField()
    allocated_a = serializers.FloatField(help_text="On the most loaded phase")
    measured_a = serializers.FloatField(help_text="On the most loaded phase")


class SiteLoadSerializer(serializers.Serializer):
    site = serializers.IntegerField()
    managed = serializers.BooleanField()
    phases = serializers.IntegerField()
    grid_limit_a = serializers.FloatField()
    limit_a = serializers.FloatField(help_text="In force now: grid, schedule or event")
    limit_source = serializers.ChoiceField(choices=["grid", "schedule", "event"])
    next_change = serializers.DateTimeField(allow_null=True)
    allocated_a = serializers.ListField(child=serializers.FloatField(), help_text="L1 to L3")
    measured_a = serializers.ListField(child=serializers.FloatField(), help_text="L1 to L3")
    sessions = SessionLoadSerializer(many=True)
    history = LoadPointSerializer(many=True)
    chargers_refusing_profiles = serializers.ListField(child=serializers.CharField())
