"""The pricing engine: a session's timeline and a tariff version in, charging periods and priced
lines out. Pure (no database, no clock), ``Decimal`` only, the same answer however often it runs.

Interface (used by CDRs, running cost, the tariff simulator and the dashboard's price example):

- ``TariffSpec``: a tariff version in memory (currency, OCPI 2.2.1 elements, min/max price
  excluding VAT, parking grace). Build one with ``billing.selectors.tariff_spec(version=...)`` or,
  from an OCPI ``elements`` document, with ``tariff_elements_parse`` (raises ``TariffError``).
- ``SessionTimeline``: started_at, ended_at (tz-aware), the site's IANA time zone, meter samples
  (energy register in Wh, power in W, current in A) and charging/idle periods. Build one with
  ``billing.selectors.session_timeline(session=...)`` or ``timeline_example(...)``.
- ``price_session(tariff, timeline) -> PricedSession``: charging periods, lines and totals.

How a session is priced (OCPI 2.2.1 semantics):

- The session is cut at every meter sample, period change, restriction boundary (time of day,
  midnight and every hour in the site's zone, so DST changes are honoured; kWh and duration
  thresholds; the end of the parking grace). For each piece and each dimension the first element
  whose restrictions all hold at the start of the piece, and that has a component of that dimension,
  sets the price. Energy between samples is interpolated linearly, to 0.001 Wh.
- ENERGY is billed per kWh on all energy; TIME per hour while charging; PARKING_TIME per hour while
  idle, after ``parking_grace_seconds`` of idle time in the session; FLAT once per session, from the
  element that holds when the session starts.
- Step sizes (Wh for energy, seconds for time) round a dimension's total volume up to a multiple of
  the step size of the last component used for it; the extra volume is billed on that line.
- Restrictions that need a value the timeline lacks (current without current samples) do not hold.

Rounding (stated once, applied everywhere): each line's amount excluding VAT is its exact volume
times its unit price, rounded half-up to the currency's minor unit; the session total excluding VAT
is the sum of the lines. A minimum or maximum price adds adjustment lines (MIN_PRICE, MAX_PRICE),
split over the VAT rates in proportion to their amounts, the remainder on the last. VAT is computed
per rate on the sum of that rate's lines, rounded half-up; each line shows its share, the remainder
on the rate's last line. So lines sum exactly to every total.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "ChargingPeriod",
    "Dimension",
    "PeriodState",
    "PriceComponent",
    "PricedLine",
    "PricedSession",
    "Restrictions",
    "SessionTimeline",
    "StatePeriod",
    "TariffElement",
    "TariffError",
    "TariffSpec",
    "TimelineSample",
    "currency_minor_units",
    "price_session",
    "tariff_elements_dump",
    "tariff_elements_parse",
    "timeline_example",
]


class Dimension(StrEnum):
    ENERGY = "ENERGY"
    FLAT = "FLAT"
    PARKING_TIME = "PARKING_TIME"
    TIME = "TIME"


class PeriodState(StrEnum):
    CHARGING = "charging"
    IDLE = "idle"


# Lines that are no price component: the minimum and maximum price adjustments.
MIN_PRICE = "MIN_PRICE"
MAX_PRICE = "MAX_PRICE"

DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
_DIMENSION_ORDER = (Dimension.FLAT, Dimension.ENERGY, Dimension.TIME, Dimension.PARKING_TIME)
_UNITS = {
    Dimension.ENERGY: ("kWh", Decimal(1000)),  # volume in Wh
    Dimension.TIME: ("h", Decimal(3600)),  # volume in seconds
    Dimension.PARKING_TIME: ("h", Decimal(3600)),
    Dimension.FLAT: ("session", Decimal(1)),
}
_MILLI = Decimal("0.001")
_QUANTITY = Decimal("0.000001")
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
# ISO 4217 minor units where they are not 2.
_MINOR_UNITS = {
    "BHD": 3,
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "IQD": 3,
    "JOD": 3,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "PYG": 0,
    "RWF": 0,
    "TND": 3,
    "UGX": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
}


def currency_minor_units(currency: str) -> int:
    return _MINOR_UNITS.get(currency.upper(), 2)


def money_round(amount: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's minor unit: the one rounding of money in the engine."""
    return amount.quantize(Decimal(1).scaleb(-currency_minor_units(currency)), ROUND_HALF_UP)


# --- Tariffs --------------------------------------------------------------------------------------


class TariffError(ValueError):
    """A tariff that cannot be priced with; ``errors`` maps a field path to its messages."""

    def __init__(self, errors: Mapping[str, Sequence[str]]) -> None:
        self.errors = {key: list(value) for key, value in errors.items()}
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in self.errors.items()))


@dataclass(frozen=True, slots=True)
class PriceComponent:
    type: Dimension
    price: Decimal  # excluding VAT, per kWh, per hour or per session
    vat: Decimal  # percent, 0 to 100
    step_size: int = 1  # Wh for ENERGY, seconds for TIME and PARKING_TIME


