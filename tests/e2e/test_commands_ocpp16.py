"""Commands to OCPP 1.6 chargers, end to end: a command row created through the service layer
reaches a strict charger connected to the real server, and the charger's answer lands on the row.

Every command a CSMS may send in 1.6 goes out once here; then what an answer carries (the
configuration keys, a data transfer, the session a remote start began), refusals and errors, one
CALL in flight with the rest queued in order, disconnects and commands that wait for a charger.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.db import connections
from ocpp.v16 import call, call_result

from chargers.models import (
    ChargerConfigurationKey,
    Command,
    DataTransferRecord,
    Frame,
    Session,
)
from tests.conftest import ServerProcess
from tests.e2e.commanding import (
    answering_charger,
    basic_auth,
    boot,
    connected,
    create,
    eventually,
    finished,
    in_state,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCHEDULE = {
    "chargingRateUnit": "W",
    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}],
    "startSchedule": "2030-01-01T00:00:00Z",
}
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"

# action -> (payload sent, the charger's answer, the answer as JSON, the command's state)
COMMANDS_16: dict[str, tuple[dict[str, Any], Any, dict[str, Any], str]] = {
    "CancelReservation": (
        {"reservationId": 7},
        call_result.CancelReservation(status="Accepted"),
        {"status": "Accepted"},
        "accepted",
    ),
    "ChangeAvailability": (
        {"connectorId": 1, "type": "Inoperative"},
        call_result.ChangeAvailability(status="Scheduled"),
        {"status": "Scheduled"},
        "accepted",
    ),
    "ChangeConfiguration": (
        {"key": "MeterValueSampleInterval", "value": "60"},
        call_result.ChangeConfiguration(status="RebootRequired"),
        {"status": "RebootRequired"},
        "accepted",
    ),
    "ClearCache": (
        {},
        call_result.ClearCache(status="Accepted"),
        {"status": "Accepted"},
        "accepted",
    ),
    "ClearChargingProfile": (
        {"id": 3},
        call_result.ClearChargingProfile(status="Unknown"),
        {"status": "Unknown"},
        "rejected",
    ),
    "DataTransfer": (
        {"vendorId": "com.acme", "messageId": "ping", "data": "hello"},
        call_result.DataTransfer(status="Accepted", data="pong"),
        {"status": "Accepted", "data": "pong"},
        "accepted",
    ),
    "GetCompositeSchedule": (
        {"connectorId": 1, "duration": 3600, "chargingRateUnit": "W"},
        call_result.GetCompositeSchedule(
            status="Accepted",
            connector_id=1,
            schedule_start="2030-01-01T00:00:00Z",
            charging_schedule={
                "charging_rate_unit": "W",
                "duration": 3600,
                "charging_schedule_period": [{"start_period": 0, "limit": 7400}],
            },
        ),
        {
            "status": "Accepted",
            "connectorId": 1,
            "scheduleStart": "2030-01-01T00:00:00Z",
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "duration": 3600,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}],
            },
        },
        "accepted",
    ),
    "GetConfiguration": (
        {"key": ["HeartbeatInterval", "Nope"]},
        call_result.GetConfiguration(
            configuration_key=[{"key": "HeartbeatInterval", "readonly": False, "value": "300"}],
            unknown_key=["Nope"],
        ),
        {
            "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}],
            "unknownKey": ["Nope"],
        },
        "answered",
    ),
    "GetDiagnostics": (
        {"location": "ftp://diag.example.com/upload"},
        call_result.GetDiagnostics(file_name="diag-1.zip"),
        {"fileName": "diag-1.zip"},
        "answered",
    ),
    "GetLocalListVersion": (
        {},
        call_result.GetLocalListVersion(list_version=2),
        {"listVersion": 2},
        "answered",
    ),
    "RemoteStartTransaction": (
        {"idTag": "TAG-OK", "connectorId": 1},
        call_result.RemoteStartTransaction(status="Accepted"),
        {"status": "Accepted"},
        "accepted",
    ),
    "RemoteStopTransaction": (
        {"transactionId": 5},
        call_result.RemoteStopTransaction(status="Rejected"),
        {"status": "Rejected"},
        "rejected",
    ),
    "ReserveNow": (
        {
            "connectorId": 1,
            "expiryDate": "2030-01-01T00:00:00Z",
            "idTag": "TAG-OK",
            "reservationId": 7,
        },
        call_result.ReserveNow(status="Occupied"),
        {"status": "Occupied"},
        "rejected",
    ),
    "Reset": (
        {"type": "Soft"},
        call_result.Reset(status="Accepted"),
        {"status": "Accepted"},
        "accepted",
    ),
    "SendLocalList": (
        {
            "listVersion": 2,
            "updateType": "Full",
            "localAuthorizationList": [{"idTag": "TAG-OK", "idTagInfo": {"status": "Accepted"}}],
        },
        call_result.SendLocalList(status="Accepted"),
        {"status": "Accepted"},
        "accepted",
    ),
    "SetChargingProfile": (
        {
            "connectorId": 1,
            "csChargingProfiles": {
                "chargingProfileId": 3,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": SCHEDULE,
            },
        },
        call_result.SetChargingProfile(status="Accepted"),
        {"status": "Accepted"},
        "accepted",
    ),
    "TriggerMessage": (
        {"requestedMessage": "Heartbeat"},
        call_result.TriggerMessage(status="NotImplemented"),
        {"status": "NotImplemented"},
        "rejected",
    ),
    "UnlockConnector": (
        {"connectorId": 1},
        call_result.UnlockConnector(status="Unlocked"),
        {"status": "Unlocked"},
        "accepted",
    ),
    "UpdateFirmware": (
        {"location": "https://fw.example.com/4.3.bin", "retrieveDate": "2030-01-01T00:00:00Z"},
        call_result.UpdateFirmware(),
        {},
        "answered",
    ),
    "CertificateSigned": (
        {"certificateChain": CERTIFICATE},
        call_result.CertificateSigned(status="Accepted"),
        {"status": "Accepted"},
        "accepted",
    ),
    "DeleteCertificate": (
        {
            "certificateHashData": {
                "hashAlgorithm": "SHA256",
                "issuerNameHash": "aa",
                "issuerKeyHash": "bb",
                "serialNumber": "01",
            }
        },
        call_result.DeleteCertificate(status="NotFound"),
        {"status": "NotFound"},
        "rejected",
    ),
    "ExtendedTriggerMessage": (
        {"requestedMessage": "StatusNotification", "connectorId": 1},
        call_result.ExtendedTriggerMessage(status="Accepted"),
        {"status": "Accepted"},
        "accepted",
    ),
    "GetInstalledCertificateIds": (
        {"certificateType": "CentralSystemRootCertificate"},
        call_result.GetInstalledCertificateIds(status="NotFound"),
        {"status": "NotFound"},
        "rejected",
    ),
    "GetLog": (
        {
            "logType": "DiagnosticsLog",
            "requestId": 4,
            "log": {"remoteLocation": "https://logs.example.com/up"},
        },
        call_result.GetLog(status="Accepted", filename="log-4.txt"),
        {"status": "Accepted", "filename": "log-4.txt"},
        "accepted",
    ),
    "InstallCertificate": (
        {"certificateType": "CentralSystemRootCertificate", "certificate": CERTIFICATE},
        call_result.InstallCertificate(status="Accepted"),
        {"status": "Accepted"},
        "accepted",
    ),
    "SignedUpdateFirmware": (
        {
            "requestId": 9,
            "firmware": {
                "location": "https://fw.example.com/x.bin",
                "retrieveDateTime": "2030-01-01T00:00:00Z",
                "signingCertificate": CERTIFICATE,
                "signature": "c2ln",
            },
        },
        call_result.SignedUpdateFirmware(status="Accepted"),
        {"status": "Accepted"},
        "accepted",
    ),
}

ANSWERS_16 = {action: answer for action, (_, answer, _, _) in COMMANDS_16.items()}


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    """The worker thread's database connection goes with the test, so teardown can drop the db."""
    yield
    await sync_to_async(connections.close_all)()


