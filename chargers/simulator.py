"""Simulated OCPP chargers over real WebSockets, for the demo, tests and load generation.

Each charger boots, reports its connectors, sends heartbeats, and runs sessions at configurable
rates: in 1.6J with Authorize, StartTransaction, periodic MeterValues and StopTransaction; in
2.0.1 (or 2.1) with Authorize and TransactionEvent Started, Updated (with meter values) and
Ended. A fleet can mix 1.6 and 2.0.1 chargers. It talks to any central system of those versions;
nothing here reads our database. The commands a central system sends are answered as a charger
would (``chargers.simulator_commands``): a remote start starts a session, a reset reboots, ...
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import websockets

from .simulator_commands import (
    PHASES,
    VOLTS,
    Answers16,
    Answers201,
    ChargerState,
    CommandAnswers,
)

logger = logging.getLogger(__name__)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class FleetConfig:
    url: str = "ws://127.0.0.1:8000/ocpp/"
    count: int = 5
    prefix: str = "SIM-"
    start_index: int = 1
    password: str | None = None
    connectors: int = 2
    heartbeat_interval: float | None = None  # None: use the interval BootNotification returns
    meter_interval: float = 15.0
    sessions_per_hour: float = 6.0  # per connector
    session_minutes: float = 10.0
    power_kw: float = 11.0
    id_tags: list[str] = field(default_factory=lambda: ["DEMO-TAG-1"])
    ramp_seconds: float = 2.0
    vendor: str = "Simulated"
    model: str = "SIM-AC22"
    reconnect: bool = True
    call_timeout: float = 30.0
    seed: int | None = None
    # "ocpp1.6", "ocpp2.0.1", "ocpp2.1", or "mixed" (1.6 and 2.0.1 chargers by turns).
    protocol: str = "ocpp1.6"
    # The firmware version chargers report at boot.
    firmware_version: str = "1.0.0"
    # How a firmware update goes (see simulator_commands.FIRMWARE_UPDATES): "" reports
    # Downloading to Installed and carries on; "install" also reboots with the new version;
    # "download-failed" and "install-failed" fail. Each charger may be told otherwise.
    firmware_update: str = ""
    # Upload a small diagnostics or log file when asked to, if the location is an HTTP(S) URL.
    upload_files: bool = False
    # The local authorization list: entries one SendLocalList may carry, entries it holds.
    local_list_per_message: int = 20
    local_list_max: int = 100


@dataclass
class Stats:
    """What the fleet saw: calls, answers, errors and reply times."""

    calls: int = 0
    results: int = 0
    errors: int = 0
    timeouts: int = 0
    connects: int = 0
    refused: int = 0
    disconnects: int = 0
    sessions_started: int = 0
    sessions_stopped: int = 0
    latencies: list[float] = field(default_factory=list)
    by_action: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(len(lat) * p))] * 1000 if lat else 0.0

        return (
            f"connects={self.connects} refused={self.refused} disconnects={self.disconnects} "
            f"calls={self.calls} results={self.results} errors={self.errors} "
            f"timeouts={self.timeouts} sessions={self.sessions_started}/{self.sessions_stopped} "
            f"p50={pct(0.5):.1f}ms p99={pct(0.99):.1f}ms"
        )


class CallFailed(Exception):
    def __init__(self, code: str, description: str):
        super().__init__(f"{code}: {description}")
        self.code = code


class SimulatedCharger(Answers16):
    subprotocol = "ocpp1.6"
    # The commands this charger answers (the other version's answers are not inherited).
    answer_mixin: type[CommandAnswers] = Answers16

    def __init__(self, identity: str, config: FleetConfig, stats: Stats, rng: random.Random):
        self.identity = identity
        self.config = config
        self.stats = stats
        self.rng = rng
        self.ws: Any = None
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._lock = asyncio.Lock()
        self.heartbeat_interval = config.heartbeat_interval or 300.0
        self.meter_wh = [rng.randint(0, 5_000_000) for _ in range(config.connectors)]
        self.transactions: dict[int, int] = {}
        # What the commands it gets change, and the sessions under way (by connector or EVSE).
        self.state = ChargerState(config.connectors)
        self.state.local_list_per_message = config.local_list_per_message
        self.state.local_list_max = config.local_list_max
        self.busy: set[int] = set()
        self.stop_events: dict[int, asyncio.Event] = {}
        self.stop_reasons: dict[int, str] = {}
        self.wakes: dict[int, asyncio.Event] = {}
        self._follow_ups: set[asyncio.Task[None]] = set()
        self.firmware_version = config.firmware_version
        self.firmware_update = config.firmware_update
        self.upload_files = config.upload_files

    # --- Transport -----------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        if self.config.password is None:
            return {}
        token = base64.b64encode(f"{self.identity}:{self.config.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CALL and wait for its answer; one CALL in flight at a time, as OCPP requires."""
        async with self._lock:
            message_id = f"{self.identity}-{next(self._ids)}"
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._pending[message_id] = future
            started = time.perf_counter()
            self.stats.calls += 1
            self.stats.by_action[action] = self.stats.by_action.get(action, 0) + 1
            await self.ws.send(json.dumps([2, message_id, action, payload]))
            try:
                async with asyncio.timeout(self.config.call_timeout):
                    frame = await future
            except TimeoutError:
                self.stats.timeouts += 1
                raise
            finally:
                self._pending.pop(message_id, None)
            self.stats.latencies.append(time.perf_counter() - started)
            if frame[0] == 4:
                self.stats.errors += 1
                raise CallFailed(frame[2], frame[3])
            self.stats.results += 1
            return frame[2]

    async def _reader(self) -> None:
        async for text in self.ws:
            frame = json.loads(text)
            if frame[0] in (3, 4):
                future = self._pending.get(frame[1])
                if future is not None and not future.done():
                    future.set_result(frame)
            elif frame[0] == 2:
                await self._answer(frame[1], frame[2], frame[3])

    # --- Behaviour -----------------------------------------------------------------------------

    async def boot(self) -> str:
        answer = await self.call(
            "BootNotification",
            {
                "chargePointVendor": self.config.vendor,
                "chargePointModel": self.config.model,
                "chargePointSerialNumber": f"SN-{self.identity}",
                "firmwareVersion": self.firmware_version,
            },
        )
        if self.config.heartbeat_interval is None and answer.get("interval"):
            self.heartbeat_interval = float(answer["interval"])
        return answer["status"]

    async def status(self, connector: int, status: str, error_code: str = "NoError") -> None:
        await self.call(
            "StatusNotification",
            {
                "connectorId": connector,
                "errorCode": error_code,
                "status": status,
                "timestamp": now_iso(),
            },
        )

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        """An open socket with its reader running, for as long as the block lasts."""
        async with websockets.connect(
            self.config.url + self.identity,
            subprotocols=[self.subprotocol],  # type: ignore[list-item]
            additional_headers=self._headers(),
            compression=None,
            open_timeout=30,
            ping_interval=None,
            max_size=2**20,
        ) as ws:
            self.ws = ws
            self.stats.connects += 1
            self.reader_task = asyncio.get_running_loop().create_task(self._reader())
            try:
                yield
            finally:
                self.reader_task.cancel()

    async def report_statuses(self) -> None:
        """After boot: the state of the charger and every connector."""
        await self.status(0, "Available")
        for connector in range(1, self.config.connectors + 1):
            await self.status(connector, self._shown(connector))

    async def run_once(self) -> None:
        """One connection's life: boot, report, then heartbeats and sessions until it drops."""
        async with self.connected():
            reader = self.reader_task
            tasks: list[asyncio.Task[Any]] = []
            try:
                # A charger retries its boot on a timer.
                while await self.boot() != "Accepted":  # noqa: ASYNC110
                    await asyncio.sleep(min(self.heartbeat_interval, 10))
                await self.report_statuses()
                tasks = [asyncio.create_task(self._heartbeats())] + [
                    asyncio.create_task(self._sessions(connector))
                    for connector in range(1, self.config.connectors + 1)
                ]
                done, _ = await asyncio.wait([reader, *tasks], return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception():
                        raise task.exception()  # type: ignore[misc]
            finally:
                # Whatever ends the connection (even a cancel) ends what ran on it.
                for task in [reader, *tasks, *self._follow_ups]:
                    task.cancel()
                await asyncio.gather(reader, *tasks, *self._follow_ups, return_exceptions=True)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            await self.call("Heartbeat", {})

    async def _sessions(self, connector: int) -> None:
        rate = self.config.sessions_per_hour / 3600.0
        while True:
            await asyncio.sleep(self.rng.expovariate(rate) if rate > 0 else 3600)
            if self._free(connector):
                self.busy.add(connector)
                await self.session(connector)

    async def _pause(self, connector: int, seconds: float) -> bool:
        """Wait ``seconds``, or less when the connector's limit changes; True if the session on
        the connector was told to stop meanwhile."""
        stop = self.stop_events.setdefault(connector, asyncio.Event())
        wake = self.wakes.setdefault(connector, asyncio.Event())
        # A change that came while the session was busy (sending its readings) still counts.
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        wake.clear()
        return stop.is_set()

    def drawn_w(self, connector: int, ev_max_w: float) -> float:
        """What the EV draws: the smaller of what it takes and what the charger's profiles
        allow (amperes on three phases of 230 V)."""
        limit = self.limit_a(connector)
        if limit is None:
            return ev_max_w
        return max(0.0, min(ev_max_w, limit * VOLTS * PHASES))

    async def session(
        self,
        connector: int,
        id_tag: str | None = None,
        *,
        remote: bool = False,
        remote_start_id: int | None = None,
    ) -> None:
        """One charging session on a connector; a remote start needs no Authorize first."""
        self.busy.add(connector)
        self.stop_events[connector] = asyncio.Event()
        try:
            await self._session(connector, id_tag or self.rng.choice(self.config.id_tags), remote)
        finally:
            self.busy.discard(connector)
            self.stop_events.pop(connector, None)
            self.stop_reasons.pop(connector, None)

    async def _session(self, connector: int, id_tag: str, remote: bool) -> None:
        await self.status(connector, "Preparing")
        if not remote:
            authorized = await self.call("Authorize", {"idTag": id_tag})
            if authorized["idTagInfo"]["status"] != "Accepted":
                await self.status(connector, "Available")
                return
        index = connector - 1
        start: dict[str, Any] = {
            "connectorId": connector,
            "idTag": id_tag,
            "meterStart": self.meter_wh[index],
            "timestamp": now_iso(),
        }
        reservation_id = self.take_reservation(connector, id_tag)
        if reservation_id is not None:
            start["reservationId"] = reservation_id
        started = await self.call("StartTransaction", start)
        transaction_id = started["transactionId"]
        self.transactions[connector] = transaction_id
        self.stats.sessions_started += 1
        await self.status(connector, "Charging")
        end = time.monotonic() + self.config.session_minutes * 60 * self.rng.uniform(0.5, 1.5)
        ev_max_w = self.config.power_kw * 1000 * self.rng.uniform(0.6, 1.0)
        while time.monotonic() < end:
            step = min(self.config.meter_interval, max(0.0, end - time.monotonic()))
            started_at = time.monotonic()
            power_w = self.drawn_w(connector, ev_max_w)
            stopped = await self._pause(connector, step)
            self.meter_wh[index] += int(power_w * (time.monotonic() - started_at) / 3600)
            if stopped:
                break
            power_w = self.drawn_w(connector, ev_max_w)
            await self.call("MeterValues", self.meter_values(connector, transaction_id, power_w))
        await self.status(connector, "Finishing")
        await self.call(
            "StopTransaction",
            {
                "transactionId": transaction_id,
                "idTag": id_tag,
                "meterStop": self.meter_wh[index],
                "timestamp": now_iso(),
                "reason": self.stop_reasons.get(connector, "Local"),
            },
        )
        self.transactions.pop(connector, None)
        self._transaction_ended(connector)
        self.stats.sessions_stopped += 1
        await self.status(connector, "Available")

    def meter_values(
        self, connector: int, transaction_id: int | None, power_w: float
    ) -> dict[str, Any]:
        amps = power_w / (3 * 230)
        sampled = [
            {
                "value": str(self.meter_wh[connector - 1]),
                "measurand": "Energy.Active.Import.Register",
                "unit": "Wh",
                "context": "Sample.Periodic",
                "location": "Outlet",
            },
            {
                "value": f"{power_w / 1000:.3f}",
                "measurand": "Power.Active.Import",
                "unit": "kW",
                "context": "Sample.Periodic",
            },
        ] + [
            {
                "value": f"{amps:.1f}",
                "measurand": "Current.Import",
                "unit": "A",
                "phase": phase,
                "context": "Sample.Periodic",
            }
            for phase in ("L1", "L2", "L3")
        ]
        payload: dict[str, Any] = {
            "connectorId": connector,
            "meterValue": [{"timestamp": now_iso(), "sampledValue": sampled}],
        }
        if transaction_id is not None:
            payload["transactionId"] = transaction_id
        return payload

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 1.0
        while not stop.is_set():
            try:
                await self.run_once()
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except websockets.exceptions.InvalidStatus as exc:
                self.stats.refused += 1
                logger.warning("%s refused: HTTP %s", self.identity, exc.response.status_code)
            except (
                OSError,
                websockets.exceptions.WebSocketException,
                TimeoutError,
                CallFailed,
            ) as exc:
                self.stats.disconnects += 1
                logger.info("%s disconnected: %s", self.identity, exc)
            if not self.config.reconnect:
                return
            await asyncio.sleep(backoff * self.rng.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 60.0)


class SimulatedCharger201(Answers201, SimulatedCharger):
    """A charger that speaks OCPP 2.0.1 (or 2.1: the messages it sends are the same in both).

    Each EVSE has one connector; a session is authorized first, then runs as one transaction of
    TransactionEvent Started, periodic Updated events with meter values, and Ended.
    """

    answer_mixin = Answers201

    def __init__(self, identity: str, config: FleetConfig, stats: Stats, rng: random.Random):
        super().__init__(identity, config, stats, rng)
        self.subprotocol = "ocpp2.1" if config.protocol == "ocpp2.1" else "ocpp2.0.1"
        self.transaction_ids: dict[int, str] = {}

    async def boot(self) -> str:
        answer = await self.call(
            "BootNotification",
            {
                "reason": "PowerUp",
                "chargingStation": {
                    "vendorName": self.config.vendor,
                    "model": self.config.model[:20],
                    "serialNumber": f"SN-{self.identity}"[:25],
                    "firmwareVersion": self.firmware_version,
                },
            },
        )
        if self.config.heartbeat_interval is None and answer.get("interval"):
            self.heartbeat_interval = float(answer["interval"])
        return str(answer["status"])

    async def status(self, connector: int, status: str, error_code: str = "") -> None:
        """A connector's status; 2.x knows Available, Occupied, Reserved, Unavailable, Faulted."""
        await self.call(
            "StatusNotification",
            {
                "timestamp": now_iso(),
                "connectorStatus": status,
                "evseId": connector,
                "connectorId": 1,
            },
        )

    async def report_statuses(self) -> None:
        for connector in range(1, self.config.connectors + 1):
            await self.status(connector, self._shown(connector))

    async def session(
        self,
        connector: int,
        id_tag: str | None = None,
        *,
        remote: bool = False,
        remote_start_id: int | None = None,
    ) -> None:
        self.busy.add(connector)
        self.stop_events[connector] = asyncio.Event()
        try:
            await self._session201(
                connector, id_tag or self.rng.choice(self.config.id_tags), remote_start_id
            )
        finally:
            self.busy.discard(connector)
            self.stop_events.pop(connector, None)
            self.stop_reasons.pop(connector, None)

    async def _session201(self, connector: int, id_tag: str, remote_start_id: int | None) -> None:
        id_token = {"idToken": id_tag, "type": "ISO14443"}
        if remote_start_id is None:
            authorized = await self.call("Authorize", {"idToken": id_token})
            if authorized["idTokenInfo"]["status"] != "Accepted":
                return
        index = connector - 1
        transaction_id = str(uuid.UUID(int=self.rng.getrandbits(128)))
        self.transaction_ids[connector] = transaction_id
        await self.status(connector, "Occupied")
        ev_max_w = self.config.power_kw * 1000 * self.rng.uniform(0.6, 1.0)
        power_w = self.drawn_w(connector, ev_max_w)
        seq_no = 0
        started = self.transaction_event(
            "Started",
            "Authorized" if remote_start_id is None else "RemoteStart",
            connector,
            seq_no,
            power_w,
            id_token=id_token,
            charging_state="Charging",
            context="Transaction.Begin",
            remote_start_id=remote_start_id,
        )
        reservation_id = self.take_reservation(connector, id_tag)
        if reservation_id is not None:
            started["reservationId"] = reservation_id
        await self.call("TransactionEvent", started)
        self.stats.sessions_started += 1
        end = time.monotonic() + self.config.session_minutes * 60 * self.rng.uniform(0.5, 1.5)
        while time.monotonic() < end:
            step = min(self.config.meter_interval, max(0.0, end - time.monotonic()))
            started_at = time.monotonic()
            power_w = self.drawn_w(connector, ev_max_w)
            stopped = await self._pause(connector, step)
            self.meter_wh[index] += int(power_w * (time.monotonic() - started_at) / 3600)
            if stopped:
                break
            power_w = self.drawn_w(connector, ev_max_w)
            seq_no += 1
            await self.call(
                "TransactionEvent",
                self.transaction_event("Updated", "MeterValuePeriodic", connector, seq_no, power_w),
            )
        seq_no += 1
        reason = self.stop_reasons.get(connector, "Local")
        await self.call(
            "TransactionEvent",
            self.transaction_event(
                "Ended",
                {"Remote": "RemoteStop", "Local": "StopAuthorized"}.get(reason, "ResetCommand"),
                connector,
                seq_no,
                0.0,
                id_token=id_token,
                charging_state="EVConnected",
                context="Transaction.End",
                stopped_reason=reason,
            ),
        )
        self.transaction_ids.pop(connector, None)
        self._transaction_ended(connector)
        self.stats.sessions_stopped += 1
        await self.status(connector, "Available")

    def transaction_event(
        self,
        event_type: str,
        trigger_reason: str,
        connector: int,
        seq_no: int,
        power_w: float,
        *,
        id_token: dict[str, str] | None = None,
        charging_state: str = "Charging",
        context: str = "Sample.Periodic",
        stopped_reason: str = "",
        remote_start_id: int | None = None,
    ) -> dict[str, Any]:
        info: dict[str, Any] = {
            "transactionId": self.transaction_ids[connector],
            "chargingState": charging_state,
        }
        if stopped_reason:
            info["stoppedReason"] = stopped_reason
        if remote_start_id is not None:
            info["remoteStartId"] = remote_start_id
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": now_iso(),
            "triggerReason": trigger_reason,
            "seqNo": seq_no,
            "transactionInfo": info,
            "meterValue": [
                {
                    "timestamp": now_iso(),
                    "sampledValue": self.sampled_values(connector, power_w, context),
                }
            ],
        }
        if event_type == "Started":
            payload["evse"] = {"id": connector, "connectorId": 1}
        if id_token is not None:
            payload["idToken"] = id_token
        return payload

    def sampled_values(self, connector: int, power_w: float, context: str) -> list[dict[str, Any]]:
        amps = power_w / (3 * 230)
        return [
            {
                "value": self.meter_wh[connector - 1],
                "measurand": "Energy.Active.Import.Register",
                "context": context,
                "location": "Outlet",
                "unitOfMeasure": {"unit": "Wh"},
            },
            {
                "value": round(power_w / 1000, 3),
                "measurand": "Power.Active.Import",
                "context": context,
                "unitOfMeasure": {"unit": "W", "multiplier": 3},
            },
        ] + [
            {
                "value": round(amps, 1),
                "measurand": "Current.Import",
                "phase": phase,
                "context": context,
                "unitOfMeasure": {"unit": "A"},
            }
            for phase in ("L1", "L2", "L3")
        ]