@dataclass(frozen=True, slots=True)
class Restrictions:
    start_time: time | None = None  # local time of day, inclusive
    end_time: time | None = None  # exclusive; before start_time means across midnight
    start_date: date | None = None  # local date, inclusive
    end_date: date | None = None  # exclusive
    min_kwh: Decimal | None = None  # energy of the session so far, inclusive
    max_kwh: Decimal | None = None  # exclusive
    min_current: Decimal | None = None  # A, inclusive
    max_current: Decimal | None = None  # exclusive
    min_power: Decimal | None = None  # kW, inclusive
    max_power: Decimal | None = None  # exclusive
    min_duration: int | None = None  # seconds since the session started, inclusive
    max_duration: int | None = None  # exclusive
    day_of_week: frozenset[int] | None = None  # 0 Monday ... 6 Sunday, local

    @property
    def is_empty(self) -> bool:
        return self == Restrictions()


@dataclass(frozen=True, slots=True)
class TariffElement:
    price_components: tuple[PriceComponent, ...]
    restrictions: Restrictions = Restrictions()

    def component(self, dimension: Dimension) -> PriceComponent | None:
        for component in self.price_components:
            if component.type == dimension:
                return component
        return None


@dataclass(frozen=True, slots=True)
class TariffSpec:
    currency: str
    elements: tuple[TariffElement, ...]
    min_price: Decimal | None = None  # excluding VAT
    max_price: Decimal | None = None  # excluding VAT
    parking_grace_seconds: int = 0


# --- Timelines ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelineSample:
    at: datetime
    energy_wh: Decimal | None = None  # the meter's import register
    power_w: Decimal | None = None
    current_a: Decimal | None = None


@dataclass(frozen=True, slots=True)
class StatePeriod:
    start: datetime
    end: datetime
    state: PeriodState


@dataclass(frozen=True, slots=True)
class SessionTimeline:
    """What happened in a session. Times are tz-aware; ``tz`` is the site's IANA zone.

    ``meter_start_wh`` is the register when the session started (else the first sample's) and
    ``energy_wh``, when known, the session's total energy (the stop reading), which the samples
    are completed with at ``ended_at``. Time outside ``periods`` counts as charging.
    """

    started_at: datetime
    ended_at: datetime
    tz: str = "UTC"
    samples: tuple[TimelineSample, ...] = ()
    periods: tuple[StatePeriod, ...] = ()
    meter_start_wh: Decimal | None = None
    energy_wh: Decimal | None = None


def timeline_example(
    *,
    started_at: datetime,
    charging: timedelta,
    energy_wh: Decimal,
    tz: str,
    idle: timedelta = timedelta(0),
) -> SessionTimeline:
    """A session that charges at a steady power for ``charging`` and then stays plugged in idle."""
    charging_end = started_at + charging
    ended_at = charging_end + idle
    periods = [StatePeriod(started_at, charging_end, PeriodState.CHARGING)]
    if idle > timedelta(0):
        periods.append(StatePeriod(charging_end, ended_at, PeriodState.IDLE))
    seconds = _seconds(charging)
    power = (energy_wh * 3600 / seconds).quantize(_MILLI) if seconds > 0 else None
    samples = (
        TimelineSample(started_at, energy_wh=_ZERO, power_w=power),
        TimelineSample(charging_end, energy_wh=energy_wh, power_w=_ZERO),
    )
    return SessionTimeline(
        started_at=started_at,
        ended_at=ended_at,
        tz=tz,
        samples=samples,
        periods=tuple(periods),
        meter_start_wh=_ZERO,
        energy_wh=energy_wh,
    )


# --- Results --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChargingPeriod:
    """A stretch of the session priced the same way: its state and, per dimension, the index of
    the element that priced it (None: not billed in this period)."""

    start: datetime
    end: datetime
    state: PeriodState
    energy_wh: Decimal
    seconds: Decimal
    elements: tuple[tuple[str, int | None], ...]

    def element_for(self, dimension: str) -> int | None:
        return dict(self.elements).get(dimension)


@dataclass(frozen=True, slots=True)
class PricedLine:
    dimension: str  # a Dimension, MIN_PRICE or MAX_PRICE
    element_index: int | None
    volume: Decimal  # Wh, seconds or sessions, after step-size rounding
    quantity: Decimal  # kWh, hours or sessions, to six places, for reading
    unit: str
    unit_price: Decimal  # excluding VAT
    amount_excl_vat: Decimal
    vat_rate: Decimal  # percent
    vat_amount: Decimal
    step_volume: Decimal = _ZERO  # volume added by step-size rounding

    @property
    def amount_incl_vat(self) -> Decimal:
        return self.amount_excl_vat + self.vat_amount


@dataclass(frozen=True, slots=True)
class PricedSession:
    currency: str
    periods: tuple[ChargingPeriod, ...]
    lines: tuple[PricedLine, ...]
    energy_wh: Decimal
    charging_seconds: Decimal
    parking_seconds: Decimal
    total_excl_vat: Decimal
    total_vat: Decimal
    total_incl_vat: Decimal
    vat_by_rate: tuple[tuple[Decimal, Decimal, Decimal], ...] = field(default=())
    # (rate, base excluding VAT, VAT) per rate, lowest rate first


# --- The engine -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Piece:
    start: datetime
    end: datetime
    e0: Decimal  # session energy at start, Wh
    e1: Decimal
    state: PeriodState
    billable_parking: bool


