"""REST API of the operations app: transaction reconciliation cases and what operators do with
them, configuration baselines and each charger's drift from its own. Operators and operator
admins only; another organization's objects are 404s."""

from __future__ import annotations

from typing import Any

import django_filters as filters
from django.db import IntegrityError
from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from chargers import command_services
from chargers.commands_api import Conflict
from chargers.models import Charger
from chargers.selectors import chargers_for
from cpms.errors import ErrorSerializer
from cpms.models import ApiToken, Organization
from cpms.rest import OPERATOR_ROLES, DateTimeFilter, StrictFilterSet, TenantViewMixin, acting_user
from cpms.tenancy import Tenant

from . import baselines, reconciliation, reports, selectors
from .models import ConfigurationBaseline, MaintenanceWindow, ReconciliationCase
from .serializers import (
    ChargersQueuedSerializer,
    CommandsStartedSerializer,
    ConfigurationBaselineSerializer,
    DriftReportSerializer,
    MaintenanceWindowSerializer,
    ReasonSerializer,
    ReconciliationCaseSerializer,
    UptimeReportSerializer,
)


class ReconciliationCaseFilter(StrictFilterSet):
    charger = filters.CharFilter(field_name="charger__identity", help_text="A charger identity")
    state = filters.ChoiceFilter(choices=ReconciliationCase.State.choices)
    kind = filters.ChoiceFilter(choices=ReconciliationCase.Kind.choices)
    detected_after = DateTimeFilter(field_name="detected_at", lookup_expr="gte")
    detected_before = DateTimeFilter(field_name="detected_at", lookup_expr="lt")

    class Meta:
        model = ReconciliationCase
        fields = ["charger", "state", "kind"]


RESOLVED_CONFLICT = {
    200: ReconciliationCaseSerializer,
    409: OpenApiResponse(ErrorSerializer, description="The case is resolved already"),
}


@extend_schema_view(
    list=extend_schema(summary="Transaction reconciliation cases, newest first (operators)"),
    retrieve=extend_schema(summary="One reconciliation case with its audit trail (operators)"),
)
class ReconciliationCaseViewSet(TenantViewMixin, viewsets.ReadOnlyModelViewSet):
    """Sessions whose state was doubted, what the charger said, and how each was resolved."""

    model = ReconciliationCase
    serializer_class = ReconciliationCaseSerializer
    filterset_class = ReconciliationCaseFilter
    cursor_ordering = ("-detected_at", "-id")
    read_roles = OPERATOR_ROLES
    write_roles = OPERATOR_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[ReconciliationCase]:
        return (
            selectors.reconciliation_cases_for(tenant)
            .select_related("charger", "session")
            .prefetch_related("entries")
        )

    def _reason(self, request: Request) -> str:
        serializer = ReasonSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        reason = serializer.validated_data["reason"].strip()
        if not reason:
            raise exceptions.ValidationError({"reason": ["Say why."]})
        return reason

    def _done(self, case: ReconciliationCase) -> Response:
        case = self.get_queryset().get(pk=case.pk)
        return Response(ReconciliationCaseSerializer(case).data)

    @extend_schema(
        summary="Close the case's session now, with a reason (operators)",
        description="The session is completed with its last metered energy, stop reason "
        "Reconciled, and the reason kept in the audit trail; a case with no open session is "
        "closed as dismissed.",
        request=ReasonSerializer,
        responses=RESOLVED_CONFLICT,
    )
    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str | None = None) -> Response:
        case = self.get_object()
        reason = self._reason(request)
        try:
            reconciliation.reconciliation_close(case=case, reason=reason, user=acting_user(request))
        except reconciliation.CaseResolved as exc:
            raise Conflict(str(exc)) from None
        return self._done(case)

    @extend_schema(
        summary="Leave the session as it is and close the case, with a reason (operators)",
        request=ReasonSerializer,
        responses=RESOLVED_CONFLICT,
    )
    @action(detail=True, methods=["post"])
    def dismiss(self, request: Request, pk: str | None = None) -> Response:
        case = self.get_object()
        reason = self._reason(request)
        try:
            reconciliation.reconciliation_dismiss(
                case=case, reason=reason, user=acting_user(request)
            )
        except reconciliation.CaseResolved as exc:
            raise Conflict(str(exc)) from None
        return self._done(case)

    @extend_schema(
        summary="Ask the charger about the case's session again (operators)",
        description="Sends TriggerMessage (1.6) or GetTransactionStatus (2.x); 409 when the case "
        "is resolved, has no session, or the charger is offline.",
        request=None,
        responses={
            202: ReconciliationCaseSerializer,
            409: OpenApiResponse(ErrorSerializer, description="The charger cannot be asked now"),
        },
    )
    @action(detail=True, methods=["post"])
    def ask(self, request: Request, pk: str | None = None) -> Response:
        case = self.get_object()
        if case.state == ReconciliationCase.State.RESOLVED or case.session is None:
            raise Conflict("Only an unresolved case about a session can be put to the charger.")
        if not case.charger.connected:
            raise Conflict(f"{case.charger.identity} is offline; it is asked once it is back.")
        if reconciliation.reconciliation_ask(case=case, user=acting_user(request)) is None:
            raise Conflict("The charger could not be asked; see the case's audit trail.")
        response = self._done(case)
        response.status_code = status.HTTP_202_ACCEPTED
        return response


