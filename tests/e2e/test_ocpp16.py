"""OCPP 1.6J over a real socket against the real server process.

A strict, independent client (the ``ocpp`` package's v16 ChargePoint, schema validation on both
ways) runs a whole charging session; raw ``websockets`` clients try what a strict client cannot
send: bad credentials, malformed and oversized frames, binary frames, stray answers, reconnects.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, TypeVar

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.db import connections
from ocpp.exceptions import OCPPError
from ocpp.messages import get_validator
from ocpp.v16 import ChargePoint, call, call_result

from chargers.models import (
    Charger,
    Connector,
    Frame,
    IdToken,
    MeterSample,
    Session,
    SessionState,
    UnmatchedStop,
)
from tests.conftest import CHARGER_PASSWORD, ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

T = TypeVar("T")
T0 = "2024-03-01T12:00:00Z"


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    """The worker thread's database connection goes with the test, so teardown can drop the db."""
    yield
    await sync_to_async(connections.close_all)()


def basic_auth(identity: str, password: str = CHARGER_PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@asynccontextmanager
async def raw_socket(
    server: ServerProcess,
    identity: str,
    *,
    headers: dict[str, str] | None = None,
    subprotocols: tuple[str, ...] = ("ocpp1.6",),
) -> AsyncIterator[Any]:
    async with websockets.connect(
        server.ocpp_url + identity,
        subprotocols=list(subprotocols),  # type: ignore[arg-type]
        additional_headers=basic_auth(identity) if headers is None else headers,
        open_timeout=10,
    ) as ws:
        yield ws


@asynccontextmanager
async def strict_client(server: ServerProcess, identity: str) -> AsyncIterator[ChargePoint]:
    async with raw_socket(server, identity) as ws:
        assert ws.subprotocol == "ocpp1.6"
        client = ChargePoint(identity, ws, response_timeout=10)
        reader = asyncio.create_task(client.start())
        try:
            yield client
        finally:
            reader.cancel()


async def exchange(ws: Any, frame: str | list[Any]) -> list[Any]:
    await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
    return json.loads(await asyncio.wait_for(ws.recv(), timeout=10))


async def eventually(check: Callable[[], T], timeout: float = 15.0) -> T:
    """Poll a database check until it holds: the journal and the hot path are written in batches.
    The deadline only turns a write that never comes into a failure instead of a hang."""
    deadline = time.monotonic() + timeout
    while True:
        result = await sync_to_async(check)()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout}s: {check.__doc__ or check}")
        await asyncio.sleep(0.05)


def journal(identity: str) -> list[tuple[str, int, str, str]]:
    return list(
        Frame.objects.filter(charger_identity=identity)
        .order_by("timestamp", "id")
        .values_list("direction", "kind", "message_id", "action")
    )


# --- A whole session with a strict client --------------------------------------------------------