def price_session(tariff: TariffSpec, timeline: SessionTimeline) -> PricedSession:
    # Python subtracts two datetimes of the same zone on the wall clock: compute in UTC only.
    timeline = _in_utc(timeline)
    tz = ZoneInfo(timeline.tz)
    start, end = timeline.started_at, max(timeline.ended_at, timeline.started_at)
    energy_points = _energy_points(timeline, start, end)
    states = _state_periods(timeline, start, end)
    grace_at = _grace_end(states, tariff.parking_grace_seconds)

    cuts: set[datetime] = {start, end}
    cuts.update(p.at for p in timeline.samples)
    for period in states:
        cuts.update((period.start, period.end))
    if grace_at is not None:
        cuts.add(grace_at)
    cuts.update(_restriction_cuts(tariff, start, end, tz))
    ordered = sorted(c for c in cuts if start <= c <= end)

    pieces = _pieces(ordered, energy_points, states, grace_at, tariff)
    power_samples = sorted((s.at, s.power_w) for s in timeline.samples if s.power_w is not None)
    current_samples = sorted(
        (s.at, s.current_a) for s in timeline.samples if s.current_a is not None
    )

    # Per piece, the element that prices each dimension.
    piece_elements: list[dict[Dimension, int | None]] = []
    for piece in pieces:
        context = _Context.of(piece, start, tz, power_samples, current_samples)
        chosen: dict[Dimension, int | None] = {}
        if piece.e1 > piece.e0:
            chosen[Dimension.ENERGY] = _element_for(tariff, Dimension.ENERGY, context)
        if piece.state == PeriodState.CHARGING:
            chosen[Dimension.TIME] = _element_for(tariff, Dimension.TIME, context)
        elif piece.billable_parking:
            chosen[Dimension.PARKING_TIME] = _element_for(tariff, Dimension.PARKING_TIME, context)
        piece_elements.append(chosen)

    flat_context = (
        _Context.of(pieces[0], start, tz, power_samples, current_samples)
        if pieces
        else _Context(local=start.astimezone(tz), energy_wh=_ZERO, seconds=_ZERO)
    )
    flat_index = _element_for(tariff, Dimension.FLAT, flat_context)

    periods = _periods(pieces, piece_elements)
    lines = _lines(tariff, pieces, piece_elements, flat_index)
    lines = _min_max(tariff, lines)
    lines, vat_by_rate = _vat(tariff.currency, lines)

    total_excl = sum((line.amount_excl_vat for line in lines), _ZERO)
    total_vat = sum((line.vat_amount for line in lines), _ZERO)
    zero = money_round(_ZERO, tariff.currency)
    return PricedSession(
        currency=tariff.currency,
        periods=periods,
        lines=tuple(lines),
        energy_wh=energy_points[-1][1] if energy_points else _ZERO,
        charging_seconds=sum(
            (_seconds(p.end - p.start) for p in pieces if p.state == PeriodState.CHARGING), _ZERO
        ),
        parking_seconds=sum(
            (_seconds(p.end - p.start) for p in pieces if p.state == PeriodState.IDLE), _ZERO
        ),
        total_excl_vat=total_excl + zero,
        total_vat=total_vat + zero,
        total_incl_vat=total_excl + total_vat + zero,
        vat_by_rate=vat_by_rate,
    )


def _in_utc(timeline: SessionTimeline) -> SessionTimeline:
    def utc(at: datetime) -> datetime:
        if at.tzinfo is None:
            raise ValueError("Timeline times must be tz-aware.")
        return at.astimezone(UTC)

    return SessionTimeline(
        started_at=utc(timeline.started_at),
        ended_at=utc(timeline.ended_at),
        tz=timeline.tz,
        samples=tuple(
            TimelineSample(utc(s.at), s.energy_wh, s.power_w, s.current_a) for s in timeline.samples
        ),
        periods=tuple(StatePeriod(utc(p.start), utc(p.end), p.state) for p in timeline.periods),
        meter_start_wh=timeline.meter_start_wh,
        energy_wh=timeline.energy_wh,
    )


def _seconds(delta: timedelta) -> Decimal:
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds).scaleb(-6)


def _energy_points(
    timeline: SessionTimeline, start: datetime, end: datetime
) -> list[tuple[datetime, Decimal]]:
    """Session energy (Wh since the start) at points in time, never decreasing, to 0.001 Wh."""
    readings = sorted((s.at, s.energy_wh) for s in timeline.samples if s.energy_wh is not None)
    base = timeline.meter_start_wh
    if base is None:
        base = readings[0][1] if readings else _ZERO
    points: list[tuple[datetime, Decimal]] = [(start, _ZERO)]
    for at, register in readings:
        if at <= start or at > end:
            continue
        # A register that goes backwards (a meter swap, a glitch) bills nothing for the drop.
        value = max((register - base).quantize(_MILLI, ROUND_HALF_EVEN), points[-1][1])
        if at == points[-1][0]:
            points[-1] = (at, value)
        else:
            points.append((at, value))
    if timeline.energy_wh is not None:
        total = max(timeline.energy_wh.quantize(_MILLI, ROUND_HALF_EVEN), points[-1][1])
        if points[-1][0] == end:
            points[-1] = (end, total)
        elif end > points[-1][0]:
            points.append((end, total))
    if points[-1][0] < end:
        points.append((end, points[-1][1]))
    return points


