"""REST API of firmware campaigns and of diagnostics and log files. Operators and operator admins
only; another organization's campaign, charger or file is a 404.

- ``/api/v1/firmware-campaigns/``: create (a draft), list, read; ``start``, ``pause``,
  ``resume``, ``cancel``; ``targets``; ``preview`` (the chargers a filter selects); a draft
  may be deleted.
- ``POST /api/v1/chargers/<identity>/diagnostics/`` asks a charger for a file (202);
  ``/api/v1/diagnostics/`` lists what was asked and received, ``.../download/`` gives the file.
"""

from __future__ import annotations

from typing import Any

import django_filters as filters
from django.db.models import QuerySet
from django.http import FileResponse
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
from cpms.rest import OPERATOR_ROLES, StrictFilterSet, TenantViewMixin, acting_user
from cpms.tenancy import Tenant

from . import command_services, firmware_services, selectors, uploads
from .firmware import CampaignState
from .firmware_serializers import (
    CampaignCreateSerializer,
    CampaignSerializer,
    DiagnosticsFileSerializer,
    DiagnosticsRequestSerializer,
    PreviewSerializer,
    TargetFilterSerializer,
    TargetSerializer,
)
from .models import Charger, DiagnosticsFile, FirmwareCampaign, FirmwareTarget

PREVIEW_LIMIT = 100


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The campaign cannot do that now."
    default_code = "conflict"


def campaigns_for(tenant: Tenant) -> QuerySet[FirmwareCampaign]:
    """Campaigns of the tenant's organization (operators see every charger of it)."""
    if not tenant.is_operator:
        return FirmwareCampaign.objects.none()
    return FirmwareCampaign.objects.filter(organization_id=tenant.organization_id)


def diagnostics_for(tenant: Tenant) -> QuerySet[DiagnosticsFile]:
    if not tenant.is_operator:
        return DiagnosticsFile.objects.none()
    return DiagnosticsFile.objects.filter(charger__in=selectors.chargers_for(tenant))


def target_filter(tenant: Tenant, data: dict[str, Any]) -> firmware_services.TargetFilter:
    identities = data.get("chargers") or []
    ids: tuple[int, ...] = ()
    if identities:
        ids = tuple(
            selectors.chargers_for(tenant)
            .filter(identity__in=identities)
            .values_list("pk", flat=True)
        )
    return firmware_services.TargetFilter(
        organization_id=tenant.organization_id,
        site_id=data.get("site"),
        vendor=data.get("vendor", ""),
        model=data.get("model", ""),
        current_firmware_version=data.get("current_firmware_version", ""),
        charger_ids=ids,
        firmware_version=data.get("firmware_version", ""),
    )


class CampaignFilter(StrictFilterSet):
    state = filters.ChoiceFilter(choices=[(s.value, s.value) for s in CampaignState])

    class Meta:
        model = FirmwareCampaign
        fields = ["state"]


REFUSED = OpenApiResponse(ErrorSerializer, description="The campaign's state does not allow it")


