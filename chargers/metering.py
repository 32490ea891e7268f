"""Session energy from energy register readings, the same for every OCPP version.

Pure: readings in, energy out. The register normally only grows; when a reading is lower than
the one before, it is either a rollover (the register passed its largest value and wrapped to
zero) or a reset (the charger rebooted and its register restarted). A rollover is always counted
through. A reset is counted from zero only for chargers whose quirk profile says their register
resets on reboot; for any other charger a lower reading is taken as a glitch and energy counts
again only once the register climbs past the highest reading seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from .normalize import ENERGY_REGISTER, Sample

# Registers wrap at a power of ten (a display of so many digits) or a power of two (a counter of
# so many bits); both are in Wh here, since readings are normalized before they get here.
_WRAPS = sorted({Decimal(10) ** k for k in range(6, 16)} | {Decimal(2) ** k for k in (31, 32, 48)})
# A fall is a rollover when the previous reading was in the top hundredth of the register's range
# and the new one is in the bottom hundredth; any other fall is a reset or a glitch.
_NEAR = Decimal("0.01")

# Register readings that measure what the session delivered (not an EV-side or cable meter).
SESSION_LOCATIONS = frozenset({"", "Outlet"})


@dataclass(frozen=True, slots=True, order=True)
class Reading:
    timestamp: datetime
    value: Decimal


@dataclass(frozen=True, slots=True)
class Energy:
    energy_wh: Decimal
    first_wh: Decimal | None
    last_wh: Decimal | None
    rollovers: int = 0
    resets: int = 0
    ignored_falls: int = 0

    @property
    def anomalies(self) -> tuple[str, ...]:
        found = []
        if self.rollovers:
            found.append("register_rollover")
        if self.resets:
            found.append("register_reset")
        if self.ignored_falls:
            found.append("register_fall_ignored")
        return tuple(found)


def is_session_register(sample: Sample) -> bool:
    return (
        sample.measurand == ENERGY_REGISTER
        and sample.value is not None
        and sample.phase == ""
        and sample.location in SESSION_LOCATIONS
    )


def readings_from(samples: Iterable[Sample]) -> list[Reading]:
    return [
        Reading(s.timestamp, s.value)
        for s in samples
        if is_session_register(s) and s.value is not None
    ]


def _wrap_for(previous: Decimal) -> Decimal | None:
    for wrap in _WRAPS:
        if wrap > previous:
            return wrap
    return None


def rollover(previous: Decimal, current: Decimal) -> Decimal | None:
    """The energy across a wrap from ``previous`` to ``current``, or None if it is no wrap."""
    wrap = _wrap_for(previous)
    if wrap is None or previous < wrap * (1 - _NEAR) or current >= wrap * _NEAR:
        return None
    return wrap - previous + current


@dataclass(frozen=True, slots=True)
class Tally:
    """Energy folded over register readings one at a time, in time order.

    A running session keeps its tally so that each new message adds its readings without the
    earlier ones being read again: ``add`` takes readings no earlier than those already folded
    and returns the new tally, or None when one comes earlier (the caller then recomputes from
    every reading with ``session_energy``, which folds the same way).
    """

    resets_on_reboot: bool = False
    total: Decimal = Decimal(0)
    first: Decimal | None = None  # the first value folded (the start reading, if there is one)
    previous: Decimal | None = None  # the last value folded
    # The highest reading since the last counted rollover or reset: a glitch never counts twice.
    high: Decimal | None = None
    latest: Reading | None = None  # the latest reading folded (start readings are not ordered)
    rollovers: int = 0
    resets: int = 0
    ignored_falls: int = 0

    @classmethod
    def begin(cls, *, start: Reading | None = None, resets_on_reboot: bool = False) -> Tally:
        tally = cls(resets_on_reboot=resets_on_reboot)
        return tally._fold([start.value]) if start is not None else tally

    def add(self, readings: Iterable[Reading]) -> Tally | None:
        """This tally with ``readings`` folded in, or None if one is earlier than ``latest``."""
        ordered = sorted(readings)
        if not ordered:
            return self
        if self.latest is not None and ordered[0] < self.latest:
            return None
        return replace(self._fold([r.value for r in ordered]), latest=ordered[-1])

    def energy(self, *, stop: Reading | None = None) -> Energy:
        """The energy so far; ``stop`` (1.6 meterStop) closes the series after every reading."""
        tally = self._fold([stop.value]) if stop is not None else self
        if tally.first is None:
            return Energy(Decimal(0), None, None)
        return Energy(
            energy_wh=tally.total,
            first_wh=tally.first,
            last_wh=tally.previous,
            rollovers=tally.rollovers,
            resets=tally.resets,
            ignored_falls=tally.ignored_falls,
        )

    def _fold(self, values: list[Decimal]) -> Tally:
        total, previous, high = self.total, self.previous, self.high
        rollovers, resets, ignored = self.rollovers, self.resets, self.ignored_falls
        first = self.first
        for value in values:
            if previous is None or high is None:
                first = previous = high = value
                continue
            if value >= previous:
                if value > high:
                    total += value - high
                    high = value
                previous = value
                continue
            across = rollover(previous, value)
            if across is not None and previous >= high:
                total += across
                rollovers += 1
                previous = high = value
            elif self.resets_on_reboot:
                total += value
                resets += 1
                previous = high = value
            else:
                ignored += 1
                previous = value
        return replace(
            self,
            total=total,
            first=first,
            previous=previous,
            high=high,
            rollovers=rollovers,
            resets=resets,
            ignored_falls=ignored,
        )


def session_energy(
    readings: Iterable[Reading],
    *,
    start: Reading | None = None,
    stop: Reading | None = None,
    resets_on_reboot: bool = False,
) -> Energy:
    """Energy delivered over a session's register readings, in Wh.

    ``readings`` may come in any order and from any number of messages: they are taken in time
    order (equal times by value). ``start`` and ``stop`` are the readings the start and stop
    messages carry (1.6 meterStart and meterStop); they bracket the others.
    """
    tally = Tally.begin(start=start, resets_on_reboot=resets_on_reboot).add(readings)
    assert tally is not None  # a fresh tally takes readings of any time
    return tally.energy(stop=stop)