def _energy_at(
    points: list[tuple[datetime, Decimal]], at: datetime, times: list[datetime] | None = None
) -> Decimal:
    times = times if times is not None else [t for t, _ in points]
    index = bisect.bisect_right(times, at)
    if index == 0:
        return points[0][1]
    if index == len(points):
        return points[-1][1]
    (t0, e0), (t1, e1) = points[index - 1], points[index]
    if at == t0:
        return e0
    value = e0 + (e1 - e0) * _seconds(at - t0) / _seconds(t1 - t0)
    return value.quantize(_MILLI, ROUND_HALF_EVEN)


def _state_periods(timeline: SessionTimeline, start: datetime, end: datetime) -> list[StatePeriod]:
    """The session cut into consecutive charging and idle stretches, covering start to end.

    At any time the latest-starting period that covers it decides; uncovered time is charging.
    """
    given = sorted(timeline.periods, key=lambda p: (p.start, p.end))
    marks = {start, end}
    for period in given:
        marks.update(t for t in (period.start, period.end) if start < t < end)
    ordered = sorted(marks)
    merged: list[StatePeriod] = []
    for t0, t1 in itertools.pairwise(ordered):
        state = PeriodState.CHARGING
        for period in given:
            if period.start <= t0 < period.end:
                state = period.state
        if merged and merged[-1].state == state:
            merged[-1] = StatePeriod(merged[-1].start, t1, state)
        else:
            merged.append(StatePeriod(t0, t1, state))
    return merged


def _grace_end(states: list[StatePeriod], grace_seconds: int) -> datetime | None:
    """When the session's idle time first exceeds the grace period (None: it never does)."""
    remaining = timedelta(seconds=grace_seconds)
    for period in states:
        if period.state != PeriodState.IDLE:
            continue
        length = period.end - period.start
        if length > remaining:
            return period.start + remaining
        remaining -= length
    return None


def _restriction_cuts(
    tariff: TariffSpec, start: datetime, end: datetime, tz: ZoneInfo
) -> set[datetime]:
    cuts: set[datetime] = set()
    restrictions = [e.restrictions for e in tariff.elements]
    # Every whole UTC hour: offset changes (DST) fall on them, so local times never jump inside
    # a piece.
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour <= end:
        cuts.add(hour)
        hour += timedelta(hours=1)
    times = {time(0, 0)}
    for r in restrictions:
        times.update(t for t in (r.start_time, r.end_time) if t is not None)
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    day = first
    while day <= last:
        for t in times:
            for fold in (0, 1):
                cuts.add(datetime.combine(day, t, tzinfo=tz).replace(fold=fold).astimezone(UTC))
        day += timedelta(days=1)
    for r in restrictions:
        for seconds in (r.min_duration, r.max_duration):
            if seconds is not None:
                cuts.add(start + timedelta(seconds=seconds))
    return cuts


def _kwh_thresholds(tariff: TariffSpec) -> list[Decimal]:
    values: set[Decimal] = set()
    for element in tariff.elements:
        for kwh in (element.restrictions.min_kwh, element.restrictions.max_kwh):
            if kwh is not None:
                values.add((kwh * 1000).quantize(_MILLI, ROUND_HALF_EVEN))
    return sorted(values)


def _pieces(
    cuts: list[datetime],
    energy_points: list[tuple[datetime, Decimal]],
    states: list[StatePeriod],
    grace_at: datetime | None,
    tariff: TariffSpec,
) -> list[_Piece]:
    thresholds = _kwh_thresholds(tariff)
    times = [t for t, _ in energy_points]
    pieces: list[_Piece] = []
    for t0, t1 in itertools.pairwise(cuts):
        if t1 <= t0:
            continue
        state = next((p.state for p in states if p.start <= t0 < p.end), PeriodState.CHARGING)
        billable = state == PeriodState.IDLE and (grace_at is not None and t0 >= grace_at)
        e0, e1 = _energy_at(energy_points, t0, times), _energy_at(energy_points, t1, times)
        # Cut where the session's energy crosses a kWh restriction, with the energy exact there.
        bounds: list[tuple[datetime, Decimal]] = [(t0, e0)]
        span = _seconds(t1 - t0)
        for threshold in thresholds:
            if e0 < threshold < e1:
                offset = span * (threshold - e0) / (e1 - e0)
                at = t0 + timedelta(microseconds=int(offset.scaleb(6).to_integral_value()))
                if bounds[-1][0] < at < t1:
                    bounds.append((at, threshold))
        bounds.append((t1, e1))
        for (a, ea), (b, eb) in itertools.pairwise(bounds):
            pieces.append(_Piece(a, b, ea, eb, state, billable))
    return pieces


@dataclass(frozen=True, slots=True)
class _Context:
    """What restrictions are judged on, at the start of a piece."""

    local: datetime
    energy_wh: Decimal
    seconds: Decimal
    power_w: Decimal | None = None
    current_a: Decimal | None = None

    @classmethod
    def of(
        cls,
        piece: _Piece,
        session_start: datetime,
        tz: ZoneInfo,
        power_samples: list[tuple[datetime, Decimal]],
        current_samples: list[tuple[datetime, Decimal]],
    ) -> _Context:
        power = _last_at(power_samples, piece.start)
        if power is None:
            span = _seconds(piece.end - piece.start)
            power = (piece.e1 - piece.e0) * 3600 / span if span > 0 else None
        return cls(
            local=piece.start.astimezone(tz),
            energy_wh=piece.e0,
            seconds=_seconds(piece.start - session_start),
            power_w=power,
            current_a=_last_at(current_samples, piece.start),
        )


