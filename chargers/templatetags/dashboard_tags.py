"""Template filters of the dashboard: local times, energies and status badges."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django import template
from django.utils.text import slugify

from chargers.dashboard import zone

register = template.Library()


@register.filter
def local(value: datetime | None, time_zone: str = "UTC") -> str:
    """A moment in the given IANA zone, with the zone's abbreviation: ``2025-03-01 14:05:09 CET``."""
    if value is None:
        return "—"
    return value.astimezone(zone(time_zone)).strftime("%Y-%m-%d %H:%M:%S %Z")


@register.filter
def local_iso(value: datetime | None, time_zone: str = "UTC") -> str:
    return "" if value is None else value.astimezone(zone(time_zone)).isoformat()


@register.filter
def kwh(value: Decimal | float | None, places: int = 2) -> str:
    """Wh as kWh with a fixed number of decimals."""
    if value is None:
        return "—"
    return f"{Decimal(value) / 1000:.{int(places)}f}"


@register.filter
def status_class(value: str | None) -> str:
    return "status-" + (slugify(value or "unknown") or "unknown")


@register.filter
def duration(value: timedelta | None) -> str:
    if value is None:
        return "—"
    seconds = max(0, int(value.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


@register.simple_tag(takes_context=True)
def sort_link(context: dict[str, Any], field: str) -> str:
    """The query string that sorts a list by ``field``, flipping the direction if it already is."""
    request = context["request"]
    query = request.GET.copy()
    current = query.get("sort", "")
    query["sort"] = f"-{field}" if current == field else field
    query.pop("page", None)
    return "?" + query.urlencode()


@register.simple_tag(takes_context=True)
def sort_state(context: dict[str, Any], field: str) -> str:
    """aria-sort value of a column header."""
    current = context["request"].GET.get("sort", "")
    if current == field:
        return "ascending"
    if current == f"-{field}":
        return "descending"
    return "none"
