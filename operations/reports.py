"""The uptime report as the API and the dashboard give it: a period and a scope read from a
query, rows per connector, charger or site, and their CSV (tablib)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import tablib
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from chargers.selectors import chargers_for
from cpms.tenancy import Tenant

from . import selectors, uptime

LEVELS = ("connector", "charger", "site")
DEFAULT_DAYS = 30
MAX_DAYS = 366


class BadQuery(ValueError):
    """A query parameter is wrong: ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class UptimeQuery:
    start: datetime
    end: datetime
    level: str = "connector"
    site: int | None = None
    charger: str = ""


def _moment(value: str, field: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise BadQuery(field, "Give an ISO 8601 date or date-time.")
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)  # a time with no offset is UTC
    return moment


def uptime_query(params: Any, *, strict: bool = False) -> UptimeQuery:
    """Read start, end (default: the last 30 days), level, site and charger from a query;
    ``strict`` (the API) refuses a parameter given empty, as every API filter does."""
    if strict:
        for name in ("start", "end", "level", "site", "charger"):
            if name in params and not params.get(name):
                raise BadQuery(name, "Leave the parameter out rather than giving it empty.")
    now = timezone.now().replace(microsecond=0)
    end = _moment(params["end"], "end") if params.get("end") else now
    start = (
        _moment(params["start"], "start")
        if params.get("start")
        else end - timedelta(days=DEFAULT_DAYS)
    )
    if end <= start:
        raise BadQuery("end", "The end must be after the start.")
    if end - start > timedelta(days=MAX_DAYS):
        raise BadQuery("start", f"A report spans at most {MAX_DAYS} days.")
    level = params.get("level") or "connector"
    if level not in LEVELS:
        raise BadQuery("level", f"One of {', '.join(LEVELS)}.")
    site = params.get("site") or None
    if site is not None:
        try:
            site = int(site)
        except ValueError:
            raise BadQuery("site", "A site id.") from None
        if not 1 <= site < 2**63:
            raise BadQuery("site", "A site id.")
    return UptimeQuery(
        start=start, end=end, level=level, site=site, charger=params.get("charger") or ""
    )


def _numbers(tally: uptime.Tally) -> dict[str, Any]:
    percent = tally.percent
    return {
        "uptime_percent": None if percent is None else round(percent, 3),
        "up_seconds": round(tally.up, 3),
        "offline_seconds": round(tally.offline, 3),
        "faulted_seconds": round(tally.faulted, 3),
        "unavailable_seconds": round(tally.unavailable, 3),
        "excluded_seconds": round(tally.excluded, 3),
    }


def uptime_table(tenant: Tenant, query: UptimeQuery) -> list[dict[str, Any]]:
    chargers = chargers_for(tenant)
    if query.site is not None:
        chargers = chargers.filter(site_id=query.site)
    if query.charger:
        chargers = chargers.filter(identity=query.charger)
    rows = selectors.uptime_for(tenant, start=query.start, end=query.end, chargers=chargers)
    if query.level == "connector":
        return [
            {
                "site": row.site,
                "charger": row.charger,
                "connector": row.connector,
                **_numbers(row.tally),
                "timeline": [
                    {
                        "start": s.start.isoformat(),
                        "end": s.end.isoformat(),
                        "state": s.state.value,
                        "reason": s.reason,
                    }
                    for s in row.segments
                ],
            }
            for row in rows
        ]
    return [
        {"site": site, "charger": charger, "connector": None, **_numbers(tally)}
        for site, charger, tally in selectors.uptime_totals(rows, query.level)
    ]


CSV_COLUMNS = [
    "site",
    "charger",
    "connector",
    "uptime_percent",
    "up_seconds",
    "offline_seconds",
    "faulted_seconds",
    "unavailable_seconds",
    "excluded_seconds",
]


def uptime_csv(query: UptimeQuery, table: list[dict[str, Any]]) -> str:
    dataset = tablib.Dataset(headers=["period_start", "period_end", *CSV_COLUMNS])
    for row in table:
        dataset.append(
            [
                query.start.isoformat(),
                query.end.isoformat(),
                *("" if row[column] is None else _cell(row[column]) for column in CSV_COLUMNS),
            ]
        )
    return dataset.export("csv")


def _cell(value: Any) -> Any:
    # Text a spreadsheet would run as a formula is quoted (identities and site names are free text).
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
