"""A site's limit over time: its grid connection, schedule windows in the site's time zone, and
demand-response events. Pure: plain values in, the limit at a moment (and its next edge) out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class Window:
    """A schedule window: on ``weekdays`` (ISO, 1 = Monday) from ``start`` to ``end`` local time;
    an end at or before the start runs past midnight into the next day."""

    weekdays: frozenset[int]
    start: time
    end: time
    limit_a: float


@dataclass(frozen=True, slots=True)
class Event:
    starts_at: datetime
    ends_at: datetime
    limit_a: float


@dataclass(frozen=True, slots=True)
class SiteLimit:
    limit_a: float
    # What sets it now: "grid", "schedule" or "event".
    source: str
    # When it may change next (a window or event edge), None when nothing is ahead.
    next_change: datetime | None


def _window_active(window: Window, local: datetime) -> bool:
    clock = local.time().replace(tzinfo=None)
    weekday = local.isoweekday()
    if window.start < window.end:
        return weekday in window.weekdays and window.start <= clock < window.end
    # Past midnight: the evening part on a listed day, the morning part the day after.
    yesterday = 7 if weekday == 1 else weekday - 1
    return (weekday in window.weekdays and clock >= window.start) or (
        yesterday in window.weekdays and clock < window.end
    )


def _window_edges(window: Window, local: datetime, zone: ZoneInfo) -> list[datetime]:
    edges = []
    for days in range(9):
        day = (local + timedelta(days=days)).date()
        for moment in (window.start, window.end):
            edge = datetime.combine(day, moment, tzinfo=zone)
            if edge > local:
                edges.append(edge)
    return edges


def site_limit_at(
    now: datetime,
    *,
    grid_a: float,
    windows: Sequence[Window],
    events: Sequence[Event],
    time_zone: str,
) -> SiteLimit:
    """The limit at ``now``: the lowest of the grid connection, the active schedule windows and the
    active demand-response events."""
    zone = ZoneInfo(time_zone)
    local = now.astimezone(zone)
    limit, source = grid_a, "grid"
    for window in windows:
        if _window_active(window, local) and window.limit_a < limit:
            limit, source = window.limit_a, "schedule"
    for event in events:
        if event.starts_at <= now < event.ends_at and event.limit_a < limit:
            limit, source = event.limit_a, "event"
    edges = [edge for window in windows for edge in _window_edges(window, local, zone)]
    edges += [moment for event in events for moment in (event.starts_at, event.ends_at)]
    ahead = [edge for edge in edges if edge > now]
    return SiteLimit(
        limit_a=max(0.0, limit), source=source, next_change=min(ahead) if ahead else None
    )


def price_at(now: datetime, *, windows: Sequence[tuple[Window, float]], time_zone: str) -> float:
    """The energy price at ``now``: the cheapest active window's, else the dearest of all (a
    window with a price marks its hours as the cheap ones)."""
    local = now.astimezone(ZoneInfo(time_zone))
    active = [price for window, price in windows if _window_active(window, local)]
    if active:
        return min(active)
    return max((price for _, price in windows), default=0.0)


def can_defer(
    now: datetime,
    *,
    departure: datetime | None,
    needed_wh: float | None,
    max_power_w: float,
    windows: Sequence[tuple[Window, float]],
    time_zone: str,
    step: timedelta = timedelta(minutes=15),
) -> bool:
    """Whether a session may wait for cheaper energy: a cheaper window starts before its departure
    and, from then on, the cheaper hours alone still deliver what it needs at full power."""
    if departure is None or needed_wh is None or max_power_w <= 0 or not windows:
        return False
    price_now = price_at(now, windows=windows, time_zone=time_zone)
    cheaper_hours = 0.0
    moment = now
    while moment < departure:
        if price_at(moment, windows=windows, time_zone=time_zone) < price_now:
            cheaper_hours += min(step, departure - moment).total_seconds() / 3600
        moment += step
    return cheaper_hours > 0 and cheaper_hours * max_power_w >= needed_wh
