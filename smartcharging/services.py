"""Load management: balance a site's capacity between its sessions and send the limits to the
chargers as charging profiles; fail-safe defaults, answers to profiles, measurements and compliance.

The site's picture is loaded once into the engine's frozen dataclasses, allocated without the
database, then written and dispatched. A rebalance holds the site's capacity row locked, so two
triggers of one site never dispatch at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from chargers.alerts import alert_clear, alert_raise
from chargers.command_services import CommandInvalid, CommandRefused, command_create
from chargers.commands import CommandState
from chargers.models import (
    Alert,
    Charger,
    Command,
    Connector,
    EVChargingNeeds,
    Session,
    SessionState,
    Site,
)

from . import engine, limits, profiles
from .models import (
    ChargerLoad,
    Circuit,
    LimitEvent,
    LimitSchedule,
    LimitUnit,
    LoadSnapshot,
    PhaseRotation,
    ProfileViolation,
    SessionLimit,
    SiteCapacity,
)

logger = logging.getLogger(__name__)

SYSTEM = "smartcharging"
ROOT = "site"
ROTATIONS: dict[str, tuple[int, ...]] = {
    PhaseRotation.RST: (0, 1, 2),
    PhaseRotation.STR: (1, 2, 0),
    PhaseRotation.TRS: (2, 0, 1),
    PhaseRotation.L1: (0,),
    PhaseRotation.L2: (1,),
    PhaseRotation.L3: (2,),
}
# A session drawing this much below its limit is taken to want no more (a full or slow EV): the
# engine lends the difference to the others, keeping this much headroom for it to climb back.
LEND_MARGIN_A = 2.0
CENTI = Decimal("0.01")


def _lends(row: SessionLimit) -> bool:
    """A session draws well under its limit, measured after it had time to follow it: its EV
    takes less (full, or slow), and the difference can go to the others."""
    if row.measured_a is None or row.commanded_a is None or row.commanded_at is None:
        return False
    if row.measured_at is None or row.measured_at - row.commanded_at < timedelta(
        seconds=settings.CPMS_SMART_CHARGING_COMPLIANCE_DELAY
    ):
        return False
    return float(row.measured_a) < float(row.commanded_a) - LEND_MARGIN_A


def _decimal(value: float) -> Decimal:
    return Decimal(str(value)).quantize(CENTI, rounding=ROUND_DOWN)


def _node_key(circuit_pk: int | None) -> str:
    return ROOT if circuit_pk is None else f"c{circuit_pk}"


def default_charger_load(charger: Charger) -> ChargerLoad:
    """A charger with no settings of its own: three phases on the grid connection, 6 to 32 A."""
    return ChargerLoad(charger=charger)


# --- Capacity model -------------------------------------------------------------------------------


def grid_limit_a(capacity: SiteCapacity) -> float:
    """The grid connection's limit in amperes per phase."""
    limit = float(capacity.limit)
    if capacity.limit_unit == LimitUnit.KILOWATT:
        return limit * 1000 / (float(capacity.voltage) * capacity.phases)
    return limit


def capacity_set(*, site: Site, data: dict[str, Any]) -> SiteCapacity:
    capacity, _ = SiteCapacity.objects.update_or_create(site=site, defaults=data)
    transaction.on_commit(lambda: _enqueue_site(site.pk, failsafe=True))
    return capacity


def circuit_create(*, site: Site, data: dict[str, Any]) -> Circuit:
    circuit = Circuit.objects.create(site=site, **data)
    transaction.on_commit(lambda: _enqueue_site(site.pk, failsafe=True))
    return circuit


def circuit_update(*, circuit: Circuit, data: dict[str, Any]) -> Circuit:
    for name, value in data.items():
        setattr(circuit, name, value)
    circuit.save()
    site_pk = circuit.site_id
    transaction.on_commit(lambda: _enqueue_site(site_pk, failsafe=True))
    return circuit


def circuit_delete(*, circuit: Circuit) -> None:
    site_pk = circuit.site_id
    circuit.delete()
    transaction.on_commit(lambda: _enqueue_site(site_pk, failsafe=True))


