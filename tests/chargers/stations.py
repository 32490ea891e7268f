"""A charger's side of the OCPP endpoint for handler tests: frames in, the exact frames out.

``Station`` drives the real dispatcher and handlers of a version (as the consumer does, minus the
socket) inside the test's database transaction, and flushes the real batch writer after every
frame so that what the hot path buffers is in the database when the test looks.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from asgiref.sync import async_to_sync

from chargers import services
from chargers.batching import get_writer
from chargers.consumers import VERSIONS
from chargers.dispatch import Dispatcher, Outcome
from chargers.models import Charger
from tests.conftest import CHARGER_PASSWORD

SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1", "2.1": "ocpp2.1"}


class Station:
    def __init__(self, charger: Charger, version: str = "2.0.1", password: str = CHARGER_PASSWORD):
        self.charger = charger
        self.version = version
        version_name, handler_class, known_actions = VERSIONS[SUBPROTOCOLS[version]]
        assert version_name == version
        self.connection = services.charger_connect(
            identity=charger.identity, password=password, ocpp_version=version, channel_name="test"
        )
        self.handler = handler_class(self.connection, None)
        dispatcher_class = getattr(handler_class, "dispatcher_class", Dispatcher)
        self.dispatcher = dispatcher_class(
            self.handler, version=version, known_actions=known_actions
        )
        self._ids = itertools.count(1)
        self.last: Outcome | None = None

    def send_text(self, text: str) -> list[Any] | None:
        """One frame in; the frame sent back (parsed), or None when nothing is sent."""

        async def go() -> Outcome:
            self.handler.writer = get_writer()
            outcome = await self.dispatcher.handle_text(text)
            await self.handler.writer.flush()
            return outcome

        self.last = async_to_sync(go)()
        return json.loads(self.last.reply) if self.last.reply else None

    def send(
        self, action: str, payload: dict[str, Any], message_id: str | None = None
    ) -> list[Any]:
        message_id = message_id or f"m-{next(self._ids)}"
        reply = self.send_text(json.dumps([2, message_id, action, payload]))
        assert reply is not None
        assert reply[1] == message_id
        return reply

    def result(
        self, action: str, payload: dict[str, Any], message_id: str | None = None
    ) -> dict[str, Any]:
        """Send a CALL that must be answered with a CALLRESULT; its payload."""
        reply = self.send(action, payload, message_id)
        assert reply[0] == 3, reply
        return reply[2]

    def error(self, action: str, payload: dict[str, Any]) -> tuple[str, str]:
        """Send a CALL that must be answered with a CALLERROR; its code and description."""
        reply = self.send(action, payload)
        assert reply[0] == 4, reply
        return reply[2], reply[3]

    def boot(
        self, vendor: str = "Acme", model: str = "AC-22", reason: str = "PowerUp", **station: Any
    ) -> dict[str, Any]:
        return self.result(
            "BootNotification",
            {
                "reason": reason,
                "chargingStation": {"vendorName": vendor, "model": model, **station},
            },
        )


def energy(
    wh: float | int,
    context: str = "Sample.Periodic",
    unit: str = "Wh",
    multiplier: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    unit_of_measure: dict[str, Any] = {"unit": unit}
    if multiplier:
        unit_of_measure["multiplier"] = multiplier
    return {
        "value": wh,
        "context": context,
        "measurand": "Energy.Active.Import.Register",
        "unitOfMeasure": unit_of_measure,
        **extra,
    }


def meter_value(timestamp: str, *sampled: dict[str, Any]) -> dict[str, Any]:
    return {"timestamp": timestamp, "sampledValue": list(sampled)}


def transaction_event(
    event_type: str,
    seq_no: int,
    *,
    transaction_id: str = "tx-1",
    timestamp: str = "2025-03-01T10:00:00Z",
    trigger: str = "Authorized",
    charging_state: str | None = None,
    evse: int | None = None,
    connector: int | None = 1,
    id_token: str | None = None,
    token_type: str = "ISO14443",
    meter_values: list[dict[str, Any]] | None = None,
    stopped_reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    info: dict[str, Any] = {"transactionId": transaction_id}
    if charging_state:
        info["chargingState"] = charging_state
    if stopped_reason:
        info["stoppedReason"] = stopped_reason
    for key in ("remoteStartId", "timeSpentCharging"):
        if key in extra:
            info[key] = extra.pop(key)
    payload: dict[str, Any] = {
        "eventType": event_type,
        "timestamp": timestamp,
        "triggerReason": trigger,
        "seqNo": seq_no,
        "transactionInfo": info,
        **extra,
    }
    if evse is not None:
        payload["evse"] = {"id": evse, **({"connectorId": connector} if connector else {})}
    if id_token is not None:
        payload["idToken"] = {"idToken": id_token, "type": token_type}
    if meter_values:
        payload["meterValue"] = meter_values
    return payload
