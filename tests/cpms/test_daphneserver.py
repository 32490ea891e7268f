"""daphne's sweeps of all connections, spaced out by ``cpms.daphneserver``.

daphne's timers tick as before (every 1 s and 2 s); a tick sweeps the connections only when
``CPMS_WS_SWEEP_INTERVAL`` has passed since the last sweep, or the ping interval if that is
shorter.
"""

from __future__ import annotations

from typing import Any

import daphne.server
import pytest

from cpms import daphneserver


class Protocol:
    """A connection as daphne's sweeps see it."""

    def __init__(self) -> None:
        self.checked = 0

    def check_timeouts(self) -> None:
        self.checked += 1


class Clock:
    """Twisted's reactor and the monotonic clock, driven by the test."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[tuple[float, Any]] = []

    def callLater(self, delay: float, function: Any) -> None:  # Twisted's name
        self.timers.append((self.now + delay, function))

    def run_until(self, moment: float) -> None:
        while True:
            due = sorted((at, i) for i, (at, _) in enumerate(self.timers) if at <= moment)
            if not due:
                break
            at, index = due[0]
            _, function = self.timers.pop(index)
            self.now = at
            function()
        self.now = moment


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(daphneserver, "reactor", clock)
    monkeypatch.setattr(daphne.server, "reactor", clock)
    monkeypatch.setattr(daphneserver.time, "monotonic", lambda: clock.now)
    return clock


def server(ping_interval: float, connections: int = 3) -> tuple[Any, list[Protocol]]:
    sweeping = daphneserver.SweepingServer(
        application=None, endpoints=["tcp:port=0"], ping_interval=ping_interval
    )
    protocols = [Protocol() for _ in range(connections)]
    sweeping.connections = {protocol: {"application_instance": None} for protocol in protocols}
    return sweeping, protocols


def test_connections_are_swept_every_sweep_interval(clock, settings):
    settings.CPMS_WS_SWEEP_INTERVAL = 10
    sweeping, protocols = server(ping_interval=300)
    sweeping.timeout_checker()
    clock.run_until(clock.now + 60.5)
    # Swept at 0, 10, 20, ... 60 s: seven times, where daphne alone sweeps 31 times.
    assert [protocol.checked for protocol in protocols] == [7, 7, 7]
    # daphne's timer still ticks every 2 s, and one is always set.
    assert len(clock.timers) == 1


def test_a_shorter_ping_interval_sets_the_pace(clock, settings):
    settings.CPMS_WS_SWEEP_INTERVAL = 10
    sweeping, protocols = server(ping_interval=4)
    sweeping.timeout_checker()
    clock.run_until(clock.now + 20.5)
    assert [protocol.checked for protocol in protocols] == [6, 6, 6]  # 0, 4, 8, 12, 16, 20 s


def test_ended_applications_are_reaped_at_the_next_sweep(clock, settings):
    settings.CPMS_WS_SWEEP_INTERVAL = 5
    sweeping, protocols = server(ping_interval=300)
    sweeping.application_checker()  # the first sweep, at once
    # A charger leaves: its socket is gone and its application has ended.
    sweeping.connections[protocols[0]]["disconnected"] = clock.now
    clock.run_until(clock.now + 4.5)
    assert protocols[0] in sweeping.connections  # no sweep yet
    clock.run_until(clock.now + 1)
    assert list(sweeping.connections) == protocols[1:]
    assert len(clock.timers) == 1
