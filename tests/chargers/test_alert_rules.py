"""The alert lifecycle and the pure rules behind alerts: no database and no I/O."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargers.alert_rules import (
    ACTIVE,
    AlertPolicy,
    AlertState,
    IllegalTransition,
    duration_stats,
    error_severity,
    held_long_enough,
    is_boot_loop,
    is_error_code,
    meter_went_backwards,
    seconds_between,
    severity_at_least,
    silent_for,
    sources,
    transition,
)

S = AlertState
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

ALLOWED = {
    (S.OPEN, S.ACKNOWLEDGED),
    (S.OPEN, S.RESOLVED),
    (S.ACKNOWLEDGED, S.RESOLVED),
    (S.RESOLVED, S.OPEN),
}


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_each_allowed_move_is_made(current, target):
    assert transition(current.value, target.value) is target


@pytest.mark.parametrize(
    ("current", "target"), sorted(set(itertools.product(AlertState, AlertState)) - ALLOWED)
)
def test_every_other_move_is_refused(current, target):
    with pytest.raises(IllegalTransition) as refused:
        transition(current, target)
    assert str(refused.value) == f"an alert that is {current.value} cannot become {target.value}"


def test_sources_and_active_states():
    assert sources(S.RESOLVED) == {S.OPEN, S.ACKNOWLEDGED}
    assert sources(S.ACKNOWLEDGED) == {S.OPEN}
    assert {S.OPEN, S.ACKNOWLEDGED} == ACTIVE


def policy(**overrides: object) -> AlertPolicy:
    values: dict[str, object] = {
        "debounce": timedelta(seconds=60),
        "offline_grace": timedelta(seconds=120),
        "reopen_window": timedelta(minutes=15),
        "offline_heartbeats": 2,
        "boot_loop_count": 3,
        "boot_loop_window": timedelta(minutes=10),
        "silent_session": timedelta(minutes=15),
    }
    values.update(overrides)
    return AlertPolicy(**values)  # type: ignore[arg-type]


def test_debounce_depends_on_the_kind():
    p = policy()
    assert p.debounce_for("offline") == timedelta(seconds=120)
    assert p.debounce_for("connector_faulted") == timedelta(seconds=60)
    assert p.debounce_for("charger_error") == timedelta(seconds=60)
    # Occurrences are raised at once.
    assert p.debounce_for("meter_backwards") == timedelta(0)
    assert p.debounce_for("boot_loop") == timedelta(0)


def test_held_long_enough_counts_from_the_fault():
    debounce = timedelta(seconds=60)
    assert not held_long_enough(since=T0, now=T0 + timedelta(seconds=59), debounce=debounce)
    assert held_long_enough(since=T0, now=T0 + timedelta(seconds=60), debounce=debounce)
    assert held_long_enough(since=T0, now=T0, debounce=timedelta(0))


def test_silent_after_k_heartbeat_intervals():
    assert not silent_for(last_seen=None, heartbeat_interval=60, heartbeats=2, now=T0)
    last = T0 - timedelta(seconds=119)
    assert not silent_for(last_seen=last, heartbeat_interval=60, heartbeats=2, now=T0)
    last = T0 - timedelta(seconds=120)
    assert silent_for(last_seen=last, heartbeat_interval=60, heartbeats=2, now=T0)


def test_boot_loop_counts_boots_inside_the_window_only():
    window = timedelta(minutes=10)
    boots = [T0 - timedelta(minutes=11), T0 - timedelta(minutes=5), T0 - timedelta(minutes=1)]
    assert not is_boot_loop(boots, now=T0, count=3, window=window)
    assert is_boot_loop([*boots, T0], now=T0, count=3, window=window)


@given(
    offsets=st.lists(st.integers(min_value=0, max_value=3600), max_size=30),
    count=st.integers(min_value=1, max_value=10),
)
def test_boot_loop_never_fires_with_fewer_boots_than_the_count(offsets, count):
    boots = [T0 - timedelta(seconds=s) for s in offsets]
    inside = sum(1 for s in offsets if s <= 600)
    assert is_boot_loop(boots, now=T0, count=count, window=timedelta(seconds=600)) == (
        inside >= count
    )


def test_meter_backwards():
    assert meter_went_backwards(Decimal("1000"), Decimal("999.9"))
    assert not meter_went_backwards(Decimal("1000"), Decimal("1000"))
    assert not meter_went_backwards(None, Decimal("5"))
    assert not meter_went_backwards(Decimal("5"), None)


def test_error_codes():
    assert not is_error_code("NoError")
    assert not is_error_code("")
    assert is_error_code("GroundFailure")
    assert error_severity("GroundFailure") == "major"
    assert error_severity("HighTemperature") == "warning"
    assert severity_at_least("critical", "major")
    assert not severity_at_least("warning", "major")


def test_seconds_between_is_never_negative():
    assert seconds_between(T0, T0 + timedelta(seconds=90)) == 90.0
    assert seconds_between(T0 + timedelta(seconds=5), T0) == 0.0
    assert seconds_between(None, T0) is None


def test_duration_stats():
    empty = duration_stats([])
    assert empty.count == 0 and empty.mean is None
    stats = duration_stats([10.0, 30.0, 20.0, 40.0])
    assert stats.count == 4
    assert stats.mean == 25.0
    assert stats.median == 25.0
    assert stats.p90 == 40.0
    assert stats.max == 40.0


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=50))
def test_duration_stats_are_ordered(values):
    stats = duration_stats(values)
    assert stats.count == len(values)
    assert min(values) <= stats.median <= stats.p90 <= stats.max == max(values)  # type: ignore[operator]
    assert min(values) - 1e-6 <= stats.mean <= max(values) + 1e-6  # type: ignore[operator]
