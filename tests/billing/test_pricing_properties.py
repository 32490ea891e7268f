"""Properties of the pricing engine over generated tariffs and sessions: never negative, lines sum
exactly to the totals, deterministic, and more energy never costs less."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.pricing import (
    Dimension,
    PeriodState,
    PriceComponent,
    Restrictions,
    SessionTimeline,
    StatePeriod,
    TariffElement,
    TariffSpec,
    TimelineSample,
    price_session,
)

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")
# Around the 2026 DST changes of Europe and North America, and an ordinary day.
STARTS = (
    datetime(2026, 3, 28, 20, 0, tzinfo=UTC),
    datetime(2026, 3, 8, 4, 0, tzinfo=UTC),
    datetime(2026, 10, 24, 21, 30, tzinfo=UTC),
    datetime(2026, 6, 16, 7, 15, tzinfo=UTC),
)

prices = st.decimals(min_value=0, max_value=20, places=4)
vats = st.sampled_from([Decimal(0), Decimal(7), Decimal(19), Decimal("20.5"), Decimal(21)])


@st.composite
def components(draw: Any, *, with_steps: bool = True) -> tuple[PriceComponent, ...]:
    kinds = draw(st.sets(st.sampled_from(list(Dimension)), min_size=1))
    return tuple(
        PriceComponent(
            kind,
            draw(prices),
            draw(vats),
            draw(st.sampled_from([1, 1, 60, 900, 1000])) if with_steps else 1,
        )
        for kind in sorted(kinds)
    )


@st.composite
def restrictions(draw: Any, *, with_power: bool = True) -> Restrictions:
    values: dict[str, Any] = {}
    if draw(st.booleans()):
        start = draw(st.integers(0, 23))
        end = draw(st.integers(0, 23).filter(lambda h: h != start))
        values["start_time"], values["end_time"] = time(start), time(end)
    if draw(st.booleans()):
        values["day_of_week"] = frozenset(draw(st.sets(st.integers(0, 6), min_size=1)))
    if draw(st.booleans()):
        low = draw(st.integers(0, 7200))
        values["min_duration"] = low
        values["max_duration"] = low + draw(st.integers(1, 7200))
    if with_power and draw(st.booleans()):
        low = draw(st.integers(0, 40))
        values["min_kwh"] = Decimal(low)
        values["max_kwh"] = Decimal(low + draw(st.integers(1, 40)))
    if with_power and draw(st.booleans()):
        values["min_power"] = Decimal(draw(st.integers(0, 50)))
    return Restrictions(**values)


@st.composite
def tariffs(draw: Any, *, with_power: bool = True, with_steps: bool = True) -> TariffSpec:
    elements = [
        TariffElement(
            draw(components(with_steps=with_steps)), draw(restrictions(with_power=with_power))
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    # A fallback without restrictions, as real tariffs end.
    elements.append(TariffElement(draw(components(with_steps=with_steps)), Restrictions()))
    low = draw(st.none() | st.decimals(min_value=0, max_value=10, places=2))
    high = draw(st.none() | st.decimals(min_value=0, max_value=200, places=2))
    if low is not None and high is not None and high < low:
        low, high = high, low
    return TariffSpec(
        currency=draw(st.sampled_from(["EUR", "EUR", "JPY", "KWD"])),
        elements=tuple(elements),
        min_price=low,
        max_price=high,
        parking_grace_seconds=draw(st.sampled_from([0, 600, 1800])),
    )


@st.composite
def timelines(draw: Any) -> SessionTimeline:
    start = draw(st.sampled_from(STARTS)) + timedelta(minutes=draw(st.integers(0, 600)))
    register = Decimal(draw(st.integers(0, 10**7)))
    samples = [TimelineSample(start, energy_wh=register, power_w=Decimal(7000))]
    moment = start
    for _ in range(draw(st.integers(0, 12))):
        moment += timedelta(seconds=draw(st.integers(1, 3600)))
        register += draw(st.decimals(min_value=0, max_value=30000, places=3))
        power = draw(st.none() | st.decimals(min_value=0, max_value=150000, places=0))
        current = draw(st.none() | st.decimals(min_value=0, max_value=500, places=1))
        samples.append(TimelineSample(moment, energy_wh=register, power_w=power, current_a=current))
    end = moment + timedelta(seconds=draw(st.integers(0, 7200)))
    periods: list[StatePeriod] = []
    cursor = start
    for _ in range(draw(st.integers(0, 4))):
        length = timedelta(seconds=draw(st.integers(1, 5400)))
        state = draw(st.sampled_from(list(PeriodState)))
        periods.append(StatePeriod(cursor, min(cursor + length, end), state))
        cursor += length
        if cursor >= end:
            break
    return SessionTimeline(
        started_at=start,
        ended_at=end,
        tz=draw(st.sampled_from(ZONES)),
        samples=tuple(samples),
        periods=tuple(p for p in periods if p.end > p.start),
        meter_start_wh=samples[0].energy_wh,
        energy_wh=draw(st.none() | st.just(register - samples[0].energy_wh)),  # type: ignore[operator]
    )


@settings(max_examples=150, deadline=None)
@given(tariffs(), timelines())
def test_lines_sum_exactly_to_totals_which_are_never_negative(
    tariff: TariffSpec, timeline: SessionTimeline
) -> None:
    priced = price_session(tariff, timeline)
    assert priced.total_excl_vat >= 0
    assert priced.total_incl_vat >= 0
    assert sum((ln.amount_excl_vat for ln in priced.lines), Decimal(0)) == priced.total_excl_vat
    assert sum((ln.vat_amount for ln in priced.lines), Decimal(0)) == priced.total_vat
    assert priced.total_excl_vat + priced.total_vat == priced.total_incl_vat
    assert sum((base for _, base, _ in priced.vat_by_rate), Decimal(0)) == priced.total_excl_vat
    assert sum((vat for _, _, vat in priced.vat_by_rate), Decimal(0)) == priced.total_vat
    if tariff.min_price is not None:
        assert priced.total_excl_vat >= tariff.min_price.quantize(priced.total_excl_vat)
    if tariff.max_price is not None:
        assert priced.total_excl_vat <= tariff.max_price.quantize(priced.total_excl_vat)
    # Charging periods tile the session and carry all of its energy.
    if priced.periods:
        assert priced.periods[0].start == timeline.started_at
        assert priced.periods[-1].end == timeline.ended_at
        for a, b in zip(priced.periods, priced.periods[1:], strict=False):
            assert a.end == b.start
    assert sum((p.energy_wh for p in priced.periods), Decimal(0)) == priced.energy_wh
    assert priced.charging_seconds + priced.parking_seconds == sum(
        (p.seconds for p in priced.periods), Decimal(0)
    )


@settings(max_examples=100, deadline=None)
@given(tariffs(), timelines(), st.randoms(use_true_random=False))
def test_pricing_is_deterministic(
    tariff: TariffSpec, timeline: SessionTimeline, shuffle: random.Random
) -> None:
    first = price_session(tariff, timeline)
    assert price_session(tariff, timeline) == first
    # The order samples and periods arrive in changes nothing.
    samples, periods = list(timeline.samples), list(timeline.periods)
    shuffle.shuffle(samples)
    shuffle.shuffle(periods)
    reordered = SessionTimeline(
        started_at=timeline.started_at,
        ended_at=timeline.ended_at,
        tz=timeline.tz,
        samples=tuple(samples),
        periods=tuple(periods),
        meter_start_wh=timeline.meter_start_wh,
        energy_wh=timeline.energy_wh,
    )
    assert price_session(tariff, reordered) == first


@settings(max_examples=150, deadline=None)
@given(
    tariffs(with_power=False, with_steps=False),
    timelines(),
    st.integers(min_value=0, max_value=12),
    st.decimals(min_value=0, max_value=50000, places=3),
)
def test_more_energy_never_costs_less(
    tariff: TariffSpec, timeline: SessionTimeline, where: int, extra: Decimal
) -> None:
    # The same session with ``extra`` Wh more from one sample on: times, periods and every other
    # reading stay as they were. Left out: tariffs priced by power or energy tiers (a faster charge
    # may rightly fall into a cheaper tier) and step sizes, where OCPI rounds a dimension with the
    # step of the last component used: energy reaching a later, finer-stepped period can make the
    # rounding smaller (steps have their own worked examples).
    where = min(where, len(timeline.samples) - 1)
    samples = tuple(
        TimelineSample(
            s.at,
            s.energy_wh + extra if i >= where and s.energy_wh is not None else s.energy_wh,
            s.power_w,
            s.current_a,
        )
        for i, s in enumerate(timeline.samples)
    )
    if where == 0:
        samples = (timeline.samples[0], *samples[1:])
    more = SessionTimeline(
        started_at=timeline.started_at,
        ended_at=timeline.ended_at,
        tz=timeline.tz,
        samples=samples,
        periods=timeline.periods,
        meter_start_wh=timeline.meter_start_wh,
        energy_wh=None if timeline.energy_wh is None else timeline.energy_wh + extra,
    )
    before, after = price_session(tariff, timeline), price_session(tariff, more)
    assert after.energy_wh >= before.energy_wh
    assert after.total_excl_vat >= before.total_excl_vat
