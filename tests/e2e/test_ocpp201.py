"""OCPP 2.0.1 over a real socket: a strict, independent client (the ``ocpp`` package's v201
ChargePoint, schema validation on both ways) against the real server process."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connections
from ocpp.exceptions import OCPPError
from ocpp.v201 import ChargePoint, call

from chargers.models import (
    Charger,
    Connector,
    Frame,
    MeterSample,
    QuirkProfile,
    Session,
    SessionState,
)
from chargers.simulator import FleetConfig, SimulatedCharger201, Stats
from tests.conftest import CHARGER_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

T0 = "2025-03-01T10:00:00Z"


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    """The worker thread's database connection goes with the test, so teardown can drop the db."""
    yield
    await sync_to_async(connections.close_all)()


def basic_auth(identity: str, password: str = CHARGER_PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@asynccontextmanager
async def strict_client(
    server: Any, identity: str, subprotocols: list[str] | None = None
) -> AsyncIterator[ChargePoint]:
    async with websockets.connect(
        server.ocpp_url + identity,
        subprotocols=subprotocols or ["ocpp2.0.1"],
        additional_headers=basic_auth(identity),
    ) as ws:
        assert ws.subprotocol == (subprotocols or ["ocpp2.0.1"])[0]
        client = ChargePoint(identity, ws)
        reader = asyncio.create_task(client.start())
        try:
            yield client
        finally:
            reader.cancel()


def sampled(wh: int, context: str = "Sample.Periodic", **extra: Any) -> dict[str, Any]:
    return {
        "value": wh,
        "context": context,
        "measurand": "Energy.Active.Import.Register",
        "unit_of_measure": {"unit": "Wh"},
        **extra,
    }


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    """Poll until the server's batched writes have landed (the condition, not the time, is tested)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await sync_to_async(predicate)():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met")
        await asyncio.sleep(0.05)


async def test_boot_status_authorize_and_a_transaction(server, charger, id_token):
    async with strict_client(server, charger.identity) as client:
        boot = await client.call(
            call.BootNotification(
                charging_station={"model": "AC-22", "vendor_name": "Acme", "serial_number": "SN-9"},
                reason="PowerUp",
            ),
            suppress=False,
        )
        assert boot.status == "Accepted"
        assert boot.interval == 300
        assert boot.current_time.endswith("Z")

        await client.call(
            call.StatusNotification(
                timestamp=T0, connector_status="Available", evse_id=1, connector_id=1
            ),
            suppress=False,
        )
        heartbeat = await client.call(call.Heartbeat(), suppress=False)
        assert heartbeat.current_time.endswith("Z")

        authorized = await client.call(
            call.Authorize(id_token={"id_token": "TAG-OK", "type": "ISO14443"}), suppress=False
        )
        assert authorized.id_token_info["status"] == "Accepted"

        await client.call(
            call.StatusNotification(
                timestamp=T0, connector_status="Occupied", evse_id=1, connector_id=1
            ),
            suppress=False,
        )
        started = await client.call(
            call.TransactionEvent(
                event_type="Started",
                timestamp="2025-03-01T10:00:05Z",
                trigger_reason="Authorized",
                seq_no=0,
                transaction_info={"transaction_id": "tx-e2e-1", "charging_state": "Charging"},
                evse={"id": 1, "connector_id": 1},
                id_token={"id_token": "TAG-OK", "type": "ISO14443"},
                meter_value=[
                    {
                        "timestamp": "2025-03-01T10:00:05Z",
                        "sampled_value": [sampled(10_000, "Transaction.Begin")],
                    }
                ],
            ),
            suppress=False,
        )
        assert started.id_token_info["status"] == "Accepted"
        updated = await client.call(
            call.TransactionEvent(
                event_type="Updated",
                timestamp="2025-03-01T10:15:05Z",
                trigger_reason="MeterValuePeriodic",
                seq_no=1,
                transaction_info={"transaction_id": "tx-e2e-1", "charging_state": "Charging"},
                meter_value=[
                    {
                        "timestamp": "2025-03-01T10:15:05Z",
                        "sampled_value": [
                            {
                                "value": 12.5,
                                "measurand": "Energy.Active.Import.Register",
                                "unit_of_measure": {"unit": "kWh"},
                            },
                            {
                                "value": 11,
                                "measurand": "Power.Active.Import",
                                "unit_of_measure": {"unit": "W", "multiplier": 3},
                            },
                        ],
                    }
                ],
            ),
            suppress=False,
        )
        assert updated.id_token_info is None
        ended = await client.call(
            call.TransactionEvent(
                event_type="Ended",
                timestamp="2025-03-01T10:30:05Z",
                trigger_reason="StopAuthorized",
                seq_no=2,
                transaction_info={
                    "transaction_id": "tx-e2e-1",
                    "charging_state": "EVConnected",
                    "stopped_reason": "Local",
                },
                id_token={"id_token": "TAG-OK", "type": "ISO14443"},
                meter_value=[
                    {
                        "timestamp": "2025-03-01T10:30:05Z",
                        "sampled_value": [sampled(15_250, "Transaction.End")],
                    }
                ],
            ),
            suppress=False,
        )
        assert ended.id_token_info["status"] == "Accepted"

    session = await sync_to_async(Session.objects.get)(charger=charger, transaction_id="tx-e2e-1")
    assert session.ocpp_version == "2.0.1"
    assert session.state == SessionState.COMPLETED
    assert session.connector_number == 1 and session.evse_id == 1
    assert session.id_tag == "TAG-OK" and session.stop_id_tag == "TAG-OK"
    assert session.auth_status == "Accepted"
    assert session.meter_start_wh == Decimal(10_000)
    assert session.meter_stop_wh == Decimal(15_250)
    assert session.energy_wh == Decimal(5_250)
    assert session.stop_reason == "Local"
    power = await sync_to_async(MeterSample.objects.get)(
        session=session, measurand="Power.Active.Import"
    )
    assert power.value == Decimal(11_000) and power.unit == "W"

    def journaled() -> bool:
        actions = set(Frame.objects.filter(charger=charger).values_list("action", flat=True))
        return {"BootNotification", "TransactionEvent", "Authorize", "Heartbeat"} <= actions

    await wait_for(journaled)
    await wait_for(
        lambda: Connector.objects.filter(
            charger=charger, connector_id=1, raw_status="Occupied"
        ).exists()
    )
    refreshed = await sync_to_async(Charger.objects.get)(pk=charger.pk)
    assert refreshed.vendor == "Acme" and refreshed.model == "AC-22"
    assert refreshed.ocpp_version == "2.0.1"


async def test_the_newest_common_version_is_chosen(server, charger):
    async with websockets.connect(
        server.ocpp_url + charger.identity,
        subprotocols=["ocpp1.6", "ocpp2.0.1"],
        additional_headers=basic_auth(charger.identity),
    ) as ws:
        assert ws.subprotocol == "ocpp2.0.1"
    async with websockets.connect(
        server.ocpp_url + charger.identity,
        subprotocols=["ocpp2.0.1", "ocpp2.1", "ocpp1.6"],
        additional_headers=basic_auth(charger.identity),
    ) as ws:
        assert ws.subprotocol == "ocpp2.1"


async def test_a_wrong_password_is_refused_at_the_handshake(server, charger):
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(
            server.ocpp_url + charger.identity,
            subprotocols=["ocpp2.0.1"],
            additional_headers=basic_auth(charger.identity, "not-the-password"),
        ):
            pass


async def test_a_bad_payload_gets_a_2x_callerror_and_the_socket_stays_up(server, charger):
    async with strict_client(server, charger.identity) as client:
        await client.call(
            call.BootNotification(
                charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"
            ),
            suppress=False,
        )
        ws = client._connection
        await ws.send(json.dumps([2, "bad-1", "StatusNotification", {"evseId": 1}]))
        await ws.send(json.dumps([2, "bad-2", "Heartbeat", {}]))
        # The reader task of the client consumes frames; read the raw ones from the journal instead.

    def answered() -> bool:
        return Frame.objects.filter(charger=charger, direction="out", message_id="bad-2").exists()

    await wait_for(answered)
    error = await sync_to_async(Frame.objects.get)(
        charger=charger, direction="out", message_id="bad-1"
    )
    frame = json.loads(error.raw)
    assert frame[0] == 4 and frame[2] == "OccurrenceConstraintViolation"


async def test_a_transaction_event_that_breaks_the_schema_is_refused(server, charger):
    async with strict_client(server, charger.identity) as client:
        await client.call(
            call.BootNotification(
                charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"
            ),
            suppress=False,
        )
        with pytest.raises(OCPPError):
            await client.call(
                call.TransactionEvent(
                    event_type="Started",
                    timestamp=T0,
                    trigger_reason="Authorized",
                    seq_no=0,
                    transaction_info={"transaction_id": "x" * 37},
                ),
                suppress=False,
                skip_schema_validation=True,
            )
    assert not await sync_to_async(Session.objects.filter(charger=charger).exists)()


async def test_a_simulated_201_charger_runs_a_session(server, charger, id_token):
    config = FleetConfig(
        url=server.ocpp_url,
        password=CHARGER_PASSWORD,
        connectors=1,
        meter_interval=0.05,
        session_minutes=0.005,
        power_kw=3600.0,  # 50 Wh per 50 ms step, so that a short session has energy
        id_tags=["TAG-OK"],
        protocol="ocpp2.0.1",
        reconnect=False,
    )
    stats = Stats()
    simulated = SimulatedCharger201(charger.identity, config, stats, random.Random(7))
    async with simulated.connected():
        assert await simulated.boot() == "Accepted"
        await simulated.status(1, "Available")
        await simulated.session(1, "TAG-OK")
    assert stats.errors == 0 and stats.sessions_stopped == 1
    session = await sync_to_async(Session.objects.get)(charger=charger)
    assert session.ocpp_version == "2.0.1"
    assert session.state == SessionState.COMPLETED
    assert session.energy_wh > 0
    assert session.energy_wh == session.meter_stop_wh - session.meter_start_wh


async def test_a_quirk_corrects_the_value_while_the_journal_keeps_the_frame(
    server, charger, id_token
):
    await sync_to_async(QuirkProfile.objects.create)(
        name="Quirky", vendor="Quirky", corrections=["naive_local_time", "energy_kwh_labelled_wh"]
    )
    frames = [
        '[2, "q-1", "BootNotification", {"reason": "PowerUp", "chargingStation": {"vendorName": "Quirky", "model": "Q"}}]',
        '[2,"q-2","TransactionEvent",{"eventType":"Started","timestamp":"2025-07-01T12:00:00","triggerReason":"Authorized",'
        '"seqNo":0,"transactionInfo":{"transactionId":"tx-q"},"evse":{"id":1},"idToken":{"idToken":"TAG-OK","type":"ISO14443"},'
        '"meterValue":[{"timestamp":"2025-07-01T12:00:00","sampledValue":[{"value":12.5,"unitOfMeasure":{"unit":"Wh"}}]}]}]',
    ]
    async with websockets.connect(
        server.ocpp_url + charger.identity,
        subprotocols=["ocpp2.0.1"],
        additional_headers=basic_auth(charger.identity),
    ) as ws:
        for text in frames:
            await ws.send(text)
            reply = json.loads(await ws.recv())
            assert reply[0] == 3, reply

    sample = await sync_to_async(MeterSample.objects.get)(charger=charger)
    # The site is in Amsterdam (UTC+2 in July); the register was 12.5 kWh, not Wh.
    assert sample.timestamp.isoformat() == "2025-07-01T10:00:00+00:00"
    assert (sample.value, sample.raw_value, sample.raw_unit) == (Decimal(12500), "12.5", "Wh")
    assert sample.corrections == ["naive_local_time", "energy_kwh_labelled_wh"]

    def journaled() -> bool:
        return Frame.objects.filter(charger=charger, direction="in", message_id="q-2").exists()

    await wait_for(journaled)
    raws = await sync_to_async(
        lambda: list(
            Frame.objects.filter(charger=charger, direction="in")
            .order_by("timestamp", "id")
            .values_list("raw", flat=True)
        )
    )()
    assert raws == frames


@pytest.mark.parametrize("protocol", ["ocpp2.0.1", "mixed"])
def test_the_simulate_command_runs_a_201_fleet(server, make_charger, id_token, protocol):
    for index in (1, 2):
        make_charger(f"SIMX-{index:03d}")
    out = io.StringIO()
    call_command(
        "simulate",
        "--url",
        server.ocpp_url,
        "--count",
        "2",
        "--prefix",
        "SIMX-",
        "--password",
        CHARGER_PASSWORD,
        "--protocol",
        protocol,
        "--connectors",
        "1",
        "--sessions-per-hour",
        "36000",
        "--session-minutes",
        "0.01",
        "--meter-interval",
        "0.1",
        "--id-tag",
        "TAG-OK",
        "--ramp",
        "0.2",
        "--duration",
        "6",
        "--seed",
        "3",
        stdout=out,
    )
    assert "connects=2" in out.getvalue() and "errors=0" in out.getvalue()
    versions = dict(
        Charger.objects.filter(identity__startswith="SIMX-").values_list("identity", "ocpp_version")
    )
    expected = (
        {"SIMX-001": "2.0.1", "SIMX-002": "2.0.1"}
        if protocol == "ocpp2.0.1"
        else {"SIMX-001": "1.6", "SIMX-002": "2.0.1"}
    )
    assert versions == expected
    assert Session.objects.filter(charger__identity="SIMX-002", ocpp_version="2.0.1").exists()