# --- Configuration baselines ---------------------------------------------------------------------


def _drift_data(charger: Charger, baseline: ConfigurationBaseline | None) -> dict[str, Any]:
    if baseline is None:
        return {
            "charger": charger.identity,
            "baseline": None,
            "baseline_name": "",
            "ever_reported": False,
            "in_line": True,
            "counts": {},
            "rows": [],
        }
    report = baselines.drift_report(charger=charger, baseline=baseline)
    return {
        "charger": charger.identity,
        "baseline": baseline.pk,
        "baseline_name": baseline.name,
        "ever_reported": report.ever_reported,
        "in_line": report.in_line,
        "counts": report.counts,
        "rows": [
            {
                "ref": row.ref,
                "label": row.label,
                "desired": row.desired,
                "reported": row.reported,
                "state": row.state.value,
                "readonly": row.readonly,
                "applied_status": row.applied.status if row.applied else "",
                "applied_value": row.applied.value if row.applied else None,
            }
            for row in report.rows
        ],
    }


def _requester(request: Request) -> dict[str, Any]:
    token = request.auth if isinstance(request.auth, ApiToken) else None
    return {"requested_by": acting_user(request), "api_token": token}


BASELINE_EXISTS = OpenApiResponse(
    ErrorSerializer, description="A baseline for this vendor, model and protocol exists"
)


