"""Real upstream processes and a raw charger client for the routing tests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import websockets

from tests.conftest import CHARGER_PASSWORD, ROOT, ServerProcess, free_port

# Settings of the gateway under test: quick reconnects and short answer timeouts, so the tests
# see backoff and timeouts happen without waiting minutes.
ROUTING_ENV = {
    "CPMS_ROUTING_ANSWER_TIMEOUT": "4",
    "CPMS_ROUTING_CONNECT_TIMEOUT": "3",
    "CPMS_ROUTING_PING_INTERVAL": "2",
    "CPMS_ROUTING_BACKOFF_MIN": "0.2",
    "CPMS_ROUTING_BACKOFF_MAX": "1",
    "CPMS_CALL_TIMEOUT": "8",
    "CPMS_ROUTING_OUTBOX_LIMIT": "20",
}


class UpstreamProcess:
    """``tests/routing/upstream.py`` on a port of its own, which stays the same across restarts."""

    def __init__(self, name: str, tx_base: int, tmp: Path):
        self.name = name
        self.tx_base = tx_base
        self.port = free_port()
        self.record = tmp / f"{name}.jsonl"
        self.record.touch()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp/"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.routing.upstream",
                "--port",
                str(self.port),
                "--record",
                str(self.record),
                "--tx-base",
                str(self.tx_base),
                "--name",
                self.name,
            ],
            cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"upstream {self.name} exited early")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"upstream {self.name} did not listen")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def entries(self, charger: str | None = None) -> list[dict[str, Any]]:
        lines = self.record.read_text().splitlines()
        found = [json.loads(line) for line in lines if line.strip()]
        return [e for e in found if charger is None or e.get("charger") == charger]

    def received(self, charger: str) -> list[list[Any]]:
        """Frames this upstream received from the gateway for that charger, in order."""
        return [json.loads(e["frame"]) for e in self.entries(charger) if e["event"] == "in"]

    def calls(self, charger: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(message id, action, payload) of every CALL it received for that charger."""
        return [(f[1], f[2], f[3]) for f in self.received(charger) if f[0] == 2]

    def connects(self, charger: str) -> list[dict[str, Any]]:
        return [e for e in self.entries(charger) if e["event"] == "connect"]

    async def control(self, **command: Any) -> dict[str, Any]:
        async with websockets.connect(
            f"ws://127.0.0.1:{self.port}/control",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        ) as ws:
            await ws.send(json.dumps(command))
            return json.loads(await asyncio.wait_for(ws.recv(), 60))  # type: ignore[no-any-return]


def basic_auth(identity: str, password: str = CHARGER_PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class RawCharger:
    """A charger over a raw socket: sends CALLs with its own ids, answers the CSMS's CALLs, and
    keeps every frame it received so tests can count answers."""

    def __init__(self, ws: Any, answers: dict[str, dict[str, Any]] | None = None):
        self.ws = ws
        self.frames: list[list[Any]] = []
        self.calls_received: list[list[Any]] = []
        self.answers = answers or {}
        self._answers: dict[str, asyncio.Future[list[Any]]] = {}
        self._counter = 0
        self.closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                frame = json.loads(text)
                self.frames.append(frame)
                if frame[0] == 2:
                    self.calls_received.append(frame)
                    answer = self.answers.get(frame[2], {"status": "Accepted"})
                    await self.ws.send(json.dumps([3, frame[1], answer]))
                elif frame[1] in self._answers:
                    self._answers.pop(frame[1]).set_result(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self.closed.done():
                self.closed.set_result(self.ws.close_code)

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 30) -> list[Any]:
        self._counter += 1
        message_id = f"cp-{self._counter}"
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._answers[message_id] = future
        await self.ws.send(json.dumps([2, message_id, action, payload]))
        await asyncio.wait([future, self.closed], timeout=timeout, return_when="FIRST_COMPLETED")
        if future.done():
            return future.result()
        if self.closed.done():
            raise ConnectionError(
                f"closed with {self.closed.result()} before {action} was answered"
            )
        raise TimeoutError(f"{action} was not answered in {timeout}s")

    def answers_to(self, message_id: str) -> list[list[Any]]:
        return [f for f in self.frames if f[0] in (3, 4) and f[1] == message_id]

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


@contextlib.asynccontextmanager
async def charger_socket(
    server: ServerProcess,
    identity: str,
    *,
    subprotocol: str = "ocpp1.6",
    password: str = CHARGER_PASSWORD,
    answers: dict[str, dict[str, Any]] | None = None,
) -> AsyncIterator[RawCharger]:
    async with websockets.connect(
        server.ocpp_url + identity,
        subprotocols=[subprotocol],  # type: ignore[list-item]
        additional_headers=basic_auth(identity, password),
        open_timeout=20,
    ) as ws:
        assert ws.subprotocol == subprotocol
        charger = RawCharger(ws, answers)
        try:
            yield charger
        finally:
            await charger.close()


async def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Wait until ``check()`` (run in a thread, so it may use the ORM) returns something truthy."""
    from asgiref.sync import sync_to_async

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await sync_to_async(check)()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}: last {last!r}")
