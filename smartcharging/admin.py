"""Admin of load management: capacity, circuits and wiring are edited here too; what was commanded,
measured and violated is read-only."""

from __future__ import annotations

from django.contrib import admin

from .models import (
    ChargerLoad,
    Circuit,
    LimitEvent,
    LimitSchedule,
    LoadSnapshot,
    ProfileViolation,
    SessionLimit,
    SiteCapacity,
)


@admin.register(SiteCapacity)
class SiteCapacityAdmin(admin.ModelAdmin):
    list_display = ("site", "limit", "limit_unit", "phases", "managed", "updated_at")
    list_filter = ("managed", "limit_unit", "phases")
    search_fields = ("site__name",)


@admin.register(Circuit)
class CircuitAdmin(admin.ModelAdmin):
    list_display = ("name", "site", "parent", "limit_a", "phases")
    list_filter = ("phases",)
    search_fields = ("name", "site__name")


@admin.register(ChargerLoad)
class ChargerLoadAdmin(admin.ModelAdmin):
    list_display = (
        "charger",
        "circuit",
        "phase_rotation",
        "min_current_a",
        "max_current_a",
        "pause_allowed",
        "rate_unit",
        "priority",
        "profile_rejected_at",
    )
    list_filter = ("phase_rotation", "rate_unit", "pause_allowed")
    search_fields = ("charger__identity",)
    readonly_fields = (
        "profile_rejected_at",
        "profile_rejected_reason",
        "failsafe_limit_a",
        "failsafe_sent_at",
        "failsafe_accepted_at",
    )


@admin.register(LimitSchedule)
class LimitScheduleAdmin(admin.ModelAdmin):
    list_display = (
        "site",
        "name",
        "weekdays",
        "start_time",
        "end_time",
        "limit_a",
        "price_per_kwh",
    )
    search_fields = ("site__name", "name")


@admin.register(LimitEvent)
class LimitEventAdmin(admin.ModelAdmin):
    list_display = ("site", "starts_at", "ends_at", "limit_a", "reason", "cancelled_at")
    search_fields = ("site__name", "reason", "source")
    readonly_fields = ("created_by", "created_at")


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(SessionLimit)
class SessionLimitAdmin(ReadOnly):
    list_display = (
        "session",
        "site",
        "allocated_a",
        "commanded_a",
        "accepted",
        "verified_a",
        "measured_a",
        "updated_at",
    )
    list_select_related = ("session", "site")


@admin.register(ProfileViolation)
class ProfileViolationAdmin(ReadOnly):
    list_display = ("charger", "session", "commanded_a", "measured_a", "started_at", "resolved_at")
    list_select_related = ("charger",)


@admin.register(LoadSnapshot)
class LoadSnapshotAdmin(ReadOnly):
    list_display = ("site", "at", "capacity_a", "allocated_a", "measured_a", "sessions")
    list_select_related = ("site",)
