"""REST API of routing (operators only): the live policy, applying a policy, the change record,
and each charger's legs with their health.

``POST /api/v1/routing/policy/`` takes the same documents as ``routing_apply``, limited to the
caller's organization: its organization route, its sites' and chargers' routes, its own upstreams
and the shared ones. A policy that moves a route's primary (a cut-over) is refused with 409 until
``confirm_cutover`` is set; a dry run shows what would change.
"""

from __future__ import annotations

from typing import Any

import django_filters as filters
from django.db.models import Q, QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chargers import selectors as charger_selectors
from chargers.models import Charger
from cpms.authentication import request_tenant
from cpms.errors import ErrorSerializer
from cpms.rest import (
    OPERATOR_ROLES,
    BooleanFilter,
    DateTimeFilter,
    StrictFilterSet,
    TenantViewMixin,
    acting_user,
)
from cpms.tenancy import Tenant

from .health import ChargerRouting, charger_routing, routed_chargers
from .models import RoutingChange
from .policy_file import PolicyInvalid, policy_document
from .policy_selectors import live_policy
from .policy_services import PolicyPlan, RouteChange, policy_apply, policy_from_data, policy_plan


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The policy moves a primary: confirm the cut-over."
    default_code = "cutover_unconfirmed"


class PolicyApplySerializer(serializers.Serializer):
    policy = serializers.JSONField(
        help_text="A policy document: named upstreams with routes, or the per-charger shape "
        '{"charger_id": ..., "upstreams": [{"url": ..., "role": "primary"}, ...]}'
    )
    confirm_cutover = serializers.BooleanField(
        default=False, help_text="Apply even though a route's primary changes"
    )
    dry_run = serializers.BooleanField(default=False, help_text="Validate and plan, change nothing")


class RouteChangeSerializer(serializers.Serializer):
    description = serializers.CharField()
    primary_before = serializers.CharField()
    primary_after = serializers.CharField()
    cutover = serializers.BooleanField(source="is_cutover")
    summary = serializers.SerializerMethodField()

    def get_summary(self, change: RouteChange) -> str:
        return change.summary()


class PolicyResultSerializer(serializers.Serializer):
    applied = serializers.BooleanField()
    summary = serializers.CharField()
    changes = RouteChangeSerializer(many=True)
    records = serializers.ListField(
        child=serializers.IntegerField(), help_text="Ids of the change records written"
    )


class RoutingChangeSerializer(serializers.ModelSerializer):
    changed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = RoutingChange
        fields = ["id", "at", "actor", "changed_by", "source", "summary", "before", "after"]
        read_only_fields = fields


class LegHealthSerializer(serializers.Serializer):
    upstream = serializers.CharField()
    role = serializers.CharField()
    state = serializers.CharField(help_text="up, backlog, down, or not dialled")
    connected = serializers.BooleanField()
    latency_ms = serializers.FloatField(allow_null=True)
    outbox_depth = serializers.IntegerField()
    dropped = serializers.IntegerField(
        help_text="Copies dropped: meter samples at the outbox bound, copies of a transaction "
        "with no id at the upstream"
    )
    refused = serializers.IntegerField(help_text="Copies the upstream refused with a CALLERROR")
    reconnects = serializers.IntegerField()
    last_error = serializers.CharField()
    last_problem = serializers.CharField(help_text="The last copy refused or dropped, and why")
    since = serializers.DateTimeField(allow_null=True)


class ChargerRoutingSerializer(serializers.Serializer):
    charger = serializers.CharField(source="identity")
    connected = serializers.BooleanField(source="charger_connected")
    scope = serializers.CharField(
        help_text="The route that applies: charger, site, organization, global or default"
    )
    local_controls = serializers.BooleanField(help_text="Whether this system answers the charger")
    primary = LegHealthSerializer()
    observers = LegHealthSerializer(many=True)


def _tenant(request: Request) -> Tenant:
    tenant = request_tenant(request)
    if tenant is None:
        raise exceptions.PermissionDenied("You are not a member of any organization.")
    return tenant