def journal(message_id: str) -> list[tuple[str, int, str]]:
    return list(
        Frame.objects.filter(message_id=message_id)
        .order_by("timestamp", "id")
        .values_list("direction", "kind", "action")
    )


def configuration(charger: Any) -> dict[str, tuple[str, bool, bool, int | None]]:
    return {
        k.key: (k.value, k.has_value, k.readonly, k.command_id)
        for k in ChargerConfigurationKey.objects.filter(charger=charger)
    }


# --- Every command ---------------------------------------------------------------------------------


@pytest.mark.parametrize("action", sorted(COMMANDS_16))
async def test_every_command_reaches_the_charger_and_its_answer_is_recorded(
    server, charger, action
):
    payload, _, answer, state = COMMANDS_16[action]
    async with answering_charger(server.ocpp_url, charger.identity, ANSWERS_16) as client:
        await boot(client)
        command = await create(charger, action, payload)
        assert command.state == "requested"
        assert await client.next_call() == (action, payload)
        row = await finished(command)
    assert (row.state, row.response, row.ocpp_version) == (state, answer, "1.6")
    assert row.response_status == answer.get("status", "")
    assert row.sent_at is not None and row.answered_at is not None and row.finished_at is not None
    assert row.sent_at <= row.answered_at
    # Our CALL and the charger's answer are in the journal, with the action.
    frames = await eventually(
        lambda: (lambda j: j if len(j) == 2 else None)(journal(row.message_id))
    )
    assert frames == [("out", 2, action), ("in", 3, action)]
    sent = await sync_to_async(Frame.objects.get)(message_id=row.message_id, direction="out")
    assert json.loads(sent.raw) == [2, row.message_id, action, payload]


