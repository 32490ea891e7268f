"""REST API of the central system: sites, chargers, connectors, id tokens, sessions with their
meter samples, and the frame journal with its streamed exports.

Views are thin: they read through the tenant's selectors (another organization's object is a
404, never its data), validate with a serializer and write through services.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response

from cpms.models import Organization, Role
from cpms.rest import (
    ADMIN_ROLES,
    OPERATOR_ROLES,
    TenantViewMixin,
    ndjson_line,
    streaming_response,
)
from cpms.tenancy import Tenant

from . import filters, selectors, services
from .models import Charger, Connector, Frame, IdToken, MeterSample, Session, Site
from .serializers import (
    FRAME_FIELDS,
    FRAME_VALUES,
    ChargerCreateSerializer,
    ChargerSerializer,
    ChargerUpdateSerializer,
    ConnectorSerializer,
    FrameSerializer,
    IdTokenSerializer,
    MeterSampleSerializer,
    SessionSerializer,
    SiteSerializer,
    frame_row,
)

# Journal rows fetched per database round trip, and sent per chunk, by the exports.
EXPORT_FETCH_ROWS = 2000
EXPORT_CHUNK_ROWS = 500


@contextmanager
def unique_or_400(field: str, message: str) -> Iterator[None]:
    """A uniqueness race lost to a concurrent request is the same 400 the validator gives."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError:
        raise exceptions.ValidationError({field: [message]}) from None


def _organization(tenant: Tenant) -> Organization:
    return Organization.objects.get(pk=tenant.organization_id)


# --- Sites ----------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Sites (site hosts: the sites they look after)"),
    create=extend_schema(summary="Create a site (operators)"),
    update=extend_schema(summary="Replace a site's details (operators)"),
    partial_update=extend_schema(summary="Change a site's details (operators)"),
    destroy=extend_schema(
        summary="Delete a site; its chargers stay, with no site (operator admins)"
    ),
)
class SiteViewSet(TenantViewMixin, viewsets.ModelViewSet):
    """Sites: the places chargers stand, with their address and time zone."""

    model = Site
    serializer_class = SiteSerializer
    filterset_class = filters.SiteFilter
    cursor_ordering = ("name", "id")
    delete_roles = ADMIN_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[Site]:
        return selectors.sites_for(tenant)

    def perform_create(self, serializer: SiteSerializer) -> None:
        with unique_or_400("name", "Your organization has a site with this name already."):
            serializer.instance = services.site_create(
                organization=_organization(self.tenant), **serializer.validated_data
            )

    def perform_update(self, serializer: SiteSerializer) -> None:
        with unique_or_400("name", "Your organization has a site with this name already."):
            serializer.instance = services.site_update(
                site=serializer.instance, data=serializer.validated_data
            )

    def perform_destroy(self, instance: Site) -> None:
        services.site_delete(site=instance)


# --- Chargers and connectors ----------------------------------------------------------------------


# What the router (and the OCPP route) accept as an identity in a path.
IDENTITY_IN_PATH = OpenApiParameter(
    "identity",
    str,
    OpenApiParameter.PATH,
    pattern=r"^[^/]{1,48}$",
    description="The charger's identity, as in /ocpp/<identity>",
)


