"""Alerts, sans I/O: the alert lifecycle, how long a condition must hold before it is raised,
what counts as a boot loop, a backwards meter or an error code, and MTTD/MTTR arithmetic.

Nothing here touches the database; ``chargers.alerts`` builds on it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum


class AlertState(StrEnum):
    OPEN = "open"  # raised, nobody has taken it yet
    ACKNOWLEDGED = "acknowledged"  # someone is on it; the condition may still hold
    RESOLVED = "resolved"  # the condition cleared, or someone closed it


# Still needing attention: the states a new occurrence of the same condition folds into.
ACTIVE = frozenset({AlertState.OPEN, AlertState.ACKNOWLEDGED})

_MOVES: dict[AlertState, frozenset[AlertState]] = {
    AlertState.OPEN: frozenset({AlertState.ACKNOWLEDGED, AlertState.RESOLVED}),
    AlertState.ACKNOWLEDGED: frozenset({AlertState.RESOLVED}),
    # Re-opened when the condition comes back within the re-open window.
    AlertState.RESOLVED: frozenset({AlertState.OPEN}),
}


class IllegalTransition(Exception):
    def __init__(self, current: str, target: str):
        super().__init__(f"an alert that is {current} cannot become {target}")
        self.current = current
        self.target = target


def transition(current: str, target: str) -> AlertState:
    """The state after moving from ``current`` to ``target``; refuses every move the lifecycle
    does not have (including staying put)."""
    source, goal = AlertState(current), AlertState(target)
    if goal not in _MOVES[source]:
        raise IllegalTransition(source, goal)
    return goal


def sources(target: str) -> frozenset[AlertState]:
    """The states from which an alert may move to ``target``."""
    goal = AlertState(target)
    return frozenset(state for state, moves in _MOVES.items() if goal in moves)


class Severity(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"
    INFO = "info"


SEVERITY_RANK: dict[str, int] = {
    Severity.CRITICAL: 5,
    Severity.MAJOR: 4,
    Severity.MINOR: 3,
    Severity.WARNING: 2,
    Severity.INFO: 1,
}


def severity_at_least(severity: str, minimum: str) -> bool:
    return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK.get(minimum, 0)


# Kinds that describe a condition that holds for a while (and clears): they are debounced.
# Every other kind is an occurrence (a boot loop seen, a meter that went back, a rejected
# profile) and is raised at once.
OFFLINE = "offline"
HELD_CONDITIONS = frozenset({"connector_faulted", "charger_error", "upstream_down"})


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """The tunables of the rules, read once from the settings."""

    debounce: timedelta  # how long a held condition must last before it is raised
    offline_grace: timedelta  # how long a closed socket may stay closed before it is an alert
    reopen_window: timedelta  # a resolved alert that comes back within this re-opens
    offline_heartbeats: int  # no frame for this many heartbeat intervals: offline
    boot_loop_count: int  # this many boots ...
    boot_loop_window: timedelta  # ... within this window: a boot loop
    silent_session: timedelta  # a charging session with no meter values for this long

    def debounce_for(self, kind: str) -> timedelta:
        if kind == OFFLINE:
            return self.offline_grace
        if kind in HELD_CONDITIONS:
            return self.debounce
        return timedelta(0)


def held_long_enough(*, since: datetime, now: datetime, debounce: timedelta) -> bool:
    """Whether a condition that began at ``since`` has held for the debounce period by ``now``."""
    return now - since >= debounce


def silent_for(
    *, last_seen: datetime | None, heartbeat_interval: int, heartbeats: int, now: datetime
) -> bool:
    """A connected charger is offline once no frame came for ``heartbeats`` intervals."""
    if last_seen is None:
        return False
    return now - last_seen >= timedelta(seconds=heartbeat_interval * heartbeats)


def is_boot_loop(
    boots: Iterable[datetime], *, now: datetime, count: int, window: timedelta
) -> bool:
    """``count`` or more boots within the ``window`` that ends ``now``."""
    start = now - window
    return sum(1 for at in boots if start <= at <= now) >= count


def meter_went_backwards(previous: Decimal | None, current: Decimal | None) -> bool:
    """An energy register that reads less than it did before."""
    return previous is not None and current is not None and current < previous


# OCPP 1.6 ChargePointErrorCode values that mean "nothing wrong".
NO_ERROR = frozenset({"", "NoError"})


def is_error_code(error_code: str) -> bool:
    return error_code not in NO_ERROR


def error_severity(error_code: str) -> Severity:
    """Errors that stop charging are major; the rest are warnings the charger carries on with."""
    if error_code in {
        "GroundFailure",
        "OverCurrentFailure",
        "OverVoltage",
        "UnderVoltage",
        "PowerMeterFailure",
        "PowerSwitchFailure",
        "ConnectorLockFailure",
        "EVCommunicationError",
        "InternalError",
        "ReaderFailure",
    }:
        return Severity.MAJOR
    return Severity.WARNING


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """Elapsed seconds, never negative (a charger's clock may run ahead of ours)."""
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


@dataclass(frozen=True, slots=True)
class DurationStats:
    count: int
    mean: float | None
    median: float | None
    p90: float | None
    max: float | None


def duration_stats(values: Sequence[float]) -> DurationStats:
    """Mean, median, 90th percentile (nearest rank) and maximum of durations in seconds."""
    if not values:
        return DurationStats(count=0, mean=None, median=None, p90=None, max=None)
    ordered = sorted(values)
    n = len(ordered)
    middle = n // 2
    median = ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    rank = max(1, -(-9 * n // 10))  # ceil(0.9 n)
    return DurationStats(
        count=n,
        mean=sum(ordered) / n,
        median=median,
        p90=ordered[rank - 1],
        max=ordered[-1],
    )


# --- Notifications -----------------------------------------------------------------------------

NOTIFY_EVENTS = ("alert.raised", "alert.reopened", "alert.acknowledged", "alert.resolved")
# E-mail is for what needs someone; the rest goes to systems over webhooks.
EMAIL_EVENTS = frozenset({"alert.raised", "alert.reopened"})


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with the endpoint's secret over ``<timestamp>.<body>``, so a
    receiver that checks the timestamp also refuses a replayed delivery."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def webhook_signature_valid(secret: str, timestamp: int, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(webhook_signature(secret, timestamp, body), signature)


def retry_delay(attempts: int, *, base: float, cap: float = 3600.0) -> timedelta:
    """Exponential back-off: ``base`` after the first failed attempt, doubling, at most ``cap``."""
    exponent = max(0, attempts - 1)
    return timedelta(seconds=min(cap, base * (2 ** min(exponent, 32))))


def wants(
    *,
    event: str,
    severity: str,
    kind: str,
    events: Sequence[str],
    kinds: Sequence[str],
    minimum: str,
) -> bool:
    """Whether a subscriber (events and kinds: empty for all) is told of this alert event."""
    return (
        (not events or event in events)
        and (not kinds or kind in kinds)
        and severity_at_least(severity, minimum)
    )