def charger_load_set(*, charger: Charger, data: dict[str, Any]) -> ChargerLoad:
    load, _ = ChargerLoad.objects.update_or_create(charger=charger, defaults=data)
    if charger.site_id is not None:
        site_pk = charger.site_id
        transaction.on_commit(lambda: _enqueue_site(site_pk, failsafe=True))
    return load


def limit_schedule_create(*, site: Site, data: dict[str, Any]) -> LimitSchedule:
    schedule = LimitSchedule.objects.create(site=site, **data)
    transaction.on_commit(lambda: _enqueue_site(site.pk))
    return schedule


def limit_schedule_delete(*, schedule: LimitSchedule) -> None:
    site_pk = schedule.site_id
    schedule.delete()
    transaction.on_commit(lambda: _enqueue_site(site_pk))


def limit_event_create(*, site: Site, data: dict[str, Any], created_by: Any = None) -> LimitEvent:
    event = LimitEvent.objects.create(site=site, created_by=created_by, **data)
    transaction.on_commit(lambda: _enqueue_site(site.pk))
    return event


def limit_event_cancel(*, event: LimitEvent, now: datetime | None = None) -> LimitEvent:
    """End an event now (or drop it when it has not started yet)."""
    now = now or timezone.now()
    if event.cancelled_at is None:
        event.cancelled_at = now
        if event.starts_at < now < event.ends_at:
            event.ends_at = now
        event.save(update_fields=["cancelled_at", "ends_at"])
        site_pk = event.site_id
        transaction.on_commit(lambda: _enqueue_site(site_pk))
    return event


def _enqueue_site(site_pk: int, *, failsafe: bool = False, reason: str = "") -> None:
    from .tasks import rebalance_site, send_failsafe_profiles

    if failsafe:
        send_failsafe_profiles.delay(site_pk)
    rebalance_site.delay(site_pk, reason or "settings")


# --- Loading the picture --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What dispatch needs of a session beside its demand."""

    session_pk: int
    charger_pk: int
    identity: str
    where: int
    transaction_id: str
    version: str
    connected: bool
    rate_unit: str
    phases: tuple[int, ...]
    voltage: float
    commanded_a: float | None
    commanded_at: datetime | None
    measured_a: float | None

    @property
    def unit_factor(self) -> float:
        """Amperes per phase to the charger's rate unit."""
        return self.voltage * len(self.phases) if self.rate_unit == "W" else 1.0


@dataclass(frozen=True, slots=True)
class SitePicture:
    site_pk: int
    managed: bool
    limit: limits.SiteLimit
    problem: engine.Problem
    facts: dict[int, SessionFacts]
    voltage: float
    phases: int


def _windows(site: Site) -> list[limits.Window]:
    return [
        limits.Window(
            weekdays=frozenset(int(day) for day in schedule.weekdays),
            start=schedule.start_time,
            end=schedule.end_time,
            limit_a=float(schedule.limit_a),
        )
        for schedule in site.limit_schedules.all()
    ]


def _priced_windows(site: Site) -> list[tuple[limits.Window, float]]:
    return [
        (
            limits.Window(
                frozenset(int(day) for day in s.weekdays),
                s.start_time,
                s.end_time,
                float(s.limit_a),
            ),
            float(s.price_per_kwh),
        )
        for s in site.limit_schedules.all()
        if s.price_per_kwh is not None
    ]


def site_limit_now(*, site: Site, capacity: SiteCapacity, now: datetime) -> limits.SiteLimit:
    events = [
        limits.Event(e.starts_at, e.ends_at, float(e.limit_a))
        for e in site.limit_events.filter(ends_at__gt=now, cancelled_at__isnull=True)
    ]
    return limits.site_limit_at(
        now,
        grid_a=grid_limit_a(capacity),
        windows=_windows(site),
        events=events,
        time_zone=site.time_zone or "UTC",
    )


def _phases(load: ChargerLoad, site_phases: int) -> tuple[int, ...]:
    if site_phases == 1:
        return (0,)
    return ROTATIONS.get(load.phase_rotation, (0, 1, 2))