PROTOCOLS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1", "mixed")


def charger_class(config: FleetConfig, index: int) -> type[SimulatedCharger]:
    """Which simulated charger the index-th one of the fleet is."""
    if config.protocol == "mixed":
        return SimulatedCharger201 if index % 2 == 0 else SimulatedCharger
    if config.protocol in ("ocpp2.0.1", "ocpp2.1"):
        return SimulatedCharger201
    if config.protocol == "ocpp1.6":
        return SimulatedCharger
    raise ValueError(f"unknown protocol {config.protocol!r}; one of {', '.join(PROTOCOLS)}")


async def run_fleet(config: FleetConfig, duration: float | None = None) -> Stats:
    """Run the fleet until ``duration`` seconds pass (forever with None); return its stats."""
    rng = random.Random(config.seed)
    stats = Stats()
    stop = asyncio.Event()
    chargers = [
        charger_class(config, index)(
            f"{config.prefix}{index:03d}", config, stats, random.Random(rng.random())
        )
        for index in range(config.start_index, config.start_index + config.count)
    ]

    async def start(charger: SimulatedCharger, delay: float) -> None:
        await asyncio.sleep(delay)
        await charger.run(stop)

    tasks = [
        asyncio.create_task(start(charger, rng.uniform(0, config.ramp_seconds)))
        for charger in chargers
    ]
    try:
        if duration is None:
            await asyncio.gather(*tasks)
        else:
            await asyncio.wait(tasks, timeout=duration)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return stats
