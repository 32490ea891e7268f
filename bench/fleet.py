"""The load generator: an asyncio fleet of OCPP chargers in one process.

Each charger is one socket and one task, nothing else: no ping task, no compression, one CALL in
flight, and a single ``recv`` loop that both waits for replies and answers the server's own CALLs.
Every CALL is timed from send to reply; refused handshakes and dropped connections are counted by
reason.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import ipaddress
import json
import math
import random
import resource
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
)
from websockets.typing import Subprotocol

from .dialects import Dialect, dialect_for

# Chargers per source address: below the ~28,000 ephemeral ports of one address.
CHARGERS_PER_SOURCE_ADDRESS = 20_000


def raise_open_files_limit(needed: int) -> int:
    """Lift the soft RLIMIT_NOFILE to the hard one; refuse clearly when ``needed`` cannot fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        raise SystemExit(
            f"{needed} open files are needed but RLIMIT_NOFILE allows {target}; "
            f"raise the hard limit (ulimit -Hn) or use fewer chargers"
        )
    return target


def percentile(sorted_values: Any, fraction: float) -> float:
    """The nearest-rank percentile of an already sorted sequence (0.0 when it is empty)."""
    if not len(sorted_values):
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return float(sorted_values[rank - 1])


@dataclass
class PhaseStats:
    """What happened in one phase of a run (ramp, measure, ...)."""

    calls: int = 0
    replies: int = 0
    errors: int = 0
    timeouts: int = 0
    latencies: dict[str, array[float]] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    commands: array[float] = field(default_factory=lambda: array("d"))

    def reply(self, action: str, seconds: float) -> None:
        self.replies += 1
        values = self.latencies.get(action)
        if values is None:
            values = self.latencies[action] = array("d")
        values.append(seconds)

    def error(self, action: str, frame: list[Any]) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{action}: {json.dumps(frame[2:])[:300]}")

    def all_latencies(self, actions: Iterable[str] | None = None) -> list[float]:
        chosen = (
            self.latencies
            if actions is None
            else {a: self.latencies.get(a, array("d")) for a in actions}
        )
        return sorted(value for values in chosen.values() for value in values)


class Recorder:
    """Counters of one run. Calls are booked in the phase that was current when they were sent."""

    def __init__(self) -> None:
        self.phases: dict[str, PhaseStats] = {}
        self.phase = self.begin("ramp")
        self.connects = 0
        self.refused: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.connect_latencies = array("d")

    def begin(self, name: str) -> PhaseStats:
        self.phase = self.phases.setdefault(name, PhaseStats())
        return self.phase

    def connected(self, seconds: float) -> None:
        self.connects += 1
        self.connect_latencies.append(seconds)

    def refuse(self, reason: str) -> None:
        self.refused[reason] += 1

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1


def _error_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "") or type(exc).__name__


