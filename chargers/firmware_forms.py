"""Dashboard forms of firmware campaigns (the target filter and the rollout) and of diagnostics
requests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django import forms
from django.core.validators import URLValidator
from django.db.models import QuerySet

from .firmware_serializers import CERTIFICATE_MAX, LOCATION_MAX, SIGNATURE_MAX, URL_SCHEMES
from .firmware_services import TargetFilter
from .models import Charger, DiagnosticsFile, Site


class UtcDateTimeField(forms.DateTimeField):
    """A moment typed in a datetime-local input, read as UTC."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")

    def to_python(self, value: Any) -> datetime | None:
        moment = super().to_python(value)
        if moment is None:
            return None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class TargetFilterForm(forms.Form):
    """Which chargers a campaign targets: every condition given must hold."""

    site = forms.ModelChoiceField(queryset=Site.objects.none(), required=False, empty_label="Any")
    vendor = forms.CharField(max_length=50, required=False)
    model = forms.CharField(max_length=50, required=False)
    current_firmware_version = forms.CharField(
        max_length=50, required=False, label="Current firmware version"
    )
    chargers = forms.ModelMultipleChoiceField(
        queryset=Charger.objects.none(),
        required=False,
        to_field_name="identity",
        help_text="Only these chargers (leave empty for every charger the filter matches)",
        widget=forms.SelectMultiple(attrs={"size": 6}),
    )
    firmware_version = forms.CharField(
        max_length=50,
        required=False,
        label="New firmware version",
        help_text="The version the firmware reports: chargers that boot with it succeeded, and "
        "chargers that run it already are left out",
    )

    def __init__(
        self, *args: Any, sites: QuerySet[Site], chargers: QuerySet[Charger], **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        site_field = self.fields["site"]
        assert isinstance(site_field, forms.ModelChoiceField)
        site_field.queryset = sites.order_by("name")
        charger_field = self.fields["chargers"]
        assert isinstance(charger_field, forms.ModelMultipleChoiceField)
        charger_field.queryset = chargers.order_by("identity")

    def target_filter(self, organization_id: int) -> TargetFilter:
        data = self.cleaned_data
        site = data.get("site")
        return TargetFilter(
            organization_id=organization_id,
            site_id=site.pk if site is not None else None,
            vendor=data.get("vendor", ""),
            model=data.get("model", ""),
            current_firmware_version=data.get("current_firmware_version", ""),
            charger_ids=tuple(charger.pk for charger in data.get("chargers") or []),
            firmware_version=data.get("firmware_version", ""),
        )


class CampaignForm(TargetFilterForm):
    field_order = ["name", "location", "firmware_version", "retrieve_at", "install_at"]

    name = forms.CharField(max_length=200)
    location = forms.CharField(
        max_length=LOCATION_MAX,
        label="Firmware location",
        help_text="The URL chargers download the firmware from (http, https, ftp, ftps, sftp)",
        validators=[URLValidator(schemes=URL_SCHEMES)],
        widget=forms.URLInput(),
    )
    retrieve_at = UtcDateTimeField(
        required=False, label="Retrieve at (UTC)", help_text="Empty: as soon as it is sent"
    )
    install_at = UtcDateTimeField(
        required=False, label="Install at (UTC)", help_text="2.x and signed 1.6 only"
    )
    retries = forms.IntegerField(required=False, min_value=0, max_value=100)
    retry_interval = forms.IntegerField(
        required=False, min_value=0, max_value=86400, label="Retry interval (s)"
    )
    signature = forms.CharField(
        max_length=SIGNATURE_MAX,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Base64 signature of the firmware: 1.6 chargers then get SignedUpdateFirmware",
    )
    signing_certificate = forms.CharField(
        max_length=CERTIFICATE_MAX, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    canary_count = forms.IntegerField(
        min_value=1, max_value=10000, initial=1, label="Canary chargers"
    )
    wave_size = forms.IntegerField(min_value=1, max_value=10000, initial=10, label="Wave size")
    max_failure_percent = forms.DecimalField(
        min_value=Decimal(0),
        max_value=Decimal(100),
        decimal_places=1,
        initial=Decimal(20),
        label="Halt above failures (%)",
        help_text="The campaign halts when more than this share of the chargers sent failed",
    )
    target_timeout_minutes = forms.IntegerField(
        min_value=1, max_value=7 * 24 * 60, initial=60, label="Timeout per charger (minutes)"
    )
    deliver_when_offline = forms.BooleanField(
        required=False, initial=True, label="Queue the update for offline chargers"
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("signature")) != bool(data.get("signing_certificate")):
            self.add_error("signature", "Give the signature and the signing certificate together.")
        retrieve, install = data.get("retrieve_at"), data.get("install_at")
        if retrieve and install and install < retrieve:
            self.add_error("install_at", "Installing cannot come before retrieving.")
        return data


class DiagnosticsForm(forms.Form):
    kind = forms.ChoiceField(choices=DiagnosticsFile.Kind.choices, label="File")
    start_time = UtcDateTimeField(required=False, label="From (UTC)")
    stop_time = UtcDateTimeField(required=False, label="Until (UTC)")
    deliver_when_offline = forms.BooleanField(
        required=False, label="If the charger is offline, ask when it connects"
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, stop = data.get("start_time"), data.get("stop_time")
        if start and stop and stop < start:
            self.add_error("stop_time", "The end comes before the start.")
        return data