def _nodes(
    capacity: SiteCapacity, site_limit_a: float, circuits: list[Circuit]
) -> list[engine.Node]:
    root = (
        (site_limit_a, site_limit_a, site_limit_a)
        if capacity.phases == 3
        else (
            site_limit_a,
            0.0,
            0.0,
        )
    )
    nodes = [engine.Node(ROOT, None, root)]
    for circuit in circuits:
        limit = float(circuit.limit_a)
        nodes.append(engine.Node(_node_key(circuit.pk), _node_key(circuit.parent_id), (limit,) * 3))
    return nodes


def site_picture_load(*, site: Site, now: datetime | None = None) -> SitePicture | None:
    """Everything the engine needs to share the site's capacity now; None for an unmanaged site."""
    now = now or timezone.now()
    capacity = SiteCapacity.objects.filter(site=site).first()
    if capacity is None:
        return None
    limit = site_limit_now(site=site, capacity=capacity, now=now)
    voltage = float(capacity.voltage)
    circuits = list(site.circuits.all())
    nodes = _nodes(capacity, limit.limit_a, circuits)
    sessions = list(
        Session.objects.filter(charger__site=site, state=SessionState.ACTIVE)
        .select_related("charger")
        .order_by("started_at", "pk")
    )
    loads = {
        load.charger_id: load
        for load in ChargerLoad.objects.filter(charger__site=site).select_related("charger")
    }
    existing = {row.session_id: row for row in SessionLimit.objects.filter(session__in=sessions)}
    needs: dict[int, EVChargingNeeds] = {}
    for reported in EVChargingNeeds.objects.filter(session__in=sessions).order_by("received_at"):
        assert reported.session_id is not None
        needs[reported.session_id] = reported
    priced = _priced_windows(site)
    demands: list[engine.Demand] = []
    facts: dict[int, SessionFacts] = {}
    for age, session in enumerate(sessions):
        charger = session.charger
        load = loads.get(charger.pk) or default_charger_load(charger)
        phases = _phases(load, capacity.phases)
        row = existing.get(session.pk)
        max_a = float(load.max_current_a)
        ev_max_a: float | None = None
        measured = float(row.measured_a) if row and row.measured_a is not None else None
        commanded = float(row.commanded_a) if row and row.commanded_a is not None else None
        if row is not None and _lends(row):
            assert measured is not None
            ev_max_a = measured + LEND_MARGIN_A
        needed_a: float | None = None
        need: EVChargingNeeds | None = needs.get(session.pk)
        if need is not None:
            if need.max_current_a is not None:
                ev_max_a = min(ev_max_a or max_a, float(need.max_current_a))
            if need.departure_time and need.energy_amount_wh is not None:
                remaining_wh = float(need.energy_amount_wh) - float(session.energy_wh)
                hours = (need.departure_time - now).total_seconds() / 3600
                if remaining_wh > 0:
                    needed_a = (
                        max_a if hours <= 0 else remaining_wh / (hours * voltage * len(phases))
                    )
                if priced and limits.can_defer(
                    now,
                    departure=need.departure_time,
                    needed_wh=max(remaining_wh, 0.0),
                    max_power_w=max_a * voltage * len(phases),
                    windows=priced,
                    time_zone=site.time_zone or "UTC",
                ):
                    # Cheaper hours ahead deliver it in time: run at the minimum until then.
                    ev_max_a, needed_a = 0.0, None
        circuit_key = _node_key(load.circuit_id) if load.pk else ROOT
        demands.append(
            engine.Demand(
                key=session.pk,
                node=circuit_key,
                phases=phases,
                min_a=float(load.min_current_a),
                max_a=max_a,
                priority=load.priority,
                pause_allowed=load.pause_allowed,
                ev_max_a=ev_max_a,
                needed_a=needed_a,
                controllable=load.profile_rejected_at is None,
                rate_unit=engine.RateUnit(load.rate_unit),
                voltage=voltage,
                age=age,
            )
        )
        facts[session.pk] = SessionFacts(
            session_pk=session.pk,
            charger_pk=charger.pk,
            identity=charger.identity,
            where=session.evse_id or session.connector_number,
            transaction_id=session.transaction_id,
            version=charger.ocpp_version,
            connected=charger.connected,
            rate_unit=load.rate_unit,
            phases=phases,
            voltage=voltage,
            commanded_a=commanded,
            commanded_at=row.commanded_at if row else None,
            measured_a=measured,
        )
    return SitePicture(
        site_pk=site.pk,
        managed=capacity.managed,
        limit=limit,
        problem=engine.Problem(tuple(nodes), tuple(demands)),
        facts=facts,
        voltage=voltage,
        phases=capacity.phases,
    )