class BenchCharger:
    """One charger: its socket, its message counter, and its meter."""

    __slots__ = ("fleet", "identity", "index", "meter_wh", "next_id", "rng", "settled", "ws")

    def __init__(self, fleet: Fleet, index: int, rng: random.Random) -> None:
        self.fleet = fleet
        self.index = index
        self.identity = f"{fleet.prefix}{index:06d}"
        self.rng = rng
        self.ws: ClientConnection | None = None
        self.next_id = 0
        self.meter_wh = rng.randint(0, 5_000_000)
        self.settled = False

    @property
    def id_tag(self) -> str:
        return f"{self.fleet.prefix}TAG-{self.index:06d}"

    async def open(self) -> bool:
        fleet = self.fleet
        started = time.perf_counter()
        try:
            self.ws = await connect(
                fleet.url + self.identity,
                subprotocols=[Subprotocol(fleet.dialect.protocol)],
                additional_headers=fleet.headers(self.identity),
                compression=None,
                open_timeout=fleet.open_timeout,
                ping_interval=None,
                close_timeout=1,
                max_size=2**20,
                user_agent_header=None,
                proxy=None,
                **fleet.connect_kwargs(self.index),
            )
        except InvalidStatus as exc:
            fleet.recorder.refuse(f"HTTP {exc.response.status_code}")
            return False
        except InvalidMessage:
            fleet.recorder.refuse("handshake closed by the server")
            return False
        except InvalidHandshake as exc:
            fleet.recorder.refuse(f"handshake: {type(exc).__name__}")
            return False
        except TimeoutError:
            fleet.recorder.refuse("open timeout")
            return False
        except ConnectionClosed:
            fleet.recorder.refuse("closed in handshake")
            return False
        except OSError as exc:
            fleet.recorder.refuse(_error_name(exc))
            return False
        if self.ws.subprotocol != fleet.dialect.protocol:
            fleet.recorder.refuse("no common subprotocol")
            await self.ws.close()
            return False
        fleet.recorder.connected(time.perf_counter() - started)
        return True

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Send a CALL and wait for its reply; None for a CALLERROR or no reply in time."""
        assert self.ws is not None
        stats = self.fleet.recorder.phase
        self.next_id += 1
        message_id = str(self.next_id)
        stats.calls += 1
        started = time.perf_counter()
        await self.ws.send(json.dumps([2, message_id, action, payload], separators=(",", ":")))
        deadline = asyncio.get_running_loop().time() + self.fleet.call_timeout
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    text = await self.ws.recv()
            except TimeoutError:
                stats.timeouts += 1
                return None
            frame = json.loads(text)
            if frame[0] == 2:
                await self.answer(frame)
                continue
            if frame[1] != message_id:
                continue  # a late reply to a CALL that timed out
            elapsed = time.perf_counter() - started
            stats.reply(action, elapsed)
            if frame[0] == 3:
                return frame[2]  # type: ignore[no-any-return]
            stats.error(action, frame)
            return None

    async def idle(self, until: float | None) -> None:
        """Wait until the loop time ``until`` (forever with None), answering the server's CALLs."""
        assert self.ws is not None
        loop = asyncio.get_running_loop()
        while until is None or loop.time() < until:
            try:
                async with asyncio.timeout_at(until):
                    text = await self.ws.recv()
            except TimeoutError:
                return
            frame = json.loads(text)
            if frame[0] == 2:
                await self.answer(frame)

    async def answer(self, frame: list[Any]) -> None:
        assert self.ws is not None
        _, message_id, action, payload = frame
        dialect = self.fleet.dialect
        token = dialect.command_token(action, payload)
        if token is not None:
            self.fleet.command_received(token)
        reply = [3, message_id, dialect.command_answer(action)]
        await self.ws.send(json.dumps(reply, separators=(",", ":")))

    # --- Steps of a charger's life -------------------------------------------------------------

    async def boot(self) -> bool:
        reply = await self.call(*self.fleet.dialect.boot(self.identity))
        return reply is not None and reply.get("status") == "Accepted"

    async def session_start(self) -> str | None:
        dialect = self.fleet.dialect
        await self.call(*dialect.status(1, False))
        reply = await self.call(*dialect.authorize(self.id_tag))
        if reply is None or not dialect.authorized(reply):
            await self.call(*dialect.status(1, None))
            return None
        local_id = f"{self.identity}-{self.next_id}"
        reply = await self.call(*dialect.start(1, self.id_tag, self.meter_wh, local_id))
        if reply is None:
            return None
        started = dialect.started(reply, local_id)
        await self.call(*dialect.status(1, True))
        return started.transaction_id if started.accepted else None

    async def session_stop(self, transaction_id: str) -> None:
        dialect = self.fleet.dialect
        await self.call(*dialect.finishing(1))
        await self.call(*dialect.stop(1, transaction_id, self.id_tag, self.meter_wh))
        await self.call(*dialect.status(1, None))

    async def meter(self, transaction_id: str | None, power_w: float, seconds: float) -> None:
        self.meter_wh += max(1, int(power_w * seconds / 3600))
        await self.call(*self.fleet.dialect.meter(1, transaction_id, self.meter_wh, power_w))

    def ready(self) -> None:
        """Set-up done (booted, reported, session opened where the plan wants one)."""
        self.fleet.settle(self)


Behaviour = Callable[[BenchCharger], Awaitable[None]]


