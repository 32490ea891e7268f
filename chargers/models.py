"""Sites, chargers, connectors, id tokens, sessions, meter samples and the OCPP frame journal.

Everything here is the normalized model: one shape for every OCPP version. Energies are in Wh,
powers in W, currents in A, times tz-aware UTC.
"""

from __future__ import annotations

from django.core.validators import URLValidator
from django.db import models
from django.utils import timezone

from cpms.models import Organization

from .commands import CommandState


class Site(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="sites")
    name = models.CharField(max_length=200)
    address = models.CharField(max_length=300, blank=True)
    city = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2")
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="site_name_unique_per_org"
            )
        ]

    def __str__(self) -> str:
        return self.name


class RegistrationStatus(models.TextChoices):
    ACCEPTED = "Accepted"
    PENDING = "Pending"
    REJECTED = "Rejected"


class Charger(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="chargers"
    )
    site = models.ForeignKey(
        Site, on_delete=models.SET_NULL, null=True, blank=True, related_name="chargers"
    )
    identity = models.CharField(
        max_length=48, unique=True, help_text="The id in /ocpp/<id> and the Basic auth username"
    )
    password_hash = models.CharField(max_length=256, blank=True)
    registration_status = models.CharField(
        max_length=16, choices=RegistrationStatus.choices, default=RegistrationStatus.ACCEPTED
    )
    vendor = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=50, blank=True)
    serial_number = models.CharField(max_length=50, blank=True)
    firmware_version = models.CharField(max_length=50, blank=True)
    iccid = models.CharField(max_length=20, blank=True)
    imsi = models.CharField(max_length=20, blank=True)
    meter_type = models.CharField(max_length=25, blank=True)
    meter_serial_number = models.CharField(max_length=25, blank=True)
    ocpp_version = models.CharField(max_length=8, blank=True)
    connected = models.BooleanField(default=False)
    channel_name = models.CharField(
        max_length=200,
        blank=True,
        help_text="Channel-layer address of the consumer holding the socket",
    )
    last_seen = models.DateTimeField(null=True, blank=True)
    last_boot_at = models.DateTimeField(null=True, blank=True)
    heartbeat_interval = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds; empty uses CPMS_HEARTBEAT_INTERVAL"
    )
    firmware_status = models.CharField(max_length=40, blank=True)
    firmware_status_at = models.DateTimeField(null=True, blank=True)
    diagnostics_status = models.CharField(max_length=40, blank=True)
    diagnostics_status_at = models.DateTimeField(null=True, blank=True)
    # 1.6 transaction ids are integers we issue; this is the last one handed out.
    last_transaction_id = models.PositiveBigIntegerField(default=0)
    # Reservation ids are integers we issue per charger; this is the last one handed out.
    last_reservation_id = models.PositiveIntegerField(default=0)
    quirk_profile = models.ForeignKey(
        "QuirkProfile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="chargers",
        help_text="Corrections for this charger's known deviations; matched at each BootNotification",
    )
    quirk_profile_pinned = models.BooleanField(
        default=False, help_text="Keep the chosen quirk profile instead of matching it at boot"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["identity"]
        indexes = [models.Index(fields=["organization", "connected"])]

    def __str__(self) -> str:
        return self.identity


class ConnectorStatus(models.TextChoices):
    """The common status set of 1.6 and 2.x; the raw value is kept beside it."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EVSE = "SuspendedEVSE"
    SUSPENDED_EV = "SuspendedEV"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"
    UNKNOWN = "Unknown"


class Connector(models.Model):
    """A connector; connector_id 0 stands for the charger itself, as in OCPP 1.6."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="connectors")
    connector_id = models.PositiveIntegerField()
    evse_id = models.PositiveIntegerField(null=True, blank=True)
    evse_connector_id = models.PositiveIntegerField(
        null=True, blank=True, help_text="2.x: the connector's id within its EVSE"
    )
    status = models.CharField(
        max_length=16, choices=ConnectorStatus.choices, default=ConnectorStatus.UNKNOWN
    )
    raw_status = models.CharField(max_length=32, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    vendor_id = models.CharField(max_length=255, blank=True)
    vendor_error_code = models.CharField(max_length=50, blank=True)
    info = models.CharField(max_length=50, blank=True)
    status_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["charger", "connector_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "connector_id"], name="connector_unique_per_charger"
            )
        ]

    def __str__(self) -> str:
        return f"{self.charger.identity}#{self.connector_id}"


class ConnectorStatusChange(models.Model):
    """The status history of a connector, one row per StatusNotification."""

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="history")
    status = models.CharField(max_length=16, choices=ConnectorStatus.choices)
    raw_status = models.CharField(max_length=32, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    vendor_error_code = models.CharField(max_length=50, blank=True)
    info = models.CharField(max_length=50, blank=True)
    timestamp = models.DateTimeField(help_text="When the charger says it happened")
    received_at = models.DateTimeField(default=timezone.now)
    corrections = models.JSONField(
        default=list, blank=True, help_text="Quirk corrections applied to what the charger sent"
    )

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [models.Index(fields=["connector", "-timestamp"])]

    def __str__(self) -> str:
        return f"{self.connector} {self.status} at {self.timestamp:%Y-%m-%d %H:%M:%S}"


class IdTokenStatus(models.TextChoices):
    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"


class IdToken(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="id_tokens"
    )
    token = models.CharField(max_length=255, help_text="The idTag (1.6) or idToken (2.x)")
    type = models.CharField(
        max_length=20,
        default="ISO14443",
        help_text="2.x idToken type: Central, eMAID, ISO14443, ISO15693, KeyCode, Local, MacAddress, NoAuthorization",
    )
    status = models.CharField(
        max_length=10, choices=IdTokenStatus.choices, default=IdTokenStatus.ACCEPTED
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    group_token = models.CharField(
        max_length=255, blank=True, help_text="parentIdTag (1.6) or groupIdToken (2.x)"
    )
    owner_name = models.CharField(max_length=200, blank=True)
    owner_email = models.EmailField(blank=True)
    allow_concurrent = models.BooleanField(
        default=False, help_text="Allow more than one session at a time with this token"
    )
    local_list = models.BooleanField(
        default=False,
        help_text="Keep this token in the local authorization list of the organization's chargers",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["token"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "token"], name="idtoken_unique_per_org")
        ]

    def __str__(self) -> str:
        return self.token


class SessionState(models.TextChoices):
    ACTIVE = "Active"
    COMPLETED = "Completed"


class Session(models.Model):
    """A charging session (an OCPP transaction)."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="sessions")
    connector = models.ForeignKey(
        Connector, on_delete=models.PROTECT, null=True, blank=True, related_name="sessions"
    )
    connector_number = models.PositiveIntegerField(default=0)
    evse_id = models.PositiveIntegerField(null=True, blank=True)
    id_token = models.ForeignKey(
        IdToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="sessions"
    )
    id_tag = models.CharField(max_length=255, blank=True, help_text="As the charger sent it")
    auth_status = models.CharField(max_length=16, blank=True)
    transaction_id = models.CharField(
        max_length=36, help_text="1.6: an integer we issue; 2.x: the charger's id"
    )
    ocpp_version = models.CharField(max_length=8, blank=True)
    state = models.CharField(
        max_length=10, choices=SessionState.choices, default=SessionState.ACTIVE
    )
    start_key = models.CharField(
        max_length=64, help_text="Fingerprint of the start message, for idempotent re-sends"
    )
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    meter_start_wh = models.DecimalField(max_digits=18, decimal_places=3)
    meter_stop_wh = models.DecimalField(max_digits=18, decimal_places=3, null=True, blank=True)
    energy_wh = models.DecimalField(max_digits=18, decimal_places=3, default=0)
    stop_reason = models.CharField(max_length=40, blank=True)
    stop_id_tag = models.CharField(max_length=255, blank=True)
    reservation_id = models.BigIntegerField(null=True, blank=True)
    remote_start_id = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="The id of the remote start request that began this session",
    )
    corrections = models.JSONField(
        default=list, blank=True, help_text="Quirk corrections applied to what the charger sent"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "transaction_id"], name="session_txid_unique_per_charger"
            ),
            models.UniqueConstraint(
                fields=["charger", "start_key"], name="session_start_unique_per_charger"
            ),
        ]
        indexes = [
            models.Index(fields=["charger", "state"]),
            models.Index(fields=["id_tag", "state"]),
            models.Index(fields=["-started_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.charger.identity} tx {self.transaction_id}"


class UnmatchedStop(models.Model):
    """A StopTransaction for a transaction we do not know, kept for reconciliation."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="unmatched_stops")
    transaction_id = models.CharField(max_length=36)
    id_tag = models.CharField(max_length=36, blank=True)
    meter_stop_wh = models.DecimalField(max_digits=18, decimal_places=3, null=True, blank=True)
    timestamp = models.DateTimeField()
    reason = models.CharField(max_length=40, blank=True)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    resolved = models.BooleanField(default=False)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "transaction_id", "timestamp"], name="unmatched_stop_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.charger} stop of unknown tx {self.transaction_id}"