def _last_at(samples: list[tuple[datetime, Decimal]], at: datetime) -> Decimal | None:
    """The latest sample at or before ``at`` (samples sorted by time)."""
    index = bisect.bisect_right(samples, at, key=lambda sample: sample[0])
    return samples[index - 1][1] if index else None


def _in_range(value: Decimal | None, low: Decimal | None, high: Decimal | None) -> bool:
    if low is None and high is None:
        return True
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value < high)


def restrictions_hold(r: Restrictions, context: _Context) -> bool:
    local = context.local
    clock = local.time().replace(tzinfo=None, fold=0)
    if r.start_time is not None and r.end_time is not None:
        if r.start_time <= r.end_time:
            if not (r.start_time <= clock < r.end_time):
                return False
        elif not (clock >= r.start_time or clock < r.end_time):
            return False
    elif (r.start_time is not None and clock < r.start_time) or (
        r.end_time is not None and clock >= r.end_time
    ):
        return False
    today = local.date()
    if r.start_date is not None and today < r.start_date:
        return False
    if r.end_date is not None and today >= r.end_date:
        return False
    if r.day_of_week is not None and local.weekday() not in r.day_of_week:
        return False
    kilo = Decimal(1000)
    if not _in_range(
        context.energy_wh,
        None if r.min_kwh is None else r.min_kwh * kilo,
        None if r.max_kwh is None else r.max_kwh * kilo,
    ):
        return False
    if not _in_range(
        context.power_w,
        None if r.min_power is None else r.min_power * kilo,
        None if r.max_power is None else r.max_power * kilo,
    ):
        return False
    if not _in_range(context.current_a, r.min_current, r.max_current):
        return False
    return _in_range(
        context.seconds,
        None if r.min_duration is None else Decimal(r.min_duration),
        None if r.max_duration is None else Decimal(r.max_duration),
    )


def _element_for(tariff: TariffSpec, dimension: Dimension, context: _Context) -> int | None:
    for index, element in enumerate(tariff.elements):
        if element.component(dimension) is not None and restrictions_hold(
            element.restrictions, context
        ):
            return index
    return None


def _periods(
    pieces: list[_Piece], piece_elements: list[dict[Dimension, int | None]]
) -> tuple[ChargingPeriod, ...]:
    periods: list[ChargingPeriod] = []
    for piece, chosen in zip(pieces, piece_elements, strict=True):
        elements = tuple(sorted((str(d), i) for d, i in chosen.items()))
        energy = piece.e1 - piece.e0
        seconds = _seconds(piece.end - piece.start)
        last = periods[-1] if periods else None
        if (
            last is not None
            and last.end == piece.start
            and last.state == piece.state
            and last.elements == elements
        ):
            periods[-1] = ChargingPeriod(
                last.start,
                piece.end,
                piece.state,
                last.energy_wh + energy,
                last.seconds + seconds,
                elements,
            )
        else:
            periods.append(
                ChargingPeriod(piece.start, piece.end, piece.state, energy, seconds, elements)
            )
    return tuple(periods)


def _lines(
    tariff: TariffSpec,
    pieces: list[_Piece],
    piece_elements: list[dict[Dimension, int | None]],
    flat_index: int | None,
) -> list[PricedLine]:
    volumes: dict[tuple[Dimension, int], Decimal] = {}
    last_used: dict[Dimension, int] = {}
    for piece, chosen in zip(pieces, piece_elements, strict=True):
        for dimension, index in chosen.items():
            if index is None:
                continue
            if dimension == Dimension.ENERGY:
                volume = piece.e1 - piece.e0
            else:
                volume = _seconds(piece.end - piece.start)
            volumes[(dimension, index)] = volumes.get((dimension, index), _ZERO) + volume
            last_used[dimension] = index
    if flat_index is not None:
        volumes[(Dimension.FLAT, flat_index)] = Decimal(1)
        last_used[Dimension.FLAT] = flat_index

    lines: list[PricedLine] = []
    for dimension in _DIMENSION_ORDER:
        keys = sorted(k for k in volumes if k[0] == dimension)
        if not keys:
            continue
        step_key = (dimension, last_used[dimension])
        component = tariff.elements[step_key[1]].component(dimension)
        assert component is not None
        total = sum((volumes[k] for k in keys), _ZERO)
        extra = _ZERO
        if dimension != Dimension.FLAT and component.step_size > 1:
            step = Decimal(component.step_size)
            extra = (total / step).to_integral_value(ROUND_CEILING) * step - total
        unit, divisor = _UNITS[dimension]
        for key in keys:
            element_component = tariff.elements[key[1]].component(dimension)
            assert element_component is not None
            added = extra if key == step_key else _ZERO
            volume = volumes[key] + added
            amount = money_round(volume * element_component.price / divisor, tariff.currency)
            lines.append(
                PricedLine(
                    dimension=str(dimension),
                    element_index=key[1],
                    volume=volume,
                    quantity=(volume / divisor).quantize(_QUANTITY, ROUND_HALF_UP),
                    unit=unit,
                    unit_price=element_component.price,
                    amount_excl_vat=amount,
                    vat_rate=element_component.vat,
                    vat_amount=_ZERO,
                    step_volume=added,
                )
            )
    return lines


