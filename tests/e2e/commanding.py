"""Helpers for the command tests: strict chargers (the ``ocpp`` package's ChargePoint, schema
validation both ways) that answer the commands they get from a table, and waits on the rows.

Each answering charger has an ``@on`` handler for every command a CSMS may send in its version;
the handler answers with the table's ``call_result`` for the action, or refuses it with the
library's CALLERROR when the table has none.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import websockets
from asgiref.sync import sync_to_async
from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as results16
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as results21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as results201

from chargers import services
from chargers.commands import CSMS_ACTIONS, FINISHED
from chargers.models import Charger, Command
from tests.conftest import CHARGER_PASSWORD

# A call_result instance, the answer's JSON (camelCase), or a callable (charger, payload) -> either.
Answer = Any


def basic_auth(identity: str, password: str = CHARGER_PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Answering:
    """What every answering charger has: the CALLs it got, in order, as sent (camelCase)."""

    results: Any  # the version's call_result module
    answers: dict[str, Answer]
    calls: list[tuple[str, dict[str, Any]]]
    arrived: asyncio.Queue[tuple[str, dict[str, Any]]]

    def setup(self, answers: dict[str, Answer]) -> None:
        self.answers = answers
        self.calls = []
        self.arrived = asyncio.Queue()

    async def _handle_call(self, msg: Any) -> None:
        self.calls.append((msg.action, msg.payload))
        self.arrived.put_nowait((msg.action, msg.payload))
        await super()._handle_call(msg)  # type: ignore[misc]

    async def answer(self, action: str, payload: dict[str, Any]) -> Any:
        answer = self.answers.get(action)
        if answer is None:
            raise OcppNotImplemented(description=f"this charger does not take {action}")
        if callable(answer):
            answer = answer(self, payload)
            if asyncio.iscoroutine(answer):
                answer = await answer
        if isinstance(answer, dict):
            answer = getattr(self.results, action)(**camel_to_snake_case(answer))
        return answer

    async def next_call(self, timeout: float = 20.0) -> tuple[str, dict[str, Any]]:
        return await asyncio.wait_for(self.arrived.get(), timeout)


def _handler(action: str) -> Callable[..., Any]:
    async def handle(self: Any, **kwargs: Any) -> Any:
        return await self.answer(action, self.calls[-1][1])

    handle.__name__ = f"on_{action}"
    return on(action)(handle)


def _answering_class(base: type, version: str, results: Any) -> type:
    namespace: dict[str, Any] = {
        f"on_{action}": _handler(action) for action in sorted(CSMS_ACTIONS[version])
    }
    namespace["results"] = results
    return type(f"Answering{base.__name__}", (Answering, base), namespace)


Answering16 = _answering_class(ChargePoint16, "1.6", results16)
Answering201 = _answering_class(ChargePoint201, "2.0.1", results201)
Answering21 = _answering_class(ChargePoint21, "2.1", results21)

CLIENTS = {"ocpp1.6": Answering16, "ocpp2.0.1": Answering201, "ocpp2.1": Answering21}


@asynccontextmanager
async def answering_charger(
    url: str, identity: str, answers: dict[str, Answer], subprotocol: str = "ocpp1.6"
) -> AsyncIterator[Any]:
    """A strict charger connected to ``url`` (a server's /ocpp/ URL), answering from ``answers``."""
    async with websockets.connect(
        url + identity,
        subprotocols=[subprotocol],  # type: ignore[list-item]
        additional_headers=basic_auth(identity),
        open_timeout=15,
    ) as ws:
        assert ws.subprotocol == subprotocol
        client = CLIENTS[subprotocol](identity, ws, response_timeout=15)
        client.setup(answers)
        reader = asyncio.create_task(client.start())
        try:
            yield client
        finally:
            reader.cancel()


async def boot(client: Any) -> None:
    """BootNotification, so that the charger is Accepted before it starts sessions."""
    if isinstance(client, ChargePoint16):
        request: Any = call16.BootNotification(
            charge_point_vendor="ACME", charge_point_model="Wallbox"
        )
    else:
        module = call21 if isinstance(client, ChargePoint21) else call201
        request = module.BootNotification(
            charging_station={"model": "Wallbox", "vendor_name": "ACME"}, reason="PowerUp"
        )
    answer = await client.call(request, suppress=False)
    assert answer.status == "Accepted"


async def create(charger: Charger, action: str, payload: dict[str, Any], **kwargs: Any) -> Command:
    return await sync_to_async(services.command_create)(
        charger=charger, action=action, payload=payload, **kwargs
    )


async def eventually(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll a database check until it holds; the deadline only turns a hang into a failure."""
    deadline = time.monotonic() + timeout
    while True:
        result = await sync_to_async(check)()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"still not true after {timeout}s: {what or check.__doc__ or check}"
            )
        await asyncio.sleep(0.05)


async def finished(command: Command, timeout: float = 20.0) -> Command:
    """The command's row once it reached a final state."""

    def check() -> Command | None:
        row = Command.objects.get(pk=command.pk)
        return row if row.state in FINISHED else None

    return await eventually(check, timeout, f"command {command.pk} ({command.action}) finished")


async def in_state(command: Command, state: str, timeout: float = 20.0) -> Command:
    def check() -> Command | None:
        row = Command.objects.get(pk=command.pk)
        return row if row.state == state else None

    return await eventually(check, timeout, f"command {command.pk} ({command.action}) {state}")


async def connected(charger: Charger, flag: bool = True) -> None:
    await eventually(
        lambda: Charger.objects.filter(pk=charger.pk, connected=flag).exists(),
        what=f"{charger.identity} connected={flag}",
    )