async def test_a_strict_client_runs_a_whole_session(server, charger, id_token):
    identity = charger.identity
    async with strict_client(server, identity) as cp:
        boot = await cp.call(
            call.BootNotification(
                charge_point_vendor="ACME",
                charge_point_model="Wallbox 22",
                firmware_version="4.2.0",
            ),
            suppress=False,
        )
        assert isinstance(boot, call_result.BootNotification)
        assert (boot.status, boot.interval) == ("Accepted", 300)
        assert boot.current_time.endswith("Z")

        heartbeat = await cp.call(call.Heartbeat(), suppress=False)
        assert heartbeat.current_time.endswith("Z")

        for connector_id in (0, 1):
            assert (
                await cp.call(
                    call.StatusNotification(
                        connector_id=connector_id,
                        error_code="NoError",
                        status="Available",
                        timestamp=T0,
                    ),
                    suppress=False,
                )
                == call_result.StatusNotification()
            )

        authorized = await cp.call(call.Authorize(id_tag="TAG-OK"), suppress=False)
        assert authorized.id_tag_info == {"status": "Accepted"}
        unknown = await cp.call(call.Authorize(id_tag="NOBODY"), suppress=False)
        assert unknown.id_tag_info == {"status": "Invalid"}

        started = await cp.call(
            call.StartTransaction(connector_id=1, id_tag="TAG-OK", meter_start=10000, timestamp=T0),
            suppress=False,
        )
        assert isinstance(started.transaction_id, int)
        assert started.id_tag_info == {"status": "Accepted"}
        await cp.call(
            call.StatusNotification(
                connector_id=1,
                error_code="NoError",
                status="Charging",
                timestamp="2024-03-01T12:00:01Z",
            ),
            suppress=False,
        )

        metered = await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=started.transaction_id,
                meter_value=[
                    {
                        "timestamp": "2024-03-01T12:15:00Z",
                        "sampledValue": [
                            {
                                "value": "12.5",
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "kWh",
                            },
                            {"value": "11.04", "measurand": "Power.Active.Import", "unit": "kW"},
                            {
                                "value": "16.0",
                                "measurand": "Current.Import",
                                "phase": "L1",
                                "unit": "A",
                            },
                            {
                                "value": "231.2",
                                "measurand": "Voltage",
                                "phase": "L1-N",
                                "unit": "V",
                            },
                            {
                                "value": "67",
                                "measurand": "SoC",
                                "location": "EV",
                                "unit": "Percent",
                            },
                        ],
                    }
                ],
            ),
            suppress=False,
        )
        assert metered == call_result.MeterValues()

        stopped = await cp.call(
            call.StopTransaction(
                meter_stop=21000,
                timestamp="2024-03-01T13:00:00Z",
                transaction_id=started.transaction_id,
                id_tag="TAG-OK",
                reason="EVDisconnected",
                transaction_data=[
                    {
                        "timestamp": "2024-03-01T13:00:00Z",
                        "sampledValue": [{"value": "21000", "context": "Transaction.End"}],
                    }
                ],
            ),
            suppress=False,
        )
        assert stopped.id_tag_info == {"status": "Accepted"}

    session = await Session.objects.aget(charger=charger)
    assert (
        session.transaction_id,
        session.state,
        session.meter_start_wh,
        session.meter_stop_wh,
        session.energy_wh,
        session.stop_reason,
    ) == (
        str(started.transaction_id),
        SessionState.COMPLETED,
        Decimal(10000),
        Decimal(21000),
        Decimal(11000),
        "EVDisconnected",
    )
    samples = {(s.measurand, s.context): s async for s in session.meter_samples.all()}
    assert len(samples) == 6
    assert (
        samples[("Energy.Active.Import.Register", "Sample.Periodic")].value,
        samples[("Power.Active.Import", "Sample.Periodic")].value,
        samples[("SoC", "Sample.Periodic")].unit,
    ) == (Decimal(12500), Decimal(11040), "%")
    await charger.arefresh_from_db()
    assert (charger.vendor, charger.firmware_version) == ("ACME", "4.2.0")

    def statuses_written() -> dict[int, str]:
        """both connectors' latest status is written"""
        found = dict(
            Connector.objects.filter(charger=charger).values_list("connector_id", "status")
        )
        return found if found == {0: "Available", 1: "Charging"} else {}

    await eventually(statuses_written)

    # Every frame, in and out, is journaled with its direction, kind, message id and action.
    actions = [
        "BootNotification",
        "Heartbeat",
        "StatusNotification",
        "StatusNotification",
        "Authorize",
        "Authorize",
        "StartTransaction",
        "StatusNotification",
        "MeterValues",
        "StopTransaction",
    ]

    def journaled() -> list[tuple[str, int, str, str]]:
        """every frame of the session is journaled"""
        rows = journal(identity)
        return rows if len(rows) >= 2 * len(actions) else []

    rows = await eventually(journaled)
    assert len(rows) == 2 * len(actions)
    calls = [r for r in rows if r[0] == "in"]
    answers = [r for r in rows if r[0] == "out"]
    assert [(kind, action) for _, kind, _, action in calls] == [(2, a) for a in actions]
    assert [(kind, action) for _, kind, _, action in answers] == [(3, a) for a in actions]
    assert [r[2] for r in calls] == [r[2] for r in answers]
    assert len({r[2] for r in calls}) == len(actions)

    # And what we sent is schema-valid, checked with the ocpp package's own validators.
    def sent_frames() -> list[tuple[str, str]]:
        return list(
            Frame.objects.filter(charger_identity=identity, direction="out").values_list(
                "action", "raw"
            )
        )

    for action, raw in await sync_to_async(sent_frames)():
        kind, _, payload = json.loads(raw)
        get_validator(kind, action, "1.6").validate(payload)


async def test_a_resent_start_transaction_gets_the_same_id_and_one_session(
    server, charger, id_token
):
    payload = {"connectorId": 2, "idTag": "TAG-OK", "meterStart": 500, "timestamp": T0}
    async with raw_socket(server, charger.identity) as ws:
        first = await exchange(ws, [2, "start-1", "StartTransaction", payload])
        # The answer was lost: the charger sends the same message again, with a new message id.
        again = await exchange(ws, [2, "start-2", "StartTransaction", payload])
    assert first[:2] == [3, "start-1"] and again[:2] == [3, "start-2"]
    assert again[2] == first[2]
    assert isinstance(first[2]["transactionId"], int)
    assert await Session.objects.filter(charger=charger).acount() == 1


