"""The pricing engine on worked examples, each computed by hand in the test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from billing.pricing import (
    MAX_PRICE,
    MIN_PRICE,
    PeriodState,
    PricedSession,
    SessionTimeline,
    StatePeriod,
    TariffSpec,
    TimelineSample,
    price_session,
    tariff_elements_parse,
    timeline_example,
)

BERLIN = "Europe/Berlin"
D = Decimal


def spec(elements: list[dict], **kwargs: object) -> TariffSpec:
    return TariffSpec(currency="EUR", elements=tariff_elements_parse(elements), **kwargs)  # type: ignore[arg-type]


def local(text: str, zone: str = BERLIN) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def lines_of(priced: PricedSession) -> list[tuple[str, int | None, Decimal, Decimal]]:
    return [
        (ln.dimension, ln.element_index, ln.quantity, ln.amount_excl_vat) for ln in priced.lines
    ]


def assert_sums(priced: PricedSession) -> None:
    assert sum(ln.amount_excl_vat for ln in priced.lines) == priced.total_excl_vat
    assert sum(ln.vat_amount for ln in priced.lines) == priced.total_vat
    assert priced.total_excl_vat + priced.total_vat == priced.total_incl_vat


def energy(price: str, vat: int = 19, step: int = 1) -> dict:
    return {"type": "ENERGY", "price": price, "vat": vat, "step_size": step}


def test_time_of_use_split_across_a_tariff_boundary() -> None:
    # Peak 17:00-21:00 at 0.40/kWh, otherwise 0.25/kWh. A Tuesday session 16:00-18:00 local at a
    # steady 11 kW: 11 kWh before 17:00 and 11 kWh after.
    tariff = spec(
        [
            {
                "price_components": [energy("0.40")],
                "restrictions": {"start_time": "17:00", "end_time": "21:00"},
            },
            {"price_components": [energy("0.25")]},
        ]
    )
    timeline = timeline_example(
        started_at=local("2026-06-16T16:00"),
        charging=timedelta(hours=2),
        energy_wh=D(22000),
        tz=BERLIN,
    )
    priced = price_session(tariff, timeline)
    # 11 kWh x 0.40 = 4.40 (peak), 11 kWh x 0.25 = 2.75 (off-peak)
    assert lines_of(priced) == [
        ("ENERGY", 0, D("11.000000"), D("4.40")),
        ("ENERGY", 1, D("11.000000"), D("2.75")),
    ]
    assert priced.total_excl_vat == D("7.15")
    # VAT 19 % on 7.15 = 1.3585 -> 1.36
    assert priced.total_vat == D("1.36")
    assert priced.total_incl_vat == D("8.51")
    assert [(p.start, p.end) for p in priced.periods] == [
        (local("2026-06-16T16:00"), local("2026-06-16T17:00")),
        (local("2026-06-16T17:00"), local("2026-06-16T18:00")),
    ]
    assert priced.energy_wh == D(22000)
    assert priced.charging_seconds == D(7200)
    assert_sums(priced)


def test_idle_fee_after_the_grace_period() -> None:
    # 0.30/kWh, parking 6.00/h after 30 minutes of grace. 10 kWh in one hour, then 90 minutes
    # idle: 60 minutes of it are billed.
    tariff = spec(
        [
            {
                "price_components": [
                    energy("0.30", vat=0),
                    {"type": "PARKING_TIME", "price": "6.00", "vat": 0},
                ]
            }
        ],
        parking_grace_seconds=1800,
    )
    timeline = timeline_example(
        started_at=local("2026-06-16T09:00"),
        charging=timedelta(hours=1),
        idle=timedelta(minutes=90),
        energy_wh=D(10000),
        tz=BERLIN,
    )
    priced = price_session(tariff, timeline)
    assert lines_of(priced) == [
        ("ENERGY", 0, D("10.000000"), D("3.00")),  # 10 kWh x 0.30
        ("PARKING_TIME", 0, D("1.000000"), D("6.00")),  # (90 - 30) min = 1 h x 6.00
    ]
    assert priced.total_excl_vat == D("9.00")
    assert priced.total_vat == D("0.00")
    assert priced.parking_seconds == D(5400)
    assert priced.charging_seconds == D(3600)
    states = [(p.state, p.element_for("PARKING_TIME")) for p in priced.periods]
    assert states == [
        (PeriodState.CHARGING, None),
        (PeriodState.IDLE, None),  # the grace: idle, not billed
        (PeriodState.IDLE, 0),
    ]
    assert priced.periods[1].end == local("2026-06-16T10:30")


def test_idle_within_the_grace_period_costs_nothing() -> None:
    tariff = spec(
        [{"price_components": [{"type": "PARKING_TIME", "price": "6.00", "vat": 0}]}],
        parking_grace_seconds=1800,
    )
    timeline = timeline_example(
        started_at=local("2026-06-16T09:00"),
        charging=timedelta(hours=1),
        idle=timedelta(minutes=30),
        energy_wh=D(10000),
        tz=BERLIN,
    )
    priced = price_session(tariff, timeline)
    assert priced.lines == ()
    assert priced.total_incl_vat == D("0.00")


def test_step_sizes_round_a_dimension_up() -> None:
    # Energy billed in whole kWh (step 1000 Wh), charging time in quarter hours (step 900 s).
    # 7.2 kWh in 50 minutes: 8 kWh x 0.30 = 2.40 and 60 min = 1 h x 2.00 = 2.00.
    tariff = spec(
        [
            {
                "price_components": [
                    energy("0.30", vat=0, step=1000),
                    {"type": "TIME", "price": "2.00", "vat": 0, "step_size": 900},
                ]
            }
        ]
    )
    timeline = timeline_example(
        started_at=local("2026-06-16T09:00"),
        charging=timedelta(minutes=50),
        energy_wh=D(7200),
        tz=BERLIN,
    )
    priced = price_session(tariff, timeline)
    assert lines_of(priced) == [
        ("ENERGY", 0, D("8.000000"), D("2.40")),
        ("TIME", 0, D("1.000000"), D("2.00")),
    ]
    assert [ln.step_volume for ln in priced.lines] == [D(800), D(600)]
    assert priced.energy_wh == D(7200)  # the totals are what was used, not what was billed
    assert priced.total_excl_vat == D("4.40")


def test_step_size_of_the_last_component_used_applies_to_the_whole_dimension() -> None:
    # Day energy in Wh, night energy in whole kWh; a session from 21:30 to 22:30 at 3 kW uses 1.5
    # kWh before 22:00 and 1.5 kWh after. The total, 3.0 kWh, is already a multiple of 1000 Wh.
    # With 3.3 kW: 1.65 + 1.65 = 3.3 kWh, rounded up to 4 kWh on the night line.
    tariff = spec(
        [
            {
                "price_components": [energy("0.20", vat=0, step=1000)],
                "restrictions": {"start_time": "22:00", "end_time": "06:00"},
            },
            {"price_components": [energy("0.40", vat=0)]},
        ]
    )
    timeline = timeline_example(
        started_at=local("2026-06-16T21:30"),
        charging=timedelta(hours=1),
        energy_wh=D(3300),
        tz=BERLIN,
    )
    priced = price_session(tariff, timeline)
    # Day: 1.65 kWh x 0.40 = 0.66. Night: (1.65 + 0.7) kWh x 0.20 = 0.47.
    assert lines_of(priced) == [
        ("ENERGY", 0, D("2.350000"), D("0.47")),
        ("ENERGY", 1, D("1.650000"), D("0.66")),
    ]
    assert priced.total_excl_vat == D("1.13")


def test_minimum_price() -> None:
    # 3 kWh x 0.30 = 0.90, below the minimum of 2.00 (excl. VAT): a MIN_PRICE line of 1.10.
    tariff = spec([{"price_components": [energy("0.30")]}], min_price=D("2.00"))
    timeline = timeline_example(
        started_at=local("2026-06-16T09:00"),
        charging=timedelta(minutes=20),
        energy_wh=D(3000),
        tz=BERLIN,
    )
    priced = price_session(tariff, timeline)
    assert lines_of(priced) == [
        ("ENERGY", 0, D("3.000000"), D("0.90")),
        (MIN_PRICE, None, D(1), D("1.10")),
    ]
    assert priced.total_excl_vat == D("2.00")
    # VAT 19 % on 2.00 = 0.38: 0.90 -> 0.17 (0.171), the rest 0.21 on the last line.
    assert [ln.vat_amount for ln in priced.lines] == [D("0.17"), D("0.21")]
    assert priced.total_incl_vat == D("2.38")


def test_maximum_price() -> None:
    # 100 kWh x 0.30 = 30.00, above the maximum of 25.00: a MAX_PRICE line of -5.00.
    tariff = spec([{"price_components": [energy("0.30")]}], max_price=D("25"))
    timeline = timeline_example(
        started_at=local("2026-06-16T09:00"),
        charging=timedelta(hours=3),
        energy_wh=D(100000),
        tz=BERLIN,
    )
    priced = price_session(tariff, timeline)
    assert lines_of(priced) == [
        ("ENERGY", 0, D("100.000000"), D("30.00")),
        (MAX_PRICE, None, D(1), D("-5.00")),
    ]
    assert priced.total_excl_vat == D("25.00")
    assert priced.total_vat == D("4.75")  # 19 % of 25.00
    assert priced.total_incl_vat == D("29.75")
    assert_sums(priced)


def test_maximum_price_is_shared_over_vat_rates() -> None:
    # Energy 10.00 at 19 %, flat 10.00 at 7 %: capped at 10.00, each rate loses half.
    tariff = spec(
        [
            {
                "price_components": [
                    energy("1.00", vat=19),
                    {"type": "FLAT", "price": "10", "vat": 7},
                ]
            }
        ],
        max_price=D(10),
    )
    timeline = timeline_example(
        started_at=local("2026-06-16T09:00"),
        charging=timedelta(hours=1),
        energy_wh=D(10000),
        tz=BERLIN,
    )
    priced = price_session(tariff, timeline)
    caps = [(ln.vat_rate, ln.amount_excl_vat) for ln in priced.lines if ln.dimension == MAX_PRICE]
    assert caps == [(D(7), D("-5.00")), (D(19), D("-5.00"))]
    # VAT: 5.00 x 7 % = 0.35, 5.00 x 19 % = 0.95
    assert priced.vat_by_rate == ((D(7), D("5.00"), D("0.35")), (D(19), D("5.00"), D("0.95")))
    assert priced.total_incl_vat == D("11.30")
    assert_sums(priced)


def test_free_tariff_prices_to_zero() -> None:
    tariff = spec([{"price_components": [energy("0"), {"type": "FLAT", "price": "0", "vat": 19}]}])
    timeline = timeline_example(
        started_at=local("2026-06-16T09:00"),
        charging=timedelta(hours=2),
        energy_wh=D(22000),
        tz=BERLIN,
    )
    priced = price_session(tariff, timeline)
    assert priced.total_incl_vat == D("0.00")
    assert {ln.amount_excl_vat for ln in priced.lines} == {D("0.00")}


NIGHT_AND_DAY = [
    {
        "price_components": [{"type": "TIME", "price": "1.00", "vat": 0}],
        "restrictions": {"start_time": "00:00", "end_time": "06:00"},
    },
    {"price_components": [{"type": "TIME", "price": "2.00", "vat": 0}]},
]


def test_session_across_midnight_and_the_autumn_dst_change() -> None:
    # Berlin, 24 to 25 October 2026: clocks go back from 03:00 CEST to 02:00 CET. A session from
    # 22:00 local to 06:00 local lasts 9 real hours: 2 h before midnight at 2.00/h = 4.00, and
    # 7 h between midnight and 06:00 (the hour 02:00-03:00 happens twice) at 1.00/h = 7.00.
    tariff = spec(NIGHT_AND_DAY)
    start = local("2026-10-24T22:00")
    end = datetime(2026, 10, 25, 5, 0, tzinfo=UTC)  # 06:00 CET
    assert end.astimezone(ZoneInfo(BERLIN)).hour == 6
    timeline = SessionTimeline(started_at=start, ended_at=end, tz=BERLIN)
    priced = price_session(tariff, timeline)
    assert lines_of(priced) == [
        ("TIME", 0, D("7.000000"), D("7.00")),
        ("TIME", 1, D("2.000000"), D("4.00")),
    ]
    assert priced.charging_seconds == D(9 * 3600)
    assert priced.total_excl_vat == D("11.00")


def test_session_across_midnight_and_the_spring_dst_change() -> None:
    # Berlin, 28 to 29 March 2026: clocks jump from 02:00 CET to 03:00 CEST. From 23:00 local to
    # 07:00 local is 7 real hours: 23-24 at 2.00, 00-06 local (5 real hours) at 1.00, 06-07 at 2.00.
    tariff = spec(NIGHT_AND_DAY)
    start = local("2026-03-28T23:00")
    end = local("2026-03-29T07:00")
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=7)
    priced = price_session(tariff, SessionTimeline(started_at=start, ended_at=end, tz=BERLIN))
    assert lines_of(priced) == [
        ("TIME", 0, D("5.000000"), D("5.00")),
        ("TIME", 1, D("2.000000"), D("4.00")),
    ]
    assert [p.start for p in priced.periods] == [
        start,
        local("2026-03-29T00:00"),
        local("2026-03-29T06:00"),
    ]


def test_day_of_week_and_date_range_in_the_site_zone() -> None:
    # Weekends (local) at 0.20, otherwise 0.40; a promotion in June 2026 at 0.10 wins over both.
    # Saturday 23:30 to Sunday 00:30 in New York is Sunday 03:30-04:30 UTC: all weekend.
    zone = "America/New_York"
    tariff = spec(
        [
            {
                "price_components": [energy("0.10", vat=0)],
                "restrictions": {"start_date": "2026-06-01", "end_date": "2026-07-01"},
            },
            {
                "price_components": [energy("0.20", vat=0)],
                "restrictions": {"day_of_week": ["SATURDAY", "SUNDAY"]},
            },
            {"price_components": [energy("0.40", vat=0)]},
        ]
    )
    weekend = timeline_example(
        started_at=local("2026-05-30T23:30", zone),
        charging=timedelta(hours=1),
        energy_wh=D(10000),
        tz=zone,
    )
    assert price_session(tariff, weekend).total_excl_vat == D("2.00")  # 10 kWh x 0.20
    # Sunday 31 May 23:30 to Monday 1 June 00:30: 5 kWh x 0.20 + 5 kWh x 0.10 (promotion) = 1.50.
    into_june = timeline_example(
        started_at=local("2026-05-31T23:30", zone),
        charging=timedelta(hours=1),
        energy_wh=D(10000),
        tz=zone,
    )
    assert price_session(tariff, into_june).total_excl_vat == D("1.50")
    # Sunday 24 May 23:30 to Monday 00:30: 5 kWh at 0.20 and 5 kWh at 0.40 = 3.00.
    into_monday = timeline_example(
        started_at=local("2026-05-24T23:30", zone),
        charging=timedelta(hours=1),
        energy_wh=D(10000),
        tz=zone,
    )
    assert price_session(tariff, into_monday).total_excl_vat == D("3.00")
    # 30 June 23:30 to 1 July 00:30 (Tuesday-Wednesday): 5 kWh x 0.10 + 5 kWh x 0.40 = 2.50.
    promotion_ends = timeline_example(
        started_at=local("2026-06-30T23:30", zone),
        charging=timedelta(hours=1),
        energy_wh=D(10000),
        tz=zone,
    )
    assert price_session(tariff, promotion_ends).total_excl_vat == D("2.50")


def test_kwh_tiers_split_exactly_at_the_threshold() -> None:
    # The first 10 kWh at 0.50, beyond at 0.30. 25 kWh: 10 x 0.50 + 15 x 0.30 = 9.50, whatever the
    # samples' spacing (the threshold falls between two samples here).
    tariff = spec(
        [
            {"price_components": [energy("0.50", vat=0)], "restrictions": {"max_kwh": 10}},
            {"price_components": [energy("0.30", vat=0)], "restrictions": {"min_kwh": 10}},
        ]
    )
    start = local("2026-06-16T09:00")
    samples = tuple(
        TimelineSample(start + timedelta(minutes=m), energy_wh=D(1000 + wh))
        for m, wh in ((0, 0), (20, 7000), (40, 16000), (60, 25000))
    )
    timeline = SessionTimeline(
        started_at=start,
        ended_at=start + timedelta(hours=1),
        tz=BERLIN,
        samples=samples,
        meter_start_wh=D(1000),
    )
    priced = price_session(tariff, timeline)
    assert lines_of(priced) == [
        ("ENERGY", 0, D("10.000000"), D("5.00")),
        ("ENERGY", 1, D("15.000000"), D("4.50")),
    ]


def test_power_current_and_duration_restrictions() -> None:
    # Fast charging (50 kW or more) at 0.60/kWh, otherwise 0.35; after two hours a blocking fee of
    # 0.10/min (6.00/h) charging time. Samples report power; current restrictions need current.
    tariff = spec(
        [
            {"price_components": [energy("0.60", vat=0)], "restrictions": {"min_power": 50}},
            {"price_components": [energy("0.35", vat=0)]},
            {
                "price_components": [{"type": "TIME", "price": "6.00", "vat": 0}],
                "restrictions": {"min_duration": 7200},
            },
            {
                "price_components": [{"type": "TIME", "price": "100", "vat": 0}],
                "restrictions": {"min_current": 1000, "max_duration": 7200},
            },
        ]
    )
    start = local("2026-06-16T09:00")
    samples = (
        TimelineSample(start, energy_wh=D(0), power_w=D(60000)),
        TimelineSample(start + timedelta(minutes=30), energy_wh=D(30000), power_w=D(20000)),
        TimelineSample(start + timedelta(hours=3), energy_wh=D(80000), power_w=D(0)),
    )
    timeline = SessionTimeline(
        started_at=start,
        ended_at=start + timedelta(hours=3),
        tz=BERLIN,
        samples=samples,
        meter_start_wh=D(0),
    )
    priced = price_session(tariff, timeline)
    # 30 kWh at 60 kW x 0.60 = 18.00; 50 kWh at 20 kW x 0.35 = 17.50; 1 h after 2 h x 6.00 = 6.00.
    # The current restriction never holds (no current samples), so no TIME before two hours.
    assert lines_of(priced) == [
        ("ENERGY", 0, D("30.000000"), D("18.00")),
        ("ENERGY", 1, D("50.000000"), D("17.50")),
        ("TIME", 2, D("1.000000"), D("6.00")),
    ]


def test_status_periods_decide_charging_and_parking_time() -> None:
    # TIME 1.20/h while charging, PARKING_TIME 3.00/h while idle, no grace: 30 min charging, 20 min
    # suspended by the car, 10 min charging, 60 min idle. Charging 40 min = 0.80; idle 80 min = 4.00.
    tariff = spec(
        [
            {
                "price_components": [
                    {"type": "TIME", "price": "1.20", "vat": 0},
                    {"type": "PARKING_TIME", "price": "3.00", "vat": 0},
                ]
            }
        ]
    )
    start = local("2026-06-16T09:00")
    at = [start + timedelta(minutes=m) for m in (0, 30, 50, 60, 120)]
    periods = (
        StatePeriod(at[0], at[1], PeriodState.CHARGING),
        StatePeriod(at[1], at[2], PeriodState.IDLE),
        StatePeriod(at[2], at[3], PeriodState.CHARGING),
        StatePeriod(at[3], at[4], PeriodState.IDLE),
    )
    priced = price_session(
        tariff, SessionTimeline(started_at=start, ended_at=at[4], tz=BERLIN, periods=periods)
    )
    assert priced.charging_seconds == D(2400)
    assert priced.parking_seconds == D(4800)
    assert lines_of(priced) == [
        ("TIME", 0, D("0.666667"), D("0.80")),
        ("PARKING_TIME", 0, D("1.333333"), D("4.00")),
    ]


def test_flat_fee_comes_from_the_element_in_force_at_the_start() -> None:
    tariff = spec(
        [
            {
                "price_components": [{"type": "FLAT", "price": "1.50", "vat": 19}],
                "restrictions": {"start_time": "08:00", "end_time": "20:00"},
            },
            {"price_components": [{"type": "FLAT", "price": "0.50", "vat": 19}, energy("0.30")]},
        ]
    )
    evening = timeline_example(
        started_at=local("2026-06-16T19:30"),
        charging=timedelta(hours=1),
        energy_wh=D(1000),
        tz=BERLIN,
    )
    priced = price_session(tariff, evening)
    # FLAT 1.50 (started at 19:30) + 1 kWh x 0.30 = 1.80
    assert lines_of(priced) == [
        ("FLAT", 0, D(1), D("1.50")),
        ("ENERGY", 1, D("1.000000"), D("0.30")),
    ]


def test_meter_that_goes_backwards_bills_nothing_for_the_drop() -> None:
    tariff = spec([{"price_components": [energy("1.00", vat=0)]}])
    start = local("2026-06-16T09:00")
    samples = (
        TimelineSample(start, energy_wh=D(5000)),
        TimelineSample(start + timedelta(minutes=10), energy_wh=D(7000)),
        TimelineSample(start + timedelta(minutes=20), energy_wh=D(6000)),
        TimelineSample(start + timedelta(minutes=30), energy_wh=D(8000)),
    )
    timeline = SessionTimeline(
        started_at=start,
        ended_at=start + timedelta(minutes=30),
        tz=BERLIN,
        samples=samples,
        meter_start_wh=D(5000),
    )
    priced = price_session(tariff, timeline)
    assert priced.energy_wh == D(3000)
    assert priced.total_excl_vat == D("3.00")


def test_japanese_yen_has_no_minor_unit() -> None:
    tariff = TariffSpec(
        currency="JPY",
        elements=tariff_elements_parse([{"price_components": [energy("45.5", vat=10)]}]),
    )
    timeline = timeline_example(
        started_at=local("2026-06-16T09:00", "Asia/Tokyo"),
        charging=timedelta(hours=1),
        energy_wh=D(3333),
        tz="Asia/Tokyo",
    )
    priced = price_session(tariff, timeline)
    # 3.333 kWh x 45.5 = 151.6515 -> 152; VAT 10 % = 15.2 -> 15
    assert priced.total_excl_vat == D(152)
    assert priced.total_vat == D(15)


@pytest.mark.parametrize(
    ("elements", "path", "message"),
    [
        (
            [{"price_components": [energy("-0.1")]}],
            "elements[0].price_components[0].price",
            "negative",
        ),
        (
            [{"price_components": [energy("0.1", vat=120)]}],
            "elements[0].price_components[0].vat",
            "0 to 100",
        ),
        (
            [{"price_components": [energy("0.1", vat=-1)]}],
            "elements[0].price_components[0].vat",
            "0 to 100",
        ),
        (
            [{"price_components": [{"type": "KWH", "price": "1"}]}],
            "elements[0].price_components[0].type",
            "One of",
        ),
        (
            [{"price_components": [energy("0.1", step=0)]}],
            "elements[0].price_components[0].step_size",
            "1 or more",
        ),
        ([{"price_components": []}], "elements[0].price_components", "at least one"),
        (
            [
                {
                    "price_components": [energy("0.1")],
                    "restrictions": {"start_time": "18:00", "end_time": "18:00"},
                }
            ],
            "elements[0].restrictions.end_time",
            "equals the start time",
        ),
        (
            [{"price_components": [energy("0.1")], "restrictions": {"min_kwh": 20, "max_kwh": 10}}],
            "elements[0].restrictions.max_kwh",
            "above min_kwh",
        ),
        (
            [{"price_components": [energy("0.1")], "restrictions": {"start_time": "25:00"}}],
            "elements[0].restrictions.start_time",
            "HH:MM",
        ),
        (
            [{"price_components": [energy("0.1")], "restrictions": {"day_of_week": ["FUNDAY"]}}],
            "elements[0].restrictions.day_of_week",
            "MONDAY",
        ),
        (
            [
                {
                    "price_components": [energy("0.4")],
                    "restrictions": {"start_time": "17:00", "end_time": "21:00"},
                },
                {
                    "price_components": [energy("0.3")],
                    "restrictions": {"start_time": "20:00", "end_time": "23:00"},
                },
            ],
            "elements[1].restrictions",
            "Overlaps element 0 for ENERGY",
        ),
        (
            [
                {"price_components": [energy("0.4")]},
                {"price_components": [energy("0.3")], "restrictions": {"day_of_week": ["MONDAY"]}},
            ],
            "elements[1].restrictions",
            "Never used for ENERGY",
        ),
    ],
)
def test_bad_tariffs_are_refused_with_the_field_named(
    elements: list, path: str, message: str
) -> None:
    from billing.pricing import TariffError

    with pytest.raises(TariffError) as caught:
        tariff_elements_parse(elements)
    assert path in caught.value.errors, caught.value.errors
    assert message in " ".join(caught.value.errors[path])


def test_disjoint_and_fallback_elements_are_accepted() -> None:
    elements = tariff_elements_parse(
        [
            {
                "price_components": [energy("0.4")],
                "restrictions": {"start_time": "17:00", "end_time": "21:00"},
            },
            {
                "price_components": [energy("0.2")],
                "restrictions": {"start_time": "21:00", "end_time": "06:00"},
            },
            # Same hours for another dimension: no overlap, a dimension is priced on its own.
            {
                "price_components": [{"type": "PARKING_TIME", "price": "5", "vat": 19}],
                "restrictions": {"start_time": "17:00", "end_time": "21:00"},
            },
            {"price_components": [energy("0.3")]},
        ]
    )
    assert len(elements) == 4
