"""The baseline server: raw ``websockets`` that parses each OCPP frame and answers with a canned,
schema-valid CALLRESULT, touching nothing else.

It runs as one process with the socket settings of the full stack under daphne (no per-message
compression, 1 MiB messages, and the keepalive of ``python -m cpms.serve``: ``--ping-interval`` and
``--ping-timeout``, which the harness sets from ``CPMS_WS_PING_INTERVAL`` and
``CPMS_WS_PING_TIMEOUT``), so the ratio of the two is the cost of everything the full stack does
beyond accept, parse and answer.

``/control`` takes lines ``<charger id> <token>`` and sends that charger a command CALL carrying
the token: the baseline's side of the command scenario.

    python -m bench.baseline --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from .dialects import PROTOCOLS, canned_result, dialect_for

PING_INTERVAL = 300.0  # CPMS_WS_PING_INTERVAL's default
PING_TIMEOUT = 30.0  # CPMS_WS_PING_TIMEOUT's default
MAX_MESSAGE = 2**20  # daphne's --websocket-max-message-size default


def _dumps(frame: list[Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


class Baseline:
    def __init__(self) -> None:
        self.chargers: dict[str, ServerConnection] = {}
        self._ids = itertools.count(1)

    async def handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        if path == "/control":
            await self.control(ws)
            return
        if not path.startswith("/ocpp/") or len(path) <= len("/ocpp/"):
            await ws.close(1008, "unknown path")
            return
        identity = path[len("/ocpp/") :].rstrip("/")
        protocol = ws.subprotocol or PROTOCOLS[0]
        self.chargers[identity] = ws
        try:
            async for text in ws:
                try:
                    frame = json.loads(text)
                    kind, message_id = frame[0], frame[1]
                except (ValueError, TypeError, IndexError, KeyError):
                    await ws.send(
                        _dumps([4, "-1", "FormationViolation", "not an OCPP-J frame", {}])
                    )
                    continue
                if kind == 2:
                    payload = canned_result(protocol, frame[2], frame[3])
                    await ws.send(_dumps([3, message_id, payload]))
        except ConnectionClosed:
            pass
        finally:
            if self.chargers.get(identity) is ws:
                del self.chargers[identity]

    async def control(self, ws: ServerConnection) -> None:
        """Commands for the chargers of this process. With several processes, the harness holds
        a control connection to each (this first line tells them apart) and sends every command
        to all of them; the processes that do not hold the charger let it pass."""
        await ws.send(f"process {os.getpid()}")
        async for text in ws:
            identity, _, token = str(text).partition(" ")
            charger = self.chargers.get(identity)
            if charger is None:
                continue
            action, payload = dialect_for(charger.subprotocol or PROTOCOLS[0]).command_call(token)
            try:
                await charger.send(_dumps([2, f"cmd-{next(self._ids)}", action, payload]))
            except ConnectionClosed:
                await ws.send(f"closed {identity}")


def _select_subprotocol(
    connection: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """The first OCPP version the client offers; none for the control connection."""
    return next((p for p in offered if p in PROTOCOLS), None)


async def serve_forever(
    host: str,
    port: int,
    backlog: int,
    *,
    reuse_port: bool = False,
    ping_interval: float = PING_INTERVAL,
    ping_timeout: float = PING_TIMEOUT,
) -> None:
    baseline = Baseline()
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)
    async with serve(
        baseline.handle,
        host,
        port,
        subprotocols=[Subprotocol(p) for p in PROTOCOLS],
        select_subprotocol=_select_subprotocol,
        compression=None,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_size=MAX_MESSAGE,
        backlog=backlog,
        server_header=None,
        reuse_port=reuse_port,
    ):
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--backlog", type=int, default=2048)
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="server processes on the port (SO_REUSEPORT), as python -m cpms.serve runs ours",
    )
    parser.add_argument("--ping-interval", type=float, default=PING_INTERVAL)
    parser.add_argument("--ping-timeout", type=float, default=PING_TIMEOUT)
    args = parser.parse_args()
    keepalive = {"ping_interval": args.ping_interval, "ping_timeout": args.ping_timeout}
    if args.processes <= 1:
        # 0: one of the children below, sharing the port.
        reuse_port = args.processes == 0
        asyncio.run(
            serve_forever(args.host, args.port, args.backlog, reuse_port=reuse_port, **keepalive)
        )
        return
    # The others are children of this one, so the harness reads CPU and memory off one tree.
    command = [sys.executable, "-m", "bench.baseline", "--host", args.host, "--port"]
    command += [str(args.port), "--backlog", str(args.backlog), "--processes", "0"]
    command += ["--ping-interval", str(args.ping_interval)]
    command += ["--ping-timeout", str(args.ping_timeout)]
    children = [subprocess.Popen(command) for _ in range(args.processes - 1)]
    try:
        asyncio.run(serve_forever(args.host, args.port, args.backlog, reuse_port=True, **keepalive))
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait()


if __name__ == "__main__":
    main()
