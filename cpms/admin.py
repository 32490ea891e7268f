from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import ApiToken, Membership, Organization
from .services import api_token_revoke


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["organization", "role"]
    search_fields = ["user__username", "user__email", "organization__name"]
    filter_horizontal = ["sites"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are issued where the key can be shown once (dashboard, API, create_api_token);
    here they are looked at and revoked."""

    list_display = [
        "name",
        "prefix",
        "organization",
        "role",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["organization", "role"]
    search_fields = ["name", "prefix", "organization__name"]
    fields = readonly_fields = (
        "organization",
        "name",
        "prefix",
        "role",
        "sites",
        "created_by",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    )
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke the selected API tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        user: Any = request.user
        for token in queryset:
            api_token_revoke(token=token, revoked_by=user if user.is_authenticated else None)
        messages.success(request, f"{queryset.count()} API token(s) revoked.")