async def test_a_stop_for_an_unknown_transaction_is_answered_and_recorded(
    server, charger, id_token
):
    async with strict_client(server, charger.identity) as cp:
        stopped = await cp.call(
            call.StopTransaction(
                meter_stop=4200, timestamp=T0, transaction_id=987654, id_tag="TAG-OK"
            ),
            suppress=False,
        )
    assert stopped.id_tag_info == {"status": "Accepted"}
    unmatched = await UnmatchedStop.objects.aget(charger=charger)
    assert (unmatched.transaction_id, unmatched.meter_stop_wh) == ("987654", Decimal(4200))
    assert not await Session.objects.aexists()


async def test_a_schema_violation_from_a_strict_client_is_an_ocpp_error(server, charger):
    async with strict_client(server, charger.identity) as cp:
        with pytest.raises(OCPPError) as caught:
            # A negative connector id passes the 1.6 schema but is no connector.
            await cp.call(
                call.StatusNotification(connector_id=-3, error_code="NoError", status="Available"),
                suppress=False,
            )
        assert caught.value.code == "PropertyConstraintViolation"
        assert (await cp.call(call.Heartbeat(), suppress=False)).current_time


# --- The handshake -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "headers", "subprotocols"),
    [
        pytest.param(
            "CP-1", basic_auth("CP-1", "wrong-password"), ("ocpp1.6",), id="wrong password"
        ),
        pytest.param("CP-404", basic_auth("CP-404"), ("ocpp1.6",), id="unknown charger"),
        pytest.param("CP-1", {}, ("ocpp1.6",), id="no Authorization"),
        pytest.param("CP-1", {"Authorization": "Bearer abc"}, ("ocpp1.6",), id="not Basic"),
        pytest.param("CP-1", basic_auth("CP-2"), ("ocpp1.6",), id="another charger's name"),
        pytest.param("CP-1", basic_auth("CP-1"), ("ocpp1.5",), id="unsupported subprotocol"),
        pytest.param("CP-1", basic_auth("CP-1"), (), id="no subprotocol"),
        pytest.param("CP%001", basic_auth("CP\x001"), ("ocpp1.6",), id="NUL in the charger id"),
    ],
)
async def test_the_handshake_is_refused(server, make_charger, identity, headers, subprotocols):
    await sync_to_async(make_charger)("CP-1")
    await sync_to_async(make_charger)("CP-2")
    with pytest.raises(websockets.exceptions.InvalidStatus) as caught:
        async with raw_socket(server, identity, headers=headers, subprotocols=subprotocols):
            pass
    assert caught.value.response.status_code == 403
    assert not await Charger.objects.filter(connected=True).aexists()
    assert not await Charger.objects.filter(identity="CP-404").aexists()


