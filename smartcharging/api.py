"""REST API of load management, per site: its grid connection, circuit tree, charger wiring,
schedules, demand-response events, and the live load (allocations and measurements).

Everyone in the organization may read; operators and the site's hosts may change it. A site
outside the caller's tenant is a 404.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from chargers.models import Site
from cpms.errors import ErrorSerializer
from cpms.models import Role
from cpms.rest import OPERATOR_ROLES, TenantViewMixin, acting_user

from . import selectors, services
from .models import ChargerLoad, Circuit, LimitEvent, LimitSchedule, SiteCapacity
from .serializers import (
    ChargerLoadSerializer,
    CircuitSerializer,
    LimitEventSerializer,
    LimitScheduleSerializer,
    SiteCapacitySerializer,
    SiteLoadSerializer,
)

SITE_EDITORS = OPERATOR_ROLES | frozenset({Role.SITE_HOST})
SITE_IN_PATH = OpenApiParameter("site_pk", int, OpenApiParameter.PATH, description="The site's id")


class SiteScoped(TenantViewMixin):
    """Views under /sites/<site_pk>/: the site is looked up through the caller's tenant."""

    write_roles: ClassVar[frozenset[str]] = SITE_EDITORS
    kwargs: dict[str, Any]

    @property
    def site(self) -> Site:
        cached = getattr(self, "_site", None)
        if cached is None:
            raw = str(self.kwargs["site_pk"])
            # Any path segment reaches here, so that every miss is the API's own JSON 404.
            if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
                raise exceptions.NotFound("No such site.")
            cached = get_object_or_404(selectors.sites_for(self.tenant), pk=int(raw))
            self._site = cached
        return cached

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False):
            context["site"] = self.site
        return context


@extend_schema_view(
    retrieve=extend_schema(summary="A site's grid connection", parameters=[SITE_IN_PATH]),
    update=extend_schema(
        summary="Set a site's grid connection (operators, site hosts)", parameters=[SITE_IN_PATH]
    ),
)
class CapacityViewSet(SiteScoped, viewsets.GenericViewSet):
    model = SiteCapacity
    serializer_class = SiteCapacitySerializer
    pagination_class = None

    def tenant_queryset(self, tenant: Any) -> QuerySet[SiteCapacity]:
        return SiteCapacity.objects.filter(site=self.site)

    def retrieve(self, request: Request, site_pk: str) -> Response:
        capacity = get_object_or_404(SiteCapacity, site=self.site)
        return Response(self.get_serializer(capacity).data)

    def update(self, request: Request, site_pk: str) -> Response:
        existing = SiteCapacity.objects.filter(site=self.site).first()
        serializer = self.get_serializer(existing, data=request.data)
        serializer.is_valid(raise_exception=True)
        capacity = services.capacity_set(site=self.site, data=serializer.validated_data)
        return Response(self.get_serializer(capacity).data)


@extend_schema_view(
    list=extend_schema(summary="A site's circuits", parameters=[SITE_IN_PATH]),
    create=extend_schema(
        summary="Add a circuit (operators, site hosts)", parameters=[SITE_IN_PATH]
    ),
    retrieve=extend_schema(summary="One circuit", parameters=[SITE_IN_PATH]),
    update=extend_schema(summary="Change a circuit", parameters=[SITE_IN_PATH]),
    partial_update=extend_schema(summary="Change a circuit", parameters=[SITE_IN_PATH]),
    destroy=extend_schema(
        summary="Remove a circuit (and the circuits below it)", parameters=[SITE_IN_PATH]
    ),
)
class CircuitViewSet(SiteScoped, viewsets.ModelViewSet):
    model = Circuit
    serializer_class = CircuitSerializer
    pagination_class = None

    def tenant_queryset(self, tenant: Any) -> QuerySet[Circuit]:
        return selectors.circuits_for(tenant, self.site).order_by("name")

    def perform_create(self, serializer: CircuitSerializer) -> None:  # type: ignore[override]
        serializer.instance = services.circuit_create(
            site=self.site, data=serializer.validated_data
        )

    def perform_update(self, serializer: CircuitSerializer) -> None:  # type: ignore[override]
        assert isinstance(serializer.instance, Circuit)
        serializer.instance = services.circuit_update(
            circuit=serializer.instance, data=serializer.validated_data
        )

    def perform_destroy(self, instance: Circuit) -> None:
        services.circuit_delete(circuit=instance)