@extend_schema_view(
    list=extend_schema(summary="Configuration baselines per charger model (operators)"),
    retrieve=extend_schema(summary="One configuration baseline with its desired values"),
    create=extend_schema(
        summary="Create a configuration baseline for a charger model",
        responses={201: ConfigurationBaselineSerializer, 409: BASELINE_EXISTS},
    ),
    update=extend_schema(
        summary="Replace a baseline (its desired values too)",
        responses={200: ConfigurationBaselineSerializer, 409: BASELINE_EXISTS},
    ),
    partial_update=extend_schema(
        summary="Change a baseline; settings, if given, replace all",
        responses={200: ConfigurationBaselineSerializer, 409: BASELINE_EXISTS},
    ),
    destroy=extend_schema(summary="Delete a baseline (the chargers keep their configuration)"),
)
class ConfigurationBaselineViewSet(TenantViewMixin, viewsets.ModelViewSet):
    """The desired 1.6 configuration keys or 2.x variables of a charger model (vendor + model)."""

    model = ConfigurationBaseline
    serializer_class = ConfigurationBaselineSerializer
    cursor_ordering = ("vendor", "model", "id")
    read_roles = OPERATOR_ROLES
    write_roles = OPERATOR_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[ConfigurationBaseline]:
        return selectors.baselines_for(tenant).prefetch_related("settings")

    def _conflict(self) -> Conflict:
        return Conflict(
            "This organization has a baseline for this vendor, model and protocol already.",
            code="baseline_exists",
        )

    def perform_create(self, serializer: Any) -> None:
        data = serializer.validated_data
        try:
            serializer.instance = baselines.baseline_create(
                organization=Organization.objects.get(pk=self.tenant.organization_id),
                name=data["name"],
                vendor=data["vendor"],
                model=data["model"],
                protocol=data["protocol"],
                notes=data.get("notes", ""),
                settings=data["settings"],
            )
        except IntegrityError:
            raise self._conflict() from None

    def perform_update(self, serializer: Any) -> None:
        data = dict(serializer.validated_data)
        settings = data.pop("settings", None)
        try:
            serializer.instance = baselines.baseline_update(
                baseline=serializer.instance, data=data, settings=settings
            )
        except IntegrityError:
            raise self._conflict() from None

    def perform_destroy(self, instance: ConfigurationBaseline) -> None:
        baselines.baseline_delete(baseline=instance)

    @extend_schema(
        summary="Apply the baseline to every charger of its model (operators)",
        description="One task per charger sends what it lacks (ChangeConfiguration or "
        "SetVariables); offline chargers get it when they connect. Each charger's drift "
        "report shows the answers.",
        request=None,
        responses={202: ChargersQueuedSerializer},
    )
    @action(detail=True, methods=["post"])
    def apply(self, request: Request, pk: str | None = None) -> Response:
        baseline = self.get_object()
        count = baselines.baseline_apply_model(baseline=baseline, requested_by=acting_user(request))
        return Response({"chargers": count}, status=status.HTTP_202_ACCEPTED)


IDENTITY = OpenApiParameter(
    "identity", str, OpenApiParameter.PATH, pattern=r"^[^/]{1,48}$", description="Charger identity"
)


class ChargerDriftViewSet(TenantViewMixin, viewsets.GenericViewSet):
    """A charger's configuration against its model's baseline."""

    model = Charger
    serializer_class = DriftReportSerializer
    read_roles = OPERATOR_ROLES
    write_roles = OPERATOR_ROLES
    pagination_class = None

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[Charger]:
        return chargers_for(tenant)

    def _charger(self) -> Charger:
        return get_object_or_404(self.get_queryset(), identity=self.kwargs["identity"])

    def _baseline(self, charger: Charger) -> ConfigurationBaseline:
        baseline = baselines.baseline_for(charger)
        if baseline is None:
            raise Conflict(
                f"No baseline covers {charger.identity} ({charger.vendor or '?'} "
                f"{charger.model or '?'}, OCPP {charger.ocpp_version or '?'}).",
                code="no_baseline",
            )
        return baseline

    @extend_schema(
        summary="The charger's drift from its model's baseline (operators)",
        parameters=[IDENTITY],
        responses={200: DriftReportSerializer},
    )
    def retrieve(self, request: Request, identity: str) -> Response:
        charger = self._charger()
        return Response(_drift_data(charger, baselines.baseline_for(charger)))

    @extend_schema(
        summary="Apply the baseline to this charger (operators)",
        description="Sends every value the charger does not have (read-only ones excepted); "
        "202 with the commands, an empty list when it is in line; 409 when the charger is "
        "offline or no baseline covers it.",
        parameters=[IDENTITY],
        request=None,
        responses={
            202: CommandsStartedSerializer,
            409: OpenApiResponse(ErrorSerializer, description="Offline, or no baseline"),
        },
    )
    def apply(self, request: Request, identity: str) -> Response:
        charger = self._charger()
        baseline = self._baseline(charger)
        try:
            commands = baselines.baseline_apply(
                baseline=baseline, charger=charger, **_requester(request)
            )
        except command_services.CommandInvalid as exc:
            raise exceptions.ValidationError({exc.field: [exc.message]}) from None
        except command_services.CommandRefused as exc:
            raise Conflict(str(exc), code="charger_offline") from None
        return Response({"commands": [c.pk for c in commands]}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Read the charger's configuration for the drift report (operators)",
        description="GetConfiguration (1.6) or GetVariables for the baseline's variables (2.x).",
        parameters=[IDENTITY],
        request=None,
        responses={
            202: CommandsStartedSerializer,
            409: OpenApiResponse(ErrorSerializer, description="Offline, or no baseline"),
        },
    )
    def read(self, request: Request, identity: str) -> Response:
        charger = self._charger()
        baseline = self._baseline(charger)
        try:
            command = baselines.baseline_read(
                baseline=baseline, charger=charger, **_requester(request)
            )
        except command_services.CommandInvalid as exc:
            raise exceptions.ValidationError({exc.field: [exc.message]}) from None
        except command_services.CommandRefused as exc:
            raise Conflict(str(exc), code="charger_offline") from None
        return Response({"commands": [command.pk]}, status=status.HTTP_202_ACCEPTED)