class MeterSample(models.Model):
    """One sampled value, normalized to SI units (Wh, W, A, V, VA, var, varh, Celsius, %)."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="meter_samples")
    connector_number = models.PositiveIntegerField(default=0)
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, null=True, blank=True, related_name="meter_samples"
    )
    timestamp = models.DateTimeField()
    measurand = models.CharField(max_length=50, default="Energy.Active.Import.Register")
    phase = models.CharField(max_length=8, blank=True)
    location = models.CharField(max_length=8, blank=True)
    context = models.CharField(max_length=24, blank=True)
    value = models.DecimalField(max_digits=24, decimal_places=6, null=True, blank=True)
    unit = models.CharField(max_length=20, blank=True, help_text="The SI unit of value")
    raw_value = models.CharField(max_length=2500, blank=True)
    raw_unit = models.CharField(max_length=20, blank=True)
    signed_data = models.TextField(blank=True, help_text="Signed meter value, kept verbatim")
    corrections = models.JSONField(
        default=list, blank=True, help_text="Quirk corrections applied to what the charger sent"
    )

    class Meta:
        ordering = ["-timestamp", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "charger",
                    "connector_number",
                    "timestamp",
                    "measurand",
                    "phase",
                    "location",
                    "context",
                ],
                name="meter_sample_once",
            )
        ]
        indexes = [models.Index(fields=["session", "timestamp"])]

    def __str__(self) -> str:
        return (
            f"{self.measurand}{'/' + self.phase if self.phase else ''} = {self.value} {self.unit}"
        )


class Frame(models.Model):
    """The frame journal: every OCPP frame in and out, on every leg, verbatim."""

    class Direction(models.TextChoices):
        IN = "in", "received"
        OUT = "out", "sent"

    class Kind(models.IntegerChoices):
        UNPARSED = 0, "unparsed"
        CALL = 2, "CALL"
        RESULT = 3, "CALLRESULT"
        ERROR = 4, "CALLERROR"
        RESULT_ERROR = 5, "CALLRESULTERROR"  # 2.1: the answer to a CALLRESULT that was not valid
        SEND = 6, "SEND"  # 2.1: a message that gets no answer

    charger = models.ForeignKey(
        Charger, on_delete=models.CASCADE, null=True, blank=True, related_name="frames"
    )
    charger_identity = models.CharField(max_length=48, db_index=True)
    leg = models.CharField(max_length=64, default="charger", help_text="charger, or an upstream")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    kind = models.PositiveSmallIntegerField(choices=Kind.choices)
    message_id = models.CharField(max_length=64, blank=True)
    original_message_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64, blank=True)
    raw = models.TextField()
    timestamp = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [
            models.Index(fields=["charger_identity", "-timestamp"]),
            models.Index(fields=["action", "-timestamp"]),
        ]

    def __str__(self) -> str:
        return f"{self.charger_identity} {self.direction} {self.action or self.get_kind_display()} {self.message_id}"


class ChargerEvent(models.Model):
    """Notifications that are records, not state: security events, firmware, diagnostics, logs."""

    class Kind(models.TextChoices):
        BOOT = "Boot"
        SECURITY = "SecurityEvent"
        FIRMWARE = "FirmwareStatus"
        SIGNED_FIRMWARE = "SignedFirmwareStatus"
        DIAGNOSTICS = "DiagnosticsStatus"
        LOG = "LogStatus"
        CONNECTION = "Connection"
        RECONCILIATION = "Reconciliation"
        # OCPP 2.x notifications
        DEVICE_EVENT = "DeviceEvent"
        MONITORING_REPORT = "MonitoringReport"
        DEVICE_REPORT = "DeviceReport"
        PUBLISH_FIRMWARE = "PublishFirmwareStatus"
        CHARGING_LIMIT = "ChargingLimit"
        EV_CHARGING_SCHEDULE = "EVChargingSchedule"
        CHARGING_PROFILES = "ChargingProfilesReport"
        RESERVATION = "ReservationStatus"
        CUSTOMER_INFORMATION = "CustomerInformation"
        DISPLAY_MESSAGES = "DisplayMessages"
        CERTIFICATE = "Certificate"
        # OCPP 2.1 notifications
        BATTERY_SWAP = "BatterySwap"
        DER = "DER"
        PERIODIC_EVENT_STREAM = "PeriodicEventStream"
        PRIORITY_CHARGING = "PriorityCharging"
        SETTLEMENT = "Settlement"
        VAT_NUMBER = "VatNumberValidation"
        DYNAMIC_SCHEDULE = "DynamicSchedule"

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    status = models.CharField(max_length=64, blank=True)
    request_id = models.BigIntegerField(null=True, blank=True)
    timestamp = models.DateTimeField(default=timezone.now)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [models.Index(fields=["charger", "kind", "-timestamp"])]

    def __str__(self) -> str:
        return f"{self.charger} {self.kind} {self.status}"


class DataTransferRecord(models.Model):
    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="data_transfers")
    direction = models.CharField(max_length=3, choices=Frame.Direction.choices)
    vendor_id = models.CharField(max_length=255)
    message_id = models.CharField(max_length=50, blank=True)
    data = models.TextField(blank=True)
    response_status = models.CharField(max_length=20, blank=True)
    response_data = models.TextField(blank=True)
    timestamp = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-timestamp", "-id"]

    # --- Quirk profiles ------------------------------------------------------------------------------

    def __str__(self) -> str:
        return f"{self.charger} {self.vendor_id} {self.message_id}".strip()


class QuirkProfile(models.Model):
    """Corrections for the known deviations of one vendor's chargers (optionally one model).

    Matched from the BootNotification: the profile with the most specific model pattern wins.
    The raw frame in the journal is never touched; corrected values record what was applied.
    """

    name = models.CharField(max_length=100, unique=True)
    vendor = models.CharField(
        max_length=255, help_text="The vendor the charger names, case ignored"
    )
    model_pattern = models.CharField(
        max_length=255,
        blank=True,
        help_text="Shell-style pattern for the model, case ignored (OC-22*); empty matches every model",
    )
    corrections = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["vendor", "model_pattern", "name"]

    def __str__(self) -> str:
        return self.name


# --- OCPP 2.x transactions -----------------------------------------------------------------------


class TransactionEventRecord(models.Model):
    """One 2.x TransactionEvent, kept per session for ordering, gaps and idempotent re-sends."""

    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="transaction_events"
    )
    event_key = models.CharField(
        max_length=80, help_text="seqNo, or a content fingerprint for chargers that reuse seqNo"
    )
    seq_no = models.BigIntegerField()
    event_type = models.CharField(max_length=8)
    trigger_reason = models.CharField(max_length=32)
    timestamp = models.DateTimeField()
    offline = models.BooleanField(default=False)
    charging_state = models.CharField(max_length=16, blank=True)
    stopped_reason = models.CharField(max_length=40, blank=True)
    remote_start_id = models.BigIntegerField(null=True, blank=True)
    id_token = models.CharField(max_length=255, blank=True)
    id_token_type = models.CharField(max_length=20, blank=True)
    fingerprint = models.CharField(max_length=64)
    response = models.JSONField(
        default=dict, blank=True, help_text="The answer given, for re-sends"
    )
    corrections = models.JSONField(default=list, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["session", "seq_no", "timestamp", "id"]
        constraints = [
            models.UniqueConstraint(fields=["session", "event_key"], name="transaction_event_once")
        ]

    def __str__(self) -> str:
        return f"{self.session} #{self.seq_no} {self.event_type}"


# --- OCPP 2.x device model -----------------------------------------------------------------------


class DeviceVariable(models.Model):
    """A variable of a component in a charger's device model, as NotifyReport describes it."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="device_variables")
    key = models.CharField(
        max_length=255, help_text="component/instance/evse/connector/variable/instance"
    )
    component_name = models.CharField(max_length=50)
    component_instance = models.CharField(max_length=50, blank=True)
    evse_id = models.PositiveIntegerField(null=True, blank=True)
    connector_id = models.PositiveIntegerField(null=True, blank=True)
    variable_name = models.CharField(max_length=50)
    variable_instance = models.CharField(max_length=50, blank=True)
    # Characteristics
    unit = models.CharField(max_length=16, blank=True)
    data_type = models.CharField(max_length=20, blank=True)
    min_limit = models.DecimalField(max_digits=24, decimal_places=6, null=True, blank=True)
    max_limit = models.DecimalField(max_digits=24, decimal_places=6, null=True, blank=True)
    max_elements = models.PositiveIntegerField(null=True, blank=True)
    values_list = models.TextField(blank=True)
    supports_monitoring = models.BooleanField(null=True, blank=True)
    report_request_id = models.BigIntegerField(null=True, blank=True)
    reported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = [
            "charger",
            "component_name",
            "component_instance",
            "evse_id",
            "connector_id",
            "variable_name",
        ]
        constraints = [
            models.UniqueConstraint(fields=["charger", "key"], name="device_variable_once")
        ]

    def __str__(self) -> str:
        return self.key


