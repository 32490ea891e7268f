"""Session energy folded message by message equals the energy computed from every reading at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from chargers.metering import Reading, Tally, session_energy

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
WRAP = Decimal(10) ** 9

# Register values that make every case happen: climbs, falls, resets and wraps at 10^9 Wh.
values = st.one_of(
    st.integers(min_value=0, max_value=2_000_000),
    st.integers(min_value=0, max_value=5_000_000).map(lambda v: int(WRAP) - v),
    st.integers(min_value=0, max_value=1000),
).map(Decimal)
readings = st.builds(
    lambda minute, value: Reading(T0 + timedelta(minutes=minute), value),
    st.integers(min_value=0, max_value=60),
    values,
)
# Messages in the order they arrive: a charger may send late (offline) data and re-send a message.
messages = st.lists(st.lists(readings, max_size=5), max_size=12)


def test_a_tally_refuses_a_reading_earlier_than_the_latest():
    tally = Tally.begin(start=Reading(T0, Decimal(100))).add(
        [Reading(T0 + timedelta(minutes=5), Decimal(200))]
    )
    assert tally is not None
    assert tally.add([Reading(T0 + timedelta(minutes=4), Decimal(150))]) is None
    # The same time with a higher value sorts after it; a repeat of the latest changes nothing.
    later = tally.add([Reading(T0 + timedelta(minutes=5), Decimal(250))])
    assert later is not None and later.energy().energy_wh == Decimal(150)
    assert tally.add([Reading(T0 + timedelta(minutes=5), Decimal(200))]) == tally


def test_a_rollover_counts_through_across_messages():
    tally = Tally.begin().add([Reading(T0, WRAP - 300)])
    assert tally is not None
    tally = tally.add([Reading(T0 + timedelta(minutes=1), WRAP - 100)])
    assert tally is not None
    tally = tally.add([Reading(T0 + timedelta(minutes=2), Decimal(50))])
    assert tally is not None
    energy = tally.energy(stop=Reading(T0 + timedelta(minutes=3), Decimal(400)))
    assert (energy.energy_wh, energy.rollovers, energy.last_wh) == (Decimal(700), 1, Decimal(400))


@settings(max_examples=400, deadline=None)
@given(
    arrivals=messages,
    start=st.none() | values,
    stop=st.none() | values,
    resets_on_reboot=st.booleans(),
)
def test_folding_message_by_message_equals_the_full_computation(
    arrivals, start, stop, resets_on_reboot
):
    start_reading = Reading(T0 - timedelta(minutes=1), start) if start is not None else None
    stop_reading = Reading(T0 + timedelta(hours=2), stop) if stop is not None else None
    tally = Tally.begin(start=start_reading, resets_on_reboot=resets_on_reboot)
    seen: list[Reading] = []
    for message in arrivals:
        seen.extend(message)
        added = tally.add(message)
        if added is None:
            # A reading earlier than one already folded: what a running session does is start
            # over from every reading.
            added = Tally.begin(start=start_reading, resets_on_reboot=resets_on_reboot).add(seen)
            assert added is not None
        tally = added
        assert tally.energy() == session_energy(
            seen, start=start_reading, resets_on_reboot=resets_on_reboot
        )
    assert tally.energy(stop=stop_reading) == session_energy(
        seen, start=start_reading, stop=stop_reading, resets_on_reboot=resets_on_reboot
    )
