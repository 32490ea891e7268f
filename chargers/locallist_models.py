"""What a charger's local authorization list holds as far as this system knows, and how its
synchronisation stands."""

from __future__ import annotations

from django.db import models


class LocalListState(models.TextChoices):
    UNKNOWN = "unknown", "Not synchronised yet"
    IN_SYNC = "in_sync", "In sync"
    PENDING = "pending", "Pending"
    FAILED = "failed", "Failed"
    TOO_LONG = "too_long", "Too long for the charger"
    NOT_SUPPORTED = "not_supported", "Not supported by the charger"


class LocalListSync(models.Model):
    """One charger's local authorization list: the version and entries it confirmed, the update
    in flight and the ones that follow it, and how the last attempt went."""

    charger = models.OneToOneField(
        "chargers.Charger", on_delete=models.CASCADE, related_name="local_list"
    )
    version = models.IntegerField(default=0, help_text="The list version the charger confirmed")
    reported_version = models.IntegerField(
        null=True, blank=True, help_text="The version the charger last reported"
    )
    entries = models.JSONField(
        default=dict,
        blank=True,
        help_text="The entries the charger confirmed: token -> status, expiry, group, type",
    )
    state = models.CharField(
        max_length=16, choices=LocalListState.choices, default=LocalListState.UNKNOWN
    )
    last_error = models.TextField(blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    command = models.ForeignKey(
        "chargers.Command",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The SendLocalList in flight",
    )
    message = models.JSONField(
        null=True, blank=True, help_text="The update in flight: update type, version, entries"
    )
    plan = models.JSONField(
        default=list, blank=True, help_text="The updates that follow the one in flight"
    )
    full_requested = models.BooleanField(
        default=False, help_text="A full update waits for the update in flight"
    )
    check_command = models.ForeignKey(
        "chargers.Command",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The GetLocalListVersion in flight",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["charger"]
        indexes = [models.Index(fields=["state"])]

    def __str__(self) -> str:
        return f"local list of charger {self.charger_id}: v{self.version} ({self.state})"
