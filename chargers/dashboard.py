"""Reads that shape the operator dashboard: overview figures, charger states and chart series.

Everything starts from the tenant-scoped selectors, so a figure never counts another
organization's rows (or, for a site host, another site's).

"Today" is the local calendar day of each charger's site, in the site's time zone; chargers
without a site count in UTC. A session counts for the day it started, with all its energy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from cpms.tenancy import Tenant

from . import selectors
from .models import Charger, Connector, ConnectorStatus, Session, SessionState
from .normalize import ENERGY_REGISTER

POWER = "Power.Active.Import"
# Connector statuses that mean a vehicle is plugged in but not drawing energy right now.
OCCUPIED_STATUSES = (
    ConnectorStatus.PREPARING,
    ConnectorStatus.SUSPENDED_EV,
    ConnectorStatus.SUSPENDED_EVSE,
    ConnectorStatus.FINISHING,
    ConnectorStatus.OCCUPIED,
)
OFFLINE = "Offline"
# The order connector statuses are listed in, busiest first; "Offline" stands for every
# connector of a charger that is not connected (its last status is stale).
CONNECTOR_STATUS_ORDER = [
    ConnectorStatus.CHARGING.value,
    *[s.value for s in OCCUPIED_STATUSES],
    ConnectorStatus.AVAILABLE.value,
    ConnectorStatus.RESERVED.value,
    ConnectorStatus.UNAVAILABLE.value,
    ConnectorStatus.FAULTED.value,
    ConnectorStatus.UNKNOWN.value,
    OFFLINE,
]


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_day_start(now: datetime, time_zone: str) -> datetime:
    """Midnight of ``now``'s day in the given zone, as an aware datetime."""
    tz = zone(time_zone)
    return datetime.combine(now.astimezone(tz).date(), time.min, tzinfo=tz)


def started_today(tenant: Tenant, now: datetime) -> Q:
    """Sessions that started on the current local day of their charger's site."""
    condition = Q(charger__site__isnull=True, started_at__gte=local_day_start(now, "UTC"))
    zones = selectors.sites_for(tenant).values_list("time_zone", flat=True).distinct()
    for name in set(zones):
        condition |= Q(charger__site__time_zone=name, started_at__gte=local_day_start(now, name))
    return condition


# --- Charger state -------------------------------------------------------------------------------


def with_fault_flag(chargers: QuerySet[Charger]) -> QuerySet[Charger]:
    faulted = Connector.objects.filter(charger=OuterRef("pk"), status=ConnectorStatus.FAULTED)
    return chargers.annotate(has_fault=Exists(faulted))


def charger_state(charger: Charger, connectors: Iterable[Connector]) -> str:
    """One word for a charger's state, from its connection and its connectors' last statuses."""
    if not charger.connected:
        return OFFLINE
    statuses = {c.status for c in connectors}
    plugs = {c.status for c in connectors if c.connector_id > 0}
    if ConnectorStatus.FAULTED in statuses:
        return ConnectorStatus.FAULTED.value
    if ConnectorStatus.CHARGING in plugs:
        return ConnectorStatus.CHARGING.value
    if plugs & set(OCCUPIED_STATUSES):
        return ConnectorStatus.OCCUPIED.value
    if ConnectorStatus.AVAILABLE in plugs:
        return ConnectorStatus.AVAILABLE.value
    if ConnectorStatus.UNAVAILABLE in statuses:
        return ConnectorStatus.UNAVAILABLE.value
    return "Online"


def filter_by_state(chargers: QuerySet[Charger], state: str) -> QuerySet[Charger]:
    """Chargers in a state as ``charger_state`` names it (the list page's status filter)."""
    connectors = Connector.objects.filter(charger=OuterRef("pk"))
    plugs = connectors.filter(connector_id__gt=0)
    faulted = Exists(connectors.filter(status=ConnectorStatus.FAULTED))
    charging = Exists(plugs.filter(status=ConnectorStatus.CHARGING))
    occupied = Exists(plugs.filter(status__in=OCCUPIED_STATUSES))
    if state == OFFLINE:
        return chargers.filter(connected=False)
    online = chargers.filter(connected=True)
    if state == "Online":
        return online
    if state == ConnectorStatus.FAULTED:
        return online.filter(faulted)
    if state == ConnectorStatus.CHARGING:
        return online.filter(charging).exclude(faulted)
    if state == ConnectorStatus.OCCUPIED:
        return online.filter(occupied).exclude(faulted).exclude(charging)
    available = Exists(plugs.filter(status=ConnectorStatus.AVAILABLE))
    if state == ConnectorStatus.AVAILABLE:
        return online.filter(available).exclude(faulted).exclude(charging).exclude(occupied)
    if state == ConnectorStatus.UNAVAILABLE:
        unavailable = Exists(connectors.filter(status=ConnectorStatus.UNAVAILABLE))
        return (
            online.filter(unavailable)
            .exclude(faulted)
            .exclude(charging)
            .exclude(occupied)
            .exclude(available)
        )
    return chargers.none()


