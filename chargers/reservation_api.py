"""REST API of reservations: make one (ReserveNow), follow it, list them, cancel one.

``POST /api/v1/reservations/`` and ``POST /api/v1/reservations/<id>/cancel/`` answer 202: the
command is on its way, and the reservation's state tells when the charger answered. Operators
make and cancel reservations; every member reads them; another organization's are a 404.
"""

from __future__ import annotations

from typing import Any

import django_filters as filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from cpms.errors import ErrorSerializer
from cpms.models import ApiToken
from cpms.permissions import ALL_ROLES
from cpms.rest import OPERATOR_ROLES, DateTimeFilter, StrictFilterSet, TenantViewMixin, acting_user
from cpms.tenancy import Tenant

from . import reservation_services, selectors
from .models import Reservation
from .reservation_serializers import ReservationCreateSerializer, ReservationSerializer
from .reservations import ReservationState


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The reservation cannot be changed now."
    default_code = "conflict"


class ReservationFilter(StrictFilterSet):
    charger = filters.CharFilter(field_name="charger__identity", help_text="A charger identity")
    state = filters.ChoiceFilter(choices=[(s.value, s.value) for s in ReservationState])
    id_token = filters.CharFilter(field_name="id_tag", help_text="An id token")
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Reservation
        fields = ["charger", "state", "id_token"]


def _requester(request: Request) -> dict[str, Any]:
    token = request.auth if isinstance(request.auth, ApiToken) else None
    return {"requested_by": acting_user(request), "api_token": token}


ACCEPTED = {
    202: ReservationSerializer,
    409: OpenApiResponse(ErrorSerializer, description="The charger is offline"),
}


@extend_schema_view(
    list=extend_schema(summary="Reservations of your chargers, newest first"),
    retrieve=extend_schema(summary="One reservation: its state and the charger's answers"),
    create=extend_schema(
        summary="Reserve a connector for an id token (operators)",
        description="Checks the id token (an Accepted, unexpired token of your organization), the "
        "expiry (future, at most CPMS_RESERVATION_MAX_HOURS ahead), the connector (it exists, "
        "no active reservation holds it) and sends ReserveNow: 202 with the reservation, whose "
        "state becomes active when the charger accepts, or rejected with its reason. An "
        "offline charger is a 409.",
        request=ReservationCreateSerializer,
        responses=ACCEPTED,
    ),
)
class ReservationViewSet(
    TenantViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Connectors held for an id token until a time."""

    model = Reservation
    serializer_class = ReservationSerializer
    filterset_class = ReservationFilter
    cursor_ordering = ("-created_at", "-id")
    read_roles = ALL_ROLES
    write_roles = OPERATOR_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[Reservation]:
        return (
            selectors.reservations_for(tenant)
            .select_related("charger", "created_by", "api_token")
            .prefetch_related("commands")
        )

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = ReservationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        charger = selectors.chargers_for(self.tenant).filter(identity=data["charger"]).first()
        if charger is None:
            raise exceptions.ValidationError(
                {"charger": ["No charger of yours has this identity."]}
            )
        try:
            checked = reservation_services.reservation_check(
                charger=charger,
                connector=data["connector"],
                id_token=data["id_token"],
                expires_at=data["expires_at"],
            )
            reservation = reservation_services.reservation_create(
                request=checked, **_requester(request)
            )
        except reservation_services.ReservationInvalid as exc:
            raise exceptions.ValidationError(exc.errors) from None
        except reservation_services.ReservationRefused as exc:
            raise Conflict(str(exc), code="charger_offline") from None
        reservation = self.get_queryset().get(pk=reservation.pk)
        return Response(ReservationSerializer(reservation).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Cancel an active reservation (operators)",
        description="Sends CancelReservation: 202 with the reservation, which becomes cancelled "
        "when the charger accepts; if the charger refuses, it stays active and its reason says "
        "why. 409 when the reservation is not active or the charger is offline.",
        request=None,
        responses=ACCEPTED,
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        reservation = self.get_object()
        try:
            reservation_services.reservation_cancel(reservation=reservation, **_requester(request))
        except reservation_services.ReservationRefused as exc:
            raise Conflict(str(exc)) from None
        reservation = self.get_queryset().get(pk=reservation.pk)
        return Response(ReservationSerializer(reservation).data, status=status.HTTP_202_ACCEPTED)