# --- Rebalancing and dispatch ---------------------------------------------------------------------


@dataclass
class RebalanceResult:
    site_pk: int
    limit_a: float = 0.0
    allocations: dict[int, engine.Allocation] = field(default_factory=dict)
    sent: list[int] = field(default_factory=list)  # command pks
    deferred: int = 0  # within the threshold or the rate limit
    held: int = 0  # raises waiting for lowered limits to be answered


def _should_send(facts: SessionFacts, new_a: float, now: datetime) -> bool:
    """A lower limit always goes out (the site's safety depends on it); a higher one only when it
    moves by more than the threshold, and not more often than the rate limit allows."""
    if facts.commanded_a is None:
        return True
    if new_a < facts.commanded_a - 0.05:
        return True
    if facts.commanded_at is not None and now - facts.commanded_at >= _refresh_after():
        return True  # its fallback time runs out: send it again
    if new_a - facts.commanded_a <= settings.CPMS_SMART_CHARGING_THRESHOLD_A:
        return False
    if facts.commanded_at is None:
        return True
    return now - facts.commanded_at >= timedelta(seconds=settings.CPMS_SMART_CHARGING_MIN_INTERVAL)


def _fallback_shares(site: Site, capacity: SiteCapacity) -> dict[int, float]:
    """Per charger, the safe share its sessions fall back to when no one refreshes their limit."""
    shares = failsafe_shares(site=site, capacity=capacity)
    loads = {load.charger_id: load for load in ChargerLoad.objects.filter(charger__site=site)}
    return {
        charger_pk: _usable_share(loads.get(charger_pk) or ChargerLoad(), share)
        for charger_pk, share in shares.items()
    }


def _lowers(facts: SessionFacts, allocation: engine.Allocation) -> bool:
    return facts.commanded_a is not None and allocation.limit_a < facts.commanded_a - 0.05


UNANSWERED = (CommandState.REQUESTED, CommandState.QUEUED, CommandState.SENT)


def _profiles_unanswered(site_pk: int, *, exclude: set[int]) -> bool:
    """Whether a transaction profile sent to the site is still waiting for its answer."""
    return (
        SessionLimit.objects.filter(
            site_id=site_pk,
            session__state=SessionState.ACTIVE,
            command__state__in=UNANSWERED,
        )
        .exclude(session_id__in=exclude)
        .exists()
    )


def _raises_waiting(site_pk: int) -> bool:
    return SessionLimit.objects.filter(
        Q(commanded_a__isnull=True, allocated_a__gt=0)
        | Q(allocated_a__gt=F("commanded_a") + Decimal("0.05")),
        site_id=site_pk,
        session__state=SessionState.ACTIVE,
    ).exists()


def _send_profile(
    *, charger_pk: int, version: str, request: profiles.ProfileRequest
) -> Command | None:
    payload = profiles.set_charging_profile(request, version=_version(version))
    try:
        return command_create(
            charger=Charger(pk=charger_pk),
            action="SetChargingProfile",
            payload=payload,
            system=SYSTEM,
        )
    except (CommandRefused, CommandInvalid) as exc:
        logger.info("charger %s: profile not sent: %s", charger_pk, exc)
        return None


def _version(version: str) -> str:
    return "1.6" if version.startswith("1.6") else version