# --- Overview ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overview:
    chargers: int
    online: int
    offline: int
    faulted: int
    active_sessions: int
    sessions_today: int
    energy_today_wh: Decimal
    connector_counts: list[tuple[str, int]]

    @property
    def energy_today_kwh(self) -> Decimal:
        return self.energy_today_wh / 1000


def overview_for(tenant: Tenant, *, now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    chargers = with_fault_flag(selectors.chargers_for(tenant)).aggregate(
        total=Count("pk"),
        online=Count("pk", filter=Q(connected=True)),
        faulted=Count("pk", filter=Q(connected=True, has_fault=True)),
    )
    sessions = selectors.sessions_for(tenant)
    today = sessions.filter(started_today(tenant, now)).aggregate(
        count=Count("pk"), energy=Sum("energy_wh")
    )
    buckets: dict[str, int] = defaultdict(int)
    rows = (
        selectors.connectors_for(tenant)
        .filter(connector_id__gt=0)
        .values_list("status", "charger__connected")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for status, connected, n in rows:
        buckets[status if connected else OFFLINE] += n
    counts = [(status, buckets[status]) for status in CONNECTOR_STATUS_ORDER if buckets.get(status)]
    return Overview(
        chargers=chargers["total"],
        online=chargers["online"],
        offline=chargers["total"] - chargers["online"],
        faulted=chargers["faulted"],
        active_sessions=sessions.filter(state=SessionState.ACTIVE).count(),
        sessions_today=today["count"],
        energy_today_wh=today["energy"] or Decimal(0),
        connector_counts=counts,
    )


# --- Chart series --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionSeries:
    """Points for the session charts: times in epoch seconds, energy in kWh, power in kW."""

    times: list[float]
    energy_kwh: list[float | None]
    power_kw: list[float | None]
    # True when the charger sent no power samples and power is derived from the energy register.
    power_derived: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "times": self.times,
            "energy_kwh": self.energy_kwh,
            "power_kw": self.power_kw,
            "power_derived": self.power_derived,
        }


def session_series(tenant: Tenant, session: Session, *, limit: int = 20000) -> SessionSeries:
    """Energy and power over a session, from its meter samples (total, or summed over phases)."""
    samples = (
        selectors.meter_samples_for(tenant)
        .filter(session=session, measurand__in=[ENERGY_REGISTER, POWER], value__isnull=False)
        .order_by("timestamp", "id")
        .values_list("timestamp", "measurand", "phase", "location", "value")[:limit]
    )
    energy: dict[datetime, dict[str, Decimal]] = defaultdict(dict)
    power: dict[datetime, dict[str, Decimal]] = defaultdict(dict)
    for moment, measurand, phase, location, value in samples:
        if value is None or location not in ("", "Outlet"):
            continue  # EV or inlet readings would double count
        (energy if measurand == ENERGY_REGISTER else power)[moment][phase] = value
    energy_points = {m: _total(by_phase) for m, by_phase in energy.items()}
    power_points = {m: _total(by_phase) for m, by_phase in power.items()}
    derived = not power_points and bool(energy_points)
    if derived:
        power_points = _power_from_energy(energy_points)
    times = sorted(set(energy_points) | set(power_points))
    start = session.meter_start_wh
    return SessionSeries(
        times=[m.timestamp() for m in times],
        energy_kwh=[
            round(float(max(Decimal(0), energy_points[m] - start)) / 1000, 4)
            if m in energy_points
            else None
            for m in times
        ],
        power_kw=[
            round(float(power_points[m]) / 1000, 3) if m in power_points else None for m in times
        ],
        power_derived=derived,
    )


def _total(by_phase: dict[str, Decimal]) -> Decimal:
    """The total reading: the phase-less value if the charger sent one, else the phase sum."""
    if "" in by_phase:
        return by_phase[""]
    # Line-to-neutral and line values both describe the same phase; keep one per phase.
    per_line: dict[str, Decimal] = {}
    for phase, value in by_phase.items():
        per_line.setdefault(phase[:2], value)
    return sum(per_line.values(), Decimal(0))


def _power_from_energy(energy: dict[datetime, Decimal]) -> dict[datetime, Decimal]:
    points: dict[datetime, Decimal] = {}
    previous: tuple[datetime, Decimal] | None = None
    for moment in sorted(energy):
        value = energy[moment]
        if previous is not None:
            seconds = Decimal((moment - previous[0]) / timedelta(seconds=1))
            if seconds > 0:
                points[moment] = max(Decimal(0), (value - previous[1]) * 3600 / seconds)
        previous = (moment, value)
    return points
