"""REST API representations of commands to chargers: what a client sends to ask for one, and the
command as it stands (its state, the charger's answer, who asked)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cpms.fields import CharField, ModelSerializer

from .commands import CommandState
from .models import Command


class CommandCreateSerializer(serializers.Serializer):
    action = CharField(
        max_length=64,
        help_text="The OCPP action, as the charger's version names it: Reset, GetConfiguration, "
        "RequestStartTransaction, ...",
    )
    payload = serializers.DictField(
        required=False,
        default=dict,
        help_text="The OCPP request, in camelCase as sent; checked against the schema of the "
        "charger's OCPP version",
    )
    deliver_when_offline = serializers.BooleanField(
        required=False,
        default=False,
        help_text="If the charger is offline, keep the command queued and send it when the charger "
        "connects (otherwise an offline charger is a 409)",
    )


class CommandSerializer(ModelSerializer):
    charger = serializers.SlugRelatedField(slug_field="identity", read_only=True)
    state = serializers.ChoiceField(
        choices=[state.value for state in CommandState],
        read_only=True,
        help_text="requested, queued, sent, then accepted, rejected or answered (the charger's "
        "answer has no status); error (a CALLERROR), timeout or failed (not delivered)",
    )
    payload = serializers.DictField(read_only=True, help_text="The OCPP request as sent")
    response = serializers.SerializerMethodField(
        help_text="The charger's answer (CALLRESULT payload), or a CALLERROR's details"
    )
    requested_by = serializers.SerializerMethodField(
        help_text="Who asked: a user name, an API token's name, or a part of the system"
    )

    class Meta:
        model = Command
        fields = [
            "id",
            "charger",
            "action",
            "payload",
            "ocpp_version",
            "state",
            "deliver_when_offline",
            "message_id",
            "response",
            "response_status",
            "error_code",
            "error_description",
            "source",
            "requested_by",
            "retry_of",
            "retry_count",
            "remote_start_id",
            "session",
            "created_at",
            "sent_at",
            "answered_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "object", "additionalProperties": {}, "nullable": True})
    def get_response(self, command: Command) -> Any:
        return command.response

    @extend_schema_field(OpenApiTypes.STR)
    def get_requested_by(self, command: Command) -> str:
        return command.requester