def site_rebalance(*, site_pk: int, now: datetime | None = None) -> RebalanceResult:
    """Share the site's capacity now and send every limit that has to change."""
    now = now or timezone.now()
    result = RebalanceResult(site_pk=site_pk)
    with transaction.atomic():
        # One rebalance of a site at a time: the row lock orders them.
        capacity = SiteCapacity.objects.select_for_update().filter(site_id=site_pk).first()
        if capacity is None or not capacity.managed:
            return result
        site = capacity.site
        picture = site_picture_load(site=site, now=now)
        if picture is None:
            return result
        allocations = engine.allocate(picture.problem)
        result.limit_a = picture.limit.limit_a
        result.allocations = allocations
        existing = {
            row.session_id: row
            for row in SessionLimit.objects.filter(session_id__in=list(picture.facts))
        }
        demands = {demand.key: demand for demand in picture.problem.demands}
        rows: dict[int, SessionLimit] = {}
        wanted: list[int] = []
        for key, allocation in allocations.items():
            facts = picture.facts[key]
            row = existing.get(key) or SessionLimit(session_id=key, site_id=site_pk)
            row.allocated_a = _decimal(allocation.limit_a)
            rows[key] = row
            if demands[key].controllable and facts.connected:
                if _should_send(facts, allocation.limit_a, now):
                    wanted.append(key)
                else:
                    result.deferred += 1
        lowering = [key for key in wanted if _lowers(picture.facts[key], allocations[key])]
        if lowering or _profiles_unanswered(site_pk, exclude=set(wanted)):
            # Lower first: raises wait until every lowered limit is answered, so that the site
            # never carries the new raises on top of the old limits.
            result.held = len(wanted) - len(lowering)
            wanted = lowering
        fallback = _fallback_shares(site, capacity) if wanted else {}
        for key in wanted:
            allocation, facts, row = allocations[key], picture.facts[key], rows[key]
            command = _send_profile(
                charger_pk=facts.charger_pk,
                version=facts.version,
                request=profiles.ProfileRequest(
                    purpose=profiles.TX,
                    where=facts.where,
                    limit=allocation.limit,
                    rate_unit=allocation.rate_unit.value,
                    number_phases=allocation.number_phases,
                    transaction_id=facts.transaction_id,
                    fallback_limit=fallback.get(facts.charger_pk, 0.0) * facts.unit_factor,
                    fallback_after=settings.CPMS_SMART_CHARGING_FAILSAFE_AFTER,
                    start=_iso(now),
                ),
            )
            if command is not None:
                row.commanded_a = _decimal(allocation.limit_a)
                row.commanded_at = now
                row.command = command
                row.accepted = None
                result.sent.append(command.pk)
        for row in rows.values():
            row.save()
        _snapshot(site_pk, picture, allocations, now)
    return result


def _snapshot(
    site_pk: int,
    picture: SitePicture,
    allocations: dict[int, engine.Allocation],
    now: datetime,
) -> LoadSnapshot:
    allocated = [0.0, 0.0, 0.0]
    measured = [0.0, 0.0, 0.0]
    for demand in picture.problem.demands:
        facts = picture.facts[demand.key]
        for phase in set(demand.phases):
            allocated[phase] += allocations[demand.key].limit_a
            measured[phase] += facts.measured_a or 0.0
    return LoadSnapshot.objects.create(
        site_id=site_pk,
        at=now,
        capacity_a=_decimal(picture.limit.limit_a),
        allocated_a=[round(v, 2) for v in allocated],
        measured_a=[round(v, 2) for v in measured],
        sessions=len(picture.problem.demands),
    )


def managed_sites_rebalance(*, now: datetime | None = None) -> int:
    """The periodic run: every managed site, so schedule and event edges and deferred raises
    are picked up in between the event triggers."""
    count = 0
    for site_pk in SiteCapacity.objects.filter(managed=True).values_list("site_id", flat=True):
        site_failsafe_send(site_pk=site_pk)
        site_rebalance(site_pk=site_pk, now=now)
        count += 1
    return count


# --- Fail-safe default profiles -------------------------------------------------------------------


def _outlets(charger_pk: int) -> list[int]:
    """The connectors (1.6) or EVSEs (2.x) of a charger that a session can use."""
    rows = Connector.objects.filter(charger_id=charger_pk, connector_id__gt=0).values_list(
        "evse_id", "connector_id"
    )
    places = sorted({evse or connector for evse, connector in rows})
    return places or [1]


