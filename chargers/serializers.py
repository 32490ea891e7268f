"""REST API representations of sites, chargers, connectors, id tokens, sessions, meter samples
and journal frames. Input serializers validate at the edge; views hand the result to services."""

from __future__ import annotations

import zoneinfo
from functools import cache
from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from ocpp.v201.enums import IdTokenEnumType
from rest_framework import serializers

from cpms.fields import CharField, ModelSerializer, RegexField
from cpms.tenancy import Tenant

from . import selectors
from .models import (
    Charger,
    Connector,
    Frame,
    IdToken,
    IdTokenStatus,
    MeterSample,
    RegistrationStatus,
    Session,
    Site,
)

# OCPP 1.6 caps chargeBoxIdentity at 48 characters; ':' cannot appear in a Basic auth username
# and '/' not in the /ocpp/<id> path, so identities use URL-safe characters only.
IDENTITY_PATTERN = r"^[A-Za-z0-9._~*+|@=-]{1,48}$"
# An id token is a CiString (printable ASCII); 2.x allows 36 characters, 1.6 chargers take 20.
ID_TOKEN_PATTERN = r"^[\x21-\x7e]+$"
ID_TOKEN_MAX = 36
ID_TOKEN_16_MAX = 20
ID_TOKEN_TYPES = [member.value for member in IdTokenEnumType]


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _tenant(serializer: serializers.Serializer) -> Tenant | None:
    return serializer.context.get("tenant")


# --- Sites ----------------------------------------------------------------------------------------


class SiteSerializer(ModelSerializer):
    country = RegexField(
        r"^[A-Z]{2}$",
        required=False,
        allow_blank=True,
        help_text="ISO 3166-1 alpha-2, upper case",
        error_messages={"invalid": "Two upper-case letters (ISO 3166-1 alpha-2), e.g. NL."},
    )
    latitude = serializers.DecimalField(
        max_digits=9, decimal_places=6, min_value=-90, max_value=90, required=False, allow_null=True
    )
    longitude = serializers.DecimalField(
        max_digits=9,
        decimal_places=6,
        min_value=-180,
        max_value=180,
        required=False,
        allow_null=True,
    )
    time_zone = CharField(
        max_length=64,
        required=False,
        default="UTC",
        help_text="IANA time zone, e.g. Europe/Amsterdam",
    )

    class Meta:
        model = Site
        fields = [
            "id",
            "name",
            "address",
            "city",
            "postal_code",
            "country",
            "latitude",
            "longitude",
            "time_zone",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]

    def validate_time_zone(self, value: str) -> str:
        if value not in _time_zones():
            raise serializers.ValidationError(f"{value!r} is not an IANA time zone.")
        return value

    def validate_name(self, value: str) -> str:
        tenant = _tenant(self)
        if tenant is not None:
            taken = Site.objects.filter(organization_id=tenant.organization_id, name=value)
            if self.instance is not None:
                taken = taken.exclude(pk=self.instance.pk)
            if taken.exists():
                raise serializers.ValidationError(
                    "Your organization has a site with this name already."
                )
        return value


# --- Chargers and connectors ----------------------------------------------------------------------


class ConnectorSerializer(ModelSerializer):
    charger = serializers.SlugRelatedField(slug_field="identity", read_only=True)

    class Meta:
        model = Connector
        fields = [
            "id",
            "charger",
            "connector_id",
            "evse_id",
            "status",
            "raw_status",
            "error_code",
            "vendor_id",
            "vendor_error_code",
            "info",
            "status_at",
        ]
        read_only_fields = fields


class ChargerConnectorSerializer(ConnectorSerializer):
    class Meta(ConnectorSerializer.Meta):
        fields = [name for name in ConnectorSerializer.Meta.fields if name != "charger"]
        read_only_fields = fields


class ChargerSerializer(ModelSerializer):
    connectors = ChargerConnectorSerializer(many=True, read_only=True)

    class Meta:
        model = Charger
        fields = [
            "identity",
            "site",
            "registration_status",
            "heartbeat_interval",
            "connected",
            "ocpp_version",
            "last_seen",
            "last_boot_at",
            "vendor",
            "model",
            "serial_number",
            "firmware_version",
            "iccid",
            "imsi",
            "meter_type",
            "meter_serial_number",
            "firmware_status",
            "firmware_status_at",
            "diagnostics_status",
            "diagnostics_status_at",
            "created_at",
            "connectors",
        ]
        read_only_fields = fields


@extend_schema_field(OpenApiTypes.INT)
class _ChargerSiteField(serializers.PrimaryKeyRelatedField):
    """A site of the caller's organization, by id; other organizations' sites do not exist."""

    def get_queryset(self) -> Any:
        tenant = self.context.get("tenant")
        return selectors.sites_for(tenant) if tenant is not None else Site.objects.none()


HEARTBEAT_LIMITS = [MinValueValidator(10), MaxValueValidator(86_400)]


class ChargerUpdateSerializer(serializers.Serializer):
    site = _ChargerSiteField(required=False, allow_null=True, help_text="A site id, or null")
    registration_status = serializers.ChoiceField(
        choices=RegistrationStatus.choices,
        required=False,
        help_text="Told to the charger at its next BootNotification",
    )
    heartbeat_interval = serializers.IntegerField(
        required=False,
        allow_null=True,
        validators=HEARTBEAT_LIMITS,
        help_text="Seconds (10 to 86400); null uses the server default. Applies from the next boot.",
    )


