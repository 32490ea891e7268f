"""The energy purchase cost of a session: flat and time of use, in the site's zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from billing.energycost import (
    EnergyPriceSpec,
    PricePeriod,
    Reading,
    energy_cost,
    energy_cost_exact,
)

AMS = ZoneInfo("Europe/Amsterdam")
EVERY_DAY = frozenset(range(7))
SINCE = datetime(2024, 1, 1, tzinfo=UTC)


def steady(start: datetime, hours: int, kwh_per_hour: Decimal) -> list[Reading]:
    return [
        Reading(start + timedelta(hours=h), Decimal(1000) * kwh_per_hour * h)
        for h in range(hours + 1)
    ]


def test_flat_price_is_energy_times_price() -> None:
    spec = EnergyPriceSpec(SINCE, Decimal("0.2150"))
    readings = steady(datetime(2024, 3, 5, 10, tzinfo=UTC), 3, Decimal("7.4"))
    # 22.2 kWh at 0.215 = 4.773 -> 4.77
    assert energy_cost(readings, [spec], AMS) == Decimal("4.77")


def test_time_of_use_splits_a_stretch_at_the_period_boundary() -> None:
    # Peak 17:00-21:00 local at 0.40, else 0.10. Amsterdam is UTC+1 in March.
    spec = EnergyPriceSpec(
        SINCE,
        Decimal("0.10"),
        (PricePeriod(EVERY_DAY, time(17), time(21), Decimal("0.40")),),
    )
    # One reading pair from 15:30 to 16:30 UTC (16:30-17:30 local), 10 kWh spread evenly:
    # 5 kWh off-peak (0.50) + 5 kWh peak (2.00) = 2.50.
    start = datetime(2024, 3, 5, 15, 30, tzinfo=UTC)
    readings = [Reading(start, Decimal(0)), Reading(start + timedelta(hours=1), Decimal(10_000))]
    assert energy_cost(readings, [spec], AMS) == Decimal("2.50")


def test_period_to_midnight_and_weekdays() -> None:
    # Nights from 22:00 to midnight on weekdays only are cheap.
    spec = EnergyPriceSpec(
        SINCE,
        Decimal("0.30"),
        (PricePeriod(frozenset({0, 1, 2, 3, 4}), time(22), time(0), Decimal("0.05")),),
    )
    tuesday_2230 = datetime(2024, 3, 5, 21, 30, tzinfo=UTC)  # 22:30 local
    saturday_2230 = datetime(2024, 3, 9, 21, 30, tzinfo=UTC)
    one_kwh = [Decimal(0), Decimal(1000)]
    tue = [
        Reading(tuesday_2230, one_kwh[0]),
        Reading(tuesday_2230 + timedelta(minutes=30), one_kwh[1]),
    ]
    sat = [
        Reading(saturday_2230, one_kwh[0]),
        Reading(saturday_2230 + timedelta(minutes=30), one_kwh[1]),
    ]
    assert energy_cost(tue, [spec], AMS) == Decimal("0.05")
    assert energy_cost(sat, [spec], AMS) == Decimal("0.30")


def test_a_new_price_applies_from_its_moment() -> None:
    change = datetime(2024, 3, 5, 12, tzinfo=UTC)
    specs = [EnergyPriceSpec(SINCE, Decimal("0.10")), EnergyPriceSpec(change, Decimal("0.30"))]
    readings = [
        Reading(change - timedelta(hours=1), Decimal(0)),
        Reading(change + timedelta(hours=1), Decimal(4000)),
    ]
    # 2 kWh at 0.10 + 2 kWh at 0.30
    assert energy_cost(readings, specs, AMS) == Decimal("0.80")


def test_no_price_no_cost_and_before_any_price() -> None:
    readings = steady(datetime(2023, 6, 1, tzinfo=UTC), 1, Decimal(5))
    assert energy_cost(readings, [], AMS) is None
    assert energy_cost(readings, [EnergyPriceSpec(SINCE, Decimal("0.2"))], AMS) is None


def test_across_the_dst_change() -> None:
    # 31 March 2024, Amsterdam jumps from 02:00 to 03:00. Peak from 02:30 to 04:00 local.
    spec = EnergyPriceSpec(
        SINCE, Decimal("0.10"), (PricePeriod(EVERY_DAY, time(3), time(4), Decimal("1.00")),)
    )
    start = datetime(2024, 3, 31, 0, 0, tzinfo=UTC)  # 01:00 local (CET)
    # 00:00-02:00 UTC = 01:00 CET .. 04:00 CEST: one hour off-peak, one hour peak, 1 kWh each.
    readings = [Reading(start, Decimal(0)), Reading(start + timedelta(hours=2), Decimal(2000))]
    assert energy_cost(readings, [spec], AMS) == Decimal("1.10")


prices = st.decimals(min_value=0, max_value=5, places=4)


@given(
    base=prices,
    peak=prices,
    increments=st.lists(st.integers(min_value=0, max_value=20_000), min_size=1, max_size=12),
    minutes=st.integers(min_value=1, max_value=240),
    start_minute=st.integers(min_value=0, max_value=60 * 24 * 7),
)
def test_cost_is_never_negative_and_bounded_by_the_prices(
    base: Decimal, peak: Decimal, increments: list[int], minutes: int, start_minute: int
) -> None:
    spec = EnergyPriceSpec(
        SINCE, base, (PricePeriod(frozenset({1, 3}), time(7), time(9, 30), peak),)
    )
    start = datetime(2024, 10, 20, tzinfo=UTC) + timedelta(minutes=start_minute)
    register = Decimal(0)
    readings = [Reading(start, register)]
    for n, wh in enumerate(increments, start=1):
        register += wh
        readings.append(Reading(start + timedelta(minutes=minutes * n), register))
    exact = energy_cost_exact(readings, [spec], AMS)
    assert exact is not None
    kwh = register / 1000
    assert (
        min(base, peak) * kwh - Decimal("1e-9") <= exact <= max(base, peak) * kwh + Decimal("1e-9")
    )
    # Deterministic: the same input gives the same figure.
    assert energy_cost(readings, [spec], AMS) == energy_cost(list(readings), [spec], AMS)
