"""REST API of alerts: list and follow them, acknowledge and resolve them, their MTTD/MTTR
figures, the organization's webhook endpoints with their delivery log, and one's own e-mail
subscription.

Every list is limited to the caller's organization (a site host: their sites); another
organization's alert or endpoint is a 404.
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
from cpms.models import Role
from cpms.rest import (
    ADMIN_ROLES,
    ALL_ROLES,
    OPERATOR_ROLES,
    BooleanFilter,
    DateTimeFilter,
    IdFilter,
    StrictFilterSet,
    TenantViewMixin,
    acting_user,
)
from cpms.tenancy import Tenant

from . import alert_selectors
from .alert_notify import webhook_secret_new
from .alerts import AlertNotActive, alert_acknowledge, alert_resolve
from .alerts_serializers import (
    AlertActionSerializer,
    AlertDeliverySerializer,
    AlertSerializer,
    AlertStatsSerializer,
    AlertSubscriptionSerializer,
    WebhookEndpointSerializer,
)
from .models import Alert, AlertDelivery, AlertSubscription, WebhookEndpoint


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The alert cannot make this move."
    default_code = "conflict"


class AlertFilter(StrictFilterSet):
    state = filters.ChoiceFilter(choices=Alert.State.choices)
    kind = filters.ChoiceFilter(choices=Alert.Kind.choices)
    severity = filters.ChoiceFilter(choices=Alert.Severity.choices)
    charger = filters.CharFilter(field_name="charger__identity", help_text="A charger identity")
    site = IdFilter(field_name="charger__site_id", help_text="A site id")
    suppressed = BooleanFilter()
    raised_after = DateTimeFilter(field_name="raised_at", lookup_expr="gte")
    raised_before = DateTimeFilter(field_name="raised_at", lookup_expr="lt")

    class Meta:
        model = Alert
        fields = ["state", "kind", "severity", "charger", "site", "suppressed"]


# The roles of people who run the network day to day (integrators are systems: webhooks).
PEOPLE_ROLES = frozenset({Role.OPERATOR_ADMIN, Role.OPERATOR, Role.SITE_HOST})
CONFLICT = OpenApiResponse(ErrorSerializer, description="The alert's state does not allow it")


@extend_schema_view(
    list=extend_schema(summary="Alerts, newest first"),
    retrieve=extend_schema(summary="One alert"),
)
class AlertViewSet(TenantViewMixin, viewsets.ReadOnlyModelViewSet):
    """Alerts raised by the monitoring rules: open, acknowledged or resolved."""

    model = Alert
    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    cursor_ordering = ("-raised_at", "-id")
    read_roles = ALL_ROLES
    write_roles = OPERATOR_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[Alert]:
        return alert_selectors.alerts_for(tenant).select_related(
            "charger", "acknowledged_by", "resolved_by"
        )

    def _move(self, request: Request, move: Any) -> Response:
        alert = self.get_object()
        serializer = AlertActionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            alert = move(
                alert=alert, user=acting_user(request), note=serializer.validated_data["note"]
            )
        except AlertNotActive as exc:
            raise Conflict(str(exc)) from None
        return Response(AlertSerializer(self.tenant_queryset(self.tenant).get(pk=alert.pk)).data)

    @extend_schema(
        summary="Acknowledge an open alert (operators)",
        description="Someone is on it: the alert stays until its condition clears or it is "
        "resolved. 409 when it is not open.",
        request=AlertActionSerializer,
        responses={200: AlertSerializer, 409: CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        return self._move(request, alert_acknowledge)

    @extend_schema(
        summary="Resolve an alert by hand (operators)",
        description="Closes an open or acknowledged alert and records its MTTR; 409 when it is "
        "resolved already. If the condition comes back, the rules raise it again.",
        request=AlertActionSerializer,
        responses={200: AlertSerializer, 409: CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        return self._move(request, alert_resolve)

    @extend_schema(
        summary="MTTD and MTTR of the alerts the filters select",
        description="Counts per state, and the distributions (mean, median, 90th percentile, "
        "maximum, in seconds) of the time to detect (fault to alert) and the time to resolve "
        "(alert to resolution), overall and per kind. Takes the list's filters, e.g. "
        "raised_after for a period.",
        responses={200: AlertStatsSerializer},
    )
    # Served at /api/v1/alert-stats/ (cpms/api_urls.py): under /alerts/ its path would read as an
    # alert's.
    def stats(self, request: Request) -> Response:
        alerts = self.filter_queryset(alert_selectors.alerts_for(self.tenant))
        return Response(AlertStatsSerializer(alert_selectors.alert_stats(alerts)).data)


@extend_schema_view(
    list=extend_schema(
        summary="Webhook endpoints (operator admins)",
        description="Their delivery log: GET /api/v1/alert-deliveries/?endpoint=<id>.",
    ),
    retrieve=extend_schema(summary="One webhook endpoint (operator admins)"),
    create=extend_schema(
        summary="Add a webhook endpoint (operator admins)",
        description="Alert events are POSTed to the URL as JSON with the headers X-CPMS-Event, "
        "X-CPMS-Delivery, X-CPMS-Timestamp (Unix seconds) and X-CPMS-Signature: "
        "sha256=HMAC-SHA256(secret, '<timestamp>.<body>') in hex. A secret is generated when "
        "none is given.",
    ),
    partial_update=extend_schema(summary="Change a webhook endpoint (operator admins)"),
    update=extend_schema(summary="Replace a webhook endpoint (operator admins)"),
    destroy=extend_schema(summary="Remove a webhook endpoint and its log (operator admins)"),
)
class WebhookEndpointViewSet(TenantViewMixin, viewsets.ModelViewSet):
    """The organization's endpoints that receive its alerts, signed."""

    model = WebhookEndpoint
    serializer_class = WebhookEndpointSerializer
    cursor_ordering = ("name", "id")
    read_roles = ADMIN_ROLES
    write_roles = ADMIN_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[WebhookEndpoint]:
        return alert_selectors.webhook_endpoints_for(tenant)

    def perform_create(self, serializer: Any) -> None:
        serializer.save(
            organization_id=self.tenant.organization_id,
            created_by=acting_user(self.request),
            secret=serializer.validated_data.get("secret") or webhook_secret_new(),
        )


