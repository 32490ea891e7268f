"""Reservations of a connector for an id token until a time.

Imported by ``chargers.models``; the logic lives in ``chargers.reservations`` (pure) and
``chargers.reservation_services``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from cpms.models import Organization

from .reservations import ReservationState


class Reservation(models.Model):
    """A connector (or any connector) of a charger held for an id token until ``expires_at``.

    ``reservation_id`` is the OCPP reservation id, which we allocate per charger. The state moves
    only as ``chargers.reservations.transition`` allows.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="reservations"
    )
    charger = models.ForeignKey(
        "chargers.Charger", on_delete=models.CASCADE, related_name="reservations"
    )
    connector = models.ForeignKey(
        "chargers.Connector",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="reservations",
        help_text="The connector (EVSE) held; empty for any connector",
    )
    connector_number = models.PositiveIntegerField(
        default=0, help_text="1.6 connectorId or 2.x evseId; 0 for any connector"
    )
    id_token = models.ForeignKey(
        "chargers.IdToken",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="reservations",
    )
    id_tag = models.CharField(max_length=255, help_text="The id token as sent to the charger")
    id_token_type = models.CharField(max_length=20, blank=True, help_text="2.x idToken type")
    group_token = models.CharField(
        max_length=255, blank=True, help_text="parentIdTag (1.6) or groupIdToken (2.x)"
    )
    reservation_id = models.PositiveIntegerField(help_text="The OCPP reservation id")
    ocpp_version = models.CharField(max_length=8)
    expires_at = models.DateTimeField()
    state = models.CharField(
        max_length=12,
        choices=[(state.value, state.value.capitalize()) for state in ReservationState],
        default=ReservationState.REQUESTED.value,
    )
    reason = models.CharField(
        max_length=300,
        blank=True,
        help_text="Why it was rejected or failed, or why a cancel was refused",
    )
    session = models.ForeignKey(
        "chargers.Session",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="reservations",
        help_text="The session that used it",
    )
    commands = models.ManyToManyField(
        "chargers.Command",
        blank=True,
        related_name="reservations",
        help_text="ReserveNow and CancelReservation commands sent for it",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    api_token = models.ForeignKey(
        "cpms.ApiToken", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "reservation_id"], name="reservation_id_unique_per_charger"
            )
        ]
        indexes = [
            models.Index(fields=["organization", "state", "-created_at"]),
            models.Index(fields=["state", "expires_at"]),
            models.Index(fields=["charger", "state"]),
        ]

    def __str__(self) -> str:
        return f"reservation {self.reservation_id} on {self.charger_id} ({self.state})"

    @property
    def requester(self) -> str:
        if self.created_by is not None:
            return self.created_by.get_username()
        if self.api_token is not None:
            return self.api_token.name
        return "system"
