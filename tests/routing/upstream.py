"""A small OCPP-J upstream CSMS for routing tests, run as its own process.

It accepts any charger at ``/<anything>/<charger id>``, answers every CALL schema-valid for
OCPP 1.6 and 2.0.1 (issuing its own 1.6 transaction ids from ``--tx-base``), and appends every
connection and frame to a JSON-lines record file, which survives the process being killed and
restarted. A control socket at ``/control`` takes JSON commands: ``{"op": "delay", "seconds":
s}`` slows every answer, ``{"op": "call", "charger": id, "action": a, "payload": p}`` sends a CALL
to a connected charger (and replies with the charger's answer), ``{"op": "mute", "on": true}``
stops answering altogether, ``{"op": "refuse", "action": a, "on": true}`` answers that action
with a CALLERROR.

    python -m tests.routing.upstream --port 9001 --record /tmp/up.jsonl --tx-base 5000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import ServerConnection, serve


class Upstream:
    def __init__(self, record: str, tx_base: int, name: str):
        self.record_path = record
        self.name = name
        self.transaction_ids = itertools.count(tx_base)
        self.delay = 0.0
        self.muted = False
        self.refused: set[str] = set()
        self.chargers: dict[str, ServerConnection] = {}
        self.waiting: dict[str, asyncio.Future[Any]] = {}
        self.ids = itertools.count(1)

    def record(self, **entry: Any) -> None:
        entry["t"] = time.time()
        with open(self.record_path, "a") as file:
            file.write(json.dumps(entry) + "\n")

    def answer(self, action: str, payload: dict[str, Any], version: str) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": now, "interval": 300}
        if action == "Heartbeat":
            return {"currentTime": now}
        if action == "Authorize":
            if version == "1.6":
                return {"idTagInfo": {"status": "Accepted"}}
            return {"idTokenInfo": {"status": "Accepted"}}
        if action == "StartTransaction":
            return {
                "transactionId": next(self.transaction_ids),
                "idTagInfo": {"status": "Accepted"},
            }
        if action == "StopTransaction":
            return {"idTagInfo": {"status": "Accepted"}}
        if action == "DataTransfer":
            return {"status": "Accepted"}
        if action == "TransactionEvent":
            return {"idTokenInfo": {"status": "Accepted"}} if "idToken" in payload else {}
        return {}

    async def charger(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        path = request.path
        if path == "/control":
            await self.control(ws)
            return
        identity = path.rstrip("/").rsplit("/", 1)[-1]
        version = {"ocpp1.6": "1.6", "ocpp2.0.1": "2.0.1", "ocpp2.1": "2.1"}.get(
            ws.subprotocol or "", ""
        )
        self.record(
            event="connect",
            upstream=self.name,
            charger=identity,
            path=path,
            subprotocol=ws.subprotocol,
            authorization=request.headers.get("Authorization", ""),
        )
        self.chargers[identity] = ws
        try:
            async for text in ws:
                self.record(event="in", upstream=self.name, charger=identity, frame=text)
                frame = json.loads(text)
                if frame[0] == 2:
                    asyncio.get_running_loop().create_task(self.reply(ws, identity, frame, version))
                elif frame[1] in self.waiting:
                    self.waiting.pop(frame[1]).set_result(frame)
        finally:
            if self.chargers.get(identity) is ws:
                del self.chargers[identity]
            self.record(event="disconnect", upstream=self.name, charger=identity)

    async def reply(
        self, ws: ServerConnection, identity: str, frame: list[Any], version: str
    ) -> None:
        if self.muted:
            return
        if self.delay:
            await asyncio.sleep(self.delay)
        _, message_id, action, payload = frame
        if action in self.refused:
            text = json.dumps([4, message_id, "NotSupported", f"{self.name} refuses {action}", {}])
        else:
            text = json.dumps([3, message_id, self.answer(action, payload, version)])
        await ws.send(text)
        self.record(event="out", upstream=self.name, charger=identity, frame=text)

    async def control(self, ws: ServerConnection) -> None:
        async for text in ws:
            command = json.loads(text)
            op = command["op"]
            if op == "delay":
                self.delay = float(command["seconds"])
                await ws.send(json.dumps({"ok": True}))
            elif op == "refuse":
                if command.get("on", True):
                    self.refused.add(command["action"])
                else:
                    self.refused.discard(command["action"])
                await ws.send(json.dumps({"ok": True}))
            elif op == "mute":
                self.muted = bool(command["on"])
                await ws.send(json.dumps({"ok": True}))
            elif op == "call":
                charger = self.chargers.get(command["charger"])
                if charger is None:
                    await ws.send(json.dumps({"error": "not connected"}))
                    continue
                message_id = f"{self.name}-{next(self.ids)}"
                future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                self.waiting[message_id] = future
                text = json.dumps([2, message_id, command["action"], command["payload"]])
                await charger.send(text)
                self.record(event="out", upstream=self.name, charger=command["charger"], frame=text)
                try:
                    async with asyncio.timeout(float(command.get("timeout", 20))):
                        answer = await future
                except TimeoutError:
                    answer = None
                await ws.send(json.dumps({"answer": answer, "message_id": message_id}))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--tx-base", type=int, default=1000)
    parser.add_argument("--name", default="upstream")
    args = parser.parse_args()
    upstream = Upstream(args.record, args.tx_base, args.name)
    async with serve(
        upstream.charger,
        "127.0.0.1",
        args.port,
        subprotocols=["ocpp1.6", "ocpp2.0.1", "ocpp2.1"],  # type: ignore[list-item]
        ping_interval=None,
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
