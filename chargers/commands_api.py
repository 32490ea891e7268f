"""REST API of commands to chargers: send one to a charger, follow it, list them, retry one.

``POST /api/v1/chargers/<identity>/commands/`` answers 202: the command is on its way, and its
state (``GET /api/v1/commands/<id>/``) tells when the charger answered. Operators and operator
admins only; another organization's charger or command is a 404.
"""

from __future__ import annotations

from typing import Any

import django_filters as filters
from django.db.models import QuerySet
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from cpms.errors import ErrorSerializer
from cpms.models import ApiToken
from cpms.rest import (
    OPERATOR_ROLES,
    DateTimeFilter,
    StrictFilterSet,
    TenantViewMixin,
    acting_user,
)
from cpms.tenancy import Tenant

from . import command_services, selectors
from .commands import CommandState
from .commands_serializers import CommandCreateSerializer, CommandSerializer
from .models import Charger, Command


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The command cannot be accepted now."
    default_code = "conflict"


class CommandFilter(StrictFilterSet):
    charger = filters.CharFilter(field_name="charger__identity", help_text="A charger identity")
    state = filters.ChoiceFilter(choices=[(s.value, s.value) for s in CommandState])
    action = filters.CharFilter(help_text="An OCPP action, e.g. Reset")
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Command
        fields = ["charger", "state", "action"]


def _requester(request: Request) -> dict[str, Any]:
    token = request.auth if isinstance(request.auth, ApiToken) else None
    return {"requested_by": acting_user(request), "api_token": token}


def _create(request: Request, charger: Charger) -> Response:
    serializer = CommandCreateSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    try:
        command = command_services.command_create(
            charger=charger,
            action=data["action"],
            payload=data["payload"],
            deliver_when_offline=data["deliver_when_offline"],
            **_requester(request),
        )
    except command_services.CommandInvalid as exc:
        raise exceptions.ValidationError({exc.field: [exc.message]}) from None
    except command_services.CommandRefused as exc:
        raise Conflict(str(exc), code="charger_offline") from None
    return Response(CommandSerializer(command).data, status=status.HTTP_202_ACCEPTED)


ACCEPTED = {
    202: CommandSerializer,
    409: OpenApiResponse(ErrorSerializer, description="The charger is offline, or never connected"),
}


@extend_schema_view(
    list=extend_schema(
        summary="Commands to one charger, newest first (operators)",
        parameters=[
            OpenApiParameter(
                "identity",
                str,
                OpenApiParameter.PATH,
                pattern=r"^[^/]{1,48}$",
                description="The charger's identity",
            )
        ],
    ),
    create=extend_schema(
        summary="Send a command to a charger (operators)",
        description="The command is checked against the OCPP schema of the charger's version "
        "(400 with the schema's message otherwise) and handed to the charger's connection: 202 "
        "with the command, whose state then follows its delivery. An offline charger is a 409 "
        "unless deliver_when_offline is set.",
        parameters=[
            OpenApiParameter(
                "identity",
                str,
                OpenApiParameter.PATH,
                pattern=r"^[^/]{1,48}$",
                description="The charger's identity",
            )
        ],
        request=CommandCreateSerializer,
        responses=ACCEPTED,
    ),
)
class ChargerCommandViewSet(
    TenantViewMixin, mixins.ListModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Commands to one charger, addressed by its identity."""

    model = Command
    serializer_class = CommandSerializer
    filterset_class = CommandFilter
    cursor_ordering = ("-created_at", "-id")
    read_roles = OPERATOR_ROLES
    write_roles = OPERATOR_ROLES

    def charger(self) -> Charger:
        return get_object_or_404(
            selectors.chargers_for(self.tenant), identity=self.kwargs["identity"]
        )

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[Command]:
        return selectors.commands_for(tenant).select_related("charger", "requested_by", "api_token")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        charger = self.charger()
        commands = self.filter_queryset(self.get_queryset().filter(charger=charger))
        page = self.paginate_queryset(commands)
        return self.get_paginated_response(CommandSerializer(page, many=True).data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return _create(request, self.charger())


@extend_schema_view(
    list=extend_schema(summary="Commands to your chargers, newest first (operators)"),
    retrieve=extend_schema(summary="One command: its state and the charger's answer (operators)"),
)
class CommandViewSet(TenantViewMixin, viewsets.ReadOnlyModelViewSet):
    """Commands sent (or waiting to be sent) to chargers, with the chargers' answers."""

    model = Command
    serializer_class = CommandSerializer
    filterset_class = CommandFilter
    cursor_ordering = ("-created_at", "-id")
    read_roles = OPERATOR_ROLES
    write_roles = OPERATOR_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[Command]:
        return selectors.commands_for(tenant).select_related("charger", "requested_by", "api_token")

    @extend_schema(
        summary="Send a command that was rejected, failed or timed out again (operators)",
        description="Creates a new command with the same action and payload, linked to this one "
        "(retry_of); 409 when this command succeeded or is still under way.",
        request=None,
        responses=ACCEPTED,
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        command = self.get_object()
        try:
            retried = command_services.command_retry(command=command, **_requester(request))
        except command_services.CommandInvalid as exc:
            raise exceptions.ValidationError({exc.field: [exc.message]}) from None
        except command_services.CommandRefused as exc:
            raise Conflict(str(exc)) from None
        return Response(CommandSerializer(retried).data, status=status.HTTP_202_ACCEPTED)
