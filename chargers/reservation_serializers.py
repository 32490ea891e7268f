"""REST API representations of reservations: what a client sends to make one, and the
reservation as it stands (its state, the commands sent for it, the session that used it)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cpms.fields import CharField, ModelSerializer

from .models import Command, Reservation
from .reservations import ReservationState


class ReservationCreateSerializer(serializers.Serializer):
    charger = CharField(max_length=48, help_text="The charger's identity")
    connector = serializers.IntegerField(
        required=False,
        default=0,
        min_value=0,
        max_value=2**31 - 1,
        help_text="1.6: the connectorId; 2.x: the evseId. 0 (the default) reserves any "
        "connector, which 1.6 chargers take only if they report ReserveConnectorZeroSupported",
    )
    id_token = CharField(
        max_length=255, help_text="An Accepted, unexpired id token of your organization"
    )
    expires_at = serializers.DateTimeField(
        help_text="When the reservation lapses: in the future, at most CPMS_RESERVATION_MAX_HOURS "
        "hours ahead"
    )


class ReservationCommandSerializer(ModelSerializer):
    class Meta:
        model = Command
        fields = ["id", "action", "state", "response_status", "error_code", "created_at"]
        read_only_fields = fields


class ReservationSerializer(ModelSerializer):
    charger = serializers.SlugRelatedField(slug_field="identity", read_only=True)
    connector = serializers.IntegerField(
        source="connector_number",
        read_only=True,
        help_text="1.6 connectorId or 2.x evseId; 0 for any connector",
    )
    id_token = serializers.CharField(
        source="id_tag", read_only=True, help_text="The id token the connector is held for"
    )
    state = serializers.ChoiceField(
        choices=[state.value for state in ReservationState],
        read_only=True,
        help_text="requested (ReserveNow on its way), active, then used, cancelled, expired or "
        "removed (2.x); rejected (the charger refused: see reason) or failed (no answer)",
    )
    commands = serializers.SerializerMethodField(
        help_text="The ReserveNow and CancelReservation commands sent for it, oldest first"
    )
    created_by = serializers.SerializerMethodField(
        help_text="Who made it: a user name or an API token's name"
    )

    class Meta:
        model = Reservation
        fields = [
            "id",
            "charger",
            "connector",
            "id_token",
            "group_token",
            "reservation_id",
            "ocpp_version",
            "expires_at",
            "state",
            "reason",
            "session",
            "commands",
            "created_by",
            "created_at",
            "updated_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(ReservationCommandSerializer(many=True))
    def get_commands(self, reservation: Reservation) -> list[dict[str, Any]]:
        commands = sorted(reservation.commands.all(), key=lambda c: c.pk)
        return list(ReservationCommandSerializer(commands, many=True).data)

    @extend_schema_field(OpenApiTypes.STR)
    def get_created_by(self, reservation: Reservation) -> str:
        return reservation.requester
