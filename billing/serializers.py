"""REST API representations of tariffs, their versions and assignments, price groups, priced
sessions (price examples and the simulator). Input serializers validate at the edge with
``billing.validation``; views hand the result to services."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chargers.models import Charger, Connector, IdToken, Site
from cpms.fields import CharField, ModelSerializer, RegexField, SlugRelatedField
from cpms.tenancy import Tenant

from . import validation
from .models import PriceGroup, Tariff, TariffAssignment, TariffVersion, TariffVersionState
from .pricing import PricedLine, PricedSession
from .selectors import site_currency, tariff_version_in_force

CURRENCY = r"^[A-Z]{3}$"
ELEMENTS_HELP = (
    "OCPI 2.2.1 TariffElement list: each element has price_components (type ENERGY per kWh, "
    "TIME per charging hour, PARKING_TIME per idle hour or FLAT per session; price excluding "
    "VAT, vat in percent, step_size in Wh or seconds) and optional restrictions (start_time, "
    "end_time as HH:MM local; start_date, end_date; min/max_kwh, min/max_current, min/max_power "
    "in kW, min/max_duration in seconds; day_of_week)."
)


def _tenant(serializer: serializers.Serializer) -> Tenant:
    tenant = serializer.context.get("tenant")
    assert tenant is not None
    return tenant


# --- Priced sessions ------------------------------------------------------------------------------


class PricedLineSerializer(serializers.Serializer):
    dimension = serializers.CharField(
        help_text="ENERGY, TIME, PARKING_TIME, FLAT, MIN_PRICE or MAX_PRICE"
    )
    element_index = serializers.IntegerField(allow_null=True)
    quantity = serializers.DecimalField(max_digits=20, decimal_places=6)
    unit = serializers.CharField(help_text="kWh, h or session")
    unit_price = serializers.DecimalField(
        max_digits=20, decimal_places=6, help_text="Excluding VAT"
    )
    amount_excl_vat = serializers.DecimalField(max_digits=20, decimal_places=3)
    vat_rate = serializers.DecimalField(max_digits=6, decimal_places=3)
    vat_amount = serializers.DecimalField(max_digits=20, decimal_places=3)
    amount_incl_vat = serializers.DecimalField(max_digits=20, decimal_places=3)


class ChargingPeriodSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    state = serializers.CharField(help_text="charging or idle")
    energy_wh = serializers.DecimalField(max_digits=20, decimal_places=3)
    seconds = serializers.DecimalField(max_digits=20, decimal_places=6)
    elements = serializers.SerializerMethodField(
        help_text="Per dimension, the index of the element that priced the period"
    )

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField(allow_null=True)))
    def get_elements(self, period: Any) -> dict[str, int | None]:
        return dict(period.elements)


class PricedSessionSerializer(serializers.Serializer):
    currency = serializers.CharField()
    energy_wh = serializers.DecimalField(max_digits=20, decimal_places=3)
    charging_seconds = serializers.DecimalField(max_digits=20, decimal_places=6)
    parking_seconds = serializers.DecimalField(max_digits=20, decimal_places=6)
    total_excl_vat = serializers.DecimalField(max_digits=20, decimal_places=3)
    total_vat = serializers.DecimalField(max_digits=20, decimal_places=3)
    total_incl_vat = serializers.DecimalField(max_digits=20, decimal_places=3)
    lines = PricedLineSerializer(many=True)
    periods = ChargingPeriodSerializer(many=True)


def priced_line_data(line: PricedLine) -> dict[str, Any]:
    return PricedLineSerializer(line).data


def priced_session_data(priced: PricedSession) -> dict[str, Any]:
    return PricedSessionSerializer(priced).data


# --- Tariffs --------------------------------------------------------------------------------------


class TariffVersionSerializer(ModelSerializer):
    class Meta:
        model = TariffVersion
        fields = [
            "id",
            "tariff",
            "number",
            "state",
            "elements",
            "min_price",
            "max_price",
            "parking_grace_seconds",
            "description",
            "effective_from",
            "published_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class TariffVersionSummarySerializer(ModelSerializer):
    class Meta:
        model = TariffVersion
        fields = ["id", "number", "state", "effective_from", "published_at"]
        read_only_fields = fields


class TariffAssignmentSerializer(ModelSerializer):
    level = serializers.CharField(read_only=True, help_text="connector, charger or site")
    active = serializers.SerializerMethodField()

    class Meta:
        model = TariffAssignment
        fields = [
            "id",
            "tariff",
            "level",
            "site",
            "charger",
            "connector",
            "price_group",
            "valid_from",
            "valid_until",
            "active",
            "created_at",
        ]
        read_only_fields = fields

    def get_active(self, assignment: TariffAssignment) -> bool:
        now = timezone.now()
        return assignment.valid_from <= now and (
            assignment.valid_until is None or assignment.valid_until > now
        )


class TariffSerializer(ModelSerializer):
    current_version = serializers.SerializerMethodField(
        help_text="The published version in force now"
    )
    draft = serializers.SerializerMethodField(help_text="The draft being edited, if any")
    versions = TariffVersionSummarySerializer(many=True, read_only=True)
    assignments = serializers.SerializerMethodField(help_text="Assignments not ended yet")
    editable = serializers.SerializerMethodField(help_text="Whether the caller may edit it")

    class Meta:
        model = Tariff
        fields = [
            "id",
            "name",
            "site",
            "currency",
            "current_version",
            "draft",
            "versions",
            "assignments",
            "editable",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(TariffVersionSerializer(allow_null=True))
    def get_current_version(self, tariff: Tariff) -> dict[str, Any] | None:
        version = tariff_version_in_force(tariff=tariff, at=timezone.now())
        return TariffVersionSerializer(version).data if version else None

    @extend_schema_field(TariffVersionSerializer(allow_null=True))
    def get_draft(self, tariff: Tariff) -> dict[str, Any] | None:
        draft = tariff.versions.filter(state=TariffVersionState.DRAFT).first()
        return TariffVersionSerializer(draft).data if draft else None

    @extend_schema_field(TariffAssignmentSerializer(many=True))
    def get_assignments(self, tariff: Tariff) -> list[dict[str, Any]]:
        now = timezone.now()
        current = tariff.assignments.exclude(valid_until__lte=now)
        return list(TariffAssignmentSerializer(current, many=True).data)

    def get_editable(self, tariff: Tariff) -> bool:
        tenant = self.context.get("tenant")
        return tenant is not None and validation.tariff_editable(tenant=tenant, tariff=tariff)


class DraftFieldsMixin(serializers.Serializer):
    elements = serializers.JSONField(help_text=ELEMENTS_HELP)
    min_price = serializers.DecimalField(
        max_digits=12, decimal_places=4, required=False, allow_null=True, help_text="Excluding VAT"
    )
    max_price = serializers.DecimalField(
        max_digits=12, decimal_places=4, required=False, allow_null=True, help_text="Excluding VAT"
    )
    parking_grace_seconds = serializers.IntegerField(
        required=False, default=0, help_text="Idle time per session before PARKING_TIME is charged"
    )
    description = CharField(max_length=300, required=False, allow_blank=True, default="")

    def validate_draft(self, attrs: dict[str, Any]) -> dict[str, Any]:
        elements, errors = validation.draft_errors(
            elements=attrs.get("elements"),
            min_price=attrs.get("min_price"),
            max_price=attrs.get("max_price"),
            parking_grace_seconds=attrs.get("parking_grace_seconds", 0),
        )
        if errors:
            raise serializers.ValidationError(errors)
        assert elements is not None
        from .pricing import tariff_elements_dump

        # Stored in one canonical spelling, numbers as decimal strings.
        attrs["elements"] = tariff_elements_dump(elements)
        return attrs


class TariffCreateSerializer(DraftFieldsMixin):
    name = CharField(max_length=100)
    site = serializers.PrimaryKeyRelatedField(
        queryset=Site.objects.all(),
        required=False,
        allow_null=True,
        help_text="The site the tariff belongs to; empty (operators only) for the organization",
    )
    currency = RegexField(
        CURRENCY,
        required=False,
        help_text="ISO 4217; must be the site's (defaults to it)",
        error_messages={"invalid": "Three upper-case letters (ISO 4217), e.g. EUR."},
    )

    def validate_site(self, site: Site | None) -> Site | None:
        if site is not None and site.organization_id != _tenant(self).organization_id:
            raise serializers.ValidationError("Not found.")
        return site

    def validate_name(self, name: str) -> str:
        if Tariff.objects.filter(organization_id=_tenant(self).organization_id, name=name).exists():
            raise serializers.ValidationError(
                "Your organization has a tariff with this name already."
            )
        return name

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        site = attrs.get("site")
        attrs.setdefault(
            "currency", site_currency(site=site) if site else settings.CPMS_DEFAULT_CURRENCY
        )
        errors = validation.tariff_create_errors(
            tenant=_tenant(self), site=site, currency=attrs["currency"]
        )
        if errors:
            raise serializers.ValidationError(errors)
        return self.validate_draft(attrs)


class TariffUpdateSerializer(serializers.Serializer):
    name = CharField(max_length=100)

    def validate_name(self, name: str) -> str:
        duplicate = Tariff.objects.filter(organization_id=_tenant(self).organization_id, name=name)
        if self.instance is not None:
            duplicate = duplicate.exclude(pk=self.instance.pk)
        if duplicate.exists():
            raise serializers.ValidationError(
                "Your organization has a tariff with this name already."
            )
        return name


class DraftSerializer(DraftFieldsMixin):
    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return self.validate_draft(attrs)


class PublishSerializer(serializers.Serializer):
    effective_from = serializers.DateTimeField(
        required=False, help_text="When new sessions start to be priced with it; default now"
    )


class PriceExampleSerializer(serializers.Serializer):
    version = serializers.ChoiceField(
        choices=["draft", "current"],
        default="draft",
        help_text="Price with the draft (default) or the version in force now",
    )
    started_at = serializers.DateTimeField(
        required=False, help_text="When the session starts; default next Tuesday 18:00 at the site"
    )
    energy_kwh = serializers.DecimalField(
        max_digits=8,
        decimal_places=3,
        min_value=Decimal(0),
        max_value=Decimal(10000),
        default=Decimal(22),
    )
    charging_minutes = serializers.IntegerField(min_value=0, max_value=7 * 24 * 60, default=120)
    idle_minutes = serializers.IntegerField(min_value=0, max_value=7 * 24 * 60, default=0)


class PriceExampleResultSerializer(serializers.Serializer):
    sentence = serializers.CharField()
    started_at = serializers.DateTimeField()
    priced = PricedSessionSerializer()


class SimulateSerializer(serializers.Serializer):
    site = serializers.PrimaryKeyRelatedField(
        queryset=Site.objects.all(),
        required=False,
        help_text="Whose sessions; default the tariff's site",
    )
    sessions = serializers.IntegerField(min_value=1, max_value=500, default=50)

    def validate_site(self, site: Site) -> Site:
        if not validation.site_editable(tenant=_tenant(self), site=site):
            raise serializers.ValidationError("Not found.")
        return site


class SimulatedSessionSerializer(serializers.Serializer):
    session_id = serializers.IntegerField()
    charger = serializers.CharField()
    started_at = serializers.DateTimeField()
    energy_wh = serializers.DecimalField(max_digits=20, decimal_places=3)
    tariff_now = serializers.CharField(help_text="The tariff version that priced it, if any")
    now_excl_vat = serializers.DecimalField(max_digits=20, decimal_places=3)
    draft_excl_vat = serializers.DecimalField(
        source="draft.total_excl_vat", max_digits=20, decimal_places=3
    )
    difference = serializers.DecimalField(max_digits=20, decimal_places=3)


class SimulationSerializer(serializers.Serializer):
    site = serializers.IntegerField(source="site_id")
    currency = serializers.CharField()
    sessions = serializers.IntegerField(source="session_count")
    unpriced = serializers.IntegerField(help_text="Sessions no tariff priced")
    revenue_now = serializers.DecimalField(max_digits=20, decimal_places=3, help_text="Excl. VAT")
    revenue_draft = serializers.DecimalField(max_digits=20, decimal_places=3, help_text="Excl. VAT")
    difference = serializers.DecimalField(max_digits=20, decimal_places=3)
    difference_percent = serializers.DecimalField(max_digits=10, decimal_places=1, allow_null=True)
    rows = SimulatedSessionSerializer(many=True)


# --- Assignments and price groups -----------------------------------------------------------------


class TariffAssignmentCreateSerializer(serializers.Serializer):
    tariff = serializers.PrimaryKeyRelatedField(queryset=Tariff.objects.all())
    site = serializers.PrimaryKeyRelatedField(
        queryset=Site.objects.all(), required=False, allow_null=True
    )
    charger = serializers.PrimaryKeyRelatedField(
        queryset=Charger.objects.all(), required=False, allow_null=True
    )
    connector = serializers.PrimaryKeyRelatedField(
        queryset=Connector.objects.select_related("charger__site"), required=False, allow_null=True
    )
    price_group = serializers.PrimaryKeyRelatedField(
        queryset=PriceGroup.objects.all(),
        required=False,
        allow_null=True,
        help_text="Empty for the public price",
    )
    valid_from = serializers.DateTimeField(required=False, help_text="Default now")

    def validate_tariff(self, tariff: Tariff) -> Tariff:
        if tariff.organization_id != _tenant(self).organization_id:
            raise serializers.ValidationError("Not found.")
        return tariff

    def validate_valid_from(self, value: Any) -> Any:
        if value < timezone.now() - timedelta(seconds=60):
            raise serializers.ValidationError(
                "An assignment cannot start in the past: sessions keep the tariff they started with."
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors = validation.assignment_errors(
            tenant=_tenant(self),
            tariff=attrs["tariff"],
            site=attrs.get("site"),
            charger=attrs.get("charger"),
            connector=attrs.get("connector"),
            price_group=attrs.get("price_group"),
        )
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class PriceGroupSerializer(ModelSerializer):
    id_tokens = SlugRelatedField(
        slug_field="token",
        many=True,
        required=False,
        queryset=IdToken.objects.all(),
        help_text="Id tokens in the group, by token",
    )
    name = CharField(max_length=100)
    group_token = RegexField(
        r"^[\x21-\x7e]+$",
        max_length=255,
        required=False,
        allow_blank=True,
        help_text="Id tokens with this group token (parentIdTag / groupIdToken) belong to the group",
    )

    class Meta:
        model = PriceGroup
        fields = ["id", "name", "description", "group_token", "id_tokens", "created_at"]
        read_only_fields = ["id", "created_at"]

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        tenant = self.context.get("tenant")
        if tenant is not None:
            tokens = fields["id_tokens"].child_relation  # type: ignore[attr-defined]
            tokens.queryset = IdToken.objects.filter(organization_id=tenant.organization_id)
        return fields

    def validate_name(self, name: str) -> str:
        duplicate = PriceGroup.objects.filter(
            organization_id=_tenant(self).organization_id, name=name
        )
        if self.instance is not None:
            duplicate = duplicate.exclude(pk=self.instance.pk)
        if duplicate.exists():
            raise serializers.ValidationError(
                "Your organization has a price group with this name already."
            )
        return name
