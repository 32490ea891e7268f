"""Reads of the operations app, always through a tenant: nothing crosses organizations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from chargers.models import Charger, ChargerEvent, Connector, ConnectorStatusChange
from chargers.selectors import chargers_for
from cpms.tenancy import Tenant

from . import uptime
from .models import ConfigurationBaseline, MaintenanceWindow, ReconciliationCase


def reconciliation_cases_for(tenant: Tenant) -> QuerySet[ReconciliationCase]:
    return ReconciliationCase.objects.filter(charger__in=chargers_for(tenant))


def baselines_for(tenant: Tenant) -> QuerySet[ConfigurationBaseline]:
    return ConfigurationBaseline.objects.filter(organization_id=tenant.organization_id)


# --- Uptime ----------------------------------------------------------------------------------------

# Connection events that end a connection (a superseded socket closing does not: a newer one holds
# the charger already).
_OFFLINE_EVENTS = ("Disconnected", "Expired")


@dataclass(frozen=True, slots=True)
class ConnectorUptime:
    site: str
    site_pk: int | None
    charger: str
    charger_pk: int
    connector: int
    segments: tuple[uptime.Segment, ...]
    tally: uptime.Tally


def maintenance_windows_for(tenant: Tenant) -> QuerySet[MaintenanceWindow]:
    qs = MaintenanceWindow.objects.filter(organization_id=tenant.organization_id)
    if tenant.site_ids is not None:
        qs = qs.filter(Q(site_id__in=tenant.site_ids) | Q(charger__site_id__in=tenant.site_ids))
    return qs


def _connected(event: ChargerEvent) -> bool | None:
    if event.status == "Connected":
        return True
    if event.status in _OFFLINE_EVENTS and not (event.detail or {}).get("superseded"):
        return False
    return None


def uptime_for(
    tenant: Tenant,
    *,
    start: datetime,
    end: datetime,
    chargers: QuerySet[Charger] | None = None,
) -> list[ConnectorUptime]:
    """Every connector's timeline and tally over [start, end), loaded in a few queries."""
    chargers = (chargers if chargers is not None else chargers_for(tenant)).select_related("site")
    charger_list = list(chargers.order_by("site__name", "identity"))
    by_pk = {c.pk: c for c in charger_list}
    connections: dict[int, list[tuple[datetime, bool]]] = {pk: [] for pk in by_pk}
    connected_at_start: dict[int, bool] = dict.fromkeys(by_pk, False)
    events = ChargerEvent.objects.filter(
        charger_id__in=list(by_pk), kind=ChargerEvent.Kind.CONNECTION
    )
    for event in events.filter(timestamp__gt=start, timestamp__lt=end).order_by("timestamp"):
        flag = _connected(event)
        if flag is not None:
            connections[event.charger_id].append((event.timestamp, flag))
    for pk in by_pk:
        for event in events.filter(charger_id=pk, timestamp__lte=start).order_by(
            "-timestamp", "-id"
        )[:5]:
            flag = _connected(event)
            if flag is not None:
                connected_at_start[pk] = flag
                break
    connectors = list(
        Connector.objects.filter(charger_id__in=list(by_pk), connector_id__gt=0).order_by(
            "charger_id", "connector_id"
        )
    )
    statuses: dict[int, list[tuple[datetime, str]]] = {c.pk: [] for c in connectors}
    for pk, at, status in ConnectorStatusChange.objects.filter(
        connector_id__in=list(statuses), timestamp__gt=start, timestamp__lt=end
    ).values_list("connector_id", "timestamp", "status"):
        statuses[pk].append((at, status))
    windows = list(
        MaintenanceWindow.objects.filter(
            organization_id=tenant.organization_id, starts_at__lt=end, ends_at__gt=start
        ).order_by("starts_at", "id")
    )
    order = {pk: index for index, pk in enumerate(by_pk)}
    rows = []
    for connector in sorted(connectors, key=lambda c: (order[c.charger_id], c.connector_id)):
        charger = by_pk[connector.charger_id]
        before = (
            ConnectorStatusChange.objects.filter(connector=connector, timestamp__lte=start)
            .order_by("-timestamp", "-id")
            .values_list("status", flat=True)
            .first()
        )
        applying = [
            (w.starts_at, w.ends_at, w.reason)
            for w in windows
            if (w.site_id is None or w.site_id == charger.site_id)
            and (w.charger_id is None or w.charger_id == charger.pk)
            and (w.connector_id is None or w.connector_id == connector.connector_id)
        ]
        segments = uptime.timeline(
            start=start,
            end=end,
            connections=connections[charger.pk],
            statuses=statuses[connector.pk],
            windows=applying,
            connected_at_start=connected_at_start[charger.pk],
            status_at_start=before or "",
        )
        rows.append(
            ConnectorUptime(
                site=charger.site.name if charger.site else "",
                site_pk=charger.site_id,
                charger=charger.identity,
                charger_pk=charger.pk,
                connector=connector.connector_id,
                segments=tuple(segments),
                tally=uptime.tally(segments),
            )
        )
    return rows


def uptime_totals(rows: list[ConnectorUptime], level: str) -> list[tuple[str, str, uptime.Tally]]:
    """Tallies summed per charger or per site: (site, charger or "", tally)."""
    totals: dict[tuple[str, str], uptime.Tally] = {}
    for row in rows:
        key = (row.site, row.charger if level == "charger" else "")
        totals[key] = totals.get(key, uptime.Tally()) + row.tally
    return [(site, charger, value) for (site, charger), value in totals.items()]
