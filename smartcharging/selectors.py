"""Reads of load management, always through a tenant: a site host sees only their sites."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from chargers import selectors as charger_selectors
from chargers.models import Charger, Session, SessionState, Site
from cpms.tenancy import Tenant

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


def sites_for(tenant: Tenant) -> QuerySet[Site]:
    return charger_selectors.sites_for(tenant)


def circuits_for(tenant: Tenant, site: Site) -> QuerySet[Circuit]:
    return Circuit.objects.filter(site__in=sites_for(tenant), site=site)


def limit_events_for(tenant: Tenant, site: Site) -> QuerySet[LimitEvent]:
    return LimitEvent.objects.filter(site__in=sites_for(tenant), site=site)


def limit_schedules_for(tenant: Tenant, site: Site) -> QuerySet[LimitSchedule]:
    return LimitSchedule.objects.filter(site__in=sites_for(tenant), site=site)


def site_chargers(tenant: Tenant, site: Site) -> QuerySet[Charger]:
    return charger_selectors.chargers_for(tenant).filter(site=site).order_by("identity")


@dataclass(frozen=True, slots=True)
class SessionLoad:
    session: int
    charger: str
    connector: int
    started_at: datetime
    allocated_a: float
    commanded_a: float | None
    measured_a: float | None
    verified_a: float | None
    accepted: bool | None
    ignoring_profile: bool


@dataclass(frozen=True, slots=True)
class SiteLoad:
    site: int
    managed: bool
    phases: int
    grid_limit_a: float
    limit_a: float
    limit_source: str
    next_change: datetime | None
    allocated_a: list[float]
    measured_a: list[float]
    sessions: list[SessionLoad]
    history: list[dict[str, Any]]
    chargers_refusing_profiles: list[str]

    @property
    def peak_allocated_a(self) -> float:
        return max(self.allocated_a)

    @property
    def peak_measured_a(self) -> float:
        return max(self.measured_a)


def site_load(*, site: Site, minutes: int = 60, now: datetime | None = None) -> SiteLoad | None:
    """The live picture of a site: its limit now, each session's allocated, commanded and
    measured current, per-phase totals and the recent history for the chart."""
    from .services import grid_limit_a, site_limit_now

    now = now or timezone.now()
    capacity = SiteCapacity.objects.filter(site=site).first()
    if capacity is None:
        return None
    limit = site_limit_now(site=site, capacity=capacity, now=now)
    rows = list(
        SessionLimit.objects.filter(site=site, session__state=SessionState.ACTIVE)
        .select_related("session__charger")
        .order_by("session__started_at", "session_id")
    )
    active = Session.objects.filter(charger__site=site, state=SessionState.ACTIVE)
    violating = set(
        ProfileViolation.objects.filter(session__in=active, resolved_at__isnull=True).values_list(
            "session_id", flat=True
        )
    )
    sessions = [
        SessionLoad(
            session=row.session_id,
            charger=row.session.charger.identity,
            connector=row.session.evse_id or row.session.connector_number,
            started_at=row.session.started_at,
            allocated_a=float(row.allocated_a),
            commanded_a=float(row.commanded_a) if row.commanded_a is not None else None,
            measured_a=float(row.measured_a) if row.measured_a is not None else None,
            verified_a=float(row.verified_a) if row.verified_a is not None else None,
            accepted=row.accepted,
            ignoring_profile=row.session_id in violating,
        )
        for row in rows
    ]
    snapshots = list(
        LoadSnapshot.objects.filter(site=site, at__gte=now - timedelta(minutes=minutes)).order_by(
            "at"
        )
    )
    latest = snapshots[-1] if snapshots else None
    refusing = list(
        ChargerLoad.objects.filter(charger__site=site, profile_rejected_at__isnull=False)
        .order_by("charger__identity")
        .values_list("charger__identity", flat=True)
    )
    return SiteLoad(
        site=site.pk,
        managed=capacity.managed,
        phases=capacity.phases,
        grid_limit_a=round(grid_limit_a(capacity), 2),
        limit_a=round(limit.limit_a, 2),
        limit_source=limit.source,
        next_change=limit.next_change,
        allocated_a=[float(v) for v in latest.allocated_a] if latest else [0.0, 0.0, 0.0],
        measured_a=[float(v) for v in latest.measured_a] if latest else [0.0, 0.0, 0.0],
        sessions=sessions,
        history=[
            {
                "at": s.at,
                "capacity_a": float(s.capacity_a),
                "allocated_a": max(float(v) for v in s.allocated_a),
                "measured_a": max(float(v) for v in s.measured_a),
            }
            for s in snapshots
        ],
        chargers_refusing_profiles=refusing,
    )


def circuit_tree(site: Site) -> list[dict[str, Any]]:
    """The site's circuits as nested dicts with the chargers on each, from the grid connection."""
    circuits = list(Circuit.objects.filter(site=site).order_by("name"))
    loads = list(
        ChargerLoad.objects.filter(charger__site=site)
        .select_related("charger")
        .order_by("charger__identity")
    )
    on_circuit: dict[int | None, list[ChargerLoad]] = {}
    for load in loads:
        on_circuit.setdefault(load.circuit_id, []).append(load)
    listed = {load.charger_id for load in loads}
    bare = [
        ChargerLoad(charger=charger)
        for charger in Charger.objects.filter(site=site).order_by("identity")
        if charger.pk not in listed
    ]
    on_circuit.setdefault(None, []).extend(bare)
    children: dict[int | None, list[Circuit]] = {}
    for circuit in circuits:
        children.setdefault(circuit.parent_id, []).append(circuit)

    def node(circuit: Circuit | None, depth: int) -> dict[str, Any]:
        key = circuit.pk if circuit else None
        return {
            "circuit": circuit,
            "depth": depth,
            "chargers": on_circuit.get(key, []),
            "children": [node(child, depth + 1) for child in children.get(key, [])],
        }

    return [node(None, 0)]