async def test_auto_registration_registers_an_unknown_charger_as_pending(
    transactional_db, organization
):
    auto = await sync_to_async(ServerProcess)(
        extra_env={"CPMS_AUTO_REGISTER": "true", "CPMS_BOOT_RETRY_INTERVAL": "17"}
    )
    try:
        async with websockets.connect(
            auto.ocpp_url + "NEW-CP-1",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=basic_auth("NEW-CP-1", "its-own-secret"),
            open_timeout=10,
        ) as ws:
            boot = await exchange(
                ws,
                [2, "b-1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}],
            )
            assert boot[:2] == [3, "b-1"]
            assert (boot[2]["status"], boot[2]["interval"]) == ("Pending", 17)
            refused = await exchange(ws, [2, "h-1", "Heartbeat", {}])
            assert refused[:3] == [4, "h-1", "SecurityError"]
        charger = await Charger.objects.aget(identity="NEW-CP-1")
        assert (charger.registration_status, charger.organization_id, charger.vendor) == (
            "Pending",
            organization.pk,
            "V",
        )
        # Its first password is its secret now.
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(
                auto.ocpp_url + "NEW-CP-1",
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                additional_headers=basic_auth("NEW-CP-1", "another-secret"),
                open_timeout=10,
            ):
                pass

        def disconnected() -> bool:
            """the auto-registered charger is marked offline"""
            return not Charger.objects.filter(connected=True).exists()

        await eventually(disconnected)
    finally:
        await sync_to_async(auto.stop)()


# --- Malformed input -----------------------------------------------------------------------------


async def test_malformed_frames_get_call_errors_and_the_connection_stays_up(server, charger):
    async with raw_socket(server, charger.identity) as ws:
        assert (await exchange(ws, "this is not json"))[:3] == [4, "-1", "FormationViolation"]
        assert (await exchange(ws, '{"messageId": "x"}'))[:3] == [4, "-1", "FormationViolation"]
        assert (await exchange(ws, '[2, 42, "Heartbeat", {}]'))[:3] == [
            4,
            "42",
            "FormationViolation",
        ]
        assert (await exchange(ws, '[2, "short"]'))[:3] == [4, "short", "FormationViolation"]
        assert (await exchange(ws, '[8, "odd", "Heartbeat", {}]'))[:3] == [
            4,
            "odd",
            "ProtocolError",
        ]
        missing = await exchange(
            ws, [2, "sv-1", "StatusNotification", {"connectorId": 1, "status": "Available"}]
        )
        assert missing[:3] == [4, "sv-1", "OccurenceConstraintViolation"]
        assert "errorCode" in missing[3]
        wrong_type = await exchange(ws, [2, "sv-2", "Authorize", {"idTag": 12}])
        assert wrong_type[:3] == [4, "sv-2", "TypeConstraintViolation"]
        assert (await exchange(ws, [2, "sv-3", "Reset", {"type": "Soft"}]))[:3] == [
            4,
            "sv-3",
            "NotSupported",
        ]
        assert (await exchange(ws, [2, "sv-4", "Teleport", {}]))[:3] == [
            4,
            "sv-4",
            "NotImplemented",
        ]
        heartbeat = await exchange(ws, [2, "hb-1", "Heartbeat", {}])
        assert heartbeat[:2] == [3, "hb-1"]
        assert list(heartbeat[2]) == ["currentTime"]

    def all_journaled() -> list[tuple[str, int, str, str]]:
        """the malformed frames and their answers are journaled"""
        rows = journal(charger.identity)
        return rows if len(rows) == 20 else []

    rows = await eventually(all_journaled)
    assert ("in", 0, "-1", "") in rows
    assert ("out", 4, "-1", "") in rows
    assert ("in", 2, "sv-1", "StatusNotification") in rows
    assert ("out", 4, "sv-1", "StatusNotification") in rows
    assert ("out", 3, "hb-1", "Heartbeat") in rows


async def test_a_binary_frame_closes_with_1003(server, charger):
    async with raw_socket(server, charger.identity) as ws:
        await ws.send(b"\x02\x00binary")
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=10)
        assert ws.close_code == 1003


async def test_an_oversized_frame_closes_with_1009_and_is_journaled(server, charger, settings):
    oversized = json.dumps([2, "big-1", "DataTransfer", {"vendorId": "x", "data": "A" * 70_000}])
    assert len(oversized) > 65536  # the server's CPMS_MAX_FRAME_BYTES
    async with raw_socket(server, charger.identity) as ws:
        await ws.send(oversized)
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=10)
        assert ws.close_code == 1009

    def journaled() -> list[tuple[str, int, str, str]]:
        """the oversized frame is journaled, cut short"""
        return journal(charger.identity)

    assert await eventually(journaled) == [("in", 0, "", "")]
    raw = await Frame.objects.values_list("raw", flat=True).aget(charger_identity=charger.identity)
    assert raw == oversized[:2000]


async def test_a_frame_just_under_the_limit_is_answered(server, charger):
    frame = json.dumps(
        [2, "dt-1", "DataTransfer", {"vendorId": "com.nobody", "data": "A" * 60_000}]
    )
    async with raw_socket(server, charger.identity) as ws:
        assert await exchange(ws, frame) == [3, "dt-1", {"status": "UnknownVendorId"}]


async def test_an_answer_to_an_unknown_call_is_journaled_and_ignored(server, charger):
    async with raw_socket(server, charger.identity) as ws:
        await ws.send(json.dumps([3, "never-sent", {"status": "Accepted"}]))
        await ws.send(json.dumps([4, "never-sent-2", "InternalError", "oops", {}]))
        # Nothing comes back for them: the next frame read is the Heartbeat's answer.
        heartbeat = await exchange(ws, [2, "hb-1", "Heartbeat", {}])
        assert heartbeat[:2] == [3, "hb-1"]

    def journaled() -> list[tuple[str, int, str, str]]:
        """the stray answers are journaled"""
        rows = journal(charger.identity)
        return rows if len(rows) == 4 else []

    assert await eventually(journaled) == [
        ("in", 3, "never-sent", ""),
        ("in", 4, "never-sent-2", ""),
        ("in", 2, "hb-1", "Heartbeat"),
        ("out", 3, "hb-1", "Heartbeat"),
    ]


