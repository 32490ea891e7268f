"""Running a network of chargers: transaction reconciliation with its audit trail.

Each model belongs to one organization through its charger; selectors filter by it.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from chargers.models import Charger, Command, Session, UnmatchedStop


class ReconciliationCase(models.Model):
    """A transaction whose state we doubt, from detection to a recorded resolution."""

    class Kind(models.TextChoices):
        OPEN_ON_AVAILABLE = "open_on_available", "Session open on an Available connector"
        REBOOT_WITHOUT_STOP = "reboot_without_stop", "Reboot without a StopTransaction"
        UNKNOWN_STOP = "unknown_stop", "Stop for an unknown transaction"

    class State(models.TextChoices):
        OPEN = "open", "Open"
        ASKED = "asked", "Asked the charger"
        REVIEW = "review", "Needs an operator"
        RESOLVED = "resolved", "Resolved"

    class Resolution(models.TextChoices):
        SESSION_CLOSED = "session_closed", "Session closed"
        SESSION_CORRECTED = "session_corrected", "Session corrected from the stop"
        ONGOING = "ongoing", "Charger confirms the session is ongoing"
        STOPPED_BY_CHARGER = "stopped_by_charger", "The charger's own stop arrived"
        DISMISSED = "dismissed", "Dismissed"

    charger = models.ForeignKey(
        Charger, on_delete=models.CASCADE, related_name="reconciliation_cases"
    )
    kind = models.CharField(max_length=24, choices=Kind.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    resolution = models.CharField(max_length=20, choices=Resolution.choices, blank=True)
    session = models.ForeignKey(
        Session,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="reconciliation_cases",
    )
    unmatched_stop = models.ForeignKey(
        UnmatchedStop,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="reconciliation_cases",
    )
    command = models.ForeignKey(
        Command,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The last question put to the charger (TriggerMessage or GetTransactionStatus)",
    )
    reason = models.TextField(blank=True, help_text="Why it was resolved this way")
    detected_at = models.DateTimeField(default=timezone.now)
    asked_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-detected_at", "-id"]
        indexes = [models.Index(fields=["state", "detected_at"])]
        constraints = [
            # One unresolved case per doubted session and per unknown stop.
            models.UniqueConstraint(
                fields=["session"],
                condition=Q(session__isnull=False) & ~Q(state="resolved"),
                name="reconciliation_open_case_per_session",
            ),
            models.UniqueConstraint(
                fields=["unmatched_stop"],
                condition=Q(unmatched_stop__isnull=False) & ~Q(state="resolved"),
                name="reconciliation_open_case_per_stop",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.charger_id} {self.kind} ({self.state})"


class ReconciliationEntry(models.Model):
    """The audit trail of a case: every step, who took it, and what changed."""

    case = models.ForeignKey(ReconciliationCase, on_delete=models.CASCADE, related_name="entries")
    step = models.CharField(max_length=24)
    note = models.TextField(blank=True)
    actor = models.CharField(max_length=150, help_text="A user's name, or the part of the system")
    user = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    detail = models.JSONField(default=dict, blank=True, help_text="Values before and after")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.case_id} {self.step}"


# --- Configuration baselines --------------------------------------------------------------------


class ConfigurationBaseline(models.Model):
    """The configuration every charger of one model (vendor + model) should have."""

    class Protocol(models.TextChoices):
        OCPP16 = "1.6", "OCPP 1.6 configuration keys"
        OCPP2X = "2.x", "OCPP 2.x device model variables"

    organization = models.ForeignKey(
        "cpms.Organization", on_delete=models.CASCADE, related_name="configuration_baselines"
    )
    name = models.CharField(max_length=100)
    vendor = models.CharField(max_length=50, help_text="As the charger names it; case ignored")
    model = models.CharField(max_length=50, help_text="As the charger names it; case ignored")
    protocol = models.CharField(max_length=3, choices=Protocol.choices)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["vendor", "model", "protocol"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "vendor", "model", "protocol"],
                name="baseline_once_per_model",
            )
        ]

    def __str__(self) -> str:
        return self.name


class BaselineSetting(models.Model):
    """One desired value: a 1.6 key, or a 2.x component/variable attribute."""

    baseline = models.ForeignKey(
        ConfigurationBaseline, on_delete=models.CASCADE, related_name="settings"
    )
    ref = models.CharField(
        max_length=300,
        help_text="1.6: the key; 2.x: component/instance/evse/connector/variable/instance/attribute",
    )
    key = models.CharField(max_length=50, blank=True)
    component_name = models.CharField(max_length=50, blank=True)
    component_instance = models.CharField(max_length=50, blank=True)
    evse_id = models.PositiveIntegerField(null=True, blank=True)
    connector_id = models.PositiveIntegerField(null=True, blank=True)
    variable_name = models.CharField(max_length=50, blank=True)
    variable_instance = models.CharField(max_length=50, blank=True)
    attribute_type = models.CharField(max_length=8, blank=True)
    value = models.CharField(max_length=500)

    class Meta:
        ordering = ["baseline", "ref"]
        constraints = [
            models.UniqueConstraint(fields=["baseline", "ref"], name="baseline_setting_once")
        ]

    def __str__(self) -> str:
        return f"{self.ref} = {self.value}"


class BaselineResult(models.Model):
    """What a charger answered when a baseline value was last applied to it."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="baseline_results")
    baseline = models.ForeignKey(
        ConfigurationBaseline, on_delete=models.CASCADE, related_name="results"
    )
    ref = models.CharField(max_length=300)
    value = models.CharField(max_length=500, help_text="The value sent")
    command = models.ForeignKey(Command, on_delete=models.SET_NULL, null=True, related_name="+")
    status = models.CharField(
        max_length=40,
        blank=True,
        help_text="Accepted, RebootRequired, Rejected, NotSupported, UnknownVariable, ...; "
        "empty while the command is under way",
    )
    detail = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["charger", "ref"]
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "baseline", "ref"], name="baseline_result_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.charger_id} {self.ref} {self.status}"


# --- Uptime ----------------------------------------------------------------------------------------


class MaintenanceWindow(models.Model):
    """Planned downtime, left out of uptime: for the whole organization, a site, a charger or
    one connector of it."""

    organization = models.ForeignKey(
        "cpms.Organization", on_delete=models.CASCADE, related_name="maintenance_windows"
    )
    site = models.ForeignKey(
        "chargers.Site",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="maintenance_windows",
    )
    charger = models.ForeignKey(
        Charger,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="maintenance_windows",
    )
    connector_id = models.PositiveIntegerField(
        null=True, blank=True, help_text="Only this connector of the charger"
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=200)
    created_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at", "-id"]
        indexes = [models.Index(fields=["organization", "starts_at", "ends_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="maintenance_ends_after_start"
            )
        ]

    def __str__(self) -> str:
        return f"{self.reason} {self.starts_at:%Y-%m-%d %H:%M}"