def _default_vat(tariff: TariffSpec) -> Decimal:
    for element in tariff.elements:
        for component in element.price_components:
            return component.vat
    return _ZERO


def _min_max(tariff: TariffSpec, lines: list[PricedLine]) -> list[PricedLine]:
    total = sum((line.amount_excl_vat for line in lines), _ZERO)
    target = total
    if tariff.min_price is not None and total < money_round(tariff.min_price, tariff.currency):
        target, kind = money_round(tariff.min_price, tariff.currency), MIN_PRICE
    elif tariff.max_price is not None and total > money_round(tariff.max_price, tariff.currency):
        target, kind = money_round(tariff.max_price, tariff.currency), MAX_PRICE
    if target == total:
        return lines
    adjustment = target - total
    bases: dict[Decimal, Decimal] = {}
    for line in lines:
        bases[line.vat_rate] = bases.get(line.vat_rate, _ZERO) + line.amount_excl_vat
    rates = sorted(rate for rate, base in bases.items() if base > 0)
    shares: list[tuple[Decimal, Decimal]] = []
    if total <= 0 or not rates:
        shares.append((_default_vat(tariff), adjustment))
    else:
        given = _ZERO
        for rate in rates[:-1]:
            share = money_round(adjustment * bases[rate] / total, tariff.currency)
            shares.append((rate, share))
            given += share
        shares.append((rates[-1], adjustment - given))
    adjusted = list(lines)
    for rate, amount in shares:
        adjusted.append(
            PricedLine(
                dimension=kind,
                element_index=None,
                volume=Decimal(1),
                quantity=Decimal(1),
                unit="session",
                unit_price=amount,
                amount_excl_vat=amount,
                vat_rate=rate,
                vat_amount=_ZERO,
            )
        )
    return adjusted


def _vat(
    currency: str, lines: list[PricedLine]
) -> tuple[list[PricedLine], tuple[tuple[Decimal, Decimal, Decimal], ...]]:
    by_rate: dict[Decimal, list[int]] = {}
    for index, line in enumerate(lines):
        by_rate.setdefault(line.vat_rate, []).append(index)
    result = list(lines)
    summary: list[tuple[Decimal, Decimal, Decimal]] = []
    for rate in sorted(by_rate):
        indexes = by_rate[rate]
        base = sum((lines[i].amount_excl_vat for i in indexes), _ZERO)
        vat = money_round(base * rate / _HUNDRED, currency)
        given = _ZERO
        for position, i in enumerate(indexes):
            line = lines[i]
            if position == len(indexes) - 1:
                share = vat - given
            else:
                share = money_round(line.amount_excl_vat * rate / _HUNDRED, currency)
                given += share
            result[i] = _replace_vat(line, share)
        summary.append((rate, base, vat))
    return result, tuple(summary)


def _replace_vat(line: PricedLine, vat: Decimal) -> PricedLine:
    return PricedLine(
        dimension=line.dimension,
        element_index=line.element_index,
        volume=line.volume,
        quantity=line.quantity,
        unit=line.unit,
        unit_price=line.unit_price,
        amount_excl_vat=line.amount_excl_vat,
        vat_rate=line.vat_rate,
        vat_amount=vat,
        step_volume=line.step_volume,
    )


# --- Reading and writing OCPI elements ------------------------------------------------------------

_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RESTRICTION_KEYS = {
    "start_time",
    "end_time",
    "start_date",
    "end_date",
    "min_kwh",
    "max_kwh",
    "min_current",
    "max_current",
    "min_power",
    "max_power",
    "min_duration",
    "max_duration",
    "day_of_week",
}
MAX_VAT = Decimal(100)


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        value = repr(value)
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def tariff_elements_parse(raw: Any) -> tuple[TariffElement, ...]:
    """OCPI 2.2.1 ``elements`` to TariffElements, or a TariffError naming every problem.

    Refused: negative prices, VAT outside 0-100 %, bad step sizes, unknown dimensions or
    restrictions, contradictory restrictions (a minimum not below its maximum, a start time equal
    to the end time, an empty set of days), elements for the same dimension whose time-of-day and
    day-of-week windows overlap partly while their other restrictions are the same (17:00-21:00
    and 20:00-23:00: which price holds at 20:30 is a mistake, not a choice), and elements that lie
    wholly inside an earlier one for the same dimension (never used). A later element that covers
    an earlier one is its fallback, and elements layered on dates, energy, power or duration are
    taken in order, as OCPI intends.
    """
    errors: dict[str, list[str]] = {}

    def error(path: str, message: str) -> None:
        errors.setdefault(path, []).append(message)

    if not isinstance(raw, list) or not raw:
        raise TariffError({"elements": ["Give at least one tariff element."]})
    elements: list[TariffElement] = []
    for i, item in enumerate(raw):
        path = f"elements[{i}]"
        if not isinstance(item, dict):
            error(path, "An element is an object with price_components and restrictions.")
            continue
        unknown = set(item) - {"price_components", "restrictions"}
        if unknown:
            error(path, f"Unknown fields: {', '.join(sorted(unknown))}.")
        components = _parse_components(
            item.get("price_components"), f"{path}.price_components", error
        )
        restrictions = _parse_restrictions(item.get("restrictions"), f"{path}.restrictions", error)
        if components is not None and restrictions is not None:
            elements.append(TariffElement(components, restrictions))
    if not errors:
        _check_overlaps(elements, error)
    if errors:
        raise TariffError(errors)
    return tuple(elements)