class DeviceVariableAttribute(models.Model):
    """One attribute (Actual, Target, MinSet, MaxSet) of a device model variable."""

    variable = models.ForeignKey(
        DeviceVariable, on_delete=models.CASCADE, related_name="attributes"
    )
    type = models.CharField(max_length=8, default="Actual")
    value = models.TextField(blank=True)
    has_value = models.BooleanField(
        default=True, help_text="False when the charger left the value out"
    )
    mutability = models.CharField(max_length=10, blank=True)
    persistent = models.BooleanField(null=True, blank=True)
    constant = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["variable", "type"]
        constraints = [
            models.UniqueConstraint(fields=["variable", "type"], name="device_attribute_once")
        ]

    def __str__(self) -> str:
        return f"{self.variable.key} {self.type}"


class DeviceVariableMonitor(models.Model):
    """A monitor set on a device model variable, as NotifyMonitoringReport describes it."""

    variable = models.ForeignKey(DeviceVariable, on_delete=models.CASCADE, related_name="monitors")
    monitor_id = models.BigIntegerField()
    type = models.CharField(max_length=24)
    value = models.DecimalField(max_digits=24, decimal_places=6)
    severity = models.PositiveSmallIntegerField()
    transaction = models.BooleanField(default=False)
    report_request_id = models.BigIntegerField(null=True, blank=True)
    reported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["variable", "monitor_id"]
        constraints = [
            models.UniqueConstraint(fields=["variable", "monitor_id"], name="device_monitor_once")
        ]

    def __str__(self) -> str:
        return f"{self.variable.key} monitor {self.monitor_id}"


