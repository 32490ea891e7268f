"""REST API of a charger's local authorization list: how it stands and what it holds, and
requests to sync it or to check its version.

``GET /api/v1/chargers/<identity>/local-list/``; ``POST .../local-list/sync/`` with
``{"full": true|false}`` and ``POST .../local-list/check/`` answer 202 with the list's state,
which then follows the charger's answers. Operators read and act; integrators read. Another
organization's charger is a 404.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from cpms.errors import ErrorSerializer
from cpms.models import Role
from cpms.rest import OPERATOR_ROLES, TenantViewMixin
from cpms.tenancy import Tenant

from . import locallist_services, selectors
from .locallist_models import LocalListState, LocalListSync
from .models import Charger

IDENTITY = OpenApiParameter(
    "identity", str, OpenApiParameter.PATH, pattern=r"^[^/]{1,48}$", description="Charger identity"
)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The charger's list cannot be synced now."
    default_code = "conflict"


class LocalListEntrySerializer(serializers.Serializer):
    token = serializers.CharField()
    type = serializers.CharField(help_text="The 2.x idToken type")
    status = serializers.CharField(help_text="Accepted, Blocked, Expired or Invalid")
    expires_at = serializers.DateTimeField(allow_null=True)
    group_token = serializers.CharField(help_text="parentIdTag (1.6) or groupIdToken (2.x)")


class LocalListSerializer(serializers.Serializer):
    charger = serializers.CharField(help_text="The charger's identity")
    state = serializers.ChoiceField(choices=LocalListState.choices)
    version = serializers.IntegerField(help_text="The list version the charger confirmed")
    reported_version = serializers.IntegerField(
        allow_null=True, help_text="The version the charger last reported"
    )
    entry_count = serializers.IntegerField()
    entries = LocalListEntrySerializer(many=True, help_text="What the charger confirmed it holds")
    in_flight = serializers.BooleanField(help_text="An update awaits the charger's answer")
    updates_waiting = serializers.IntegerField(help_text="Updates that follow the one in flight")
    last_error = serializers.CharField()
    last_synced_at = serializers.DateTimeField(allow_null=True)


class StrictBooleanField(serializers.BooleanField):
    """A JSON true or false, nothing that merely looks like one."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            raise serializers.ValidationError("Must be true or false.")
        return data


class LocalListSyncSerializer(serializers.Serializer):
    full = StrictBooleanField(
        default=False,
        help_text="Send the whole list (updateType Full) instead of what changed",
    )


def local_list_data(sync: LocalListSync, charger: Charger) -> dict[str, Any]:
    return {
        "charger": charger.identity,
        "state": sync.state,
        "version": sync.version,
        "reported_version": sync.reported_version,
        "entry_count": len(sync.entries),
        "entries": [
            {
                "token": token,
                "type": str(info.get("type") or ""),
                "status": str(info.get("status") or ""),
                "expires_at": info.get("expiry"),
                "group_token": str(info.get("group") or ""),
            }
            for token, info in sorted(sync.entries.items())
        ],
        "in_flight": sync.command_id is not None,
        "updates_waiting": len(sync.plan or []),
        "last_error": sync.last_error,
        "last_synced_at": sync.last_synced_at,
    }


class ChargerLocalListViewSet(TenantViewMixin, viewsets.GenericViewSet):
    """A charger's local authorization list."""

    model = Charger
    serializer_class = LocalListSerializer
    read_roles = OPERATOR_ROLES | {Role.INTEGRATOR}
    write_roles = OPERATOR_ROLES
    pagination_class = None

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[Charger]:
        return selectors.chargers_for(tenant)

    def _charger(self) -> Charger:
        charger: Charger = get_object_or_404(self.get_queryset(), identity=self.kwargs["identity"])
        return charger

    def _answer(self, charger: Charger, code: int = status.HTTP_200_OK) -> Response:
        sync = locallist_services.local_list_of(charger=charger)
        return Response(LocalListSerializer(local_list_data(sync, charger)).data, status=code)

    @extend_schema(
        summary="The charger's local authorization list: state and entries (operators)",
        parameters=[IDENTITY],
        responses={200: LocalListSerializer},
    )
    def retrieve(self, request: Request, identity: str) -> Response:
        return self._answer(self._charger())

    @extend_schema(
        summary="Sync the charger's local list now (operators)",
        description="Sends what changed (updateType Differential), or with full the whole list "
        "(updateType Full). With an update in flight, this one follows its answer. 202 with the "
        "list's state; 409 when the charger never connected.",
        parameters=[IDENTITY],
        request=LocalListSyncSerializer,
        responses={
            202: LocalListSerializer,
            409: OpenApiResponse(ErrorSerializer, description="The charger never connected"),
        },
    )
    def sync(self, request: Request, identity: str) -> Response:
        charger = self._charger()
        serializer = LocalListSyncSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self._connected_once(charger)
        locallist_services.local_list_sync(
            charger_pk=charger.pk, full=serializer.validated_data["full"]
        )
        return self._answer(charger, status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Ask the charger for its list version and limits (operators)",
        description="GetLocalListVersion, with the limits (1.6 GetConfiguration, 2.x "
        "GetVariables) first; a version other than ours brings the full list. 202 with the "
        "list's state; 409 when the charger never connected.",
        parameters=[IDENTITY],
        request=None,
        responses={
            202: LocalListSerializer,
            409: OpenApiResponse(ErrorSerializer, description="The charger never connected"),
        },
    )
    def check(self, request: Request, identity: str) -> Response:
        charger = self._charger()
        self._connected_once(charger)
        locallist_services.local_list_check(charger_pk=charger.pk)
        return self._answer(charger, status.HTTP_202_ACCEPTED)

    def _connected_once(self, charger: Charger) -> None:
        if not charger.ocpp_version:
            raise Conflict(
                f"{charger.identity} has never connected, so its OCPP version (and with it its "
                "list) is not known yet.",
                code="never_connected",
            )
