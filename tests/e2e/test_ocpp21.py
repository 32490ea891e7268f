"""OCPP 2.1 over a real socket: a strict, independent client (the ``ocpp`` package's v21
ChargePoint, schema validation on both ways) against the real server process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.db import connections
from ocpp.v21 import ChargePoint, call

from chargers.models import ChargerEvent, Frame, Session, SessionState
from tests.e2e.test_ocpp201 import basic_auth, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


def register(wh: float, context: str, unit: str = "Wh") -> dict:
    return {
        "value": wh,
        "context": context,
        "measurand": "Energy.Active.Import.Register",
        "unit_of_measure": {"unit": unit},
    }


async def test_boot_status_authorize_and_a_transaction_in_21(server, charger, id_token):
    async with websockets.connect(
        server.ocpp_url + charger.identity,
        subprotocols=["ocpp2.1"],
        additional_headers=basic_auth(charger.identity),
    ) as ws:
        assert ws.subprotocol == "ocpp2.1"
        client = ChargePoint(charger.identity, ws)
        reader = asyncio.create_task(client.start())
        try:
            boot = await client.call(
                call.BootNotification(
                    charging_station={"model": "AC-21", "vendor_name": "Acme"}, reason="PowerUp"
                ),
                suppress=False,
            )
            assert (boot.status, boot.interval) == ("Accepted", 300)
            await client.call(
                call.StatusNotification(
                    timestamp="2025-03-01T10:00:00Z",
                    connector_status="Available",
                    evse_id=1,
                    connector_id=1,
                ),
                suppress=False,
            )
            authorized = await client.call(
                call.Authorize(id_token={"id_token": "TAG-OK", "type": "ISO14443"}), suppress=False
            )
            assert authorized.id_token_info["status"] == "Accepted"
            started = await client.call(
                call.TransactionEvent(
                    event_type="Started",
                    timestamp="2025-03-01T10:00:05Z",
                    trigger_reason="Authorized",
                    seq_no=0,
                    transaction_info={
                        "transaction_id": "tx-21",
                        "charging_state": "Charging",
                        "operation_mode": "ChargingOnly",
                    },
                    evse={"id": 1, "connector_id": 1},
                    id_token={"id_token": "TAG-OK", "type": "ISO14443"},
                    meter_value=[
                        {
                            "timestamp": "2025-03-01T10:00:05Z",
                            "sampled_value": [register(2, "Transaction.Begin", "kWh")],
                        }
                    ],
                ),
                suppress=False,
            )
            assert started.id_token_info["status"] == "Accepted"
            await client.call(
                call.TransactionEvent(
                    event_type="Updated",
                    timestamp="2025-03-01T10:10:05Z",
                    trigger_reason="MeterValuePeriodic",
                    seq_no=1,
                    transaction_info={"transaction_id": "tx-21", "charging_state": "Charging"},
                    meter_value=[
                        {
                            "timestamp": "2025-03-01T10:10:05Z",
                            "sampled_value": [register(3500, "Sample.Periodic")],
                        }
                    ],
                ),
                suppress=False,
            )
            ended = await client.call(
                call.TransactionEvent(
                    event_type="Ended",
                    timestamp="2025-03-01T10:20:05Z",
                    trigger_reason="StopAuthorized",
                    seq_no=2,
                    transaction_info={"transaction_id": "tx-21", "stopped_reason": "Local"},
                    id_token={"id_token": "TAG-OK", "type": "ISO14443"},
                    meter_value=[
                        {
                            "timestamp": "2025-03-01T10:20:05Z",
                            "sampled_value": [register(5000, "Transaction.End")],
                        }
                    ],
                ),
                suppress=False,
            )
            assert ended.id_token_info["status"] == "Accepted"
            settled = await client.call(
                call.NotifySettlement(
                    psp_ref="psp-1",
                    status="Settled",
                    settlement_amount=4.2,
                    settlement_time="2025-03-01T10:21:00Z",
                    transaction_id="tx-21",
                ),
                suppress=False,
            )
            assert settled.receipt_url is None
            # A SEND (6) gets no answer; the next CALL is answered as usual.
            await ws.send(
                json.dumps(
                    [
                        6,
                        "send-1",
                        "NotifyPeriodicEventStream",
                        {
                            "id": 1,
                            "pending": 0,
                            "basetime": "2025-03-01T10:21:00Z",
                            "data": [{"t": 0, "v": "1"}],
                        },
                    ]
                )
            )
            heartbeat = await client.call(call.Heartbeat(), suppress=False)
            assert heartbeat.current_time.endswith("Z")
        finally:
            reader.cancel()

    session = await sync_to_async(Session.objects.get)(charger=charger)
    assert (session.ocpp_version, session.transaction_id, session.state) == (
        "2.1",
        "tx-21",
        SessionState.COMPLETED,
    )
    assert (session.meter_start_wh, session.meter_stop_wh, session.energy_wh) == (
        Decimal(2000),
        Decimal(5000),
        Decimal(3000),
    )
    assert await sync_to_async(
        ChargerEvent.objects.filter(charger=charger, kind="Settlement", status="Settled").exists
    )()

    def send_journaled() -> bool:
        return Frame.objects.filter(
            charger=charger,
            kind=Frame.Kind.SEND,
            message_id="send-1",
            action="NotifyPeriodicEventStream",
        ).exists()

    await wait_for(send_journaled)
    assert not await sync_to_async(
        Frame.objects.filter(charger=charger, direction="out", message_id="send-1").exists
    )()