# --- OCPP 2.x smart charging inputs --------------------------------------------------------------


class ExternalChargingLimit(models.Model):
    """A limit set on the charger by something other than us (EMS, DSO, ...): NotifyChargingLimit."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="external_limits")
    evse_id = models.PositiveIntegerField(null=True, blank=True)
    source = models.CharField(
        max_length=20, help_text="chargingLimitSource: EMS, Other, SO, CSO, ..."
    )
    is_grid_critical = models.BooleanField(null=True, blank=True)
    schedules = models.JSONField(default=list, blank=True, help_text="chargingSchedule as sent")
    detail = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["charger", "cleared_at"])]

    def __str__(self) -> str:
        return f"{self.charger_id} {self.source} limit"


class EVChargingNeeds(models.Model):
    """What an EV asked for over ISO 15118 (NotifyEVChargingNeeds), kept for smart charging."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="ev_charging_needs")
    session = models.ForeignKey(
        Session, on_delete=models.SET_NULL, null=True, blank=True, related_name="ev_charging_needs"
    )
    evse_id = models.PositiveIntegerField()
    requested_energy_transfer = models.CharField(max_length=20)
    departure_time = models.DateTimeField(null=True, blank=True)
    energy_amount_wh = models.DecimalField(max_digits=18, decimal_places=3, null=True, blank=True)
    min_current_a = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
    max_current_a = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
    max_voltage_v = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
    max_power_w = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    state_of_charge = models.PositiveSmallIntegerField(null=True, blank=True)
    energy_capacity_wh = models.DecimalField(max_digits=18, decimal_places=3, null=True, blank=True)
    max_schedule_tuples = models.PositiveIntegerField(null=True, blank=True)
    response_status = models.CharField(max_length=20)
    detail = models.JSONField(default=dict, blank=True, help_text="The request as sent")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["charger", "evse_id", "-received_at"])]

    def __str__(self) -> str:
        return f"{self.charger_id} EVSE {self.evse_id} {self.requested_energy_transfer}"