@extend_schema_view(
    list=extend_schema(summary="Chargers, with their connectors"),
    retrieve=extend_schema(summary="One charger, by identity", parameters=[IDENTITY_IN_PATH]),
    create=extend_schema(
        summary="Register a charger (operators)",
        request=ChargerCreateSerializer,
        responses={201: ChargerSerializer},
    ),
    update=extend_schema(
        summary="Set a charger's site, registration status and heartbeat interval (operators)",
        parameters=[IDENTITY_IN_PATH],
        request=ChargerUpdateSerializer,
        responses={200: ChargerSerializer},
    ),
    partial_update=extend_schema(
        summary="Change a charger's site, registration status or heartbeat interval (operators)",
        parameters=[IDENTITY_IN_PATH],
        request=ChargerUpdateSerializer,
        responses={200: ChargerSerializer},
    ),
)
class ChargerViewSet(
    TenantViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Chargers, addressed by identity (the id in /ocpp/<identity>). What the charger reports
    about itself is read-only; operators set its site, registration status and heartbeat interval."""

    model = Charger
    serializer_class = ChargerSerializer
    filterset_class = filters.ChargerFilter
    lookup_field = "identity"
    lookup_value_regex = "[^/]+"
    cursor_ordering = "identity"

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[Charger]:
        return selectors.chargers_for(tenant).prefetch_related("connectors")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = ChargerCreateSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        with unique_or_400("identity", "A charger with this identity exists already."):
            charger = services.charger_create(
                organization=_organization(self.tenant), **serializer.validated_data
            )
        charger = self.get_queryset().get(pk=charger.pk)
        return Response(ChargerSerializer(charger).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        charger = self.get_object()
        serializer = ChargerUpdateSerializer(
            data=request.data,
            partial=kwargs.get("partial", False),
            context=self.get_serializer_context(),
        )
        serializer.is_valid(raise_exception=True)
        services.charger_update(charger=charger, data=serializer.validated_data)
        return Response(ChargerSerializer(self.get_queryset().get(pk=charger.pk)).data)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)


@extend_schema_view(
    list=extend_schema(summary="Connectors (connector 0 is the charger itself)"),
    retrieve=extend_schema(summary="One connector"),
)
class ConnectorViewSet(TenantViewMixin, viewsets.ReadOnlyModelViewSet):
    """Connectors and their last reported status."""

    model = Connector
    serializer_class = ConnectorSerializer
    filterset_class = filters.ConnectorFilter
    cursor_ordering = "id"

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[Connector]:
        return selectors.connectors_for(tenant).select_related("charger")


# --- Id tokens ------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Id tokens (RFID cards, app tokens) of your organization"),
    create=extend_schema(summary="Add an id token"),
    update=extend_schema(summary="Replace an id token"),
    partial_update=extend_schema(summary="Change an id token, e.g. block it"),
    destroy=extend_schema(summary="Delete an id token; its past sessions keep their id tag"),
)
class IdTokenViewSet(TenantViewMixin, viewsets.ModelViewSet):
    """Id tokens belong to drivers of the whole organization: site hosts have no access;
    integrators may manage them (the usual integration: syncing cards from another system)."""

    model = IdToken
    serializer_class = IdTokenSerializer
    filterset_class = filters.IdTokenFilter
    cursor_ordering = ("token", "id")
    read_roles = OPERATOR_ROLES | {Role.INTEGRATOR}
    write_roles = OPERATOR_ROLES | {Role.INTEGRATOR}

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[IdToken]:
        return selectors.id_tokens_for(tenant)

    def perform_create(self, serializer: IdTokenSerializer) -> None:
        with unique_or_400("token", "Your organization has this id token already."):
            serializer.instance = services.id_token_create(
                organization=_organization(self.tenant), **serializer.validated_data
            )

    def perform_update(self, serializer: IdTokenSerializer) -> None:
        with unique_or_400("token", "Your organization has this id token already."):
            serializer.instance = services.id_token_update(
                id_token=serializer.instance, data=serializer.validated_data
            )

    def perform_destroy(self, instance: IdToken) -> None:
        services.id_token_delete(id_token=instance)


# --- Sessions -------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Charging sessions, newest first"),
    retrieve=extend_schema(summary="One charging session"),
)
class SessionViewSet(TenantViewMixin, viewsets.ReadOnlyModelViewSet):
    """Charging sessions (OCPP transactions); energies in Wh, as decimal strings."""

    model = Session
    serializer_class = SessionSerializer
    filterset_class = filters.SessionFilter
    cursor_ordering = ("-started_at", "-id")

    def get_queryset(self) -> QuerySet:
        if self.action == "meter_samples" and getattr(self, "swagger_fake_view", False):
            return MeterSample.objects.none()
        return super().get_queryset()

    def tenant_queryset(self, tenant: Tenant) -> QuerySet:
        if self.action == "meter_samples":
            return selectors.meter_samples_for(tenant)
        return selectors.sessions_for(tenant).select_related("charger")

    @extend_schema(
        summary="The meter samples of a session, oldest first",
        parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH, description="A session id")],
        responses=MeterSampleSerializer(many=True),
        filters=True,
    )
    @action(
        detail=True,
        url_path="meter-samples",
        serializer_class=MeterSampleSerializer,
        filterset_class=filters.MeterSampleFilter,
        cursor_ordering=("timestamp", "id"),
    )
    def meter_samples(self, request: Request, pk: str | None = None) -> Response:
        session = get_object_or_404(selectors.sessions_for(self.tenant), pk=pk)
        samples = self.filter_queryset(self.get_queryset().filter(session=session))
        page = self.paginate_queryset(samples)
        return self.get_paginated_response(MeterSampleSerializer(page, many=True).data)


# --- The frame journal ----------------------------------------------------------------------------


class IgnoreAcceptNegotiation(BaseContentNegotiation):
    """The exports answer in their own format whatever the Accept header; errors in JSON."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: list[Any], format_suffix: str | None = None
    ) -> Any:
        return (renderers[0], renderers[0].media_type)