# --- Uptime ----------------------------------------------------------------------------------------

UPTIME_PARAMETERS = [
    OpenApiParameter("start", str, description="ISO 8601; default: 30 days before end"),
    OpenApiParameter("end", str, description="ISO 8601; default: now"),
    OpenApiParameter("level", str, enum=list(reports.LEVELS), description="Default: connector"),
    OpenApiParameter("site", int, description="Only this site's chargers"),
    OpenApiParameter("charger", str, description="Only this charger (its identity)"),
]


BAD_QUERY = OpenApiResponse(ErrorSerializer, description="A query parameter is wrong")


def _uptime(request: Request, tenant: Tenant) -> tuple[reports.UptimeQuery, list[dict[str, Any]]]:
    try:
        query = reports.uptime_query(request.query_params, strict=True)
    except reports.BadQuery as exc:
        raise exceptions.ValidationError({exc.field: [exc.message]}) from None
    return query, reports.uptime_table(tenant, query)


class UptimeViewSet(TenantViewMixin, viewsets.GenericViewSet):
    """Availability per connector, charger or site over a period, planned maintenance left out."""

    model = Charger
    serializer_class = UptimeReportSerializer
    pagination_class = None
    filter_backends: list[Any] = []

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[Charger]:
        return chargers_for(tenant)

    @extend_schema(
        summary="Uptime per connector, charger or site for a period",
        description="A connector is up while its charger is connected and it is neither "
        "Faulted nor Unavailable; maintenance windows count neither way. Connector rows carry "
        "their timeline.",
        parameters=UPTIME_PARAMETERS,
        responses={200: UptimeReportSerializer, 400: BAD_QUERY},
    )
    def report(self, request: Request) -> Response:
        query, table = _uptime(request, self.tenant)
        return Response(
            {"start": query.start, "end": query.end, "level": query.level, "rows": table}
        )

    @extend_schema(
        summary="The uptime report as CSV",
        parameters=UPTIME_PARAMETERS,
        responses={(200, "text/csv"): OpenApiTypes.STR, 400: BAD_QUERY},
    )
    def export(self, request: Request) -> HttpResponse:
        query, table = _uptime(request, self.tenant)
        response = HttpResponse(
            reports.uptime_csv(query, table), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = (
            f'attachment; filename="uptime-{query.start:%Y%m%d}-{query.end:%Y%m%d}.csv"'
        )
        return response


@extend_schema_view(
    list=extend_schema(summary="Planned maintenance windows, left out of uptime"),
    create=extend_schema(summary="Plan a maintenance window (operators)"),
)
class MaintenanceWindowViewSet(TenantViewMixin, viewsets.ModelViewSet):
    """Planned downtime for the organization, a site, a charger or one of its connectors."""

    model = MaintenanceWindow
    serializer_class = MaintenanceWindowSerializer
    cursor_ordering = ("-starts_at", "-id")
    write_roles = OPERATOR_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[MaintenanceWindow]:
        return selectors.maintenance_windows_for(tenant).select_related("charger")

    def perform_create(self, serializer: Any) -> None:
        serializer.save(
            organization_id=self.tenant.organization_id, created_by=acting_user(self.request)
        )