# --- What answers carry ----------------------------------------------------------------------------


async def test_get_configuration_keeps_the_reported_keys_and_change_configuration_updates_one(
    server, charger
):
    answers = {
        "GetConfiguration": call_result.GetConfiguration(
            configuration_key=[
                {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
                {"key": "NumberOfConnectors", "readonly": True, "value": "2"},
                {"key": "AuthorizationKey", "readonly": False},
            ],
            unknown_key=["Nope"],
        ),
        "ChangeConfiguration": call_result.ChangeConfiguration(status="Accepted"),
    }
    async with answering_charger(server.ocpp_url, charger.identity, answers) as client:
        await boot(client)
        got = await finished(await create(charger, "GetConfiguration", {}))
        changed = await finished(
            await create(
                charger, "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "120"}
            )
        )
    assert (got.state, changed.state) == ("answered", "accepted")
    keys = await sync_to_async(configuration)(charger)
    assert keys == {
        "HeartbeatInterval": ("120", True, False, changed.pk),
        "NumberOfConnectors": ("2", True, True, got.pk),
        "AuthorizationKey": ("", False, False, got.pk),
    }


async def test_a_rejected_change_leaves_the_reported_value(server, charger):
    answers = {
        "GetConfiguration": call_result.GetConfiguration(
            configuration_key=[{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
        ),
        "ChangeConfiguration": call_result.ChangeConfiguration(status="Rejected"),
    }
    async with answering_charger(server.ocpp_url, charger.identity, answers) as client:
        await boot(client)
        await finished(await create(charger, "GetConfiguration", {"key": ["HeartbeatInterval"]}))
        rejected = await finished(
            await create(charger, "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "5"})
        )
    assert (rejected.state, rejected.response_status) == ("rejected", "Rejected")
    key = await sync_to_async(ChargerConfigurationKey.objects.get)(
        charger=charger, key="HeartbeatInterval"
    )
    assert key.value == "300"


async def test_a_data_transfer_is_recorded_with_the_chargers_reply(server, charger):
    async with answering_charger(server.ocpp_url, charger.identity, ANSWERS_16) as client:
        await boot(client)
        await finished(await create(charger, "DataTransfer", COMMANDS_16["DataTransfer"][0]))
    record = await sync_to_async(DataTransferRecord.objects.get)(charger=charger)
    assert (record.direction, record.vendor_id, record.message_id, record.data) == (
        "out",
        "com.acme",
        "ping",
        "hello",
    )
    assert (record.response_status, record.response_data) == ("Accepted", "pong")


async def test_a_remote_start_is_linked_to_the_session_the_charger_starts(
    server, charger, id_token
):
    async def start_after_answering(client: Any, payload: dict[str, Any]) -> Any:
        # A charger answers first, then starts the transaction.
        async def start() -> None:
            await client.call(
                call.StartTransaction(
                    connector_id=payload["connectorId"],
                    id_tag=payload["idTag"],
                    meter_start=1000,
                    timestamp="2030-01-01T00:00:00Z",
                ),
                suppress=False,
            )

        client.start_task = asyncio.get_running_loop().create_task(start())
        return call_result.RemoteStartTransaction(status="Accepted")

    async with answering_charger(
        server.ocpp_url, charger.identity, {"RemoteStartTransaction": start_after_answering}
    ) as client:
        await boot(client)
        command = await create(
            charger, "RemoteStartTransaction", {"idTag": "TAG-OK", "connectorId": 1}
        )
        row = await finished(command)
        await client.start_task
        linked = await eventually(
            lambda: Command.objects.filter(pk=command.pk, session__isnull=False).first()
        )
    session = await sync_to_async(Session.objects.get)(pk=linked.session_id)
    assert row.state == "accepted"
    assert (session.id_tag, session.connector_number) == ("TAG-OK", 1)
    assert session.remote_start_id == command.pk == row.remote_start_id


async def test_a_local_start_with_another_tag_is_not_taken_for_the_remote_start(
    server, charger, id_token
):
    async with answering_charger(
        server.ocpp_url,
        charger.identity,
        {"RemoteStartTransaction": call_result.RemoteStartTransaction(status="Accepted")},
    ) as client:
        await boot(client)
        command = await finished(
            await create(charger, "RemoteStartTransaction", {"idTag": "SOMEONE-ELSE"})
        )
        await client.call(
            call.StartTransaction(
                connector_id=2, id_tag="TAG-OK", meter_start=0, timestamp="2030-01-01T00:00:00Z"
            ),
            suppress=False,
        )
    session = await sync_to_async(Session.objects.get)(charger=charger)
    row = await sync_to_async(Command.objects.get)(pk=command.pk)
    assert (row.session_id, session.remote_start_id) == (None, None)


# --- Refusals and errors ---------------------------------------------------------------------------


async def test_a_callerror_is_recorded_as_an_error(server, charger):
    # This charger has no answer for Reset: the ocpp library refuses it with a CALLERROR.
    async with answering_charger(server.ocpp_url, charger.identity, {}) as client:
        await boot(client)
        row = await finished(await create(charger, "Reset", {"type": "Hard"}))
    assert row.state == "error"
    assert row.error_code == "NotImplemented"
    assert "does not take Reset" in row.error_description
    assert await eventually(
        lambda: journal(row.message_id) == [("out", 2, "Reset"), ("in", 4, "Reset")]
    )


async def test_an_answer_that_breaks_the_schema_is_an_error(server, charger):
    async with websockets.connect(
        server.ocpp_url + charger.identity,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=basic_auth(charger.identity),
    ) as ws:
        await connected(charger)
        command = await create(charger, "Reset", {"type": "Soft"})
        frame = json.loads(await ws.recv())
        assert frame[:3] == [2, frame[1], "Reset"]
        await ws.send(json.dumps([3, frame[1], {"status": "Maybe"}]))
        row = await finished(command)
    assert (row.state, row.error_code) == ("error", "PropertyConstraintViolation")
    assert "does not match the schema" in row.error_description
    assert row.response == {"status": "Maybe"}


# --- One CALL in flight, the rest queued in order ---------------------------------------------------


async def raw_charger(server: ServerProcess, identity: str) -> Any:
    return websockets.connect(
        server.ocpp_url + identity,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=basic_auth(identity),
    )


async def test_one_call_is_in_flight_and_the_others_wait_in_order(server, charger):
    async with await raw_charger(server, charger.identity) as ws:
        await connected(charger)
        first = await create(charger, "Reset", {"type": "Soft"})
        frame = json.loads(await ws.recv())
        assert frame[2:] == ["Reset", {"type": "Soft"}]
        await in_state(first, "sent")
        second = await create(charger, "ClearCache", {})
        third = await create(charger, "UnlockConnector", {"connectorId": 2})
        # The connection took both and holds them back while the first is unanswered.
        for waiting in (second, third):
            row = await in_state(waiting, "queued")
            assert (row.message_id, row.sent_at) == ("", None)
        await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
        frames = []
        for expected in ("ClearCache", "UnlockConnector"):
            frame = json.loads(await ws.recv())
            frames.append(frame)
            assert frame[2] == expected
            await ws.send(
                json.dumps(
                    [
                        3,
                        frame[1],
                        {"status": "Unlocked" if expected == "UnlockConnector" else "Accepted"},
                    ]
                )
            )
        rows = [await finished(c) for c in (first, second, third)]
    assert [r.state for r in rows] == ["accepted", "accepted", "accepted"]
    assert [r.message_id for r in rows[1:]] == [f[1] for f in frames]
    assert rows[0].answered_at <= rows[1].sent_at and rows[1].answered_at <= rows[2].sent_at


# --- Disconnects and chargers that are offline ---------------------------------------------------------


async def test_a_disconnect_fails_the_call_in_flight_and_keeps_what_may_wait(server, charger):
    async with await raw_charger(server, charger.identity) as ws:
        await connected(charger)
        in_flight = await create(charger, "Reset", {"type": "Soft"})
        await ws.recv()
        await in_state(in_flight, "sent")
        may_wait = await create(charger, "ClearCache", {}, deliver_when_offline=True)
        may_not = await create(charger, "UnlockConnector", {"connectorId": 1})
        await in_state(may_wait, "queued")
        await in_state(may_not, "queued")
    await connected(charger, False)
    rows = {c.action: await finished(c) for c in (in_flight, may_not)}
    assert (rows["Reset"].state, rows["Reset"].error_code) == ("failed", "ConnectionClosed")
    assert (rows["UnlockConnector"].state, rows["UnlockConnector"].error_code) == (
        "failed",
        "Offline",
    )
    assert (await sync_to_async(Command.objects.get)(pk=may_wait.pk)).state == "queued"

    # It goes out when the charger is back.
    async with answering_charger(server.ocpp_url, charger.identity, ANSWERS_16) as client:
        assert await client.next_call() == ("ClearCache", {})
        row = await finished(may_wait)
    assert (row.state, row.response) == ("accepted", {"status": "Accepted"})


async def test_a_command_for_an_offline_charger_waits_for_it_when_allowed(server, charger):
    charger.ocpp_version = "1.6"
    await sync_to_async(charger.save)(update_fields=["ocpp_version"])
    command = await create(
        charger,
        "TriggerMessage",
        {"requestedMessage": "StatusNotification"},
        deliver_when_offline=True,
    )
    assert command.state == "queued"
    async with answering_charger(
        server.ocpp_url,
        charger.identity,
        {"TriggerMessage": call_result.TriggerMessage(status="Accepted")},
    ) as client:
        assert await client.next_call() == (
            "TriggerMessage",
            {"requestedMessage": "StatusNotification"},
        )
        row = await finished(command)
    assert row.state == "accepted"


async def test_commands_wait_for_the_charger_in_the_order_they_were_made(server, charger):
    charger.ocpp_version = "1.6"
    await sync_to_async(charger.save)(update_fields=["ocpp_version"])
    commands = [
        await create(
            charger,
            "ChangeConfiguration",
            {"key": f"Key{n}", "value": str(n)},
            deliver_when_offline=True,
        )
        for n in range(4)
    ]
    answers = {"ChangeConfiguration": call_result.ChangeConfiguration(status="Accepted")}
    async with answering_charger(server.ocpp_url, charger.identity, answers) as client:
        rows = [await finished(c) for c in commands]
        assert [payload["key"] for _, payload in client.calls] == ["Key0", "Key1", "Key2", "Key3"]
    assert {r.state for r in rows} == {"accepted"}


# --- A server with a short CALL timeout ------------------------------------------------------------------


@pytest.fixture(scope="module")
def impatient_server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[ServerProcess]:
    process = ServerProcess(extra_env={"CPMS_CALL_TIMEOUT": "1.5"})
    try:
        yield process
    finally:
        process.stop()


async def test_an_unanswered_call_times_out_and_frees_the_slot(
    transactional_db, impatient_server, charger
):
    async with await raw_charger(impatient_server, charger.identity) as ws:
        await connected(charger)
        silent = await create(charger, "Reset", {"type": "Soft"})
        await ws.recv()  # never answered
        then = await create(charger, "ClearCache", {})
        frame = json.loads(await ws.recv())
        assert frame[2] == "ClearCache"
        timed_out = await finished(silent)
        assert (timed_out.state, timed_out.error_code) == ("timeout", "Timeout")
        assert "1.5 s" in timed_out.error_description
        # A late answer to the timed-out CALL changes nothing; the next one is answered.
        await ws.send(json.dumps([3, timed_out.message_id, {"status": "Accepted"}]))
        await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
        answered = await finished(then)
    assert answered.state == "accepted"
    assert (await sync_to_async(Command.objects.get)(pk=silent.pk)).state == "timeout"
    await connected(charger, False)