def failsafe_shares(*, site: Site, capacity: SiteCapacity) -> dict[int, float]:
    """Per charger of the site, the per-phase current each of its outlets may draw when the
    central system is gone: a share of every circuit above it, with all outlets drawing it at
    once. Computed against the lowest limit the schedules ever set."""
    grid = grid_limit_a(capacity)
    lowest = min([grid, *(w.limit_a for w in _windows(site))])
    nodes = _nodes(capacity, lowest, list(site.circuits.all()))
    loads = {load.charger_id: load for load in ChargerLoad.objects.filter(charger__site=site)}
    outlets: list[tuple[int, str, tuple[int, ...]]] = []
    owners: dict[int, int] = {}
    for charger in Charger.objects.filter(site=site).order_by("pk"):
        load = loads.get(charger.pk) or default_charger_load(charger)
        for _place in _outlets(charger.pk):
            key = len(outlets)
            outlets.append(
                (
                    key,
                    _node_key(load.circuit_id if load.pk else None),
                    _phases(load, capacity.phases),
                )
            )
            owners[key] = charger.pk
    shares = engine.safe_shares(nodes, outlets)
    per_charger: dict[int, float] = {}
    for key, share in shares.items():
        charger_pk = owners[key]
        per_charger[charger_pk] = min(per_charger.get(charger_pk, share), share)
    return per_charger


def charger_failsafe_send(*, charger: Charger, force: bool = False) -> list[Command]:
    """Send a charger on a managed site its default profile (a safe share for sessions that
    start with no one steering them) and its maximum; only when they change unless ``force``."""
    if charger.site_id is None or not charger.connected or not charger.ocpp_version:
        return []
    capacity = SiteCapacity.objects.filter(site_id=charger.site_id, managed=True).first()
    if capacity is None:
        return []
    shares = failsafe_shares(site=capacity.site, capacity=capacity)
    load = ChargerLoad.objects.filter(charger=charger).first()
    if load is None:
        load = ChargerLoad.objects.create(charger=charger)
    share = _usable_share(load, shares.get(charger.pk, 0.0))
    now = timezone.now()
    if (
        not force
        and load.failsafe_limit_a is not None
        and abs(float(load.failsafe_limit_a) - share) < 0.05
        and load.failsafe_accepted_at is not None
        and load.failsafe_sent_at is not None
        and now - load.failsafe_sent_at < _refresh_after()
    ):
        return []
    phases = _phases(load, capacity.phases)
    voltage = float(capacity.voltage)
    factor = voltage * len(phases) if load.rate_unit == "W" else 1.0
    sent: list[Command] = []
    outlets = len(_outlets(charger.pk))
    circuit_a = float(load.circuit.limit_a) if load.circuit else grid_limit_a(capacity)
    charger_max = min(float(load.max_current_a) * outlets, circuit_a)
    # While the central system runs, a new session waits at 0 A (or the charger's minimum
    # when it may not pause) for its own limit, so that arrivals never push the site over; if the
    # central system goes away, the default falls back to the safe share.
    waiting = 0.0 if load.pause_allowed else float(load.min_current_a)
    for request in (
        profiles.ProfileRequest(
            profiles.TX_DEFAULT,
            0,
            round(min(waiting, share) * factor, 1),
            load.rate_unit,
            len(phases),
            fallback_limit=round(share * factor, 1),
            fallback_after=settings.CPMS_SMART_CHARGING_FAILSAFE_AFTER,
            start=_iso(now),
        ),
        profiles.ProfileRequest(
            profiles.CHARGER_MAX, 0, round(charger_max * factor, 1), load.rate_unit, len(phases)
        ),
    ):
        command = _send_profile(
            charger_pk=charger.pk, version=charger.ocpp_version, request=request
        )
        if command is not None:
            sent.append(command)
    if sent:
        load.failsafe_limit_a = Decimal(str(share))
        load.failsafe_sent_at = now
        load.failsafe_accepted_at = None
        load.save(update_fields=["failsafe_limit_a", "failsafe_sent_at", "failsafe_accepted_at"])
    return sent


def _usable_share(load: ChargerLoad, share: float) -> float:
    """A safe share the charger can run at: below its minimum it pauses when it may."""
    if share < float(load.min_current_a):
        share = 0.0 if load.pause_allowed else float(load.min_current_a)
    return min(share, float(load.max_current_a))