class RoutingPolicyView(APIView):
    """The routing policy of your organization: read it, or apply a new one."""

    read_roles = OPERATOR_ROLES
    write_roles = OPERATOR_ROLES

    @extend_schema(
        summary="The live routing policy of your organization (operators)",
        description="Upstreams (passwords left out) and routes, as a document POST accepts.",
        responses={200: OpenApiResponse(description="A policy document")},
    )
    def get(self, request: Request) -> Response:
        tenant = _tenant(request)
        return Response(policy_document(live_policy(organization_id=tenant.organization_id)))

    @extend_schema(
        summary="Apply a routing policy (operators)",
        description="Validates the whole document, then applies all of it in one transaction: "
        "400 naming every problem (with its place in the document) and nothing changed otherwise. "
        "409 when a route's primary changes (a cut-over) and confirm_cutover is not set. Live "
        "chargers re-dial the legs that changed without being disconnected.",
        request=PolicyApplySerializer,
        responses={
            200: PolicyResultSerializer,
            400: ErrorSerializer,
            409: OpenApiResponse(ErrorSerializer, description="An unconfirmed cut-over"),
        },
    )
    def post(self, request: Request) -> Response:
        tenant = _tenant(request)
        serializer = PolicyApplySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            plan = policy_plan(
                policy=policy_from_data(data["policy"], organization_id=tenant.organization_id),
                organization_id=tenant.organization_id,
            )
        except PolicyInvalid as exc:
            raise _invalid(exc) from None
        if data["dry_run"]:
            return Response(_result(plan, applied=False, records=()))
        if plan.cutovers and not data["confirm_cutover"]:
            raise Conflict(
                "This policy moves the primary of "
                + ", ".join(
                    f"{c.description} ({c.primary_before} to {c.primary_after})"
                    for c in plan.cutovers
                )
                + ": send it again with confirm_cutover set to apply it."
            )
        try:
            records = policy_apply(
                plan=plan,
                source=RoutingChange.Source.API,
                changed_by=acting_user(request),
                actor=_actor(request),
            )
        except PolicyInvalid as exc:
            raise _invalid(exc) from None
        return Response(_result(plan, applied=bool(records), records=records))


def _actor(request: Request) -> str:
    user = acting_user(request)
    if user is not None:
        return user.get_username()
    token = getattr(request, "auth", None)
    name = getattr(token, "name", "")
    return f"API token {name}" if name else "API token"


def _invalid(exc: PolicyInvalid) -> exceptions.ValidationError:
    details: dict[str, list[str]] = {}
    for error in exc.errors:
        details.setdefault(error.path or "policy", []).append(error.message)
    return exceptions.ValidationError(details)


def _result(plan: PolicyPlan, *, applied: bool, records: Any) -> dict[str, Any]:
    return PolicyResultSerializer(
        {
            "applied": applied,
            "summary": plan.summary(),
            "changes": list(plan.changes),
            "records": [record.pk for record in records],
        }
    ).data


class RoutingChangeFilter(StrictFilterSet):
    source = filters.ChoiceFilter(choices=RoutingChange.Source.choices)
    since = DateTimeFilter(field_name="at", lookup_expr="gte")
    until = DateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = RoutingChange
        fields = ["source"]


@extend_schema_view(
    list=extend_schema(summary="Routing changes: who changed what, when, newest first (operators)"),
    retrieve=extend_schema(summary="One routing change, with the routes before and after"),
)
class RoutingChangeViewSet(TenantViewMixin, viewsets.ReadOnlyModelViewSet):
    """Changes of your organization's routes, and of the global route and shared upstreams."""

    model = RoutingChange
    serializer_class = RoutingChangeSerializer
    filterset_class = RoutingChangeFilter
    cursor_ordering = ("-at", "-id")
    read_roles = OPERATOR_ROLES
    write_roles = frozenset()

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[RoutingChange]:
        return RoutingChange.objects.filter(
            Q(organization_id=tenant.organization_id) | Q(organization__isnull=True)
        ).select_related("changed_by")


class ChargerRoutingFilter(StrictFilterSet):
    charger = filters.CharFilter(field_name="identity", help_text="A charger identity")
    connected = BooleanFilter()
    routed = BooleanFilter(
        method="filter_routed", help_text="Only chargers some route sends beyond local alone"
    )

    class Meta:
        model = Charger
        fields = ["charger", "connected"]

    def filter_routed(
        self, queryset: QuerySet[Charger], name: str, value: bool
    ) -> QuerySet[Charger]:
        return routed_chargers(queryset, remote_only=True) if value else queryset


@extend_schema_view(
    list=extend_schema(
        summary="Each charger's upstreams and how each leg is doing (operators)",
        description="Per charger: the route that applies, the primary and the observers, each leg "
        "with connected, latency of its last CALL, outbox depth, drops and reconnects.",
    ),
)
class ChargerRoutingViewSet(TenantViewMixin, viewsets.GenericViewSet):
    model = Charger
    serializer_class = ChargerRoutingSerializer
    filterset_class = ChargerRoutingFilter
    cursor_ordering = ("identity", "id")
    read_roles = OPERATOR_ROLES
    write_roles = frozenset()

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[Charger]:
        return charger_selectors.chargers_for(tenant)

    def list(self, request: Request) -> Response:
        chargers = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(chargers)
        rows: list[ChargerRouting] = charger_routing(page or [])
        return self.get_paginated_response(ChargerRoutingSerializer(rows, many=True).data)