# --- Commands to a charger -----------------------------------------------------------------------


class Command(models.Model):
    """One CALL we send a charger, from the request to its answer; the row is the truth.

    The state moves only as ``chargers.commands.transition`` allows. ``payload`` is the OCPP
    request as sent (camelCase), validated against the schema of ``ocpp_version``.
    """

    class Source(models.TextChoices):
        USER = "user", "Dashboard user"
        API_TOKEN = "api_token", "API token"
        SYSTEM = "system", "System"

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="commands")
    action = models.CharField(max_length=64)
    payload = models.JSONField(default=dict, blank=True)
    ocpp_version = models.CharField(
        max_length=8, help_text="The version the payload was checked against"
    )
    state = models.CharField(
        max_length=12,
        choices=[(state.value, state.value.capitalize()) for state in CommandState],
        default=CommandState.REQUESTED.value,
    )
    deliver_when_offline = models.BooleanField(
        default=False,
        help_text="Keep it queued while the charger is offline, and send it when it connects",
    )
    message_id = models.CharField(max_length=36, blank=True, help_text="The id of the CALL as sent")
    response = models.JSONField(null=True, blank=True, help_text="The CALLRESULT payload")
    response_status = models.CharField(
        max_length=40, blank=True, help_text="Its status field, if any"
    )
    error_code = models.CharField(
        max_length=50, blank=True, help_text="CALLERROR code, or why it failed"
    )
    error_description = models.TextField(blank=True)
    source = models.CharField(max_length=12, choices=Source.choices, default=Source.SYSTEM)
    requested_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    api_token = models.ForeignKey(
        "cpms.ApiToken", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    system = models.CharField(max_length=64, blank=True, help_text="Which part of the system asked")
    retry_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retries"
    )
    retry_count = models.PositiveIntegerField(default=0, help_text="0 for a first attempt")
    remote_start_id = models.BigIntegerField(
        null=True, blank=True, help_text="Remote starts: the id a session started by it carries"
    )
    session = models.ForeignKey(
        Session,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="commands",
        help_text="Remote starts: the session the charger started for it",
    )
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["charger", "-created_at"]),
            models.Index(fields=["state", "created_at"]),
            models.Index(fields=["charger", "action", "remote_start_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.action} to {self.charger_id} ({self.state})"

    @property
    def requester(self) -> str:
        """Who asked: a user's name, an API token's name, or the part of the system."""
        if self.source == self.Source.USER:
            return self.requested_by.get_username() if self.requested_by else "(deleted user)"
        if self.source == self.Source.API_TOKEN:
            return self.api_token.name if self.api_token else "(deleted API token)"
        return self.system or "system"


class ChargerConfigurationKey(models.Model):
    """An OCPP 1.6 configuration key as the charger last reported it (GetConfiguration), or as
    we last set it with its acceptance (ChangeConfiguration)."""

    charger = models.ForeignKey(
        Charger, on_delete=models.CASCADE, related_name="configuration_keys"
    )
    key = models.CharField(max_length=50)
    value = models.CharField(max_length=500, blank=True)
    has_value = models.BooleanField(
        default=True, help_text="False when the charger left the value out"
    )
    readonly = models.BooleanField(default=False)
    reported_at = models.DateTimeField(default=timezone.now)
    command = models.ForeignKey(
        Command,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The command whose answer reported it",
    )

    class Meta:
        ordering = ["charger", "key"]
        constraints = [
            models.UniqueConstraint(fields=["charger", "key"], name="configuration_key_once")
        ]

    def __str__(self) -> str:
        return f"{self.charger_id} {self.key}"


# --- Alerts --------------------------------------------------------------------------------------


class Alert(models.Model):
    """Something about a charger an operator must know: raised by the rules in
    ``chargers.alerts``, followed from open through acknowledged to resolved.

    The state moves only as ``chargers.alert_rules.transition`` allows. One alert is active per
    charger, kind and connector; a resolved one that comes back soon re-opens instead of raising
    a new one. ``connector_id`` 0 stands for the charger itself.
    """

    class Kind(models.TextChoices):
        OFFLINE = "offline", "Offline"
        CONNECTOR_FAULTED = "connector_faulted", "Connector faulted"
        CHARGER_ERROR = "charger_error", "Error code"
        BOOT_LOOP = "boot_loop", "Boot loop"
        SILENT_SESSION = "silent_session", "Silent session"
        METER_BACKWARDS = "meter_backwards", "Meter going backwards"
        PROFILE_REJECTED = "profile_rejected", "Charging profile rejected"
        PROFILE_IGNORED = "profile_ignored", "Charging profile ignored"
        FIRMWARE_FAILED = "firmware_failed", "Firmware update failed"
        UPSTREAM_DOWN = "upstream_down", "Upstream down"
        RECONCILIATION = "reconciliation", "Transaction reconciliation"

    class Severity(models.TextChoices):
        CRITICAL = "critical", "Critical"
        MAJOR = "major", "Major"
        MINOR = "minor", "Minor"
        WARNING = "warning", "Warning"
        INFO = "info", "Info"

    class State(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="alerts")
    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="alerts")
    connector_id = models.PositiveIntegerField(
        default=0, help_text="The connector it concerns; 0 for the charger itself"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MAJOR)
    state = models.CharField(max_length=12, choices=State.choices, default=State.OPEN)
    message = models.CharField(max_length=500, blank=True)
    details = models.JSONField(default=dict, blank=True)
    suppressed = models.BooleanField(
        default=False,
        help_text="Raised while its charger was offline: recorded, not notified",
    )
    suppressed_by = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="suppressed_alerts"
    )
    fault_at = models.DateTimeField(help_text="When the condition began")
    raised_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(
        default=timezone.now, help_text="When the condition was last reported"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolution = models.CharField(
        max_length=200, blank=True, help_text="How it ended: cleared by the charger, or a note"
    )
    occurrences = models.PositiveIntegerField(
        default=1, help_text="How often the condition was reported while active"
    )
    reopen_count = models.PositiveIntegerField(default=0)
    mttd_seconds = models.FloatField(
        null=True, blank=True, help_text="Time to detect: from the fault to the alert"
    )
    mttr_seconds = models.FloatField(
        null=True, blank=True, help_text="Time to resolve: from the alert to its resolution"
    )
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-raised_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "kind", "connector_id"],
                condition=models.Q(state__in=["open", "acknowledged"]),
                name="alert_active_once",
            )
        ]
        indexes = [
            models.Index(fields=["organization", "state", "-raised_at"]),
            models.Index(fields=["charger", "kind", "connector_id", "-resolved_at"]),
        ]

    def __str__(self) -> str:
        where = f"#{self.connector_id}" if self.connector_id else ""
        return f"{self.kind} on {self.charger_id}{where} ({self.state})"


