"""The simulator answers commands as a charger would, in OCPP 1.6 and 2.0.1, against the real
server: remote starts start real sessions and remote stops end them, resets reboot, settings are
kept, charging profiles make a composite schedule, firmware updates and uploads report their
progress, reservations and the local list are kept."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from chargers.models import (
    Charger,
    ChargerConfigurationKey,
    ChargerEvent,
    Command,
    Connector,
    Frame,
    Session,
)
from chargers.simulator import FleetConfig, SimulatedCharger, SimulatedCharger201, Stats
from tests.conftest import CHARGER_PASSWORD, ServerProcess
from tests.e2e.commanding import create, eventually, finished

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


@asynccontextmanager
async def simulated(
    server: ServerProcess, charger: Charger, protocol: str = "ocpp1.6"
) -> AsyncIterator[Any]:
    """A simulated charger, booted and reporting, that starts no session of its own."""
    config = FleetConfig(
        url=server.ocpp_url,
        password=CHARGER_PASSWORD,
        connectors=2,
        sessions_per_hour=0,
        meter_interval=0.5,
        session_minutes=30,
        id_tags=["TAG-OK"],
        reconnect=False,
        call_timeout=15,
        protocol=protocol,
    )
    cls = SimulatedCharger if protocol == "ocpp1.6" else SimulatedCharger201
    sim = cls(charger.identity, config, Stats(), random.Random(1))
    task = asyncio.create_task(sim.run_once())
    try:
        await eventually(
            lambda: Connector.objects.filter(
                charger=charger, connector_id=2, status="Available"
            ).exists(),
            what="the simulated charger booted and reported",
        )
        yield sim
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def send(charger: Charger, action: str, payload: dict[str, Any]) -> Command:
    return await finished(await create(charger, action, payload))


def status_of(charger: Charger, connector: int) -> str:
    return Connector.objects.get(charger=charger, connector_id=connector).status


async def shows(charger: Charger, connector: int, status: str) -> None:
    await eventually(
        lambda: Connector.objects.filter(
            charger=charger, connector_id=connector, status=status
        ).exists(),
        what=f"connector {connector} {status}",
    )


def boots(charger: Charger) -> int:
    return ChargerEvent.objects.filter(charger=charger, kind=ChargerEvent.Kind.BOOT).count()


# --- OCPP 1.6 -------------------------------------------------------------------------------------


async def test_a_16_simulator_keeps_its_configuration(server, charger):
    async with simulated(server, charger):
        got = await send(
            charger,
            "GetConfiguration",
            {"key": ["HeartbeatInterval", "NumberOfConnectors", "Nope"]},
        )
        changed = await send(
            charger, "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "120"}
        )
        read_only = await send(
            charger, "ChangeConfiguration", {"key": "NumberOfConnectors", "value": "4"}
        )
        unknown = await send(charger, "ChangeConfiguration", {"key": "Nope", "value": "1"})
        again = await send(charger, "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert got.state == "answered"
    assert got.response == {
        "configurationKey": [
            {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
            {"key": "NumberOfConnectors", "readonly": True, "value": "2"},
        ],
        "unknownKey": ["Nope"],
    }
    assert [(c.state, c.response_status) for c in (changed, read_only, unknown)] == [
        ("accepted", "Accepted"),
        ("rejected", "Rejected"),
        ("rejected", "NotSupported"),
    ]
    assert again.response["configurationKey"][0]["value"] == "120"
    keys = await sync_to_async(
        lambda: dict(
            ChargerConfigurationKey.objects.filter(charger=charger).values_list("key", "value")
        )
    )()
    assert keys == {"HeartbeatInterval": "120", "NumberOfConnectors": "2"}


async def test_a_16_simulator_starts_and_stops_a_session_from_afar(server, charger, id_token):
    async with simulated(server, charger):
        start = await send(charger, "RemoteStartTransaction", {"idTag": "TAG-OK", "connectorId": 1})
        busy = await send(charger, "RemoteStartTransaction", {"idTag": "TAG-OK", "connectorId": 1})
        session = await eventually(
            lambda: Session.objects.filter(charger=charger, state="Active").first()
        )
        await shows(charger, 1, "Charging")
        stop = await send(
            charger, "RemoteStopTransaction", {"transactionId": int(session.transaction_id)}
        )
        unknown = await send(charger, "RemoteStopTransaction", {"transactionId": 999999})
        ended = await eventually(
            lambda: Session.objects.filter(pk=session.pk, state="Completed").first()
        )
    assert (start.state, busy.state, stop.state, unknown.state) == (
        "accepted",
        "rejected",
        "accepted",
        "rejected",
    )
    assert (ended.stop_reason, ended.connector_number, ended.id_tag) == ("Remote", 1, "TAG-OK")
    assert ended.remote_start_id == start.pk
    assert (await sync_to_async(Command.objects.get)(pk=start.pk)).session_id == session.pk


async def test_a_16_simulator_reboots_on_reset_and_ends_its_session(server, charger, id_token):
    async with simulated(server, charger):
        await send(charger, "RemoteStartTransaction", {"idTag": "TAG-OK"})
        session = await eventually(
            lambda: Session.objects.filter(charger=charger, state="Active").first()
        )
        before = await sync_to_async(boots)(charger)
        reset = await send(charger, "Reset", {"type": "Hard"})
        ended = await eventually(
            lambda: Session.objects.filter(pk=session.pk, state="Completed").first()
        )
        await eventually(
            lambda: boots(charger) == before + 1, what="a BootNotification after the reset"
        )
    assert reset.state == "accepted"
    assert ended.stop_reason == "HardReset"


async def test_a_16_simulator_answers_availability_reservations_and_unlocks(server, charger):
    async with simulated(server, charger):
        unavailable = await send(
            charger, "ChangeAvailability", {"connectorId": 2, "type": "Inoperative"}
        )
        await shows(charger, 2, "Unavailable")
        reserved_there = await send(
            charger,
            "ReserveNow",
            {
                "connectorId": 2,
                "expiryDate": "2030-01-01T00:00:00Z",
                "idTag": "TAG-OK",
                "reservationId": 5,
            },
        )
        reserved = await send(
            charger,
            "ReserveNow",
            {
                "connectorId": 1,
                "expiryDate": "2030-01-01T00:00:00Z",
                "idTag": "TAG-OK",
                "reservationId": 6,
            },
        )
        await shows(charger, 1, "Reserved")
        cancelled = await send(charger, "CancelReservation", {"reservationId": 6})
        await shows(charger, 1, "Available")
        unknown = await send(charger, "CancelReservation", {"reservationId": 6})
        available = await send(
            charger, "ChangeAvailability", {"connectorId": 2, "type": "Operative"}
        )
        await shows(charger, 2, "Available")
        unlocked = await send(charger, "UnlockConnector", {"connectorId": 1})
        no_such = await send(charger, "UnlockConnector", {"connectorId": 7})
    assert [
        c.response_status
        for c in (unavailable, reserved_there, reserved, cancelled, unknown, available)
    ] == [
        "Accepted",
        "Unavailable",
        "Accepted",
        "Accepted",
        "Rejected",
        "Accepted",
    ]
    assert (unlocked.response_status, no_such.response_status) == ("Unlocked", "NotSupported")


async def test_a_16_simulator_answers_the_composite_schedule_from_its_profiles(server, charger):
    max_profile = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "ChargePointMaxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 11000},
                {"startPeriod": 1800, "limit": 7000},
            ],
        },
    }
    default = {
        "chargingProfileId": 2,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}],
        },
    }
    async with simulated(server, charger):
        none_yet = await send(charger, "GetCompositeSchedule", {"connectorId": 1, "duration": 3600})
        first = await send(
            charger, "SetChargingProfile", {"connectorId": 0, "csChargingProfiles": max_profile}
        )
        second = await send(
            charger, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": default}
        )
        composite = await send(
            charger,
            "GetCompositeSchedule",
            {"connectorId": 1, "duration": 3600, "chargingRateUnit": "W"},
        )
        cleared = await send(charger, "ClearChargingProfile", {"id": 2})
        gone = await send(charger, "ClearChargingProfile", {"id": 2})
        after = await send(
            charger,
            "GetCompositeSchedule",
            {"connectorId": 1, "duration": 3600, "chargingRateUnit": "A"},
        )
    assert (none_yet.state, first.state, second.state) == ("rejected", "accepted", "accepted")
    # 10 A on three phases of 230 V is 6900 W, below both limits of the charger's maximum.
    assert composite.response["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 6900.0}
    ]
    assert (cleared.response_status, gone.response_status) == ("Accepted", "Unknown")
    assert after.response["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 15.9},
        {"startPeriod": 1800, "limit": 10.1},
    ]


async def test_a_16_simulator_reports_diagnostics_logs_and_firmware_updates(server, charger):
    async with simulated(server, charger):
        diagnostics = await send(charger, "GetDiagnostics", {"location": "ftp://diag.example.com/"})
        firmware = await send(
            charger,
            "UpdateFirmware",
            {"location": "https://fw.example.com/2.bin", "retrieveDate": "2030-01-01T00:00:00Z"},
        )
        log = await send(
            charger,
            "GetLog",
            {
                "logType": "SecurityLog",
                "requestId": 3,
                "log": {"remoteLocation": "https://logs.example.com/"},
            },
        )
        await eventually(
            lambda: Charger.objects.filter(
                pk=charger.pk, diagnostics_status="Uploaded", firmware_status="Installed"
            ).exists(),
            what="diagnostics uploaded and firmware installed",
        )
        await eventually(
            lambda: ChargerEvent.objects.filter(
                charger=charger, kind="LogStatus", status="Uploaded", request_id=3
            ).exists()
        )
    assert diagnostics.response == {"fileName": f"diagnostics-{charger.identity}.log"}
    assert (firmware.state, log.state, log.response["filename"]) == (
        "answered",
        "accepted",
        "SecurityLog-3.log",
    )
    firmware_steps = await sync_to_async(
        lambda: list(
            ChargerEvent.objects.filter(charger=charger, kind="FirmwareStatus")
            .order_by("timestamp", "id")
            .values_list("status", flat=True)
        )
    )()
    assert firmware_steps == ["Downloading", "Downloaded", "Installing", "Installed"]


async def test_a_16_simulator_answers_the_rest(server, charger):
    async with simulated(server, charger):
        full = await send(
            charger,
            "SendLocalList",
            {
                "listVersion": 3,
                "updateType": "Full",
                "localAuthorizationList": [
                    {"idTag": "TAG-OK", "idTagInfo": {"status": "Accepted"}}
                ],
            },
        )
        version = await send(charger, "GetLocalListVersion", {})
        stale = await send(
            charger, "SendLocalList", {"listVersion": 2, "updateType": "Differential"}
        )
        cleared = await send(charger, "ClearCache", {})
        ours = await send(charger, "DataTransfer", {"vendorId": "Simulated", "data": "ping"})
        theirs = await send(charger, "DataTransfer", {"vendorId": "com.other"})
        triggered = await send(charger, "TriggerMessage", {"requestedMessage": "Heartbeat"})
        await eventually(
            lambda: Frame.objects.filter(
                charger=charger,
                action="Heartbeat",
                direction="in",
                timestamp__gte=triggered.answered_at,
            ).exists(),
            what="the triggered Heartbeat",
        )
        unsupported = await send(
            charger,
            "GetInstalledCertificateIds",
            {"certificateType": "CentralSystemRootCertificate"},
        )
    assert (full.response_status, version.response, stale.response_status) == (
        "Accepted",
        {"listVersion": 3},
        "VersionMismatch",
    )
    assert (cleared.state, ours.response, theirs.response_status) == (
        "accepted",
        {"status": "Accepted", "data": "ping"},
        "UnknownVendorId",
    )
    assert triggered.state == "accepted"
    assert (unsupported.state, unsupported.error_code) == ("error", "NotSupported")


# --- OCPP 2.0.1 -----------------------------------------------------------------------------------

HEARTBEAT = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}


async def test_a_201_simulator_keeps_its_variables(server, charger):
    async with simulated(server, charger, "ocpp2.0.1"):
        set_ = await send(
            charger,
            "SetVariables",
            {
                "setVariableData": [
                    {"attributeValue": "90", **HEARTBEAT},
                    {
                        "attributeValue": "X",
                        "component": {"name": "ChargingStation"},
                        "variable": {"name": "Model"},
                    },
                    {
                        "attributeValue": "1",
                        "component": {"name": "Nope"},
                        "variable": {"name": "X"},
                    },
                ]
            },
        )
        got = await send(
            charger,
            "GetVariables",
            {
                "getVariableData": [
                    HEARTBEAT,
                    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "Nope"}},
                ]
            },
        )
    assert [r["attributeStatus"] for r in set_.response["setVariableResult"]] == [
        "Accepted",
        "Rejected",
        "UnknownComponent",
    ]
    assert got.response["getVariableResult"] == [
        {"attributeStatus": "Accepted", "attributeValue": "90", **HEARTBEAT},
        {
            "attributeStatus": "UnknownVariable",
            "component": {"name": "OCPPCommCtrlr"},
            "variable": {"name": "Nope"},
        },
    ]


async def test_a_201_simulator_starts_and_stops_a_session_from_afar(server, charger, id_token):
    token = {"idToken": "TAG-OK", "type": "ISO14443"}
    async with simulated(server, charger, "ocpp2.0.1"):
        start = await send(
            charger, "RequestStartTransaction", {"idToken": token, "remoteStartId": 77, "evseId": 2}
        )
        session = await eventually(
            lambda: Session.objects.filter(charger=charger, state="Active").first()
        )
        status = await send(
            charger, "GetTransactionStatus", {"transactionId": session.transaction_id}
        )
        stop = await send(
            charger, "RequestStopTransaction", {"transactionId": session.transaction_id}
        )
        ended = await eventually(
            lambda: Session.objects.filter(pk=session.pk, state="Completed").first()
        )
    assert (start.state, stop.state) == ("accepted", "accepted")
    assert status.response == {"messagesInQueue": False, "ongoingIndicator": True}
    assert (ended.remote_start_id, ended.stop_reason, ended.connector_number) == (77, "Remote", 2)
    assert (await sync_to_async(Command.objects.get)(pk=start.pk)).session_id == session.pk


async def test_a_201_simulator_answers_the_rest(server, charger):
    profile = {
        "id": 4,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [
            {
                "id": 1,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}],
            }
        ],
    }
    async with simulated(server, charger, "ocpp2.0.1"):
        before = await sync_to_async(boots)(charger)
        reset = await send(charger, "Reset", {"type": "Immediate"})
        await eventually(
            lambda: boots(charger) == before + 1, what="a BootNotification after the reset"
        )
        inoperative = await send(
            charger, "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}}
        )
        await shows(charger, 1, "Unavailable")
        profile_set = await send(
            charger, "SetChargingProfile", {"evseId": 1, "chargingProfile": profile}
        )
        composite = await send(charger, "GetCompositeSchedule", {"evseId": 1, "duration": 600})
        firmware = await send(
            charger,
            "UpdateFirmware",
            {
                "requestId": 8,
                "firmware": {
                    "location": "https://fw.example.com/3.bin",
                    "retrieveDateTime": "2030-01-01T00:00:00Z",
                },
            },
        )
        await eventually(
            lambda: Charger.objects.filter(pk=charger.pk, firmware_status="Installed").exists()
        )
        reserved = await send(
            charger,
            "ReserveNow",
            {
                "id": 3,
                "evseId": 2,
                "expiryDateTime": "2030-01-01T00:00:00Z",
                "idToken": {"idToken": "TAG-OK", "type": "ISO14443"},
            },
        )
        await shows(charger, 2, "Reserved")
        cancelled = await send(charger, "CancelReservation", {"reservationId": 3})
        listed = await send(charger, "SendLocalList", {"versionNumber": 5, "updateType": "Full"})
        version = await send(charger, "GetLocalListVersion", {})
        unlocked = await send(charger, "UnlockConnector", {"evseId": 2, "connectorId": 1})
        triggered = await send(
            charger, "TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {"id": 2}}
        )
        cleared = await send(charger, "ClearCache", {})
        unsupported = await send(
            charger, "CustomerInformation", {"requestId": 1, "report": True, "clear": False}
        )
    assert [c.response_status for c in (reset, inoperative, profile_set, firmware, reserved, cancelled, listed, unlocked, triggered, cleared)] == [
        "Accepted", "Accepted", "Accepted", "Accepted", "Accepted", "Accepted", "Accepted", "Unlocked", "Accepted", "Accepted",
    ]  # fmt: skip
    assert composite.response["schedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 7400.0}
    ]
    assert version.response == {"versionNumber": 5}
    assert (unsupported.state, unsupported.error_code) == ("error", "NotSupported")
