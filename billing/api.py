"""REST API of tariffs: tariffs with their versions (drafts, publishing, a price example and the
simulator), assignments to sites, chargers and connectors, and price groups.

Site hosts see and edit the tariffs of their own sites; operators those of every site and the
organization-wide ones. Another organization's object is a 404, never its data.
"""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any

import django_filters as filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from cpms.models import Organization, Role
from cpms.rest import OPERATOR_ROLES, IdFilter, StrictFilterSet, TenantViewMixin, acting_user
from cpms.tenancy import Tenant

from . import selectors, services, validation
from .models import PriceGroup, Tariff, TariffAssignment, TariffVersion, TariffVersionState
from .preview import next_weekday, price_example, tariff_simulate
from .pricing import TariffSpec, tariff_elements_parse
from .serializers import (
    DraftSerializer,
    PricedSessionSerializer,
    PriceExampleResultSerializer,
    PriceExampleSerializer,
    PriceGroupSerializer,
    PublishSerializer,
    SimulateSerializer,
    SimulationSerializer,
    TariffAssignmentCreateSerializer,
    TariffAssignmentSerializer,
    TariffCreateSerializer,
    TariffSerializer,
    TariffUpdateSerializer,
    TariffVersionSerializer,
)

EDITOR_ROLES = OPERATOR_ROLES | {Role.SITE_HOST}
READER_ROLES = OPERATOR_ROLES | {Role.SITE_HOST, Role.INTEGRATOR}


def _organization(tenant: Tenant) -> Organization:
    return Organization.objects.get(pk=tenant.organization_id)


def _must_edit(tenant: Tenant, tariff: Tariff) -> None:
    if not validation.tariff_editable(tenant=tenant, tariff=tariff):
        raise exceptions.PermissionDenied("You may edit tariffs of your own sites only.")


def draft_spec(tariff: Tariff, version: TariffVersion) -> TariffSpec:
    return TariffSpec(
        currency=tariff.currency,
        elements=tariff_elements_parse(version.elements),
        min_price=version.min_price,
        max_price=version.max_price,
        parking_grace_seconds=version.parking_grace_seconds,
    )


class TariffFilter(StrictFilterSet):
    site = IdFilter(field_name="site_id", help_text="A site id")
    currency = filters.CharFilter()
    name = filters.CharFilter(lookup_expr="icontains", help_text="Part of the name")

    class Meta:
        model = Tariff
        fields = ["site", "currency", "name"]


