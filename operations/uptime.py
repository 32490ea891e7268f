"""Uptime: a connector's availability timeline over a period, from its charger's connection
history and its own status history, with planned maintenance windows left out. Pure, with no
database: the service loads the histories, this computes.

A connector is up while its charger is connected and its status is anything but Faulted or
Unavailable (a connected charger that has not reported the connector yet counts as up: nothing
says it is not). Down time is ``offline``, ``faulted`` or ``unavailable``. Time inside a
maintenance window is ``excluded`` and counts neither way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Availability(StrEnum):
    UP = "up"
    OFFLINE = "offline"
    FAULTED = "faulted"
    UNAVAILABLE = "unavailable"
    EXCLUDED = "excluded"


DOWN_STATUSES = {"Faulted": Availability.FAULTED, "Unavailable": Availability.UNAVAILABLE}


@dataclass(frozen=True, slots=True)
class Segment:
    start: datetime
    end: datetime
    state: Availability
    reason: str = ""  # the maintenance window's reason, for excluded time

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True, slots=True)
class Tally:
    """Seconds per state over a period; uptime leaves excluded time out of both sides."""

    up: float = 0.0
    offline: float = 0.0
    faulted: float = 0.0
    unavailable: float = 0.0
    excluded: float = 0.0

    @property
    def counted(self) -> float:
        return self.up + self.offline + self.faulted + self.unavailable

    @property
    def percent(self) -> float | None:
        """Up time as a share of the counted time, 0-100; None when nothing was counted."""
        if self.counted <= 0:
            return None
        # Never past 100: when everything counted was up, 100 * up / counted can round to 100.00…01.
        return min(100.0, 100.0 * self.up / self.counted)

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            up=self.up + other.up,
            offline=self.offline + other.offline,
            faulted=self.faulted + other.faulted,
            unavailable=self.unavailable + other.unavailable,
            excluded=self.excluded + other.excluded,
        )


def tally(segments: Iterable[Segment]) -> Tally:
    seconds = dict.fromkeys(Availability, 0.0)
    for segment in segments:
        seconds[segment.state] += segment.seconds
    return Tally(**{state.value: value for state, value in seconds.items()})


def _state_at(connected: bool, status: str) -> Availability:
    if not connected:
        return Availability.OFFLINE
    return DOWN_STATUSES.get(status, Availability.UP)


def timeline(
    *,
    start: datetime,
    end: datetime,
    connections: Sequence[tuple[datetime, bool]],
    statuses: Sequence[tuple[datetime, str]],
    windows: Sequence[tuple[datetime, datetime, str]] = (),
    connected_at_start: bool = False,
    status_at_start: str = "",
) -> list[Segment]:
    """Segments that partition [start, end) in order, with neighbours of one state merged.

    ``connections`` and ``statuses`` are the changes inside the period (time, connected) and
    (time, status), in any order; the ``*_at_start`` values are the last ones before it.
    """
    if end <= start:
        return []
    changes: list[tuple[datetime, int, object]] = []
    changes += [(at, 0, flag) for at, flag in connections if start < at < end]
    changes += [(at, 1, status) for at, status in statuses if start < at < end]
    changes.sort(key=lambda change: (change[0], change[1]))
    connected, status = connected_at_start, status_at_start
    raw: list[Segment] = []
    cursor = start
    for at, kind, value in changes:
        if at > cursor:
            raw.append(Segment(cursor, at, _state_at(connected, status)))
            cursor = at
        if kind == 0:
            connected = bool(value)
        else:
            status = str(value)
    raw.append(Segment(cursor, end, _state_at(connected, status)))
    return _merge(_exclude(raw, windows))


def _exclude(
    segments: list[Segment], windows: Sequence[tuple[datetime, datetime, str]]
) -> list[Segment]:
    """Cut the maintenance windows out of the segments as excluded time (the first window
    listed wins where windows overlap)."""
    for w_start, w_end, reason in windows:
        if w_end <= w_start:
            continue
        cut: list[Segment] = []
        for segment in segments:
            if segment.state == Availability.EXCLUDED or (
                w_end <= segment.start or w_start >= segment.end
            ):
                cut.append(segment)
                continue
            lo, hi = max(segment.start, w_start), min(segment.end, w_end)
            if segment.start < lo:
                cut.append(Segment(segment.start, lo, segment.state))
            cut.append(Segment(lo, hi, Availability.EXCLUDED, reason))
            if hi < segment.end:
                cut.append(Segment(hi, segment.end, segment.state))
        segments = cut
    return segments


def _merge(segments: list[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    for segment in segments:
        if segment.end <= segment.start:
            continue
        last = merged[-1] if merged else None
        if last is not None and last.state == segment.state and last.reason == segment.reason:
            merged[-1] = Segment(last.start, segment.end, last.state, last.reason)
        else:
            merged.append(segment)
    return merged


def period_days(start: datetime, end: datetime) -> float:
    return (end - start) / timedelta(days=1)