def _refresh_after() -> timedelta:
    """Profiles with a fallback are sent again after half their fallback time."""
    return timedelta(seconds=settings.CPMS_SMART_CHARGING_FAILSAFE_AFTER / 2)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def site_failsafe_send(*, site_pk: int) -> int:
    count = 0
    for charger in Charger.objects.filter(site_id=site_pk, connected=True):
        count += len(charger_failsafe_send(charger=charger))
    return count


# --- Answers, measurements and compliance ---------------------------------------------------------


REJECTED_STATES = {CommandState.REJECTED, CommandState.ERROR}


def profile_command_answered(*, command_pk: int) -> None:
    """A profile command of ours was answered: mark a charger that refuses profiles (it is then
    counted at its maximum), note an accepted one, and verify a transaction's limit with
    GetCompositeSchedule."""
    command = Command.objects.select_related("charger").filter(pk=command_pk).first()
    if command is None or command.system != SYSTEM:
        return
    charger = command.charger
    if command.action == "SetChargingProfile":
        profile = command.payload.get("csChargingProfiles") or command.payload.get(
            "chargingProfile", {}
        )
        purpose = profile.get("chargingProfilePurpose", "")
        accepted = command.state == CommandState.ACCEPTED
        SessionLimit.objects.filter(command=command).update(accepted=accepted)
        if (
            purpose == profiles.TX
            and charger.site_id
            and not _profiles_unanswered(charger.site_id, exclude=set())
            and _raises_waiting(charger.site_id)
        ):
            # The lowered limits are answered: the raises held for them can go.
            _enqueue_site(charger.site_id, reason="raises held")
        if accepted:
            updated = ChargerLoad.objects.filter(
                charger=charger, profile_rejected_at__isnull=False
            ).update(profile_rejected_at=None, profile_rejected_reason="")
            if purpose != profiles.TX:
                ChargerLoad.objects.filter(charger=charger).update(
                    failsafe_accepted_at=timezone.now()
                )
            if updated:
                alert_clear(charger=charger, kind=Alert.Kind.PROFILE_REJECTED)
                if charger.site_id:
                    _enqueue_site(charger.site_id, reason="profile accepted")
            if purpose == profiles.TX:
                where = command.payload.get("connectorId", command.payload.get("evseId", 0))
                try:
                    command_create(
                        charger=charger,
                        action="GetCompositeSchedule",
                        payload=profiles.get_composite_schedule(
                            where, version=_version(command.ocpp_version)
                        ),
                        system=SYSTEM,
                    )
                except (CommandRefused, CommandInvalid) as exc:
                    logger.info("%s: composite schedule not asked: %s", charger.identity, exc)
        elif command.state in REJECTED_STATES:
            if purpose == profiles.TX:
                still_running = SessionLimit.objects.filter(
                    command=command, session__state=SessionState.ACTIVE
                ).exists()
                if not still_running:
                    return
            reason = f"{purpose or 'profile'} {command.state}"
            if command.error_code:
                reason += f": {command.error_code}"
            ChargerLoad.objects.update_or_create(
                charger=charger,
                defaults={
                    "profile_rejected_at": timezone.now(),
                    "profile_rejected_reason": reason[:200],
                },
            )
            alert_raise(
                charger=charger,
                kind=Alert.Kind.PROFILE_REJECTED,
                message=f"{charger.identity} refused its charging profile ({reason}); its "
                "sessions are counted at their maximum until it accepts one.",
                details={"command": command.pk, "purpose": purpose, "state": command.state},
            )
            if charger.site_id:
                _enqueue_site(charger.site_id, reason="profile rejected")
    elif command.action == "GetCompositeSchedule" and command.state == CommandState.ACCEPTED:
        where = command.payload.get("connectorId", command.payload.get("evseId", 0))
        row = (
            SessionLimit.objects.filter(
                session__charger=charger, session__state=SessionState.ACTIVE
            )
            .filter(Q(session__evse_id=where) | Q(session__connector_number=where))
            .select_related("site__capacity")
            .first()
        )
        if row is None or not command.response:
            return
        voltage = float(row.site.capacity.voltage) if hasattr(row.site, "capacity") else 230.0
        limit = profiles.composite_limit_a(command.response, voltage=voltage, phases=3)
        if limit is not None:
            row.verified_a = _decimal(limit)
            row.verified_at = timezone.now()
            row.save(update_fields=["verified_a", "verified_at", "updated_at"])


