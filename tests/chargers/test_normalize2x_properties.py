"""Properties of session energy: however a charger splits, orders or scales its readings, and in
whichever OCPP version it sends them, a session's energy is the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chargers import metering, normalize, normalize2x
from chargers.quirks import Context

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2025, 6, 1, tzinfo=UTC)


@st.composite
def sessions(draw: Any) -> list[tuple[datetime, int]]:
    """Register readings (time, Wh) of one session: the register only grows."""
    start = draw(st.integers(min_value=0, max_value=10**11))
    steps = draw(st.lists(st.integers(min_value=0, max_value=50_000), min_size=1, max_size=40))
    gaps = draw(
        st.lists(st.integers(min_value=1, max_value=900), min_size=len(steps), max_size=len(steps))
    )
    readings = [(T0, start)]
    moment, value = T0, start
    for step, gap in zip(steps, gaps, strict=True):
        moment += timedelta(seconds=gap)
        value += step
        readings.append((moment, value))
    return readings


# How a reading of ``wh`` may be written: (value, unitOfMeasure). Floats only where exact.
SCALINGS = ("Wh", "kWh", "Wh*10^3", "kWh*10^-3", "default")


def written(wh: int, scaling: str) -> tuple[Any, dict[str, Any] | None]:
    if scaling == "Wh":
        return wh, {"unit": "Wh"}
    if scaling == "kWh":
        return float(Decimal(wh) / 1000), {"unit": "kWh"}
    if scaling == "Wh*10^3":
        return float(Decimal(wh) / 1000), {"unit": "Wh", "multiplier": 3}
    if scaling == "kWh*10^-3":
        return wh, {"unit": "kWh", "multiplier": -3}
    return wh, None


def meter_value(moment: datetime, wh: int, scaling: str, context: str) -> dict[str, Any]:
    value, unit = written(wh, scaling)
    sampled: dict[str, Any] = {
        "value": value,
        "measurand": "Energy.Active.Import.Register",
        "context": context,
    }
    if unit:
        sampled["unitOfMeasure"] = unit
    return {"timestamp": normalize.format_datetime(moment), "sampledValue": [sampled]}


def events(
    readings: list[tuple[datetime, int]], cuts: list[int], scalings: list[str]
) -> list[dict[str, Any]]:
    """The readings as TransactionEvents, cut into chunks at ``cuts``; seqNo in order."""
    bounds = sorted({c % len(readings) for c in cuts if c % len(readings)} | {0, len(readings)})
    payloads = []
    for seq_no, (low, high) in enumerate(pairwise(bounds)):
        last = high == len(readings)
        values = [
            meter_value(
                moment,
                wh,
                scalings[(low + i) % len(scalings)],
                "Transaction.Begin" if low + i == 0 else "Sample.Periodic",
            )
            for i, (moment, wh) in enumerate(readings[low:high])
        ]
        payloads.append(
            {
                "eventType": "Started" if seq_no == 0 else "Ended" if last else "Updated",
                "timestamp": values[0]["timestamp"],
                "triggerReason": "MeterValuePeriodic",
                "seqNo": seq_no,
                "transactionInfo": {"transactionId": "tx"},
                "meterValue": values,
            }
        )
    return payloads


def energy_of(payloads: list[dict[str, Any]]) -> Decimal:
    samples = [
        sample
        for payload in payloads
        for sample in normalize2x.transaction_event(payload, Context(), received_at=NOW).samples
    ]
    return metering.session_energy(metering.readings_from(samples)).energy_wh


def within_window(items: list[Any], shifts: list[int], window: int) -> list[Any]:
    """The items reordered so that none moves more than ``window`` places from its seqNo."""
    keyed = [(i + shifts[i % len(shifts)] % (window + 1), i, item) for i, item in enumerate(items)]
    return [item for _, _, item in sorted(keyed)]


@settings(max_examples=150, deadline=None)
@given(
    readings=sessions(),
    cuts_a=st.lists(st.integers(min_value=0, max_value=100), max_size=10),
    cuts_b=st.lists(st.integers(min_value=0, max_value=100), max_size=10),
    scalings=st.lists(st.sampled_from(SCALINGS), min_size=1, max_size=8),
    shifts=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=10),
    window=st.integers(min_value=0, max_value=5),
)
def test_energy_is_the_same_however_split_reordered_or_scaled(
    readings, cuts_a, cuts_b, scalings, shifts, window
):
    expected = Decimal(readings[-1][1] - readings[0][1])
    plain = events(readings, [], ["Wh"])
    assert energy_of(plain) == expected
    split = events(readings, cuts_a, ["Wh"])
    assert energy_of(split) == expected
    scaled = events(readings, cuts_b, scalings)
    assert energy_of(scaled) == expected
    assert energy_of(within_window(scaled, shifts, window)) == expected


@settings(max_examples=100, deadline=None)
@given(readings=sessions(), kwh=st.lists(st.booleans(), min_size=1, max_size=8))
def test_16_and_2x_readings_give_the_same_energy(readings, kwh):
    v16 = normalize.samples_from_v16(
        [
            {
                "timestamp": normalize.format_datetime(moment),
                "sampled_value": [
                    {"value": str(Decimal(wh) / 1000), "unit": "kWh"}
                    if kwh[i % len(kwh)]
                    else {"value": str(wh), "unit": "Wh"}
                ],
            }
            for i, (moment, wh) in enumerate(readings)
        ]
    )
    from_16 = metering.session_energy(metering.readings_from(v16)).energy_wh
    assert from_16 == energy_of(events(readings, [], ["kWh", "Wh"]))


@settings(max_examples=100, deadline=None)
@given(
    first=sessions(),
    second=st.lists(st.integers(min_value=0, max_value=50_000), min_size=1, max_size=20),
    restart=st.integers(min_value=0, max_value=1000),
)
def test_a_register_that_resets_on_reboot_keeps_counting(first, second, restart):
    """Energy before the reboot plus energy the new register counted from zero."""
    moment = first[-1][0]
    after = []
    value = restart
    for step in second:
        moment += timedelta(seconds=60)
        after.append((moment, value))
        value += step
    assume(after[0][1] < first[-1][1])  # a fall, and not one across the top of the register
    assume(metering.rollover(Decimal(first[-1][1]), Decimal(after[0][1])) is None)
    readings = [metering.Reading(m, Decimal(v)) for m, v in first + after]
    result = metering.session_energy(reversed(readings), resets_on_reboot=True)
    before = first[-1][1] - first[0][1]
    assert result.energy_wh == before + after[-1][1]
    assert (result.resets, result.rollovers) == (1, 0)
