"""What a session's energy cost the site: the purchase price (flat or time of use, in the site's
time zone) applied to the energy drawn in each stretch of the session. Pure: ``Decimal`` only.

Energy between two meter readings is spread evenly over that stretch and split where a price
period starts or ends. The cost is rounded once, half up, to cents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

CENT = Decimal("0.01")
WH_PER_KWH = Decimal(1000)


@dataclass(frozen=True, slots=True)
class PricePeriod:
    weekdays: frozenset[int]  # Monday is 0
    start: time
    end: time  # time(0) means the end of the day
    price_per_kwh: Decimal

    def covers(self, local: datetime) -> bool:
        if local.weekday() not in self.weekdays:
            return False
        moment = local.time()
        end_of_day = self.end == time(0)
        return self.start <= moment and (end_of_day or moment < self.end)


@dataclass(frozen=True, slots=True)
class EnergyPriceSpec:
    """A site's purchase price from ``valid_from`` on."""

    valid_from: datetime
    price_per_kwh: Decimal
    periods: tuple[PricePeriod, ...] = ()

    def price_at(self, local: datetime) -> Decimal:
        for period in self.periods:
            if period.covers(local):
                return period.price_per_kwh
        return self.price_per_kwh

    def boundaries(self) -> tuple[time, ...]:
        """Local times of day where the price may change."""
        return tuple(sorted({t for p in self.periods for t in (p.start, p.end)}))


@dataclass(frozen=True, slots=True)
class Reading:
    at: datetime  # tz-aware
    energy_wh: Decimal  # the meter register


def spec_in_force(specs: Sequence[EnergyPriceSpec], at: datetime) -> EnergyPriceSpec | None:
    """The newest price that was valid at ``at``."""
    valid = [s for s in specs if s.valid_from <= at]
    return max(valid, key=lambda s: s.valid_from) if valid else None


def _cuts(
    start: datetime, end: datetime, specs: Sequence[EnergyPriceSpec], zone: ZoneInfo
) -> list[datetime]:
    """Instants strictly inside (start, end) where the price may change."""
    cuts: set[datetime] = {s.valid_from for s in specs if start < s.valid_from < end}
    times = sorted({t for s in specs for t in s.boundaries()} | {time(0)})
    local_day = start.astimezone(zone).date()
    last_day = end.astimezone(zone).date()
    while local_day <= last_day:
        for t in times:
            instant = datetime.combine(local_day, t, tzinfo=zone)
            # A wall time a DST gap skips maps to a real instant after the jump; fine for a cut.
            if start < instant < end:
                cuts.add(instant)
        local_day += timedelta(days=1)
    return sorted(cuts)


def energy_cost_exact(
    readings: Sequence[Reading], specs: Sequence[EnergyPriceSpec], zone: ZoneInfo
) -> Decimal | None:
    """The unrounded cost of the energy between consecutive readings; None without a price."""
    if not specs:
        return None
    ordered = sorted(readings, key=lambda r: r.at)
    if not any(spec_in_force(specs, r.at) is not None for r in ordered):
        return None
    total = Decimal(0)
    for before, after in pairwise(ordered):
        energy = after.energy_wh - before.energy_wh
        seconds = Decimal(str((after.at - before.at).total_seconds()))
        if energy <= 0 or seconds <= 0:
            continue
        points = [before.at, *_cuts(before.at, after.at, specs, zone), after.at]
        for a, b in pairwise(points):
            share = energy * Decimal(str((b - a).total_seconds())) / seconds
            spec = spec_in_force(specs, a)
            if spec is None:
                continue
            total += share / WH_PER_KWH * spec.price_at(a.astimezone(zone))
    return total


def energy_cost(
    readings: Sequence[Reading], specs: Sequence[EnergyPriceSpec], zone: ZoneInfo
) -> Decimal | None:
    """The session's energy cost, rounded half up to cents; None when the site has no price."""
    exact = energy_cost_exact(readings, specs, zone)
    return None if exact is None else exact.quantize(CENT, rounding=ROUND_HALF_UP)