def measured_current(samples: list[dict[str, Any]]) -> float | None:
    """The highest phase current among a meter event's samples, None when it has none."""
    values = []
    for sample in samples:
        if sample.get("measurand") == "Current.Import" and sample.get("value") is not None:
            try:
                values.append(float(sample["value"]))
            except (TypeError, ValueError):
                continue
    return max(values) if values else None


@dataclass(frozen=True, slots=True)
class MeasuredResult:
    changed_picture: bool
    violation: ProfileViolation | None


def session_measured(
    *, session_pk: int, measured_a: float, now: datetime | None = None
) -> MeasuredResult:
    """Record what a session draws; check it against its commanded limit (after the grace
    delay, with the tolerance), and tell whether the site's picture changed: a session that now
    draws well under its limit lends, one that climbs back wants its share again."""
    now = now or timezone.now()
    row = (
        SessionLimit.objects.filter(session_id=session_pk)
        .select_related("session__charger")
        .first()
    )
    if row is None:
        return MeasuredResult(False, None)
    lending_before = _lends(row)
    row.measured_a = _decimal(measured_a)
    row.measured_at = now
    lending_now = _lends(row)
    row.save(update_fields=["measured_a", "measured_at", "updated_at"])
    violation = _compliance_check(row, measured_a, now)
    return MeasuredResult(lending_before != lending_now, violation)


def _compliance_check(
    row: SessionLimit, measured_a: float, now: datetime
) -> ProfileViolation | None:
    session = row.session
    if row.commanded_a is None or row.commanded_at is None:
        return None
    delay = timedelta(seconds=settings.CPMS_SMART_CHARGING_COMPLIANCE_DELAY)
    over = measured_a > float(row.commanded_a) + settings.CPMS_SMART_CHARGING_TOLERANCE_A
    open_violation = ProfileViolation.objects.filter(
        charger_id=session.charger_id, session=session, resolved_at__isnull=True
    ).first()
    if not over:
        if open_violation is not None:
            open_violation.resolved_at = now
            open_violation.save(update_fields=["resolved_at"])
            alert_clear(
                charger=session.charger,
                kind=Alert.Kind.PROFILE_IGNORED,
                connector_id=session.connector_number,
                at=now,
            )
        return None
    if now - row.commanded_at < delay:
        return None  # the charger still has time to follow its new limit
    if open_violation is not None:
        open_violation.measured_a = _decimal(measured_a)
        open_violation.commanded_a = row.commanded_a
        open_violation.last_seen_at = now
        open_violation.save(update_fields=["measured_a", "commanded_a", "last_seen_at"])
        violation = open_violation
    else:
        violation = ProfileViolation.objects.create(
            charger_id=session.charger_id,
            session=session,
            commanded_a=row.commanded_a,
            measured_a=_decimal(measured_a),
            started_at=now,
            last_seen_at=now,
        )
    alert_raise(
        charger=session.charger,
        kind=Alert.Kind.PROFILE_IGNORED,
        connector_id=session.connector_number,
        message=f"Draws {measured_a:.1f} A against its {float(row.commanded_a):.1f} A limit.",
        fault_at=violation.started_at,
        details={
            "session": session.pk,
            "commanded_a": str(row.commanded_a),
            "measured_a": f"{measured_a:.2f}",
        },
    )
    return violation


def session_limit_release(*, session_pk: int) -> None:
    """A session ended: its open violation ends with it."""
    for violation in ProfileViolation.objects.filter(
        session_id=session_pk, resolved_at__isnull=True
    ).select_related("charger", "session"):
        violation.resolved_at = timezone.now()
        violation.save(update_fields=["resolved_at"])
        alert_clear(
            charger=violation.charger,
            kind=Alert.Kind.PROFILE_IGNORED,
            connector_id=violation.session.connector_number if violation.session else None,
        )
