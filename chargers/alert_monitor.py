"""The alert rules: what the domain events and the periodic check raise and clear.

Receivers run after commit in the thread that committed (often a gateway's database thread), so
each does at most a few indexed queries through ``chargers.alerts``; the meter check keeps the
last energy register per session in memory and touches the database only when one goes back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import Max, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import events
from .alert_rules import (
    ACTIVE,
    OFFLINE,
    AlertPolicy,
    error_severity,
    is_boot_loop,
    is_error_code,
    meter_went_backwards,
)
from .alerts import alert_clear, alert_policy, alert_raise, alerts_check
from .events import DomainEvent, handle_each
from .models import (
    Alert,
    AlertCondition,
    Charger,
    ChargerEvent,
    Connector,
    ConnectorStatus,
    Session,
    SessionState,
)
from .normalize import ENERGY_REGISTER

CONNECTOR_FAULTED = Alert.Kind.CONNECTOR_FAULTED.value
CHARGER_ERROR = Alert.Kind.CHARGER_ERROR.value
BOOT_LOOP = Alert.Kind.BOOT_LOOP.value
SILENT_SESSION = Alert.Kind.SILENT_SESSION.value
METER_BACKWARDS = Alert.Kind.METER_BACKWARDS.value


def _charger(identity: str) -> Charger | None:
    return (
        Charger.objects.only("pk", "identity", "organization_id", "connected", "last_seen")
        .filter(identity=identity)
        .first()
    )


# Per thread, while a batch of events is handled: chargers known to have no active alert and no
# pending condition of any kind, so that a check for something to clear needs no query.
_batch = threading.local()


def _known_clear(identity: str) -> bool:
    clear: set[str] | None = getattr(_batch, "clear", None)
    return clear is not None and identity in clear


def _clear_among(identities: set[str]) -> set[str]:
    """Those of the chargers with no active alert and no pending condition: two queries."""
    busy = set(
        Alert.objects.filter(state__in=ACTIVE, charger__identity__in=identities).values_list(
            "charger__identity", flat=True
        )
    )
    busy.update(
        AlertCondition.objects.filter(charger__identity__in=identities).values_list(
            "charger__identity", flat=True
        )
    )
    return identities - busy


def _anything_to_clear(identity: str, kinds: list[str], connector_id: int | None = None) -> bool:
    """Whether an alert or a pending condition of these kinds exists to clear: two indexed
    reads, so that the common case (a healthy status, a reconnect) writes nothing."""
    if _known_clear(identity):
        return False
    scope: dict[str, Any] = {"charger__identity": identity, "kind__in": kinds}
    if connector_id is not None:
        scope["connector_id"] = connector_id
    return (
        Alert.objects.filter(state__in=ACTIVE, **scope).exists()
        or AlertCondition.objects.filter(**scope).exists()
    )


def _moment(value: Any, now: datetime) -> datetime:
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None:
        return now
    return min(parsed, now)


# --- Connection --------------------------------------------------------------------------------


def on_disconnected(*, identity: str, data: dict[str, Any]) -> None:
    charger = _charger(identity)
    if charger is None:
        return
    now = timezone.now()
    reason = data.get("reason")
    if reason == "silent":
        # Marked offline by the stale-connection sweep: the outage began with the last frame.
        fault_at = charger.last_seen or now
        message = "No frame from the charger; its connection was given up"
    else:
        fault_at = now
        message = "The charger's connection closed"
    alert_raise(
        charger=charger,
        kind=OFFLINE,
        severity="critical",
        message=message,
        fault_at=fault_at,
        details={"close_code": data.get("close_code"), "reason": reason or "closed"},
    )


def on_connected(*, identity: str, data: dict[str, Any]) -> None:
    if not _anything_to_clear(identity, [OFFLINE]):
        return
    charger = _charger(identity)
    if charger is not None:
        alert_clear(charger=charger, kind=OFFLINE)


def on_booted(*, identity: str, data: dict[str, Any]) -> None:
    charger = _charger(identity)
    if charger is None:
        return
    policy = alert_policy()
    now = timezone.now()
    boots = list(
        ChargerEvent.objects.filter(
            charger_id=charger.pk,
            kind=ChargerEvent.Kind.BOOT,
            timestamp__gte=now - policy.boot_loop_window,
        )
        .order_by("timestamp")
        .values_list("timestamp", flat=True)
    )
    _boot_loop_check(charger, boots, now=now, policy=policy)


def _boot_loop_check(
    charger: Charger, boots: list[datetime], *, now: datetime, policy: AlertPolicy
) -> None:
    """``boots``: the charger's boots since the window that ends ``now`` began, in order."""
    if is_boot_loop(boots, now=now, count=policy.boot_loop_count, window=policy.boot_loop_window):
        minutes = int(policy.boot_loop_window.total_seconds() // 60)
        alert_raise(
            charger=charger,
            kind=BOOT_LOOP,
            severity="major",
            message=f"{len(boots)} boots within {minutes} min",
            fault_at=boots[0],
            details={
                "boots": len(boots),
                "window_seconds": policy.boot_loop_window.total_seconds(),
            },
        )


@dataclass(frozen=True, slots=True)
class RecentBoots:
    """What the boot-loop checks of a transaction's boots read, read for all of them at once:
    the chargers, and their boots since the window of the first check began (by charger pk, in
    order). No handler of the transaction's events changes either."""

    chargers: dict[str, Charger]
    boots: dict[int, list[datetime]]


def _recent_boots(identities: set[str], *, since: datetime) -> RecentBoots:
    chargers = {
        charger.identity: charger
        for charger in Charger.objects.only(
            "pk", "identity", "organization_id", "connected", "last_seen"
        ).filter(identity__in=identities)
    }
    boots: dict[int, list[datetime]] = {charger.pk: [] for charger in chargers.values()}
    for charger_pk, timestamp in (
        ChargerEvent.objects.filter(
            charger_id__in=list(boots), kind=ChargerEvent.Kind.BOOT, timestamp__gte=since
        )
        .order_by("timestamp")
        .values_list("charger_id", "timestamp")
    ):
        boots[charger_pk].append(timestamp)
    return RecentBoots(chargers, boots)


def _on_booted_among(recent: RecentBoots, identity: str) -> None:
    """``on_booted`` with what it reads read beforehand."""
    charger = recent.chargers.get(identity)
    if charger is None:
        return
    policy = alert_policy()
    now = timezone.now()
    start = now - policy.boot_loop_window
    boots = [at for at in recent.boots[charger.pk] if at >= start]
    _boot_loop_check(charger, boots, now=now, policy=policy)


# --- Connector status and error codes ---------------------------------------------------------


def on_connector_status(*, identity: str, data: dict[str, Any]) -> None:
    number = int(data.get("connector") or 0)
    status = str(data.get("status") or "")
    error_code = str(data.get("error_code") or "")
    healthy = status != ConnectorStatus.FAULTED and not is_error_code(error_code)
    if healthy and not _anything_to_clear(identity, [CONNECTOR_FAULTED, CHARGER_ERROR], number):
        return
    charger = _charger(identity)
    if charger is None:
        return
    now = timezone.now()
    at = _moment(data.get("timestamp"), now)
    connector = (
        Connector.objects.filter(charger_id=charger.pk, connector_id=number)
        .only("vendor_error_code", "info")
        .first()
    )
    vendor_error = connector.vendor_error_code if connector is not None else ""
    info = connector.info if connector is not None else ""
    where = f"Connector {number}" if number else "The charger"
    if status == ConnectorStatus.FAULTED:
        alert_raise(
            charger=charger,
            kind=CONNECTOR_FAULTED,
            connector_id=number,
            severity="major",
            message=f"{where} is faulted"
            + (f" ({error_code})" if is_error_code(error_code) else ""),
            fault_at=at,
            details={"error_code": error_code, "vendor_error_code": vendor_error, "info": info},
        )
    else:
        alert_clear(charger=charger, kind=CONNECTOR_FAULTED, connector_id=number, at=at)
    if is_error_code(error_code):
        alert_raise(
            charger=charger,
            kind=CHARGER_ERROR,
            connector_id=number,
            severity=error_severity(error_code),
            message=f"{where} reports {error_code}"
            + (f" (vendor code {vendor_error})" if vendor_error else ""),
            fault_at=at,
            details={"error_code": error_code, "vendor_error_code": vendor_error, "info": info},
        )
    else:
        alert_clear(charger=charger, kind=CHARGER_ERROR, connector_id=number, at=at)


def on_charger_event(*, identity: str, data: dict[str, Any]) -> None:
    """OCPP 2.x reports problems as NotifyEvent on a component's Problem variable (with a
    techCode); ``cleared`` or a false value ends it."""
    event_pk = data.get("event_pk")
    if data.get("kind") != ChargerEvent.Kind.DEVICE_EVENT or not isinstance(event_pk, int):
        return
    record = ChargerEvent.objects.filter(pk=event_pk).only("detail", "timestamp").first()
    if record is None:
        return
    detail = record.detail or {}
    variable = (detail.get("variable") or {}).get("name")
    if variable != "Problem":
        return
    charger = _charger(identity)
    if charger is None:
        return
    component = detail.get("component") or {}
    evse = component.get("evse") or {}
    number = int(evse.get("connectorId") or evse.get("id") or 0)
    cleared = bool(detail.get("cleared")) or str(detail.get("actualValue")).lower() != "true"
    if cleared:
        alert_clear(charger=charger, kind=CHARGER_ERROR, connector_id=number, at=record.timestamp)
        return
    code = str(
        detail.get("techCode") or detail.get("techInfo") or component.get("name") or "Problem"
    )
    alert_raise(
        charger=charger,
        kind=CHARGER_ERROR,
        connector_id=number,
        severity="major" if detail.get("trigger") == "Alerting" else "warning",
        message=f"{component.get('name', 'A component')} reports a problem: {code}",
        fault_at=record.timestamp,
        details={"error_code": code, "component": component, "event_id": detail.get("eventId")},
    )


# --- Sessions and meters -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Register:
    timestamp: datetime
    value: Decimal


class RegisterMemory:
    """The last energy register reading per session, bounded (oldest sessions forgotten)."""

    def __init__(self, limit: int = 50_000):
        self._limit = limit
        self._readings: OrderedDict[int, Register] = OrderedDict()
        self._lock = threading.Lock()

    def swap(self, session: int, reading: Register) -> Register | None:
        """Remember ``reading`` if it is the newest, and return the reading it follows."""
        with self._lock:
            previous = self._readings.get(session)
            if previous is not None and reading.timestamp <= previous.timestamp:
                return None  # a replayed or reordered sample says nothing about direction
            self._readings[session] = reading
            self._readings.move_to_end(session)
            while len(self._readings) > self._limit:
                self._readings.popitem(last=False)
            return previous

    def forget(self, session: int) -> None:
        with self._lock:
            self._readings.pop(session, None)


registers = RegisterMemory()


def _register_reading(samples: list[dict[str, Any]]) -> Register | None:
    latest: Register | None = None
    for sample in samples:
        if sample.get("measurand") != ENERGY_REGISTER or sample.get("phase"):
            continue
        try:
            value = Decimal(str(sample.get("value")))
        except (InvalidOperation, ValueError):
            continue
        at = parse_datetime(str(sample.get("timestamp") or ""))
        if at is None or at.tzinfo is None or not value.is_finite():
            continue
        if latest is None or at > latest.timestamp:
            latest = Register(timestamp=at, value=value)
    return latest


def on_session_meter(*, identity: str, data: dict[str, Any]) -> None:
    session = data.get("session")
    reading = _register_reading(data.get("samples") or [])
    if not isinstance(session, int) or reading is None:
        return
    previous = registers.swap(session, reading)
    if previous is None or not meter_went_backwards(previous.value, reading.value):
        return
    charger = _charger(identity)
    if charger is None:
        return
    number = int(data.get("connector") or 0)
    alert_raise(
        charger=charger,
        kind=METER_BACKWARDS,
        connector_id=number,
        severity="major",
        message=(
            f"Energy register went back from {previous.value} Wh to {reading.value} Wh "
            f"in transaction {data.get('transaction_id')}"
        ),
        fault_at=reading.timestamp,
        details={
            "session": session,
            "transaction_id": data.get("transaction_id"),
            "previous_wh": str(previous.value),
            "previous_at": previous.timestamp.isoformat(),
            "current_wh": str(reading.value),
            "current_at": reading.timestamp.isoformat(),
        },
    )


def on_session_ended(*, identity: str, data: dict[str, Any]) -> None:
    session = data.get("session")
    if isinstance(session, int):
        registers.forget(session)
    number = int(data.get("connector") or 0)
    if not _anything_to_clear(identity, [SILENT_SESSION], number):
        return
    charger = _charger(identity)
    if charger is not None:
        alert_clear(charger=charger, kind=SILENT_SESSION, connector_id=number)


_HANDLERS = {
    "charger.connected": on_connected,
    "charger.disconnected": on_disconnected,
    "charger.booted": on_booted,
    "charger.event": on_charger_event,
    "connector.status": on_connector_status,
    "session.meter": on_session_meter,
    "session.ended": on_session_ended,
}


# The handlers that only clear, and only after a check that finds something to clear: for a
# charger with nothing active they read nothing and write nothing.
_CLEAR_ONLY = {"charger.connected", "session.ended"}


def receive(sender: str, *, charger: str, data: dict[str, Any], **_: Any) -> None:
    handler = _HANDLERS.get(sender)
    if handler is not None:
        handler(identity=charger, data=data)


def receive_many(*, events: list[events.DomainEvent], **_: Any) -> None:
    """A transaction's events in order. The chargers among them with nothing active are found in
    two queries first; a healthy status or a reconnect of one of those then needs none. A handler
    that may raise something takes its charger off that list for the events after it. The boot-
    loop checks of several boots read their chargers and recent boots in two queries first."""
    handled = [event for event in events if event.kind in _HANDLERS]
    if not handled:
        return
    booted = [event.charger for event in handled if event.kind == "charger.booted"]
    recent = (
        _recent_boots(set(booted), since=timezone.now() - alert_policy().boot_loop_window)
        if len(booted) > 1
        else None
    )
    _batch.clear = _clear_among({event.charger for event in handled}) if len(handled) > 1 else set()

    def handle(event: DomainEvent) -> None:
        try:
            if recent is not None and event.kind == "charger.booted":
                _on_booted_among(recent, event.charger)
            else:
                _HANDLERS[event.kind](identity=event.charger, data=event.data)
        finally:
            if event.kind not in _CLEAR_ONLY and not _healthy_status(event):
                _batch.clear.discard(event.charger)

    try:
        # One event's handler that fails is logged; the others are still handled.
        handle_each(handled, handle)
    finally:
        _batch.clear = None


def _healthy_status(event: events.DomainEvent) -> bool:
    if event.kind != "connector.status":
        return False
    status = str(event.data.get("status") or "")
    return status != ConnectorStatus.FAULTED and not is_error_code(
        str(event.data.get("error_code") or "")
    )


def connect() -> None:
    events.domain_events.connect(receive_many, dispatch_uid="chargers.alert_monitor")


# --- The periodic check ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonitorResult:
    promoted: int
    discarded: int
    offline: int
    back_online: int
    silent_sessions: int
    boot_loops_ended: int


def monitoring_check(*, now: datetime | None = None) -> MonitorResult:
    """What no event says: held conditions that are now due, chargers and sessions gone
    silent, chargers heard from again, boot loops that stopped."""
    now = now or timezone.now()
    policy = alert_policy()
    checked = alerts_check(now=now)

    back_online = 0
    for alert in Alert.objects.filter(
        kind=OFFLINE, state__in=ACTIVE, charger__connected=True
    ).select_related("charger"):
        last_seen = alert.charger.last_seen
        if last_seen is not None and last_seen > alert.fault_at:
            back_online += alert_clear(charger=alert.charger, kind=OFFLINE, at=last_seen)

    silent = 0
    charging = Session.objects.filter(
        state=SessionState.ACTIVE,
        connector__status__in=[ConnectorStatus.CHARGING],
    ).annotate(last_sample=Max("meter_samples__timestamp"))
    silent_keys: set[tuple[int, int]] = set()
    for session in charging.select_related("charger"):
        last = session.last_sample or session.started_at
        if now - last < policy.silent_session:
            continue
        silent_keys.add((session.charger_id, session.connector_number))
        minutes = int((now - last).total_seconds() // 60)
        raised = alert_raise(
            charger=session.charger,
            kind=SILENT_SESSION,
            connector_id=session.connector_number,
            severity="major",
            message=(
                f"Transaction {session.transaction_id} is charging with no meter values "
                f"for {minutes} min"
            ),
            fault_at=last,
            details={"session": session.pk, "transaction_id": session.transaction_id},
        )
        silent += raised is not None
    # Silent sessions that spoke again, stopped charging or ended.
    for alert in Alert.objects.filter(kind=SILENT_SESSION, state__in=ACTIVE).select_related(
        "charger"
    ):
        if (alert.charger_id, alert.connector_id) not in silent_keys:
            alert_clear(charger=alert.charger, kind=SILENT_SESSION, connector_id=alert.connector_id)

    ended = 0
    for alert in Alert.objects.filter(kind=BOOT_LOOP, state__in=ACTIVE).select_related("charger"):
        recent = ChargerEvent.objects.filter(
            Q(charger_id=alert.charger_id)
            & Q(kind=ChargerEvent.Kind.BOOT)
            & Q(timestamp__gte=now - policy.boot_loop_window)
        ).exists()
        if not recent:
            ended += alert_clear(charger=alert.charger, kind=BOOT_LOOP, at=now)

    return MonitorResult(
        promoted=checked.promoted,
        discarded=checked.discarded,
        offline=checked.offline,
        back_online=back_online,
        silent_sessions=silent,
        boot_loops_ended=ended,
    )