class Fleet:
    """Starts chargers, tracks which have finished their set-up, and stops them all."""

    def __init__(
        self,
        *,
        url: str,
        protocol: str,
        password: str | None,
        prefix: str,
        recorder: Recorder,
        open_timeout: float = 30.0,
        call_timeout: float = 30.0,
        source_block: int | None = None,
        seed: int = 1,
    ) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.dialect: Dialect = dialect_for(protocol)
        self.password = password
        self.prefix = prefix
        self.recorder = recorder
        self.open_timeout = open_timeout
        self.call_timeout = call_timeout
        self.rng = random.Random(seed)
        self.chargers: list[BenchCharger] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.ready_count = 0
        self.failed_count = 0
        self._unsettled = 0
        self._all_settled = asyncio.Event()
        self.commands_seen = 0
        # Seconds between one charger's calls in the closed loop; None: no pause (saturation).
        self.pace: float | None = None
        host = urlsplit(self.url).hostname or ""
        # On loopback, each run dials from its own source addresses, so that sockets of earlier
        # runs left in TIME_WAIT never exhaust the ephemeral ports.
        self._source_block = source_block if _is_loopback(host) else None

    def headers(self, identity: str) -> dict[str, str]:
        if self.password is None:
            return {}
        token = base64.b64encode(f"{identity}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def connect_kwargs(self, index: int) -> dict[str, Any]:
        if self._source_block is None:
            return {}
        address = f"127.{1 + self._source_block % 254}.{index // CHARGERS_PER_SOURCE_ADDRESS}.1"
        return {"local_addr": (address, 0)}

    def command_received(self, token: str) -> None:
        """A benchmark command reached a charger; its token carries the creation time."""
        self.commands_seen += 1
        _, _, created = token.partition("@")
        try:
            self.recorder.phase.commands.append(time.time() - float(created))
        except ValueError:
            self.recorder.phase.error("command", [4, "", "BadToken", token])

    # --- Lifecycle -----------------------------------------------------------------------------

    def launch(
        self,
        indices: Iterable[int],
        behaviour: Behaviour,
        *,
        rate: float | None = None,
        window: float | None = None,
        retries: int = 0,
    ) -> None:
        """Start chargers: spaced at ``rate`` per second, or at random moments within ``window``.
        A refused handshake is counted, then tried again up to ``retries`` times with backoff,
        as a charger would."""
        for position, index in enumerate(indices):
            charger = BenchCharger(self, index, random.Random(self.rng.random()))
            self.chargers.append(charger)
            if window:
                delay = self.rng.uniform(0, window)
            elif rate:
                delay = position / rate
            else:
                delay = 0.0
            self._unsettled += 1
            self._all_settled.clear()
            task = asyncio.get_running_loop().create_task(
                self._life(charger, behaviour, delay, retries)
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _life(
        self, charger: BenchCharger, behaviour: Behaviour, delay: float, retries: int
    ) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            for attempt in range(retries + 1):
                if await charger.open():
                    break
                if attempt == retries:
                    self.settle(charger, failed=True)
                    return
                await asyncio.sleep(min(10.0, 2.0**attempt) * charger.rng.uniform(0.5, 1.5))
            await behaviour(charger)
        except ConnectionClosed as exc:
            if not self.stopping:
                code = exc.rcvd.code if exc.rcvd else "no close frame"
                self.recorder.drop(f"closed ({code})")
        except OSError as exc:
            if not self.stopping:
                self.recorder.drop(_error_name(exc))
        finally:
            if not charger.settled:
                self.settle(charger, failed=True)

    def settle(self, charger: BenchCharger, *, failed: bool = False) -> None:
        if charger.settled:
            return
        charger.settled = True
        if failed:
            self.failed_count += 1
        else:
            self.ready_count += 1
        self._unsettled -= 1
        if self._unsettled <= 0:
            self._all_settled.set()

    async def wait_settled(self, timeout: float) -> bool:
        """Wait until every launched charger is ready or has failed; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._all_settled.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Cancel every charger and drop its socket (the server may already be gone)."""
        self.stopping = True
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for charger in self.chargers:
            if charger.ws is not None and charger.ws.transport is not None:
                charger.ws.transport.abort()
        self.chargers.clear()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 4 and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- Behaviours ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetPlan:
    """How a charger of the typical fleet behaves; every interval is in seconds."""

    heartbeat_interval: float = 300.0
    meter_interval: float = 60.0
    charging_share: float = 0.65
    session_seconds: float = 1800.0
    power_w: float = 11_000.0


def typical(plan: FleetPlan) -> Behaviour:
    async def behaviour(charger: BenchCharger) -> None:
        await typical_charger(charger, plan)

    return behaviour


async def typical_charger(charger: BenchCharger, plan: FleetPlan) -> None:
    """Heartbeats, status, and sessions with periodic meter values, so that on average
    ``charging_share`` of the fleet is charging at any moment."""
    if not await charger.boot():
        return
    await charger.call(*charger.fleet.dialect.status(1, None))
    loop = asyncio.get_running_loop()
    rng = charger.rng
    now = loop.time()
    next_heartbeat = now + rng.uniform(0, plan.heartbeat_interval)
    share = plan.charging_share
    idle_mean = plan.session_seconds * (1 - share) / share if share > 0 else math.inf
    transaction_id: str | None = None
    charging = share > 0 and rng.random() < share
    if charging:
        transaction_id = await charger.session_start()
        charging = transaction_id is not None
        now = loop.time()
        next_change = now + rng.uniform(0, plan.session_seconds)
    else:
        next_change = now + rng.uniform(0, idle_mean) if share > 0 else math.inf
    next_meter = now + rng.uniform(0, plan.meter_interval)
    power_w = plan.power_w * rng.uniform(0.6, 1.0)
    charger.ready()
    while True:
        due = min(next_heartbeat, next_change, next_meter if charging else math.inf)
        await charger.idle(None if math.isinf(due) else due)
        now = loop.time()
        if now >= next_heartbeat:
            await charger.call(*charger.fleet.dialect.heartbeat())
            next_heartbeat += plan.heartbeat_interval
        if charging and now >= next_meter:
            await charger.meter(transaction_id, power_w, plan.meter_interval)
            next_meter += plan.meter_interval
        if now >= next_change:
            if charging and transaction_id is not None:
                await charger.session_stop(transaction_id)
                charging, transaction_id = False, None
                next_change = loop.time() + idle_mean * rng.uniform(0.5, 1.5)
            else:
                transaction_id = await charger.session_start()
                charging = transaction_id is not None
                next_change = loop.time() + plan.session_seconds * rng.uniform(0.5, 1.5)
                next_meter = loop.time() + plan.meter_interval
                power_w = plan.power_w * rng.uniform(0.6, 1.0)


async def closed_loop_charger(charger: BenchCharger) -> None:
    """Boot and open a session, then Heartbeat and MeterValues back to back, with no pause.
    The meter values belong to the session, so each one is a database write on the full stack."""
    if not await charger.boot():
        return
    await charger.call(*charger.fleet.dialect.status(1, None))
    transaction_id = await charger.session_start()
    if transaction_id is None:
        return
    charger.ready()
    fleet = charger.fleet
    heartbeat = fleet.dialect.heartbeat()
    loop = asyncio.get_running_loop()
    due: float | None = None
    while True:
        await charger.call(*heartbeat)
        due = await _keep_pace(charger, loop, due)
        await charger.meter(transaction_id, 11_000.0, 1.0)
        due = await _keep_pace(charger, loop, due)


async def _keep_pace(
    charger: BenchCharger, loop: asyncio.AbstractEventLoop, due: float | None
) -> float | None:
    """Between two calls of the closed loop: no wait while the fleet runs flat out; once the
    fleet sets a pace, wait for this charger's next slot. The first slot falls at random within
    one interval, so the fleet's calls spread evenly; a charger that fell behind sends at once
    and catches up, as an open-loop generator would."""
    pace = charger.fleet.pace
    if pace is None:
        return None
    due = loop.time() + charger.rng.uniform(0, pace) if due is None else due + pace
    await charger.idle(due)
    return due


async def storm_charger(charger: BenchCharger) -> None:
    """Connect and boot once, report the connector, then hold the connection."""
    if not await charger.boot():
        return
    await charger.call(*charger.fleet.dialect.status(1, None))
    charger.ready()
    await charger.idle(None)


async def command_charger(charger: BenchCharger) -> None:
    """Boot, report, then wait for the server's CALLs and answer each at once."""
    await storm_charger(charger)