def _parse_components(raw: Any, path: str, error: Any) -> tuple[PriceComponent, ...] | None:
    if not isinstance(raw, list) or not raw:
        error(path, "Give at least one price component.")
        return None
    components: list[PriceComponent] = []
    seen: set[str] = set()
    ok = True
    for j, item in enumerate(raw):
        cpath = f"{path}[{j}]"
        if not isinstance(item, dict):
            error(cpath, "A price component is an object with type, price, vat and step_size.")
            ok = False
            continue
        unknown = set(item) - {"type", "price", "vat", "step_size"}
        if unknown:
            error(cpath, f"Unknown fields: {', '.join(sorted(unknown))}.")
            ok = False
        kind = item.get("type")
        if not isinstance(kind, str) or kind not in Dimension.__members__:
            error(f"{cpath}.type", f"One of {', '.join(Dimension.__members__)}.")
            ok = False
            continue
        if kind in seen:
            error(f"{cpath}.type", f"{kind} appears twice in one element.")
            ok = False
        seen.add(kind)
        price = _decimal(item.get("price"))
        if price is None:
            error(f"{cpath}.price", "A number is required.")
            ok = False
        elif price < 0:
            error(f"{cpath}.price", "A price cannot be negative.")
            ok = False
        elif price.as_tuple().exponent < -6:  # type: ignore[operator]
            error(f"{cpath}.price", "At most six decimal places.")
            ok = False
        vat = _decimal(item.get("vat", 0))
        if vat is None or vat < 0 or vat > MAX_VAT:
            error(f"{cpath}.vat", "A VAT rate in percent, from 0 to 100.")
            ok = False
        step = item.get("step_size", 1)
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            error(f"{cpath}.step_size", "A whole number of Wh or seconds, 1 or more.")
            ok = False
        if ok and price is not None and vat is not None:
            components.append(PriceComponent(Dimension(kind), price, vat, step))
    return tuple(components) if ok else None


def _parse_restrictions(raw: Any, path: str, error: Any) -> Restrictions | None:
    if raw is None:
        return Restrictions()
    if not isinstance(raw, dict):
        error(path, "Restrictions are an object.")
        return None
    ok = True
    unknown = set(raw) - _RESTRICTION_KEYS
    if unknown:
        error(path, f"Unknown restrictions: {', '.join(sorted(unknown))}.")
        ok = False
    values: dict[str, Any] = {}
    for key in ("start_time", "end_time"):
        value = raw.get(key)
        if value is None:
            continue
        match = _TIME.match(value) if isinstance(value, str) else None
        if match is None:
            error(f"{path}.{key}", "A local time as HH:MM, 00:00 to 23:59.")
            ok = False
        else:
            values[key] = time(int(match[1]), int(match[2]))
    for key in ("start_date", "end_date"):
        value = raw.get(key)
        if value is None:
            continue
        try:
            if not isinstance(value, str) or not _DATE.match(value):
                raise ValueError
            values[key] = date.fromisoformat(value)
        except ValueError:
            error(f"{path}.{key}", "A local date as YYYY-MM-DD.")
            ok = False
    for key in ("min_kwh", "max_kwh", "min_current", "max_current", "min_power", "max_power"):
        value = raw.get(key)
        if value is None:
            continue
        number = _decimal(value)
        if number is None or number < 0:
            error(f"{path}.{key}", "A number, 0 or more.")
            ok = False
        else:
            values[key] = number
    for key in ("min_duration", "max_duration"):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            error(f"{path}.{key}", "A whole number of seconds, 0 or more.")
            ok = False
        else:
            values[key] = value
    days = raw.get("day_of_week")
    if days is not None:
        if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
            error(f"{path}.day_of_week", f"A non-empty list of {', '.join(DAYS)}.")
            ok = False
        elif len(set(days)) != len(days):
            error(f"{path}.day_of_week", "A day appears twice.")
            ok = False
        else:
            values["day_of_week"] = frozenset(DAYS.index(d) for d in days)
    if not ok:
        return None
    if (
        "start_time" in values
        and "end_time" in values
        and values["start_time"] == values["end_time"]
    ):
        error(f"{path}.end_time", "The end time equals the start time: leave both out for all day.")
        ok = False
    for low, high, what in (
        ("start_date", "end_date", "The end date must be after the start date."),
        ("min_kwh", "max_kwh", "max_kwh must be above min_kwh."),
        ("min_current", "max_current", "max_current must be above min_current."),
        ("min_power", "max_power", "max_power must be above min_power."),
        ("min_duration", "max_duration", "max_duration must be above min_duration."),
    ):
        if low in values and high in values and values[high] <= values[low]:
            error(f"{path}.{high}", what)
            ok = False
    return Restrictions(**values) if ok else None


