"""Uptime timelines, pure: segments partition the period, maintenance is left out of both sides,
and the percentage stays within bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from operations.uptime import Availability, Tally, tally, timeline

T0 = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_a_day_with_an_outage_a_fault_and_maintenance():
    segments = timeline(
        start=T0,
        end=T0 + DAY,
        connected_at_start=True,
        status_at_start="Available",
        connections=[(at(2), False), (at(4), True)],
        statuses=[(at(10), "Faulted"), (at(13), "Available"), (at(20), "Charging")],
        windows=[(at(12), at(14), "Firmware upgrade")],
    )
    assert [(s.start, s.end, s.state, s.reason) for s in segments] == [
        (at(0), at(2), Availability.UP, ""),
        (at(2), at(4), Availability.OFFLINE, ""),
        (at(4), at(10), Availability.UP, ""),
        (at(10), at(12), Availability.FAULTED, ""),
        (at(12), at(14), Availability.EXCLUDED, "Firmware upgrade"),
        (at(14), at(24), Availability.UP, ""),
    ]
    result = tally(segments)
    assert (result.up, result.offline, result.faulted, result.excluded) == (
        18 * 3600,
        2 * 3600,
        2 * 3600,
        2 * 3600,
    )
    assert result.percent == 100 * 18 / 22


def test_a_charger_never_connected_is_offline_all_along():
    segments = timeline(start=T0, end=T0 + DAY, connections=[], statuses=[])
    assert [(s.state, s.seconds) for s in segments] == [(Availability.OFFLINE, 86400)]
    assert tally(segments).percent == 0


def test_changes_outside_the_period_are_ignored_and_unavailable_is_down():
    segments = timeline(
        start=T0,
        end=T0 + DAY,
        connected_at_start=True,
        status_at_start="Unavailable",
        connections=[(T0 - DAY, False), (T0 + 2 * DAY, False)],
        statuses=[],
    )
    assert [s.state for s in segments] == [Availability.UNAVAILABLE]


def test_a_fully_excluded_period_has_no_percentage():
    segments = timeline(
        start=T0,
        end=T0 + DAY,
        connections=[],
        statuses=[],
        windows=[(T0 - DAY, T0 + 2 * DAY, "Site rebuild")],
    )
    assert tally(segments).percent is None


def test_tallies_add_up_across_connectors():
    total = Tally(up=10, offline=10) + Tally(up=30, excluded=5)
    assert (total.percent, total.excluded) == (80.0, 5)


hours = st.floats(min_value=-30, max_value=54, allow_nan=False)
events = st.lists(st.tuples(hours, st.booleans()), max_size=12)
status_events = st.lists(
    st.tuples(hours, st.sampled_from(["Available", "Charging", "Faulted", "Unavailable", ""])),
    max_size=12,
)
windows = st.lists(st.tuples(hours, hours, st.sampled_from(["a", "b"])), max_size=4)


@given(events, status_events, windows, st.booleans(), st.sampled_from(["", "Faulted"]))
def test_segments_partition_the_period_and_uptime_is_a_percentage(
    connections, statuses, maintenance, connected, status
):
    start, end = T0, T0 + DAY
    segments = timeline(
        start=start,
        end=end,
        connections=[(at(h), flag) for h, flag in connections],
        statuses=[(at(h), s) for h, s in statuses],
        windows=[(at(a), at(b), reason) for a, b, reason in maintenance],
        connected_at_start=connected,
        status_at_start=status,
    )
    assert segments[0].start == start and segments[-1].end == end
    for before, after in pairwise(segments):
        assert before.end == after.start
        assert (before.state, before.reason) != (after.state, after.reason)
    result = tally(segments)
    assert abs(result.counted + result.excluded - DAY.total_seconds()) < 1e-3
    assert result.percent is None or 0 <= result.percent <= 100


@given(events, status_events, windows)
def test_maintenance_never_turns_down_time_into_up_time(connections, statuses, maintenance):
    common = {
        "start": T0,
        "end": T0 + DAY,
        "connections": [(at(h), flag) for h, flag in connections],
        "statuses": [(at(h), s) for h, s in statuses],
    }
    plain = tally(timeline(**common))
    excluded = tally(timeline(**common, windows=[(at(a), at(b), r) for a, b, r in maintenance]))
    assert excluded.up <= plain.up + 1e-6
    assert excluded.offline <= plain.offline + 1e-6
    assert excluded.faulted <= plain.faulted + 1e-6
