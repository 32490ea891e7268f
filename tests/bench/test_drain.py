"""S1 measures idle only once the server has done the work the connects left it: the wait ends
when the server's CPU stops falling, and its length and CPU are reported."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.scenarios import SCENARIOS, Run


class ScriptedServer:
    """CPU seconds that grow by each step of ``loads`` (share of a core per probe) in turn: read
    once before the first probe and once after each."""

    def __init__(self, loads: list[float], probe: float) -> None:
        self.loads, self.probe = loads, probe
        self.total, self.started = 0.0, False

    def cpu_seconds(self) -> float:
        if self.started and self.loads:
            self.total += self.loads.pop(0) * self.probe
        self.started = True
        return self.total


def drained(loads: list[float]) -> tuple[dict[str, Any], list[float]]:
    run = object.__new__(Run)
    run.server = ScriptedServer(list(loads), 0.01)  # type: ignore[assignment]
    run.figures = {}
    asyncio.run(run._drain(probe=0.01, limit=5))
    return run.figures, run.server.loads  # type: ignore[attr-defined]


def test_the_wait_ends_when_the_cpu_stops_falling() -> None:
    figures, left = drained([1.6, 1.2, 0.5, 0.06, 0.055, 0.05, 0.05])
    # 1.6 → 1.2 → 0.5 → 0.06 fall by more than a fifth each; 0.055 does not.
    assert left == [0.05, 0.05]
    assert figures["drain_seconds"] > 0
    assert figures["drain_server_cpu_pct"] > 0


def test_an_idle_server_is_not_waited_for() -> None:
    _, left = drained([0.005, 0.5, 0.5])
    assert left == [0.5, 0.5]


def test_only_the_idle_scenario_waits() -> None:
    assert [key for key, scenario in SCENARIOS.items() if scenario.idle_window] == ["s1"]
