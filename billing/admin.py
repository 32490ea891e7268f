"""Admin for tariffs: read what is published, never edit it there (published versions are final)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import PriceGroup, SiteBilling, Tariff, TariffAssignment, TariffVersion


@admin.register(SiteBilling)
class SiteBillingAdmin(admin.ModelAdmin):
    list_display = ["site", "currency"]
    search_fields = ["site__name"]


@admin.register(PriceGroup)
class PriceGroupAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "group_token"]
    list_filter = ["organization"]
    search_fields = ["name", "group_token"]
    filter_horizontal = ["id_tokens"]


VERSION_FIELDS = ("number", "state", "effective_from", "published_at", "min_price", "max_price")


class TariffVersionInline(admin.TabularInline):
    model = TariffVersion
    extra = 0
    can_delete = False
    fields = VERSION_FIELDS
    readonly_fields = VERSION_FIELDS

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Tariff)
class TariffAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "site", "currency", "created_at"]
    list_filter = ["organization", "currency"]
    search_fields = ["name"]
    readonly_fields = ["currency"]
    inlines = [TariffVersionInline]


@admin.register(TariffAssignment)
class TariffAssignmentAdmin(admin.ModelAdmin):
    list_display = [
        "tariff",
        "site",
        "charger",
        "connector",
        "price_group",
        "valid_from",
        "valid_until",
    ]
    list_filter = ["organization"]
    readonly_fields = [
        "organization",
        "tariff",
        "site",
        "charger",
        "connector",
        "price_group",
        "valid_from",
        "created_by",
    ]
