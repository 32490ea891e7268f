"""The simulator's composite schedule: pure, no I/O."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from chargers.simulator_commands import composite_periods, convert_limit


def test_the_lowest_limit_holds_at_each_moment():
    assert composite_periods([[(0, 11000), (1800, 7000)], [(0, 6900)]], 3600) == [(0, 6900)]
    assert composite_periods([[(0, 11000), (1800, 7000)], [(600, 9000)]], 3600) == [
        (0, 11000),
        (600, 9000),
        (1800, 7000),
    ]
    # Periods past the duration are left out; no schedule, no periods.
    assert composite_periods([[(0, 16), (4000, 8)]], 3600) == [(0, 16)]
    assert composite_periods([], 3600) == []


def test_limits_convert_between_amperes_and_watts_on_three_phases():
    assert convert_limit(10, "A", "W") == 6900.0
    assert convert_limit(6900, "W", "A") == 10.0
    assert convert_limit(32, "A", "A") == 32


schedules = st.lists(
    st.lists(
        st.tuples(st.integers(0, 7200), st.floats(0, 50000, allow_nan=False)),
        min_size=1,
        max_size=5,
    ),
    max_size=4,
)


@given(schedules, st.integers(1, 7200))
def test_the_composite_is_never_above_a_schedule_that_applies(given_schedules, duration):
    composite = composite_periods(given_schedules, duration)
    assert [start for start, _ in composite] == sorted({start for start, _ in composite})
    for start, limit in composite:
        assert 0 <= start < duration
        for periods in given_schedules:
            applying = [value for begin, value in sorted(periods) if begin <= start]
            if applying:
                assert limit <= applying[-1]
    # Neighbouring periods always differ: the composite is as short as it can be.
    assert all(a[1] != b[1] for a, b in itertools.pairwise(composite))