@extend_schema_view(
    list=extend_schema(summary="Tariffs, with their versions and current assignments"),
    retrieve=extend_schema(summary="One tariff"),
    create=extend_schema(
        summary="Create a tariff; its first version is a draft until published",
        request=TariffCreateSerializer,
        responses={201: TariffSerializer},
    ),
    partial_update=extend_schema(
        summary="Rename a tariff", request=TariffUpdateSerializer, responses={200: TariffSerializer}
    ),
    destroy=extend_schema(summary="Delete a tariff that was never published"),
)
class TariffViewSet(
    TenantViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Tariffs shaped after OCPI 2.2.1. A published version never changes: edit the draft
    (``/draft/``) and publish it (``/publish/``) with an effective time."""

    model = Tariff
    serializer_class = TariffSerializer
    filterset_class = TariffFilter
    cursor_ordering = ("name", "id")
    read_roles = READER_ROLES
    write_roles = EDITOR_ROLES
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[Tariff]:
        return selectors.tariff_list(tenant=tenant).prefetch_related("versions")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = TariffCreateSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        tariff = services.tariff_create(
            organization=_organization(self.tenant),
            user=acting_user(request),
            **serializer.validated_data,
        )
        return Response(self.get_serializer(tariff).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        tariff = self.get_object()
        _must_edit(self.tenant, tariff)
        serializer = TariffUpdateSerializer(
            tariff, data=request.data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        tariff = services.tariff_update(tariff=tariff, name=serializer.validated_data["name"])
        return Response(self.get_serializer(tariff).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        tariff = self.get_object()
        _must_edit(self.tenant, tariff)
        if tariff.versions.filter(state=TariffVersionState.PUBLISHED).exists():
            raise exceptions.ValidationError(
                "A published tariff has priced sessions and stays on record: end its assignments instead."
            )
        tariff.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="The tariff's versions, newest first", responses=TariffVersionSerializer(many=True)
    )
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def versions(self, request: Request, pk: str | None = None) -> Response:
        tariff = self.get_object()
        return Response(
            TariffVersionSerializer(tariff.versions.order_by("-number"), many=True).data
        )

    @extend_schema(
        methods=["GET"],
        summary="The tariff's draft (started from the latest version when there is none)",
        responses=TariffVersionSerializer,
    )
    @extend_schema(
        methods=["PUT"],
        summary="Replace the draft's elements, min/max price, parking grace and description",
        request=DraftSerializer,
        responses=TariffVersionSerializer,
    )
    @action(detail=True, methods=["get", "put"], filterset_class=None)
    def draft(self, request: Request, pk: str | None = None) -> Response:
        tariff = self.get_object()
        if request.method == "GET":
            draft = tariff.versions.filter(state=TariffVersionState.DRAFT).first()
            if draft is None:
                raise exceptions.NotFound("This tariff has no draft; PUT one to start it.")
            return Response(TariffVersionSerializer(draft).data)
        _must_edit(self.tenant, tariff)
        serializer = DraftSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        draft = services.tariff_draft_update(
            version=services.tariff_draft(tariff=tariff), data=serializer.validated_data
        )
        return Response(TariffVersionSerializer(draft).data)

    @extend_schema(
        summary="Publish the draft as a new version, in force from effective_from (default now)",
        request=PublishSerializer,
        responses={
            200: TariffVersionSerializer,
            400: OpenApiResponse(description="Nothing to publish"),
        },
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def publish(self, request: Request, pk: str | None = None) -> Response:
        tariff = self.get_object()
        _must_edit(self.tenant, tariff)
        serializer = PublishSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        draft = tariff.versions.filter(state=TariffVersionState.DRAFT).first()
        if draft is None:
            raise exceptions.ValidationError("There is no draft to publish: PUT a draft first.")
        version = services.tariff_publish(
            version=draft,
            effective_from=serializer.validated_data.get("effective_from"),
            user=acting_user(request),
        )
        return Response(TariffVersionSerializer(version).data)

    @extend_schema(
        summary="Price an example session with the draft or the current version",
        request=PriceExampleSerializer,
        responses=PriceExampleResultSerializer,
    )
    @action(detail=True, methods=["post"], url_path="price-example", filterset_class=None)
    def price_example(self, request: Request, pk: str | None = None) -> Response:
        tariff = self.get_object()
        serializer = PriceExampleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        version = self._version(tariff, data["version"])
        tz = tariff.site.time_zone if tariff.site else "UTC"
        started_at = data.get("started_at") or next_weekday(weekday=1, at=time(18, 0), tz=tz)
        example = price_example(
            spec=draft_spec(tariff, version),
            tz=tz,
            started_at=started_at,
            energy_kwh=data["energy_kwh"],
            charging=timedelta(minutes=data["charging_minutes"]),
            idle=timedelta(minutes=data["idle_minutes"]),
        )
        return Response(
            {
                "sentence": example.sentence,
                "started_at": example.started_at,
                "priced": PricedSessionSerializer(example.priced).data,
            }
        )

    @extend_schema(
        summary="Preview the draft against a site's last sessions: revenue now and with the draft",
        request=SimulateSerializer,
        responses=SimulationSerializer,
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def simulate(self, request: Request, pk: str | None = None) -> Response:
        tariff = self.get_object()
        serializer = SimulateSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        site = serializer.validated_data.get("site") or tariff.site
        if site is None:
            raise exceptions.ValidationError({"site": ["Name the site whose sessions to replay."]})
        if tariff.site_id is not None and site.pk != tariff.site_id:
            raise exceptions.ValidationError({"site": ["This tariff belongs to another site."]})
        draft = self._version(tariff, "draft")
        simulation = tariff_simulate(
            site=site, draft=draft_spec(tariff, draft), limit=serializer.validated_data["sessions"]
        )
        return Response(SimulationSerializer(simulation).data)

    def _version(self, tariff: Tariff, which: str) -> TariffVersion:
        if which == "current":
            from django.utils import timezone

            version = selectors.tariff_version_in_force(tariff=tariff, at=timezone.now())
            if version is None:
                raise exceptions.ValidationError(
                    {"version": ["No version of this tariff is in force."]}
                )
            return version
        draft = tariff.versions.filter(state=TariffVersionState.DRAFT).first()
        if draft is None:
            raise exceptions.ValidationError({"version": ["This tariff has no draft."]})
        return draft


class TariffAssignmentFilter(StrictFilterSet):
    tariff = IdFilter(field_name="tariff_id", help_text="A tariff id")
    site = IdFilter(field_name="site_id", help_text="Assignments to this site itself")
    charger = IdFilter(field_name="charger_id", help_text="Assignments to this charger itself")
    price_group = IdFilter(field_name="price_group_id", help_text="A price group id")

    class Meta:
        model = TariffAssignment
        fields = ["tariff", "site", "charger", "price_group"]


@extend_schema_view(
    list=extend_schema(summary="Tariff assignments, current and ended"),
    retrieve=extend_schema(summary="One tariff assignment"),
    create=extend_schema(
        summary="Assign a tariff to a site, charger or connector (ends the one it replaces)",
        request=TariffAssignmentCreateSerializer,
        responses={201: TariffAssignmentSerializer},
    ),
)
class TariffAssignmentViewSet(
    TenantViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Which tariff applies where: the most specific assignment wins (connector, charger, site),
    and one for the driver's price group wins over the public one."""

    model = TariffAssignment
    serializer_class = TariffAssignmentSerializer
    filterset_class = TariffAssignmentFilter
    cursor_ordering = ("-valid_from", "-id")
    read_roles = READER_ROLES
    write_roles = EDITOR_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[TariffAssignment]:
        return selectors.tariff_assignment_list(tenant=tenant)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = TariffAssignmentCreateSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        assignment = services.tariff_assign(user=acting_user(request), **serializer.validated_data)
        return Response(self.get_serializer(assignment).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="End an assignment now; it stays on record", request=None)
    @action(detail=True, methods=["post"], filterset_class=None)
    def end(self, request: Request, pk: str | None = None) -> Response:
        assignment = self.get_object()
        if not validation.tariff_editable(tenant=self.tenant, tariff=assignment.tariff):
            raise exceptions.PermissionDenied("You may edit tariffs of your own sites only.")
        assignment = services.tariff_assignment_end(assignment=assignment)
        return Response(self.get_serializer(assignment).data)


@extend_schema_view(
    list=extend_schema(summary="Price groups (members, residents, fleets)"),
    retrieve=extend_schema(summary="One price group"),
    create=extend_schema(summary="Create a price group (operators)"),
    update=extend_schema(summary="Replace a price group (operators)"),
    partial_update=extend_schema(summary="Change a price group (operators)"),
    destroy=extend_schema(summary="Delete a price group no assignment uses (operators)"),
)
class PriceGroupViewSet(TenantViewMixin, viewsets.ModelViewSet):
    """Drivers who pay their own price; a group's tariff is assigned like the public one."""

    model = PriceGroup
    serializer_class = PriceGroupSerializer
    cursor_ordering = ("name", "id")
    read_roles = READER_ROLES
    write_roles = OPERATOR_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[PriceGroup]:
        return selectors.price_group_list(tenant=tenant).prefetch_related("id_tokens")

    def perform_create(self, serializer: Any) -> None:
        serializer.instance = services.price_group_create(
            organization=_organization(self.tenant), **serializer.validated_data
        )

    def perform_update(self, serializer: Any) -> None:
        serializer.instance = services.price_group_update(
            group=serializer.instance, data=dict(serializer.validated_data)
        )

    def perform_destroy(self, instance: PriceGroup) -> None:
        if instance.assignments.exists():
            raise exceptions.ValidationError(
                "Tariffs are assigned to this group: its members' sessions were priced with them."
            )
        instance.delete()