class _Echo:
    def write(self, value: str) -> str:
        return value


# A cell that starts like a formula is run by spreadsheet programs; a leading ' keeps it text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _rows(queryset: QuerySet) -> Iterator[dict[str, Any]]:
    for values in queryset.values_list(*FRAME_VALUES).iterator(chunk_size=EXPORT_FETCH_ROWS):
        yield frame_row(values)


def _ndjson_chunks(queryset: QuerySet) -> Iterator[str]:
    lines: list[str] = []
    for row in _rows(queryset):
        lines.append(ndjson_line(row))
        if len(lines) >= EXPORT_CHUNK_ROWS:
            yield "".join(lines)
            lines = []
    if lines:
        yield "".join(lines)


def _csv_chunks(queryset: QuerySet) -> Iterator[str]:
    writer = csv.writer(_Echo())
    lines = [writer.writerow(FRAME_FIELDS)]
    for row in _rows(queryset):
        lines.append(writer.writerow([_csv_cell(row[name]) for name in FRAME_FIELDS]))
        if len(lines) >= EXPORT_CHUNK_ROWS:
            yield "".join(lines)
            lines = []
    if lines:
        yield "".join(lines)


_EXPORT_DESCRIPTION = (
    "Every journal row the filters select, oldest first, streamed as it is read: "
    "suited to large ranges. Takes the same filters as the list."
)


@extend_schema_view(
    list=extend_schema(summary="The frame journal: every OCPP frame in and out, newest first"),
    retrieve=extend_schema(summary="One journal frame"),
)
class FrameViewSet(TenantViewMixin, viewsets.ReadOnlyModelViewSet):
    """The frame journal: every OCPP frame in and out, verbatim, with its direction, message id and
    action."""

    # The exports (frames/export.ndjson, frames/export.csv) are routed by hand in cpms.api_urls:
    # file names take no trailing slash.

    model = Frame
    serializer_class = FrameSerializer
    filterset_class = filters.FrameFilter
    cursor_ordering = ("-timestamp", "-id")

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[Frame]:
        return selectors.frames_for(tenant)

    export_initkwargs: ClassVar[dict[str, Any]] = {
        "pagination_class": None,
        "content_negotiation_class": IgnoreAcceptNegotiation,
    }

    def _export(self, request: Request, file_format: str) -> Any:
        queryset = self.filter_queryset(self.get_queryset()).order_by("timestamp", "id")
        if file_format == "csv":
            return streaming_response(
                request,
                _csv_chunks(queryset),
                content_type="text/csv; charset=utf-8",
                filename="frames.csv",
            )
        return streaming_response(
            request,
            _ndjson_chunks(queryset),
            content_type="application/x-ndjson",
            filename="frames.ndjson",
        )

    @extend_schema(
        operation_id="frames_export_ndjson",
        summary="Export the journal as NDJSON (one JSON object per line)",
        description=_EXPORT_DESCRIPTION,
        filters=True,
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR, description="One frame object per line"
            )
        },
    )
    def export_ndjson(self, request: Request) -> Any:
        return self._export(request, "ndjson")

    @extend_schema(
        operation_id="frames_export_csv",
        summary="Export the journal as CSV",
        description=_EXPORT_DESCRIPTION
        + " Cells that would start a spreadsheet formula get a leading '.",
        filters=True,
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="A header row, then one frame per row"
            )
        },
    )
    def export_csv(self, request: Request) -> Any:
        return self._export(request, "csv")