class ChargerCreateSerializer(ChargerUpdateSerializer):
    identity = CharField(
        max_length=48,
        validators=[
            RegexValidator(
                IDENTITY_PATTERN,
                "1 to 48 characters from A-Z a-z 0-9 and . _ ~ * + | @ = -",
            )
        ],
        help_text="The id in /ocpp/<identity> and the charger's Basic auth username",
    )
    password = CharField(
        required=False,
        write_only=True,
        min_length=16,
        max_length=40,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="The charger's Basic auth password (16 to 40 characters); stored hashed",
    )

    def validate_identity(self, value: str) -> str:
        if Charger.objects.filter(identity=value).exists():
            raise serializers.ValidationError("A charger with this identity exists already.")
        return value


# --- Id tokens ------------------------------------------------------------------------------------


class IdTokenSerializer(ModelSerializer):
    token = CharField(
        max_length=ID_TOKEN_MAX,
        validators=[
            RegexValidator(ID_TOKEN_PATTERN, "Printable ASCII characters only, with no spaces.")
        ],
        error_messages={
            "max_length": (
                f"An id token has at most {ID_TOKEN_MAX} characters (the OCPP 2.x limit); "
                f"OCPP 1.6 chargers accept at most {ID_TOKEN_16_MAX}."
            )
        },
        help_text=(
            f"The idTag (1.6) or idToken (2.x): at most {ID_TOKEN_MAX} printable ASCII characters; "
            f"keep to {ID_TOKEN_16_MAX} for OCPP 1.6 chargers"
        ),
    )
    type = serializers.ChoiceField(choices=ID_TOKEN_TYPES, default="ISO14443")
    status = serializers.ChoiceField(choices=IdTokenStatus.choices, default=IdTokenStatus.ACCEPTED)
    group_token = CharField(
        max_length=ID_TOKEN_MAX,
        required=False,
        allow_blank=True,
        validators=[
            RegexValidator(ID_TOKEN_PATTERN, "Printable ASCII characters only, with no spaces.")
        ],
        help_text="parentIdTag (1.6) or groupIdToken (2.x)",
    )

    class Meta:
        model = IdToken
        fields = [
            "id",
            "token",
            "type",
            "status",
            "expires_at",
            "group_token",
            "owner_name",
            "owner_email",
            "allow_concurrent",
            "local_list",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]

    def validate_token(self, value: str) -> str:
        tenant = _tenant(self)
        if tenant is not None:
            taken = IdToken.objects.filter(organization_id=tenant.organization_id, token=value)
            if self.instance is not None:
                taken = taken.exclude(pk=self.instance.pk)
            if taken.exists():
                raise serializers.ValidationError("Your organization has this id token already.")
        return value


# --- Sessions and meter samples -------------------------------------------------------------------


class SessionSerializer(ModelSerializer):
    charger = serializers.SlugRelatedField(slug_field="identity", read_only=True)

    class Meta:
        model = Session
        fields = [
            "id",
            "charger",
            "connector_number",
            "evse_id",
            "transaction_id",
            "ocpp_version",
            "state",
            "id_tag",
            "id_token",
            "auth_status",
            "started_at",
            "stopped_at",
            "meter_start_wh",
            "meter_stop_wh",
            "energy_wh",
            "stop_reason",
            "stop_id_tag",
            "reservation_id",
            "updated_at",
        ]
        read_only_fields = fields


class MeterSampleSerializer(ModelSerializer):
    class Meta:
        model = MeterSample
        fields = [
            "id",
            "timestamp",
            "connector_number",
            "measurand",
            "phase",
            "location",
            "context",
            "value",
            "unit",
            "raw_value",
            "raw_unit",
            "signed_data",
        ]
        read_only_fields = fields


# --- The frame journal ----------------------------------------------------------------------------

FRAME_FIELDS = [
    "id",
    "timestamp",
    "charger",
    "leg",
    "direction",
    "kind",
    "message_id",
    "original_message_id",
    "action",
    "raw",
]


class FrameSerializer(ModelSerializer):
    charger = CharField(source="charger_identity", read_only=True)
    kind = serializers.ChoiceField(
        choices=Frame.Kind.choices,
        read_only=True,
        help_text="OCPP message type: 2 CALL, 3 CALLRESULT, 4 CALLERROR, 5 CALLRESULTERROR, 6 SEND (2.1); 0 a frame that did not parse",
    )

    class Meta:
        model = Frame
        fields = FRAME_FIELDS
        read_only_fields = fields


def frame_row(values: tuple[Any, ...]) -> dict[str, Any]:
    """One journal row for the exports, from ``values_list(*FRAME_VALUES)``."""
    row = dict(zip(FRAME_FIELDS, values, strict=True))
    row["timestamp"] = row["timestamp"].isoformat().replace("+00:00", "Z")
    return row


FRAME_VALUES = [
    "id",
    "timestamp",
    "charger_identity",
    "leg",
    "direction",
    "kind",
    "message_id",
    "original_message_id",
    "action",
    "raw",
]
