"""REST API representations of firmware campaigns, their targets, and diagnostics files."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cpms.fields import CharField, ModelSerializer

from .firmware import TargetState
from .models import DiagnosticsFile, FirmwareCampaign, FirmwareTarget

# 2.x limits (OCPP 2.0.1 FirmwareType); 1.6 has none, a campaign keeps to the tighter ones.
LOCATION_MAX = 512
SIGNATURE_MAX = 800
CERTIFICATE_MAX = 5500
URL_SCHEMES = ["http", "https", "ftp", "ftps", "sftp"]


class TargetFilterSerializer(serializers.Serializer):
    """Which chargers a campaign targets: every condition given must hold."""

    site = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="A site id"
    )
    vendor = CharField(max_length=50, required=False, allow_blank=True, default="")
    model = CharField(max_length=50, required=False, allow_blank=True, default="")
    current_firmware_version = CharField(
        max_length=50,
        required=False,
        allow_blank=True,
        default="",
        help_text="Only chargers that report this firmware version now",
    )
    chargers = serializers.ListField(
        child=CharField(max_length=48),
        required=False,
        default=list,
        max_length=10000,
        help_text="An explicit list of charger identities",
    )
    firmware_version = CharField(
        max_length=50,
        required=False,
        allow_blank=True,
        default="",
        help_text="The version the new firmware reports at boot: a charger that boots with it "
        "succeeded, and chargers that run it already are left out",
    )

    def validate_site(self, value: int | None) -> int | None:
        tenant = self.context.get("tenant")
        if value is not None and tenant is not None:
            from . import selectors

            if not selectors.sites_for(tenant).filter(pk=value).exists():
                raise serializers.ValidationError("No such site.")
        return value

    def validate_chargers(self, value: list[str]) -> list[str]:
        tenant = self.context.get("tenant")
        if value and tenant is not None:
            from . import selectors

            known = set(
                selectors.chargers_for(tenant)
                .filter(identity__in=value)
                .values_list("identity", flat=True)
            )
            unknown = sorted(set(value) - known)
            if unknown:
                raise serializers.ValidationError(f"No such charger: {', '.join(unknown[:20])}.")
        return value


class CampaignCreateSerializer(TargetFilterSerializer):
    name = CharField(max_length=200)
    location = serializers.URLField(
        max_length=LOCATION_MAX,
        help_text="Where chargers download the firmware (http, https, ftp, ftps or sftp)",
    )
    retrieve_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="When chargers download it (default: when sent)"
    )
    install_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="When chargers install it (2.x, signed 1.6)"
    )
    retries = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=100)
    retry_interval = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=86400, help_text="Seconds"
    )
    signature = CharField(
        max_length=SIGNATURE_MAX,
        required=False,
        allow_blank=True,
        default="",
        help_text="Base64 signature of the firmware: with it, 1.6 chargers get "
        "SignedUpdateFirmware",
    )
    signing_certificate = CharField(
        max_length=CERTIFICATE_MAX,
        required=False,
        allow_blank=True,
        default="",
        help_text="PEM certificate of the firmware's signer",
    )
    canary_count = serializers.IntegerField(min_value=1, max_value=10000, default=1)
    wave_size = serializers.IntegerField(min_value=1, max_value=10000, default=10)
    max_failure_ratio = serializers.DecimalField(
        max_digits=4,
        decimal_places=3,
        min_value=Decimal(0),
        max_value=Decimal(1),
        default=Decimal("0.2"),
        help_text="Halt when more than this share (0 to 1) of the targets sent failed",
    )
    target_timeout = serializers.IntegerField(
        min_value=60, max_value=7 * 86400, default=3600, help_text="Seconds per target"
    )
    deliver_when_offline = serializers.BooleanField(
        default=True, help_text="Queue the request for offline chargers (else they are skipped)"
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["location"].validators[-1].schemes = URL_SCHEMES  # type: ignore[attr-defined]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if bool(attrs.get("signature")) != bool(attrs.get("signing_certificate")):
            raise serializers.ValidationError(
                {"signature": ["Give the signature and the signing certificate together."]}
            )
        retrieve: datetime | None = attrs.get("retrieve_at")
        install: datetime | None = attrs.get("install_at")
        if retrieve and install and install < retrieve:
            raise serializers.ValidationError(
                {"install_at": ["Installing cannot come before retrieving."]}
            )
        return attrs


def target_counts(campaign: FirmwareCampaign) -> dict[str, int]:
    counts = {state.value: int(getattr(campaign, f"n_{state.value}", 0)) for state in TargetState}
    counts["total"] = int(getattr(campaign, "n_total", 0))
    return counts


class CampaignSerializer(ModelSerializer):
    site = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    chargers = serializers.SlugRelatedField(slug_field="identity", many=True, read_only=True)
    counts = serializers.SerializerMethodField(
        help_text="Targets per state (pending, sent, in_progress, succeeded, failed, timed_out, "
        "skipped) and total"
    )

    class Meta:
        model = FirmwareCampaign
        fields = [
            "id",
            "name",
            "state",
            "location",
            "firmware_version",
            "retrieve_at",
            "install_at",
            "retries",
            "retry_interval",
            "signature",
            "signing_certificate",
            "site",
            "vendor",
            "model",
            "current_firmware_version",
            "chargers",
            "canary_count",
            "wave_size",
            "max_failure_ratio",
            "target_timeout",
            "deliver_when_offline",
            "current_wave",
            "halt_reason",
            "counts",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(
        {"type": "object", "additionalProperties": {"type": "integer"}, "example": {"total": 3}}
    )
    def get_counts(self, campaign: FirmwareCampaign) -> dict[str, int]:
        return target_counts(campaign)


class TargetSerializer(ModelSerializer):
    charger = serializers.SlugRelatedField(slug_field="identity", read_only=True)

    class Meta:
        model = FirmwareTarget
        fields = [
            "id",
            "charger",
            "wave",
            "state",
            "status",
            "status_at",
            "reason",
            "request_id",
            "command",
            "firmware_before",
            "dispatched_at",
            "finished_at",
        ]
        read_only_fields = fields


class PreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    chargers = serializers.ListField(child=serializers.CharField(), help_text="The first 100")


class DiagnosticsRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=DiagnosticsFile.Kind.choices,
        default=DiagnosticsFile.Kind.DIAGNOSTICS,
        help_text="diagnostics (GetDiagnostics on 1.6, GetLog DiagnosticsLog on 2.x), "
        "DiagnosticsLog or SecurityLog (GetLog)",
    )
    start_time = serializers.DateTimeField(required=False, allow_null=True)
    stop_time = serializers.DateTimeField(required=False, allow_null=True)
    deliver_when_offline = serializers.BooleanField(default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, stop = attrs.get("start_time"), attrs.get("stop_time")
        if start and stop and stop < start:
            raise serializers.ValidationError({"stop_time": ["The stop comes before the start."]})
        return attrs


class DiagnosticsFileSerializer(ModelSerializer):
    charger = serializers.SlugRelatedField(slug_field="identity", read_only=True)
    download = serializers.SerializerMethodField(help_text="Where operators download the file")

    class Meta:
        model = DiagnosticsFile
        fields = [
            "id",
            "charger",
            "kind",
            "state",
            "status",
            "request_id",
            "command",
            "file_name",
            "size",
            "content_type",
            "start_time",
            "stop_time",
            "expires_at",
            "uploaded_at",
            "created_at",
            "download",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "string", "nullable": True})
    def get_download(self, record: DiagnosticsFile) -> str | None:
        if not record.file:
            return None
        return reverse("diagnostics-download", args=[record.pk])