# --- Reconnects ----------------------------------------------------------------------------------


async def test_a_reconnect_closes_the_old_socket_and_the_charger_stays_connected(server, charger):
    async with raw_socket(server, charger.identity) as old:
        assert (await exchange(old, [2, "a-1", "Heartbeat", {}]))[:2] == [3, "a-1"]
        async with raw_socket(server, charger.identity) as new:
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(old.recv(), timeout=10)
            assert old.close_code == 4000
            assert (await exchange(new, [2, "b-1", "Heartbeat", {}]))[:2] == [3, "b-1"]

            def old_socket_closed() -> bool:
                """the old socket's close is recorded"""
                return (
                    Charger.objects.get(pk=charger.pk).events.filter(status="Disconnected").exists()
                )

            await eventually(old_socket_closed)
            await charger.arefresh_from_db()
            assert charger.connected
            assert charger.channel_name
            assert (await exchange(new, [2, "b-2", "Heartbeat", {}]))[:2] == [3, "b-2"]

    def offline() -> bool:
        """the charger is offline once its last socket closes"""
        return not Charger.objects.get(pk=charger.pk).connected

    await eventually(offline)


async def test_connections_are_marked_connected_and_disconnected(server, charger):
    async with raw_socket(server, charger.identity) as ws:
        assert (await exchange(ws, [2, "a-1", "Heartbeat", {}]))[:2] == [3, "a-1"]
        await charger.arefresh_from_db()
        assert (charger.connected, charger.ocpp_version) == (True, "1.6")

    def offline() -> bool:
        """the charger is marked offline after its socket closes"""
        return not Charger.objects.get(pk=charger.pk).connected

    await eventually(offline)
    statuses = [
        s
        async for s in (await Charger.objects.aget(pk=charger.pk))
        .events.filter(kind="Connection")
        .order_by("timestamp")
        .values_list("status", flat=True)
    ]
    assert statuses == ["Connected", "Disconnected"]


async def test_an_id_token_blocked_while_connected_is_refused_at_once(server, charger, id_token):
    async with strict_client(server, charger.identity) as cp:
        assert (await cp.call(call.Authorize(id_tag="TAG-OK"), suppress=False)).id_tag_info == {
            "status": "Accepted"
        }
        await IdToken.objects.filter(pk=id_token.pk).aupdate(status="Blocked")
        assert (await cp.call(call.Authorize(id_tag="TAG-OK"), suppress=False)).id_tag_info == {
            "status": "Blocked"
        }


async def test_meter_values_outside_a_transaction_reach_the_database(server, charger):
    async with strict_client(server, charger.identity) as cp:
        await cp.call(
            call.MeterValues(
                connector_id=0,
                meter_value=[
                    {
                        "timestamp": T0,
                        "sampledValue": [{"value": "4321.5", "unit": "kWh", "location": "Inlet"}],
                    }
                ],
            ),
            suppress=False,
        )

    def written() -> MeterSample | None:
        """the main meter's reading is written"""
        return MeterSample.objects.filter(charger=charger).first()

    sample = await eventually(written)
    assert (sample.value, sample.unit, sample.session_id, sample.connector_number) == (
        Decimal(4321500),
        "Wh",
        None,
        0,
    )


async def test_nul_characters_are_answered_and_journaled(server, charger):
    async with raw_socket(server, charger.identity) as ws:
        assert (await exchange(ws, "\x00"))[:3] == [4, "-1", "FormationViolation"]
        assert (await exchange(ws, '[2, "n\\u0000l", "Teleport", {}]'))[:3] == [
            4,
            "n\x00l",
            "NotImplemented",
        ]
        assert (await exchange(ws, [2, "hb-1", "Heartbeat", {}]))[:2] == [3, "hb-1"]

    def journaled() -> list[tuple[str, int, str, str]]:
        """every frame is journaled, NULs and all"""
        rows = journal(charger.identity)
        return rows if len(rows) == 6 else []

    rows = await eventually(journaled)
    assert ("in", 2, "n\\u0000l", "Teleport") in rows
    raws = [
        r
        async for r in Frame.objects.filter(charger_identity=charger.identity, direction="in")
        .order_by("timestamp", "id")
        .values_list("raw", flat=True)
    ]
    assert raws[0] == "\\u0000"