@extend_schema_view(
    list=extend_schema(summary="How the site's chargers are wired", parameters=[SITE_IN_PATH]),
    retrieve=extend_schema(summary="How one charger is wired", parameters=[SITE_IN_PATH]),
    update=extend_schema(
        summary="Set a charger's circuit, phases and limits", parameters=[SITE_IN_PATH]
    ),
    partial_update=extend_schema(
        summary="Change a charger's circuit, phases or limits", parameters=[SITE_IN_PATH]
    ),
)
class ChargerLoadViewSet(
    SiteScoped,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    model = ChargerLoad
    serializer_class = ChargerLoadSerializer
    pagination_class = None
    lookup_field = "identity"
    lookup_value_regex = r"[^/]+"

    def tenant_queryset(self, tenant: Any) -> QuerySet[ChargerLoad]:
        return ChargerLoad.objects.filter(charger__in=selectors.site_chargers(tenant, self.site))

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        loads = {load.charger_id: load for load in self.get_queryset().select_related("charger")}
        rows = [
            loads.get(charger.pk) or services.default_charger_load(charger)
            for charger in selectors.site_chargers(self.tenant, self.site)
        ]
        return Response(self.get_serializer(rows, many=True).data)

    def get_object(self) -> ChargerLoad:
        charger = get_object_or_404(
            selectors.site_chargers(self.tenant, self.site), identity=self.kwargs["identity"]
        )
        return ChargerLoad.objects.filter(charger=charger).first() or (
            services.default_charger_load(charger)
        )

    def perform_update(self, serializer: ChargerLoadSerializer) -> None:  # type: ignore[override]
        assert isinstance(serializer.instance, ChargerLoad)
        serializer.instance = services.charger_load_set(
            charger=serializer.instance.charger, data=serializer.validated_data
        )


@extend_schema_view(
    list=extend_schema(summary="A site's limit schedule", parameters=[SITE_IN_PATH]),
    create=extend_schema(summary="Add a schedule window", parameters=[SITE_IN_PATH]),
    retrieve=extend_schema(summary="One schedule window", parameters=[SITE_IN_PATH]),
    destroy=extend_schema(summary="Remove a schedule window", parameters=[SITE_IN_PATH]),
)
class LimitScheduleViewSet(
    SiteScoped,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    model = LimitSchedule
    serializer_class = LimitScheduleSerializer
    pagination_class = None

    def tenant_queryset(self, tenant: Any) -> QuerySet[LimitSchedule]:
        return selectors.limit_schedules_for(tenant, self.site)

    def perform_create(self, serializer: LimitScheduleSerializer) -> None:  # type: ignore[override]
        serializer.instance = services.limit_schedule_create(
            site=self.site, data=serializer.validated_data
        )

    def perform_destroy(self, instance: LimitSchedule) -> None:
        services.limit_schedule_delete(schedule=instance)


@extend_schema_view(
    list=extend_schema(summary="A site's demand-response events", parameters=[SITE_IN_PATH]),
    create=extend_schema(
        summary="Cap the site from starts_at to ends_at (operators, site hosts)",
        parameters=[SITE_IN_PATH],
    ),
    retrieve=extend_schema(summary="One demand-response event", parameters=[SITE_IN_PATH]),
    destroy=extend_schema(
        summary="Cancel an event: it ends now, or never starts", parameters=[SITE_IN_PATH]
    ),
)
class LimitEventViewSet(
    SiteScoped,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    model = LimitEvent
    serializer_class = LimitEventSerializer
    cursor_ordering = ("-starts_at", "-id")

    def tenant_queryset(self, tenant: Any) -> QuerySet[LimitEvent]:
        return selectors.limit_events_for(tenant, self.site)

    def perform_create(self, serializer: LimitEventSerializer) -> None:  # type: ignore[override]
        serializer.instance = services.limit_event_create(
            site=self.site,
            data=serializer.validated_data,
            created_by=acting_user(self.request),
        )

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        event = self.get_object()
        if event.cancelled_at is not None:
            raise exceptions.ValidationError({"detail": ["This event is cancelled already."]})
        services.limit_event_cancel(event=event)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    retrieve=extend_schema(
        summary="The site's live load: limit now, allocated, commanded and measured current",
        parameters=[
            SITE_IN_PATH,
            OpenApiParameter(
                "minutes",
                {"type": "integer", "minimum": 1, "maximum": 1440, "default": 60},
                description="Minutes of history to include",
            ),
        ],
        responses={
            200: SiteLoadSerializer,
            400: OpenApiResponse(ErrorSerializer, description="minutes is out of range"),
        },
    ),
)
class LoadViewSet(SiteScoped, viewsets.GenericViewSet):
    model = SiteCapacity
    serializer_class = SiteLoadSerializer
    pagination_class = None

    def tenant_queryset(self, tenant: Any) -> QuerySet[SiteCapacity]:
        return SiteCapacity.objects.filter(site=self.site)

    def retrieve(self, request: Request, site_pk: str) -> Response:
        raw = request.query_params.get("minutes", "60")
        try:
            minutes = int(raw)
        except ValueError:
            minutes = 0
        if not 1 <= minutes <= 1440:
            raise exceptions.ValidationError({"minutes": ["A whole number from 1 to 1440."]})
        load = selectors.site_load(site=self.site, minutes=minutes)
        if load is None:
            raise exceptions.NotFound(
                "This site has no grid connection set, so no load is managed."
            )
        return Response(self.get_serializer(load).data)