class AlertCondition(models.Model):
    """A condition seen but not yet held for its debounce period: it becomes an alert once it
    has, and vanishes without one if it clears first (a flap)."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="alert_conditions")
    connector_id = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=32, choices=Alert.Kind.choices)
    severity = models.CharField(max_length=10, choices=Alert.Severity.choices)
    message = models.CharField(max_length=500, blank=True)
    details = models.JSONField(default=dict, blank=True)
    since = models.DateTimeField(help_text="When the condition began")
    due_at = models.DateTimeField(help_text="When it becomes an alert if it still holds")

    class Meta:
        ordering = ["due_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "kind", "connector_id"], name="alert_condition_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} on {self.charger_id} since {self.since:%Y-%m-%d %H:%M:%S}"


class AlertSubscription(models.Model):
    """A member of an organization who is told of its alerts by e-mail."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="alert_subscriptions"
    )
    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="+")
    min_severity = models.CharField(
        max_length=10, choices=Alert.Severity.choices, default=Alert.Severity.MAJOR
    )
    kinds = models.JSONField(default=list, blank=True, help_text="Alert kinds; empty for all")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "user"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="alert_subscription_once")
        ]

    def __str__(self) -> str:
        return f"{self.user} for {self.organization}"


class WebhookEndpoint(models.Model):
    """An HTTPS endpoint of an organization's own systems that gets its alerts, signed."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500, validators=[URLValidator(schemes=["http", "https"])])
    secret = models.CharField(
        max_length=128, help_text="Signs each body: HMAC-SHA256 over '<timestamp>.<body>'"
    )
    events = models.JSONField(
        default=list, blank=True, help_text="alert.raised, alert.acknowledged, ...; empty for all"
    )
    min_severity = models.CharField(
        max_length=10, choices=Alert.Severity.choices, default=Alert.Severity.INFO
    )
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="webhook_endpoint_name_once"
            )
        ]

    def __str__(self) -> str:
        return self.name


class AlertDelivery(models.Model):
    """One notification of one alert event to one webhook endpoint or e-mail address: the
    delivery log, with each attempt's outcome."""

    class Channel(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        EMAIL = "email", "E-mail"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Retrying"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="alert_deliveries"
    )
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    endpoint = models.ForeignKey(
        WebhookEndpoint,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="deliveries",
    )
    recipient = models.CharField(max_length=500, help_text="The URL or e-mail address")
    event = models.CharField(max_length=32)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["endpoint", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.event} of alert {self.alert_id} to {self.recipient} ({self.status})"


# Firmware campaigns and uploaded diagnostics, local lists and reservations live in modules of their
# own.
from .firmware_models import DiagnosticsFile, FirmwareCampaign, FirmwareTarget  # noqa: E402, F401
from .locallist_models import LocalListSync  # noqa: E402, F401
from .reservation_models import Reservation  # noqa: E402, F401
