"""REST API of the tenancy app: the caller's organization and its API tokens."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, permissions, status, viewsets
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from .models import ApiToken, Organization
from .rest import ADMIN_ROLES, TenantViewMixin, acting_user
from .serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    OrganizationSerializer,
)
from .services import api_token_create, api_token_revoke
from .tenancy import Tenant


@extend_schema_view(
    list=extend_schema(summary="Your organization (a list of one)"),
    retrieve=extend_schema(
        summary="Your organization",
        parameters=[
            OpenApiParameter(
                "slug",
                str,
                OpenApiParameter.PATH,
                pattern=r"^[-a-zA-Z0-9_]+$",
                description="Its slug",
            )
        ],
    ),
)
class OrganizationViewSet(TenantViewMixin, viewsets.ReadOnlyModelViewSet):
    """The organization the caller acts for."""

    serializer_class = OrganizationSerializer
    lookup_field = "slug"
    cursor_ordering = "slug"
    filter_backends: list[Any] = []

    model = Organization

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[Organization]:
        return Organization.objects.filter(pk=tenant.organization_id)


@extend_schema_view(
    list=extend_schema(summary="API tokens of your organization (operator admins)"),
    retrieve=extend_schema(summary="One API token (never its key)"),
    create=extend_schema(
        summary="Issue an API token; the response holds the key, shown this once",
        request=ApiTokenCreateSerializer,
        responses={201: ApiTokenCreatedSerializer},
    ),
    destroy=extend_schema(summary="Revoke an API token; it is refused from then on"),
)
class ApiTokenViewSet(
    TenantViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """API tokens of the organization, for operator admins. Keys are stored hashed: a key is shown
    once, when the token is issued."""

    serializer_class = ApiTokenSerializer
    read_roles = ADMIN_ROLES
    write_roles = ADMIN_ROLES
    cursor_ordering = ("-created_at", "-id")
    filter_backends: list[Any] = []

    model = ApiToken

    def tenant_queryset(self, tenant: Tenant) -> QuerySet[ApiToken]:
        return (
            ApiToken.objects.filter(organization_id=tenant.organization_id)
            .select_related("created_by", "revoked_by")
            .prefetch_related("sites")
        )

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = ApiTokenCreateSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        token, key = api_token_create(
            organization=Organization.objects.get(pk=self.tenant.organization_id),
            created_by=acting_user(request),
            **serializer.validated_data,
        )
        body = ApiTokenCreatedSerializer(
            token, context={**self.get_serializer_context(), "key": key}
        )
        return Response(body.data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        api_token_revoke(token=self.get_object(), revoked_by=acting_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@authentication_classes([])
@permission_classes([permissions.AllowAny])
def not_found(request: Request, *args: Any, **kwargs: Any) -> Response:
    """Any other path under /api/: a 404 in the error format, not the HTML page."""
    raise exceptions.NotFound(f"No API endpoint at {request.path}.")
