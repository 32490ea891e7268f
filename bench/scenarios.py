"""The six scenarios, their full and quick sizes, their targets, and how one run of a scenario
against one server turns into figures.

A run: start the server, connect one warm-up charger (so that both servers have done their
one-time work), read the server's memory, connect the fleet, let it settle, read the memory
again, then measure for the window: calls, reply times, errors, the server's CPU time.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil
import websockets

from .database import ROOT
from .fleet import (
    Behaviour,
    Fleet,
    FleetPlan,
    PhaseStats,
    Recorder,
    closed_loop_charger,
    command_charger,
    percentile,
    storm_charger,
    typical,
)
from .profile import Profiler
from .servers import BASELINE, OURS, Server, free_port, process_cpu_seconds

# Tries the warm-up charger gets to connect and boot before a run gives up.
WARM_UP_ATTEMPTS = 5


@dataclass(frozen=True)
class Target:
    """A figure the full stack should reach; ``check`` reads it from ours (and the baseline)."""

    text: str
    check: Callable[[dict[str, Any], dict[str, Any] | None], bool | None]


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    kind: str  # steady | closed | storm | commands
    chargers: int
    duration: float  # the measured window, in seconds
    plan: FleetPlan = field(default_factory=FleetPlan)
    storm_window: float = 60.0
    command_rate: float = 500.0
    time_scale: float = 1.0
    headline: tuple[str, ...] = ()
    targets: tuple[Target, ...] = ()
    # Closed loop only: after the flat-out window, a second one with each charger calling once
    # every ``paced_interval`` seconds (the fleet offers chargers / paced_interval calls/s).
    paced_interval: float | None = None
    # Measure only once the server has done the work the connects left it (boots, statuses and
    # what they set off): an idle figure, with that wait and its CPU shown beside it.
    idle_window: bool = False

    def scaled_plan(self) -> FleetPlan:
        s = self.time_scale
        return replace(
            self.plan,
            heartbeat_interval=self.plan.heartbeat_interval / s,
            meter_interval=self.plan.meter_interval / s,
            session_seconds=self.plan.session_seconds / s,
        )

    def expected_calls_per_s(self) -> float | None:
        """Calls per second the fleet should offer once settled (steady scenarios only)."""
        if self.kind != "steady":
            return None
        plan = self.scaled_plan()
        rate = 1 / plan.heartbeat_interval
        if plan.charging_share > 0:
            rate += plan.charging_share / plan.meter_interval
            rate += 7 * plan.charging_share / plan.session_seconds  # start and stop: 7 calls
        return self.chargers * rate

    def paced_rate(self) -> float:
        return self.chargers / self.paced_interval if self.paced_interval else 0.0

    def sizes(self) -> str:
        if self.kind == "steady":
            plan = self.scaled_plan()
            text = f"{self.chargers} chargers, {self.duration:g} s window, heartbeat {plan.heartbeat_interval:g} s"
            if plan.charging_share:
                text += (
                    f", meter values {plan.meter_interval:g} s, {plan.charging_share:.0%} charging,"
                    f" sessions {plan.session_seconds:g} s; ~{self.expected_calls_per_s():.0f} calls/s offered"
                )
            return text
        if self.kind == "closed":
            text = f"{self.chargers} chargers in a closed loop, {self.duration:g} s window"
            if self.paced_interval:
                text += (
                    f"; then paced, each charger calling every {self.paced_interval:g} s"
                    f" (~{self.paced_rate():.0f} calls/s offered), {self.duration:g} s window"
                )
            return text
        if self.kind == "storm":
            return f"{self.chargers} chargers connect and boot within {self.storm_window / self.time_scale:g} s"
        if self.kind == "routing":
            return (
                f"{self.chargers} chargers in a closed loop for {self.duration:g} s each: straight to "
                "an upstream, through the router to it, and with an observer down"
            )
        return f"{self.chargers} chargers, {self.command_rate:g} commands/s offered for {self.duration:g} s"


def _ratio(ours: dict[str, Any], base: dict[str, Any] | None, key: str) -> float | None:
    if not base or not base.get(key):
        return None
    value = ours.get(key)
    return None if value is None else value / base[key]


def _at_most(
    key: str, limit: float
) -> Callable[[dict[str, Any], dict[str, Any] | None], bool | None]:
    return lambda ours, base: None if ours.get(key) is None else ours[key] <= limit


def _whole_fleet(ours: dict[str, Any], base: dict[str, Any] | None) -> bool:
    """A closed loop's latency follows from how many chargers are in it (Little's law), so a run
    that left part of the fleet out cannot meet a target that the whole fleet would miss."""
    if not base or base.get("connected") is None:
        return True
    return int(ours.get("connected") or 0) >= int(base["connected"])


def _zero(*keys: str) -> Callable[[dict[str, Any], dict[str, Any] | None], bool | None]:
    return lambda ours, base: all(not ours.get(key) for key in keys)


SCENARIOS: dict[str, Scenario] = {
    "s1": Scenario(
        key="s1",
        title="idle density",
        kind="steady",
        chargers=10_000,
        duration=60,
        plan=FleetPlan(heartbeat_interval=300, charging_share=0.0),
        headline=(
            "connected",
            "rss_per_conn_kb",
            "server_cpu_pct",
            "rss_after_mb",
            "ramp_seconds",
            "drain_seconds",
            "drain_server_cpu_pct",
            "refused",
            "dropped",
        ),
        idle_window=True,
        targets=(
            Target(
                "server memory per connection within 3x the baseline's",
                lambda ours, base: (
                    None
                    if _ratio(ours, base, "rss_per_conn_kb") is None
                    else (_ratio(ours, base, "rss_per_conn_kb") or 0) <= 3
                ),
            ),
            Target("server CPU at idle under 5% of one core", _at_most("server_cpu_pct", 5)),
        ),
    ),
    "s2": Scenario(
        key="s2",
        title="fleet, typical",
        kind="steady",
        chargers=10_000,
        duration=120,
        plan=FleetPlan(
            heartbeat_interval=300, meter_interval=60, charging_share=0.65, session_seconds=1800
        ),
        headline=(
            "calls_per_s",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "errors",
            "refused",
            "dropped",
            "server_cpu_pct",
        ),
        targets=(
            Target("p99 reply under 100 ms", _at_most("p99_ms", 100)),
            Target("zero errors", _zero("errors", "dropped")),
        ),
    ),
    "s3": Scenario(
        key="s3",
        title="fleet, aggressive",
        kind="steady",
        chargers=10_000,
        duration=120,
        plan=FleetPlan(
            heartbeat_interval=300, meter_interval=10, charging_share=0.54, session_seconds=1800
        ),
        headline=(
            "calls_per_s",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "errors",
            "refused",
            "dropped",
            "server_cpu_pct",
        ),
        targets=(
            Target("p99 reply under 100 ms", _at_most("p99_ms", 100)),
            Target("zero errors", _zero("errors", "dropped")),
        ),
    ),
    "s4": Scenario(
        key="s4",
        title="saturation",
        kind="closed",
        chargers=1_000,
        duration=30,
        headline=(
            "connected",
            "calls_per_s",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "errors",
            "server_cpu_pct",
            "client_cpu_pct",
            "ramp_refused",
            "paced_offered_per_s",
            "paced_calls_per_s",
            "paced_p50_ms",
            "paced_p99_ms",
            "paced_max_ms",
            "paced_errors",
            "paced_server_cpu_pct",
        ),
        paced_interval=0.5,
        targets=(
            Target(
                "with database writes, at least 2,000 calls/s at p99 under 100 ms (paced window)",
                lambda ours, base: (
                    None
                    if ours.get("paced_calls_per_s") is None
                    else _whole_fleet(ours, base)
                    and ours["paced_calls_per_s"] >= 2000
                    and ours["paced_calls_per_s"] >= 0.98 * ours["paced_offered_per_s"]
                    and ours["paced_p99_ms"] < 100
                    and not ours.get("paced_errors")
                ),
            ),
        ),
    ),
    "s5": Scenario(
        key="s5",
        title="reconnect storm",
        kind="storm",
        chargers=10_000,
        duration=0,
        storm_window=60,
        headline=(
            "booted",
            "refused",
            "dropped",
            "connect_p99_ms",
            "boot_p50_ms",
            "boot_p99_ms",
            "boot_max_ms",
            "storm_seconds",
        ),
        targets=(
            Target("zero refused", _zero("refused")),
            Target("p99 BootNotification reply under 2 s", _at_most("boot_p99_ms", 2000)),
        ),
    ),
    "s6": Scenario(
        key="s6",
        title="commands",
        kind="commands",
        chargers=1_000,
        duration=30,
        command_rate=500,
        headline=(
            "connected",
            "commands_created_per_s",
            "commands_per_s",
            "command_p50_ms",
            "command_p99_ms",
            "command_max_ms",
            "commands_lost",
            "errors",
            "ramp_refused",
        ),
        targets=(
            Target(
                "at least 500 commands/s end to end",
                lambda ours, base: (
                    None
                    if "commands_per_s" not in ours
                    else _whole_fleet(ours, base) and ours["commands_per_s"] >= 500
                ),
            ),
            Target(
                "p99 under 250 ms",
                lambda ours, base: (
                    None
                    if ours.get("command_p99_ms") is None
                    else _whole_fleet(ours, base) and ours["command_p99_ms"] <= 250
                ),
            ),
        ),
    ),
    "s7": Scenario(
        key="s7",
        title="routing",
        kind="routing",
        chargers=200,
        duration=20,
        headline=(
            "direct_p50_ms",
            "direct_p99_ms",
            "routed_p50_ms",
            "routed_p99_ms",
            "observer_down_p50_ms",
            "observer_down_p99_ms",
            "routed_calls_per_s",
            "routed_errors",
        ),
        targets=(
            Target(
                "no errors through the router, with an observer down too",
                _zero("routed_errors", "observer_down_errors"),
            ),
        ),
    ),
}

# --quick: small and short, but the steady fleets and the storm keep the full scenario's call and
# connect rates (the intervals shrink with the fleet).
QUICK: dict[str, dict[str, Any]] = {
    "s1": {"chargers": 300, "duration": 10},
    "s2": {"chargers": 300, "duration": 20},
    "s3": {"chargers": 300, "duration": 20},
    "s4": {"chargers": 200, "duration": 10},
    "s5": {"chargers": 300},
    "s6": {"chargers": 100, "duration": 10},
    "s7": {"chargers": 20, "duration": 5},
}


@dataclass(frozen=True)
class RunOptions:
    """What every run shares: the protocol, the fleet's credentials, and the pacing of set-up."""

    protocol: str = "ocpp1.6"
    # A random machine secret, as a CPMS issues one (OCPP 2.0.1 BasicAuthPassword); the fleet
    # shares it. The server keeps it as a keyed digest unless CPMS_CHARGER_FAST_DIGEST=false.
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    prefix: str = "BENCH-"
    connect_rate: float = 200.0
    settle: float = 3.0
    ramp_timeout: float = 900.0
    open_timeout: float = 30.0
    call_timeout: float = 30.0
    connect_retries: int = 20
    stack_env: dict[str, str] = field(default_factory=dict)
    profile_dir: Path | None = None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def call_figures(phase: PhaseStats, seconds: float) -> dict[str, Any]:
    latencies = phase.all_latencies()
    by_action = {}
    for action, values in sorted(phase.latencies.items()):
        ordered = sorted(values)
        by_action[action] = {
            "replies": len(ordered),
            "p50_ms": _ms(percentile(ordered, 0.5)),
            "p99_ms": _ms(percentile(ordered, 0.99)),
            "max_ms": _ms(ordered[-1]) if ordered else 0.0,
        }
    return {
        "calls": phase.calls,
        "replies": phase.replies,
        "calls_per_s": round(phase.replies / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": _ms(percentile(latencies, 0.5)),
        "p99_ms": _ms(percentile(latencies, 0.99)),
        "max_ms": _ms(latencies[-1]) if latencies else 0.0,
        "by_action": by_action,
    }


class Run:
    """One scenario against one server."""

    def __init__(
        self, scenario: Scenario, server: Server, options: RunOptions, *, run_number: int, seed: int
    ) -> None:
        self.scenario = scenario
        self.server = server
        self.options = options
        self.recorder = Recorder()
        self.fleet = Fleet(
            url=server.url,
            protocol=options.protocol,
            password=options.password,
            prefix=options.prefix,
            recorder=self.recorder,
            open_timeout=options.open_timeout,
            call_timeout=options.call_timeout,
            source_block=run_number,
            seed=seed,
        )
        self.figures: dict[str, Any] = {}
        self.own = psutil.Process()
        self.run_number = run_number
        self.profiler: Profiler | None = None
        self._rss_before = 0

    async def execute(self) -> dict[str, Any]:
        try:
            await self._warm_up()
            kind = self.scenario.kind
            if kind == "storm":
                await self._storm()
            elif kind == "routing":
                await self._routing()
            else:
                await self._ramp()
                if self.scenario.idle_window:
                    await self._drain()
                if kind == "commands":
                    await self._commands()
                else:
                    await self._measure()
                if self.scenario.paced_interval:
                    await self._paced(self.scenario.paced_interval)
            self._totals()
        finally:
            await self.fleet.stop()
        return self.figures

    async def _warm_up(self) -> None:
        # A cold server's first handshake loads what every later one reuses; on a busy machine it
        # can outlast daphne's handshake timeout. The warm-up is there to absorb that: it tries
        # again, and its refusals are not the scenario's.
        for attempt in range(WARM_UP_ATTEMPTS):
            self.fleet.launch([0], storm_charger)
            if await self.fleet.wait_settled(60) and self.fleet.ready_count:
                break
            await asyncio.sleep(1.0 + attempt)
        else:
            raise RuntimeError(
                f"the warm-up charger could not connect and boot on the {self.server.kind} server "
                f"in {WARM_UP_ATTEMPTS} attempts: refused {dict(self.recorder.refused)}, errors "
                f"{self.recorder.phase.error_samples}\n{self.server.log_tail()}"
            )
        self.recorder.refused.clear()
        await asyncio.sleep(1.0)
        self.fleet.ready_count = 0
        self.figures["rss_before_mb"] = round(self.server.rss_bytes() / 2**20, 1)
        self._rss_before = self.server.rss_bytes()

    def _behaviour(self) -> Behaviour:
        if self.scenario.kind == "closed":
            return closed_loop_charger
        if self.scenario.kind == "commands":
            return command_charger
        return typical(self.scenario.scaled_plan())

    async def _ramp(self) -> None:
        count = self.scenario.chargers
        started = time.perf_counter()
        cpu = self.server.cpu_seconds()
        refused = sum(self.recorder.refused.values())
        self.fleet.launch(
            range(1, count + 1),
            self._behaviour(),
            rate=self.options.connect_rate,
            retries=self.options.connect_retries,
        )
        settled = await self.fleet.wait_settled(self.options.ramp_timeout)
        ramp = time.perf_counter() - started
        self.figures.update(
            ramp_refused=sum(self.recorder.refused.values()) - refused,
            ramp_seconds=round(ramp, 2),
            ramp_complete=settled,
            ramp_server_cpu_pct=round(100 * (self.server.cpu_seconds() - cpu) / ramp, 1),
        )
        await asyncio.sleep(self.options.settle)
        self._memory(self.fleet.ready_count)

    def _memory(self, connected: int) -> None:
        after = self.server.rss_bytes()
        self.figures["connected"] = connected
        self.figures["rss_after_mb"] = round(after / 2**20, 1)
        self.figures["rss_per_conn_kb"] = (
            round((after - self._rss_before) / connected / 1024, 2) if connected else None
        )

    async def _drain(self, probe: float = 5.0, limit: float = 300.0) -> None:
        """Wait until the server's CPU stops falling: over a probe it is no more than a fifth
        below the probe before (or under 1 % of a core), for at most ``limit`` seconds."""
        started = time.perf_counter()
        last = cpu_at_start = self.server.cpu_seconds()
        previous: float | None = None
        while time.perf_counter() - started < limit:
            await asyncio.sleep(probe)
            cpu = self.server.cpu_seconds()
            load, last = (cpu - last) / probe, cpu
            if load < 0.01 or (previous is not None and load >= 0.8 * previous):
                break
            previous = load
        seconds = time.perf_counter() - started
        self.figures.update(
            drain_seconds=round(seconds, 1),
            drain_server_cpu_pct=round(100 * (last - cpu_at_start) / seconds, 1),
        )

    async def _profile_start(self, seconds: float) -> None:
        if self.options.profile_dir is None or self.server.kind != OURS:
            return
        path = self.options.profile_dir / f"{self.scenario.key}-run{self.run_number}.txt"
        self.profiler = Profiler(self.server.profile_pid(), seconds, path)
        await self.profiler.start()

    async def _profile_finish(self) -> None:
        if self.profiler is not None:
            self.figures["profile"] = await self.profiler.finish()

    async def _measure(self) -> None:
        await self._profile_start(self.scenario.duration)
        phase = self.recorder.begin("measure")
        cpu, own, started = self.server.cpu_seconds(), self._own_cpu(), time.perf_counter()
        await asyncio.sleep(self.scenario.duration)
        self.recorder.begin("after")
        await self._profile_finish()
        seconds = time.perf_counter() - started
        self._cpu(cpu, own, seconds)
        self.figures.update(call_figures(phase, seconds))
        self.figures["window_seconds"] = round(seconds, 2)

    async def _paced(self, interval: float) -> None:
        """The closed loop again, each charger calling once every ``interval`` seconds: the
        latency at a set rate below saturation, where the flat-out window can only show the
        queue (a closed loop's reply takes chargers ÷ replies per second, Little's law)."""
        self.fleet.pace = interval
        await asyncio.sleep(max(self.options.settle, 2 * interval))
        phase = self.recorder.begin("paced")
        cpu, started = self.server.cpu_seconds(), time.perf_counter()
        await asyncio.sleep(self.scenario.duration)
        self.recorder.begin("after")
        seconds = time.perf_counter() - started
        figures = call_figures(phase, seconds)
        self.figures.update(
            paced_offered_per_s=round(self.fleet.ready_count / interval, 1),
            paced_calls_per_s=figures["calls_per_s"],
            paced_p50_ms=figures["p50_ms"],
            paced_p99_ms=figures["p99_ms"],
            paced_max_ms=figures["max_ms"],
            paced_errors=phase.errors + phase.timeouts,
            paced_server_cpu_pct=round(100 * (self.server.cpu_seconds() - cpu) / seconds, 3),
            paced_by_action=figures["by_action"],
            paced_window_seconds=round(seconds, 2),
        )

    def _own_cpu(self) -> float:
        return process_cpu_seconds(self.own)

    def _cpu(self, server_cpu: float, own_cpu: float, seconds: float) -> None:
        self.figures["server_cpu_pct"] = round(
            100 * (self.server.cpu_seconds() - server_cpu) / seconds, 3
        )
        self.figures["client_cpu_pct"] = round(100 * (self._own_cpu() - own_cpu) / seconds, 1)

    async def _storm(self) -> None:
        count = self.scenario.chargers
        window = self.scenario.storm_window / self.scenario.time_scale
        await self._profile_start(window + 5)
        phase = self.recorder.begin("measure")
        cpu, own, started = self.server.cpu_seconds(), self._own_cpu(), time.perf_counter()
        self.fleet.launch(range(1, count + 1), storm_charger, window=window)
        settled = await self.fleet.wait_settled(
            window + self.options.open_timeout + self.options.call_timeout + 30
        )
        seconds = time.perf_counter() - started
        self.recorder.begin("after")
        self._cpu(cpu, own, seconds)
        await self._profile_finish()
        boots = sorted(phase.latencies.get("BootNotification", []))
        connects = sorted(self.recorder.connect_latencies[1:])  # without the warm-up charger
        self.figures.update(call_figures(phase, seconds))
        self.figures.update(
            booted=self.fleet.ready_count,
            storm_seconds=round(seconds, 2),
            storm_complete=settled,
            connect_p50_ms=_ms(percentile(connects, 0.5)),
            connect_p99_ms=_ms(percentile(connects, 0.99)),
            boot_p50_ms=_ms(percentile(boots, 0.5)),
            boot_p99_ms=_ms(percentile(boots, 0.99)),
            boot_max_ms=_ms(boots[-1]) if boots else 0.0,
        )
        await asyncio.sleep(self.options.settle)
        self._memory(self.fleet.ready_count)

    async def _routing(self) -> None:
        """The primary path's cost: the same closed-loop fleet straight to an upstream (the
        baseline server), then through the router to it, then with an observer that is down."""
        upstream = Server(BASELINE, backlog=4096)
        try:
            upstream.wait_listening()
            direct = await self._closed_loop(upstream.url, "direct", 0)
            await self._stack("route", "--primary", upstream.url)
            routed = await self._closed_loop(self.server.url, "routed", 1)
            down = f"ws://127.0.0.1:{free_port()}/ocpp/"
            await self._stack("route", "--primary", upstream.url, "--observer", down)
            observer_down = await self._closed_loop(self.server.url, "observer_down", 2)
        finally:
            upstream.stop(keep_log=False)
        for label, figures in (
            ("direct", direct),
            ("routed", routed),
            ("observer_down", observer_down),
        ):
            for key in ("p50_ms", "p99_ms", "max_ms", "calls_per_s", "errors"):
                self.figures[f"{label}_{key}"] = figures.get(key)
        self.figures["routed_over_direct_p50"] = (
            round(routed["p50_ms"] / direct["p50_ms"], 2) if direct.get("p50_ms") else None
        )

    async def _closed_loop(self, url: str, label: str, block: int) -> dict[str, Any]:
        recorder = Recorder()
        fleet = Fleet(
            url=url,
            protocol=self.options.protocol,
            password=self.options.password,
            prefix=self.options.prefix,
            recorder=recorder,
            open_timeout=self.options.open_timeout,
            call_timeout=self.options.call_timeout,
            source_block=self.run_number * 3 + block,
            seed=self.run_number,
        )
        try:
            fleet.launch(
                range(1, self.scenario.chargers + 1),
                closed_loop_charger,
                rate=self.options.connect_rate,
                retries=self.options.connect_retries,
            )
            await fleet.wait_settled(self.options.ramp_timeout)
            await asyncio.sleep(self.options.settle)
            phase = recorder.begin("measure")
            started = time.perf_counter()
            await asyncio.sleep(self.scenario.duration)
            recorder.begin("after")
            seconds = time.perf_counter() - started
            figures = call_figures(phase, seconds)
            figures["errors"] = phase.errors + sum(recorder.dropped.values())
            figures["connected"] = fleet.ready_count
            self.figures[f"{label}_connected"] = fleet.ready_count
            return figures
        finally:
            await fleet.stop()

    async def _stack(self, *arguments: str) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.stack",
            *arguments,
            cwd=ROOT,
            env=self.options.stack_env or dict(os.environ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"bench.stack {arguments[0]} failed:\n{stderr.decode()[-2000:]}")

    async def _commands(self) -> None:
        phase = self.recorder.begin("measure")
        seen = self.fleet.commands_seen
        cpu, own, started = self.server.cpu_seconds(), self._own_cpu(), time.perf_counter()
        if self.server.kind == BASELINE:
            sent = await self._baseline_commands()
            detail = ""
        else:
            await self._profile_start(self.scenario.duration)
            result = await self._stack_commands()
            await self._profile_finish()
            if not result.get("available"):
                self.figures["not_available"] = result.get("detail", "not available")
                self.recorder.begin("after")
                return
            sent, detail = int(result["sent"]), "; ".join(result.get("error_samples", []))
            if result.get("errors"):
                phase.errors += int(result["errors"])
        window = time.perf_counter() - started
        # Commands still in flight land, or are lost, within a few seconds.
        for _ in range(int(min(5.0, self.options.call_timeout) / 0.05)):
            if self.fleet.commands_seen - seen >= sent:
                break
            await asyncio.sleep(0.05)
        self.recorder.begin("after")
        self._cpu(cpu, own, time.perf_counter() - started)
        received = self.fleet.commands_seen - seen
        latencies = sorted(phase.commands)
        self.figures.update(
            commands_sent=sent,
            commands_received=received,
            commands_lost=max(0, sent - received),
            commands_per_s=round(received / window, 1) if window > 0 else 0.0,
            commands_created_per_s=round(sent / window, 1) if window > 0 else 0.0,
            command_p50_ms=_ms(percentile(latencies, 0.5)),
            command_p99_ms=_ms(percentile(latencies, 0.99)),
            command_max_ms=_ms(latencies[-1]) if latencies else 0.0,
            window_seconds=round(window, 2),
        )
        if detail:
            self.figures["command_errors"] = detail

    async def _baseline_commands(self) -> int:
        count, rate = self.fleet.ready_count, self.scenario.command_rate
        if not count:
            return 0
        sent = 0
        controls = await self._baseline_controls()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            while loop.time() - started < self.scenario.duration:
                due = started + sent / rate
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                identity = f"{self.options.prefix}{sent % count + 1:06d}"
                message = f"{identity} {sent}@{time.time():.6f}"
                for control in controls:
                    await control.send(message)
                sent += 1
        finally:
            for control in controls:
                await control.close()
        return sent

    async def _baseline_controls(self) -> list[Any]:
        """A control connection to every process of the baseline: the kernel places each new
        connection on one of them, so connect until each has answered."""
        controls: dict[str, Any] = {}
        for _ in range(50 * self.server.processes):
            control = await websockets.connect(
                self.server.control_url, compression=None, ping_interval=None
            )
            process = str(await control.recv())
            if process in controls:
                await control.close()
            else:
                controls[process] = control
            if len(controls) == self.server.processes:
                return list(controls.values())
        for control in controls.values():
            await control.close()
        raise RuntimeError(
            f"reached {len(controls)} of the baseline's {self.server.processes} processes"
        )

    async def _stack_commands(self) -> dict[str, Any]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.stack",
            "commands",
            "--prefix",
            self.options.prefix,
            "--count",
            str(max(1, self.fleet.ready_count)),
            "--rate",
            str(self.scenario.command_rate),
            "--duration",
            str(self.scenario.duration),
            "--protocol",
            self.options.protocol,
            cwd=ROOT,
            env=self.options.stack_env or dict(os.environ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await process.communicate()
        lines = stdout.decode().strip().splitlines()
        if process.returncode != 0 or not lines:
            raise RuntimeError(f"the command sender failed:\n{stderr.decode()[-3000:]}")
        return json.loads(lines[-1])  # type: ignore[no-any-return]

    def _totals(self) -> None:
        recorder = self.recorder
        phases = list(recorder.phases.values())
        self.figures.update(
            errors=sum(p.errors + p.timeouts for p in phases),
            timeouts=sum(p.timeouts for p in phases),
            refused=sum(recorder.refused.values()),
            refused_by=dict(recorder.refused),
            dropped=sum(recorder.dropped.values()),
            dropped_by=dict(recorder.dropped),
            error_samples=[sample for p in phases for sample in p.error_samples][:5],
            server_log_errors=len(self.server.log_errors()),
            server_alive=self.server.alive(),
        )
