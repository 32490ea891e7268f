"""The Django admin for the central system: the first operator UI."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from . import quirks, services
from .models import (
    Alert,
    AlertDelivery,
    Charger,
    ChargerConfigurationKey,
    ChargerEvent,
    Command,
    Connector,
    ConnectorStatusChange,
    DataTransferRecord,
    DeviceVariable,
    DeviceVariableAttribute,
    DeviceVariableMonitor,
    EVChargingNeeds,
    ExternalChargingLimit,
    Frame,
    IdToken,
    MeterSample,
    QuirkProfile,
    RegistrationStatus,
    Reservation,
    Session,
    Site,
    TransactionEventRecord,
    UnmatchedStop,
    WebhookEndpoint,
)
from .passwords import hash_password


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "city", "country", "time_zone"]
    list_filter = ["organization", "country", "time_zone"]
    search_fields = ["name", "address", "city", "postal_code"]


class ChargerForm(forms.ModelForm):
    new_password = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="HTTP Basic password the charger sends; leave empty to keep the current one.",
    )

    class Meta:
        model = Charger
        # What an operator edits; everything the charger reports is read-only on the page.
        fields = [
            "organization",
            "site",
            "identity",
            "registration_status",
            "heartbeat_interval",
            "quirk_profile",
            "quirk_profile_pinned",
        ]

    def save(self, commit: bool = True) -> Charger:
        charger = super().save(commit=False)
        if self.cleaned_data.get("new_password"):
            charger.password_hash = hash_password(self.cleaned_data["new_password"])
        if commit:
            charger.save()
        return charger


class ConnectorInline(admin.TabularInline):
    model = Connector
    extra = 0
    fields = (
        "connector_id",
        "evse_id",
        "status",
        "raw_status",
        "error_code",
        "vendor_error_code",
        "status_at",
    )
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Charger)
class ChargerAdmin(admin.ModelAdmin):
    form = ChargerForm
    list_display = [
        "identity",
        "organization",
        "site",
        "registration_status",
        "connected",
        "ocpp_version",
        "vendor",
        "model",
        "firmware_version",
        "last_seen",
    ]
    list_filter = [
        "organization",
        "site",
        "registration_status",
        "connected",
        "ocpp_version",
        "vendor",
    ]
    search_fields = ["identity", "serial_number", "vendor", "model"]
    readonly_fields = [
        "vendor",
        "model",
        "serial_number",
        "firmware_version",
        "iccid",
        "imsi",
        "meter_type",
        "meter_serial_number",
        "ocpp_version",
        "connected",
        "channel_name",
        "last_seen",
        "last_boot_at",
        "firmware_status",
        "firmware_status_at",
        "diagnostics_status",
        "diagnostics_status_at",
        "last_transaction_id",
    ]
    inlines = [ConnectorInline]
    actions = ["accept_registration", "reject_registration"]

    @admin.action(description="Accept registration of selected chargers")
    def accept_registration(self, request: HttpRequest, queryset: QuerySet[Charger]) -> None:
        count = services.chargers_registration_set(
            charger_pks=queryset.values_list("pk", flat=True), status=RegistrationStatus.ACCEPTED
        )
        self.message_user(request, f"{count} charger(s) accepted.", messages.SUCCESS)

    @admin.action(description="Reject registration of selected chargers")
    def reject_registration(self, request: HttpRequest, queryset: QuerySet[Charger]) -> None:
        count = services.chargers_registration_set(
            charger_pks=queryset.values_list("pk", flat=True), status=RegistrationStatus.REJECTED
        )
        self.message_user(request, f"{count} charger(s) rejected.", messages.WARNING)


class StatusHistoryInline(admin.TabularInline):
    model = ConnectorStatusChange
    extra = 0
    fields = ("timestamp", "status", "raw_status", "error_code", "vendor_error_code", "info")
    readonly_fields = fields
    can_delete = False
    max_num = 0
    ordering = ["-timestamp"]


@admin.register(Connector)
class ConnectorAdmin(admin.ModelAdmin):
    list_display = ["charger", "connector_id", "status", "error_code", "status_at"]
    list_filter = ["status", "error_code", "charger__organization"]
    search_fields = ["charger__identity"]
    readonly_fields = ["status_at"]
    inlines = [StatusHistoryInline]


@admin.register(ConnectorStatusChange)
class ConnectorStatusChangeAdmin(admin.ModelAdmin):
    list_display = ["connector", "status", "raw_status", "error_code", "timestamp", "received_at"]
    list_filter = ["status", "error_code"]
    search_fields = ["connector__charger__identity"]
    date_hierarchy = "timestamp"


@admin.register(IdToken)
class IdTokenAdmin(admin.ModelAdmin):
    list_display = [
        "token",
        "organization",
        "type",
        "status",
        "expires_at",
        "group_token",
        "owner_name",
        "local_list",
    ]
    list_filter = ["organization", "status", "type", "local_list"]
    search_fields = ["token", "group_token", "owner_name", "owner_email"]


class MeterSampleInline(admin.TabularInline):
    model = MeterSample
    extra = 0
    fields = ("timestamp", "measurand", "phase", "location", "context", "value", "unit")
    readonly_fields = fields
    can_delete = False
    max_num = 0


TRANSACTION_EVENT_FIELDS = (
    "seq_no",
    "event_type",
    "trigger_reason",
    "timestamp",
    "offline",
    "charging_state",
    "stopped_reason",
    "id_token",
    "corrections",
)


class TransactionEventInline(admin.TabularInline):
    model = TransactionEventRecord
    extra = 0
    fields = TRANSACTION_EVENT_FIELDS
    readonly_fields = TRANSACTION_EVENT_FIELDS
    can_delete = False
    max_num = 0
    ordering = ["seq_no", "timestamp"]


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = [
        "transaction_id",
        "charger",
        "connector_number",
        "id_tag",
        "state",
        "started_at",
        "stopped_at",
        "energy_wh",
        "stop_reason",
    ]
    list_filter = ["state", "stop_reason", "auth_status", "ocpp_version", "charger__organization"]
    search_fields = ["transaction_id", "charger__identity", "id_tag"]
    date_hierarchy = "started_at"
    readonly_fields = ["start_key", "created_at", "updated_at"]
    raw_id_fields = ["charger", "connector", "id_token"]
    inlines = [MeterSampleInline, TransactionEventInline]


@admin.register(MeterSample)
class MeterSampleAdmin(admin.ModelAdmin):
    list_display = [
        "charger",
        "connector_number",
        "session",
        "timestamp",
        "measurand",
        "phase",
        "value",
        "unit",
    ]
    list_filter = ["measurand", "phase", "context", "location", "unit"]
    search_fields = ["charger__identity", "session__transaction_id"]
    date_hierarchy = "timestamp"
    raw_id_fields = ["charger", "session"]


@admin.register(UnmatchedStop)
class UnmatchedStopAdmin(admin.ModelAdmin):
    list_display = ["charger", "transaction_id", "id_tag", "meter_stop_wh", "timestamp", "resolved"]
    list_filter = ["resolved"]
    search_fields = ["charger__identity", "transaction_id", "id_tag"]


@admin.register(Frame)
class FrameAdmin(admin.ModelAdmin):
    list_display = [
        "timestamp",
        "charger_identity",
        "leg",
        "direction",
        "kind",
        "action",
        "message_id",
    ]
    list_filter = ["direction", "kind", "leg", "action"]
    search_fields = ["charger_identity", "message_id", "original_message_id", "action"]
    date_hierarchy = "timestamp"
    list_select_related = False
    show_full_result_count = False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the journal is an audit trail: read-only


@admin.register(ChargerEvent)
class ChargerEventAdmin(admin.ModelAdmin):
    list_display = ["timestamp", "charger", "kind", "status", "request_id"]
    list_filter = ["kind", "status"]
    search_fields = ["charger__identity", "status"]
    date_hierarchy = "timestamp"


@admin.register(DataTransferRecord)
class DataTransferRecordAdmin(admin.ModelAdmin):
    list_display = [
        "timestamp",
        "charger",
        "direction",
        "vendor_id",
        "message_id",
        "response_status",
    ]
    list_filter = ["direction", "vendor_id", "response_status"]
    search_fields = ["charger__identity", "vendor_id", "message_id"]


# --- OCPP 2.x and quirk profiles -----------------------------------------------------------------


class QuirkProfileForm(forms.ModelForm):
    corrections = forms.MultipleChoiceField(
        choices=quirks.CHOICES,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Each one corrects a known deviation; the raw frame in the journal stays as sent.",
    )

    class Meta:
        model = QuirkProfile
        fields = ["name", "vendor", "model_pattern", "corrections", "enabled", "notes"]

    def clean_vendor(self) -> str:
        vendor = str(self.cleaned_data["vendor"]).strip()
        if not vendor:
            raise forms.ValidationError(
                "Name the vendor as the charger sends it in BootNotification."
            )
        return vendor


@admin.register(QuirkProfile)
class QuirkProfileAdmin(admin.ModelAdmin):
    form = QuirkProfileForm
    list_display = [
        "name",
        "vendor",
        "model_pattern",
        "enabled",
        "correction_list",
        "charger_count",
    ]
    list_filter = ["enabled", "vendor"]
    search_fields = ["name", "vendor", "model_pattern", "notes"]

    @admin.display(description="Corrections")
    def correction_list(self, profile: QuirkProfile) -> str:
        return ", ".join(profile.corrections or []) or "-"

    @admin.display(description="Chargers")
    def charger_count(self, profile: QuirkProfile) -> int:
        return profile.chargers.count()


@admin.register(TransactionEventRecord)
class TransactionEventRecordAdmin(admin.ModelAdmin):
    list_display = [
        "session",
        "seq_no",
        "event_type",
        "trigger_reason",
        "timestamp",
        "offline",
        "charging_state",
    ]
    list_filter = ["event_type", "trigger_reason", "offline", "charging_state"]
    search_fields = ["session__transaction_id", "session__charger__identity", "id_token"]
    date_hierarchy = "timestamp"
    raw_id_fields = ["session"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # what the charger said: read-only


ATTRIBUTE_FIELDS = ("type", "value", "mutability", "persistent", "constant")
MONITOR_FIELDS = ("monitor_id", "type", "value", "severity", "transaction", "reported_at")


class DeviceVariableAttributeInline(admin.TabularInline):
    model = DeviceVariableAttribute
    extra = 0
    fields = ATTRIBUTE_FIELDS
    readonly_fields = ATTRIBUTE_FIELDS
    can_delete = False
    max_num = 0


class DeviceVariableMonitorInline(admin.TabularInline):
    model = DeviceVariableMonitor
    extra = 0
    fields = MONITOR_FIELDS
    readonly_fields = MONITOR_FIELDS
    can_delete = False
    max_num = 0


@admin.register(DeviceVariable)
class DeviceVariableAdmin(admin.ModelAdmin):
    list_display = [
        "charger",
        "component_name",
        "component_instance",
        "evse_id",
        "connector_id",
        "variable_name",
        "variable_instance",
        "actual_value",
        "unit",
    ]
    list_filter = ["component_name", "data_type", "charger__organization"]
    search_fields = ["charger__identity", "component_name", "variable_name", "key"]
    raw_id_fields = ["charger"]
    inlines = [DeviceVariableAttributeInline, DeviceVariableMonitorInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeviceVariable]:
        return (
            super().get_queryset(request).select_related("charger").prefetch_related("attributes")
        )

    @admin.display(description="Actual")
    def actual_value(self, variable: DeviceVariable) -> str:
        for attribute in variable.attributes.all():
            if attribute.type == "Actual":
                return attribute.value
        return ""


@admin.register(ExternalChargingLimit)
class ExternalChargingLimitAdmin(admin.ModelAdmin):
    list_display = ["charger", "evse_id", "source", "is_grid_critical", "received_at", "cleared_at"]
    list_filter = ["source", "is_grid_critical"]
    search_fields = ["charger__identity"]
    raw_id_fields = ["charger"]


@admin.register(EVChargingNeeds)
class EVChargingNeedsAdmin(admin.ModelAdmin):
    list_display = [
        "charger",
        "evse_id",
        "requested_energy_transfer",
        "energy_amount_wh",
        "departure_time",
        "response_status",
        "received_at",
    ]
    list_filter = ["requested_energy_transfer", "response_status"]
    search_fields = ["charger__identity", "session__transaction_id"]
    raw_id_fields = ["charger", "session"]


@admin.register(Command)
class CommandAdmin(admin.ModelAdmin):
    """Commands are sent from the dashboard or the API; here they are only looked at."""

    list_display = [
        "created_at",
        "charger",
        "action",
        "state",
        "response_status",
        "error_code",
        "source",
    ]
    list_filter = ["state", "action", "source"]
    search_fields = ["charger__identity", "action", "message_id"]
    date_hierarchy = "created_at"
    raw_id_fields = ["charger", "requested_by", "api_token", "retry_of", "session"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Reservation)
class ReservationAdmin(admin.ModelAdmin):
    """Reservations are made and cancelled from the dashboard or the API, which send the charger
    its commands; here they are only looked at."""

    list_display = [
        "created_at",
        "charger",
        "connector_number",
        "id_tag",
        "reservation_id",
        "expires_at",
        "state",
        "reason",
    ]
    list_filter = ["state", "ocpp_version"]
    search_fields = ["charger__identity", "id_tag"]
    date_hierarchy = "created_at"
    raw_id_fields = [
        "organization",
        "charger",
        "connector",
        "id_token",
        "session",
        "commands",
        "created_by",
        "api_token",
    ]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ChargerConfigurationKey)
class ChargerConfigurationKeyAdmin(admin.ModelAdmin):
    list_display = ["charger", "key", "value", "readonly", "reported_at"]
    list_filter = ["readonly"]
    search_fields = ["charger__identity", "key"]
    raw_id_fields = ["charger", "command"]


# --- Alerts --------------------------------------------------------------------------------------


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Alerts are raised by the rules and moved on the dashboard or the API; here they are only
    looked at."""

    list_display = [
        "raised_at",
        "charger",
        "connector_id",
        "kind",
        "severity",
        "state",
        "suppressed",
        "mttd_seconds",
        "mttr_seconds",
    ]
    list_filter = ["state", "kind", "severity", "suppressed"]
    search_fields = ["charger__identity", "message"]
    date_hierarchy = "raised_at"
    raw_id_fields = ["organization", "charger", "suppressed_by", "acknowledged_by", "resolved_by"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "url", "min_severity", "enabled"]
    list_filter = ["enabled", "min_severity"]
    search_fields = ["name", "url"]
    raw_id_fields = ["organization", "created_by"]


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "event",
        "channel",
        "recipient",
        "status",
        "attempts",
        "response_code",
    ]
    list_filter = ["status", "channel", "event"]
    search_fields = ["recipient"]
    raw_id_fields = ["organization", "alert", "endpoint"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