@extend_schema_view(
    list=extend_schema(summary="Firmware campaigns, newest first, with target counts (operators)"),
    retrieve=extend_schema(summary="One firmware campaign and its progress (operators)"),
    create=extend_schema(
        summary="Create a firmware campaign as a draft (operators)",
        description="Nothing is sent until it is started. The target filter (site, vendor, "
        "model, current firmware version, explicit chargers) is resolved at the start.",
        request=CampaignCreateSerializer,
        responses={201: CampaignSerializer},
    ),
    destroy=extend_schema(
        summary="Delete a draft campaign (operators)",
        responses={204: None, 409: REFUSED},
    ),
)
class FirmwareCampaignViewSet(
    TenantViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Firmware rolled out to the chargers a filter selects: a canary wave, then waves of a set
    size; a campaign halts when failures pass its ratio."""

    model = FirmwareCampaign
    serializer_class = CampaignSerializer
    filterset_class = CampaignFilter
    cursor_ordering = ("-created_at", "-id")
    read_roles = OPERATOR_ROLES
    write_roles = OPERATOR_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[FirmwareCampaign]:
        return firmware_services.campaigns_with_counts(
            campaigns_for(tenant).prefetch_related("chargers")
        )

    def _fresh(self, pk: int) -> dict[str, Any]:
        return dict(CampaignSerializer(self.get_queryset().get(pk=pk)).data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = CampaignCreateSerializer(data=request.data, context={"tenant": self.tenant})
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        chosen = target_filter(self.tenant, data)
        campaign = firmware_services.firmware_campaign_create(
            organization_id=self.tenant.organization_id,
            name=data["name"],
            location=data["location"],
            firmware_version=data["firmware_version"],
            retrieve_at=data.get("retrieve_at"),
            install_at=data.get("install_at"),
            retries=data.get("retries"),
            retry_interval=data.get("retry_interval"),
            signature=data["signature"],
            signing_certificate=data["signing_certificate"],
            site_id=data.get("site"),
            vendor=data["vendor"],
            model=data["model"],
            current_firmware_version=data["current_firmware_version"],
            chargers=Charger.objects.filter(pk__in=chosen.charger_ids),
            canary_count=data["canary_count"],
            wave_size=data["wave_size"],
            max_failure_ratio=data["max_failure_ratio"],
            target_timeout=data["target_timeout"],
            deliver_when_offline=data["deliver_when_offline"],
            created_by=acting_user(request),
        )
        return Response(self._fresh(campaign.pk), status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        campaign = self.get_object()
        if campaign.state != CampaignState.DRAFT:
            raise Conflict(f"The campaign is {campaign.state}; only a draft can be deleted.")
        campaign.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _control(self, operation: Any) -> Response:
        campaign = self.get_object()
        try:
            operation(campaign_pk=campaign.pk)
        except firmware_services.CampaignRefused as exc:
            raise Conflict(str(exc)) from None
        return Response(self._fresh(campaign.pk))

    @extend_schema(
        summary="Start a draft: resolve its targets and send the canary wave (operators)",
        request=None,
        responses={200: CampaignSerializer, 409: REFUSED},
    )
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        return self._control(firmware_services.firmware_campaign_start)

    @extend_schema(
        summary="Pause: nothing new is sent; targets under way go on (operators)",
        request=None,
        responses={200: CampaignSerializer, 409: REFUSED},
    )
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._control(firmware_services.firmware_campaign_pause)

    @extend_schema(
        summary="Resume a paused or halted campaign; failures so far are accepted (operators)",
        request=None,
        responses={200: CampaignSerializer, 409: REFUSED},
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._control(firmware_services.firmware_campaign_resume)

    @extend_schema(
        summary="Cancel: targets not sent yet never will be (operators)",
        request=None,
        responses={200: CampaignSerializer, 409: REFUSED},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._control(firmware_services.firmware_campaign_cancel)

    @extend_schema(
        summary="The campaign's targets: wave, state and what each charger reported (operators)",
        responses={200: TargetSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def targets(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        rows = FirmwareTarget.objects.filter(campaign=campaign).select_related("charger")
        return Response(
            TargetSerializer(rows.order_by("wave", "charger__identity"), many=True).data
        )

    @extend_schema(
        summary="The chargers a target filter selects now (operators)",
        request=TargetFilterSerializer,
        responses={200: PreviewSerializer},
    )
    @action(detail=False, methods=["post"], filterset_class=None)
    def preview(self, request: Request) -> Response:
        serializer = TargetFilterSerializer(data=request.data, context={"tenant": self.tenant})
        serializer.is_valid(raise_exception=True)
        chargers = firmware_services.chargers_matching(
            target_filter(self.tenant, dict(serializer.validated_data))
        )
        return Response(
            {
                "count": chargers.count(),
                "chargers": list(chargers.values_list("identity", flat=True)[:PREVIEW_LIMIT]),
            }
        )


# --- Diagnostics and logs -----------------------------------------------------------------------


class DiagnosticsFilter(StrictFilterSet):
    charger = filters.CharFilter(field_name="charger__identity", help_text="A charger identity")
    state = filters.ChoiceFilter(choices=DiagnosticsFile.State.choices)
    kind = filters.ChoiceFilter(choices=DiagnosticsFile.Kind.choices)

    class Meta:
        model = DiagnosticsFile
        fields = ["charger", "state", "kind"]


def base_url(request: Request) -> str:
    return request.build_absolute_uri("/").rstrip("/")


@extend_schema_view(
    create=extend_schema(
        summary="Ask a charger for a diagnostics or log file (operators)",
        description="The charger gets an upload URL of its own (``/uploads/<token>/``, valid "
        "for CPMS_UPLOAD_TTL seconds) in GetDiagnostics (1.6) or GetLog (1.6 security "
        "extension, 2.x). 202 with the request, whose state follows the upload. An offline "
        "charger is a 409 unless deliver_when_offline is set.",
        parameters=[
            OpenApiParameter(
                "identity", str, OpenApiParameter.PATH, description="The charger's identity"
            )
        ],
        request=DiagnosticsRequestSerializer,
        responses={
            202: DiagnosticsFileSerializer,
            409: OpenApiResponse(ErrorSerializer, description="The charger is offline"),
        },
    ),
)
class ChargerDiagnosticsViewSet(TenantViewMixin, viewsets.GenericViewSet):
    model = DiagnosticsFile
    serializer_class = DiagnosticsFileSerializer
    read_roles = OPERATOR_ROLES
    write_roles = OPERATOR_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[DiagnosticsFile]:
        return diagnostics_for(tenant)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        charger = get_object_or_404(
            selectors.chargers_for(self.tenant), identity=self.kwargs["identity"]
        )
        serializer = DiagnosticsRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        token = request.auth if isinstance(request.auth, ApiToken) else None
        try:
            record = uploads.diagnostics_request(
                charger=charger,
                kind=data["kind"],
                base_url=base_url(request),
                start_time=data.get("start_time"),
                stop_time=data.get("stop_time"),
                deliver_when_offline=data["deliver_when_offline"],
                requested_by=acting_user(request),
                api_token=token,
            )
        except command_services.CommandInvalid as exc:
            raise exceptions.ValidationError({exc.field: [exc.message]}) from None
        except command_services.CommandRefused as exc:
            raise Conflict(str(exc), code="charger_offline") from None
        return Response(DiagnosticsFileSerializer(record).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    list=extend_schema(summary="Diagnostics and log files asked of chargers (operators)"),
    retrieve=extend_schema(summary="One diagnostics or log file request (operators)"),
)
class DiagnosticsFileViewSet(TenantViewMixin, viewsets.ReadOnlyModelViewSet):
    model = DiagnosticsFile
    serializer_class = DiagnosticsFileSerializer
    filterset_class = DiagnosticsFilter
    cursor_ordering = ("-created_at", "-id")
    read_roles = OPERATOR_ROLES
    write_roles = OPERATOR_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[DiagnosticsFile]:
        return diagnostics_for(tenant).select_related("charger")

    @extend_schema(
        summary="Download the file a charger uploaded (operators)",
        responses={
            (200, "application/octet-stream"): OpenApiResponse(description="The file"),
            404: OpenApiResponse(ErrorSerializer, description="No file (yet)"),
        },
    )
    @action(detail=True, methods=["get"], url_name="download")
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        record = self.get_object()
        if not record.file:
            raise exceptions.NotFound("The charger has not uploaded this file (yet).")
        return diagnostics_file_response(record)


def diagnostics_file_response(record: DiagnosticsFile) -> FileResponse:
    response = FileResponse(
        record.file.open("rb"),
        as_attachment=True,
        filename=record.file_name or "diagnostics.log",
        content_type="application/octet-stream",
    )
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