class AlertDeliveryFilter(StrictFilterSet):
    alert = IdFilter(field_name="alert_id", help_text="An alert id")
    endpoint = IdFilter(field_name="endpoint_id", help_text="A webhook endpoint id")
    channel = filters.ChoiceFilter(choices=AlertDelivery.Channel.choices)
    status = filters.ChoiceFilter(choices=AlertDelivery.Status.choices)

    class Meta:
        model = AlertDelivery
        fields = ["alert", "endpoint", "channel", "status"]


@extend_schema_view(
    list=extend_schema(summary="Alert notifications sent or being sent (operators)"),
    retrieve=extend_schema(summary="One alert notification with its attempts (operators)"),
)
class AlertDeliveryViewSet(TenantViewMixin, viewsets.ReadOnlyModelViewSet):
    """The delivery log: each notification of an alert event to a webhook or an e-mail address."""

    model = AlertDelivery
    serializer_class = AlertDeliverySerializer
    filterset_class = AlertDeliveryFilter
    cursor_ordering = ("-created_at", "-id")
    read_roles = OPERATOR_ROLES
    write_roles = OPERATOR_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[AlertDelivery]:
        return alert_selectors.alert_deliveries_for(tenant)


@extend_schema_view(
    retrieve=extend_schema(summary="Your e-mail subscription to alerts (signed-in users)"),
    update=extend_schema(
        summary="Subscribe to alerts by e-mail, or change the subscription (signed-in users)"
    ),
    destroy=extend_schema(summary="Stop e-mails about alerts (signed-in users)"),
)
class AlertSubscriptionViewSet(
    TenantViewMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The signed-in user's e-mail subscription to their organization's alerts."""

    model = AlertSubscription
    serializer_class = AlertSubscriptionSerializer
    read_roles = PEOPLE_ROLES
    write_roles = PEOPLE_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[AlertSubscription]:
        if tenant.user_id is None:
            return AlertSubscription.objects.none()
        return AlertSubscription.objects.filter(
            organization_id=tenant.organization_id, user_id=tenant.user_id
        )

    def get_object(self) -> AlertSubscription:
        if acting_user(self.request) is None or self.tenant.user_id is None:
            raise exceptions.PermissionDenied(
                "Subscriptions belong to people: sign in rather than use an API token."
            )
        subscription = self.get_queryset().first()
        if subscription is None:
            if self.request.method in ("PUT", "PATCH"):
                return AlertSubscription(
                    organization_id=self.tenant.organization_id, user_id=self.tenant.user_id
                )
            raise exceptions.NotFound("You are not subscribed.")
        return subscription

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        subscription = self.get_object()
        partial = kwargs.pop("partial", False)
        serializer = self.get_serializer(subscription, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data)