# A restriction as a region: per axis, a list of half-open intervals.
_Interval = tuple[float, float]
_FULL: list[_Interval] = [(-math.inf, math.inf)]


def _axes(r: Restrictions) -> list[list[_Interval]]:
    def span(low: Any, high: Any) -> list[_Interval]:
        return [
            (
                -math.inf if low is None else float(low),
                math.inf if high is None else float(high),
            )
        ]

    def minutes(t: time) -> float:
        return float(t.hour * 60 + t.minute)

    if r.start_time is None and r.end_time is None:
        clock = [(0.0, 1440.0)]
    else:
        s = minutes(r.start_time) if r.start_time is not None else 0.0
        e = minutes(r.end_time) if r.end_time is not None else 1440.0
        clock = [(s, e)] if s < e else [(s, 1440.0), (0.0, e)]
    days = (
        [(float(d), float(d) + 1) for d in sorted(r.day_of_week)]
        if r.day_of_week is not None
        else [(0.0, 7.0)]
    )
    return [
        clock,
        days,
        span(
            r.start_date.toordinal() if r.start_date else None,
            r.end_date.toordinal() if r.end_date else None,
        ),
        span(r.min_kwh, r.max_kwh),
        span(r.min_power, r.max_power),
        span(r.min_current, r.max_current),
        span(r.min_duration, r.max_duration),
    ]


def _intersects(a: list[_Interval], b: list[_Interval]) -> bool:
    return any(x0 < y1 and y0 < x1 for x0, x1 in a for y0, y1 in b)


def _covers(a: list[_Interval], b: list[_Interval]) -> bool:
    """Whether the union of a's intervals contains every interval of b."""
    merged: list[list[float]] = []
    for lo, hi in sorted(a):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return all(any(m[0] <= lo and hi <= m[1] for m in merged) for lo, hi in b)


def _describe(dimension: Dimension) -> str:
    return dimension.value


def _check_overlaps(elements: Sequence[TariffElement], error: Any) -> None:
    for j, later in enumerate(elements):
        later_axes = _axes(later.restrictions)
        for i in range(j):
            earlier = elements[i]
            shared = [
                c.type for c in later.price_components if earlier.component(c.type) is not None
            ]
            if not shared:
                continue
            earlier_axes = _axes(earlier.restrictions)
            if not all(_intersects(a, b) for a, b in zip(earlier_axes, later_axes, strict=True)):
                continue
            if all(_covers(b, a) for a, b in zip(earlier_axes, later_axes, strict=True)):
                continue  # the later element is the earlier one's fallback
            names = ", ".join(_describe(d) for d in shared)
            if earlier_axes[2:] != later_axes[2:]:
                # Layered on other grounds (dates, energy, power, duration): the order decides,
                # as OCPI intends, unless the later element can never apply (below).
                if all(_covers(a, b) for a, b in zip(earlier_axes, later_axes, strict=True)):
                    error(
                        f"elements[{j}].restrictions",
                        f"Never used for {names}: element {i} already covers all of its "
                        "restrictions.",
                    )
                continue
            if all(_covers(a, b) for a, b in zip(earlier_axes, later_axes, strict=True)):
                error(
                    f"elements[{j}].restrictions",
                    f"Never used for {names}: element {i} already covers all of its restrictions.",
                )
            else:
                error(
                    f"elements[{j}].restrictions",
                    f"Overlaps element {i} for {names}: their restrictions hold at the same time "
                    "without one covering the other. Narrow one of them, or make the later one "
                    "cover the earlier.",
                )


def _plain(number: Decimal) -> str:
    text = format(number.normalize(), "f")
    return text


def tariff_elements_dump(elements: Iterable[TariffElement]) -> list[dict[str, Any]]:
    """TariffElements as the OCPI 2.2.1 ``elements`` document (numbers as decimal strings)."""
    document: list[dict[str, Any]] = []
    for element in elements:
        r = element.restrictions
        restrictions: dict[str, Any] = {}
        for key in ("start_time", "end_time"):
            value = getattr(r, key)
            if value is not None:
                restrictions[key] = value.strftime("%H:%M")
        for key in ("start_date", "end_date"):
            value = getattr(r, key)
            if value is not None:
                restrictions[key] = value.isoformat()
        for key in ("min_kwh", "max_kwh", "min_current", "max_current", "min_power", "max_power"):
            value = getattr(r, key)
            if value is not None:
                restrictions[key] = _plain(value)
        for key in ("min_duration", "max_duration"):
            value = getattr(r, key)
            if value is not None:
                restrictions[key] = value
        if r.day_of_week is not None:
            restrictions["day_of_week"] = [DAYS[d] for d in sorted(r.day_of_week)]
        item: dict[str, Any] = {
            "price_components": [
                {
                    "type": str(c.type),
                    "price": _plain(c.price),
                    "vat": _plain(c.vat),
                    "step_size": c.step_size,
                }
                for c in element.price_components
            ]
        }
        if restrictions:
            item["restrictions"] = restrictions
        document.append(item)
    return document


def zone_valid(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
