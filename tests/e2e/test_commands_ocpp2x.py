"""Commands to OCPP 2.0.1 and 2.1 chargers, end to end against the real server: every command a
CSMS may send in each version reaches a strict charger and its answer lands on the row; what
answers carry goes into the device model; a remote start is linked to the session it began.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from ocpp.v21 import call as call21
from ocpp.v201 import call

from chargers.commands import CSMS_ACTIONS
from chargers.models import Command, DataTransferRecord, DeviceVariable, Frame, Session
from tests.e2e.commanding import answering_charger, boot, create, eventually, finished

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

T = "2030-01-01T00:00:00Z"
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
TOKEN = {"idToken": "TAG-OK", "type": "ISO14443"}
HASH = {
    "hashAlgorithm": "SHA256",
    "issuerNameHash": "aa",
    "issuerKeyHash": "bb",
    "serialNumber": "01",
}
HEARTBEAT = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
POWER = {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"}}
CHECKSUM = "0123456789abcdef0123456789abcdef"
TARIFF = {"tariffId": "T1", "currency": "EUR"}

# action -> (payload sent, the charger's answer, the command's state)
COMMANDS_201: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "CancelReservation": ({"reservationId": 7}, {"status": "Accepted"}, "accepted"),
    "CertificateSigned": ({"certificateChain": CERTIFICATE}, {"status": "Accepted"}, "accepted"),
    "ChangeAvailability": (
        {"operationalStatus": "Inoperative", "evse": {"id": 1}},
        {"status": "Scheduled"},
        "accepted",
    ),
    "ClearCache": ({}, {"status": "Accepted"}, "accepted"),
    "ClearChargingProfile": ({"chargingProfileId": 3}, {"status": "Unknown"}, "rejected"),
    "ClearDisplayMessage": ({"id": 5}, {"status": "Accepted"}, "accepted"),
    "ClearVariableMonitoring": (
        {"id": [1, 2]},
        {
            "clearMonitoringResult": [
                {"status": "Accepted", "id": 1},
                {"status": "NotFound", "id": 2},
            ]
        },
        "answered",
    ),
    "CostUpdated": ({"totalCost": 12.5, "transactionId": "tx-1"}, {}, "answered"),
    "CustomerInformation": (
        {"requestId": 3, "report": True, "clear": False, "idToken": TOKEN},
        {"status": "Accepted"},
        "accepted",
    ),
    "DataTransfer": (
        {"vendorId": "com.acme", "messageId": "ping", "data": {"n": 1}},
        {"status": "Accepted", "data": {"n": 2}},
        "accepted",
    ),
    "DeleteCertificate": ({"certificateHashData": HASH}, {"status": "NotFound"}, "rejected"),
    "GetBaseReport": (
        {"requestId": 11, "reportBase": "FullInventory"},
        {"status": "Accepted"},
        "accepted",
    ),
    "GetChargingProfiles": (
        {"requestId": 12, "chargingProfile": {"chargingProfilePurpose": "TxDefaultProfile"}},
        {"status": "NoProfiles"},
        "rejected",
    ),
    "GetCompositeSchedule": (
        {"duration": 3600, "evseId": 1, "chargingRateUnit": "W"},
        {
            "status": "Accepted",
            "schedule": {
                "evseId": 1,
                "duration": 3600,
                "scheduleStart": T,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400.0}],
            },
        },
        "accepted",
    ),
    "GetDisplayMessages": ({"requestId": 13}, {"status": "Unknown"}, "rejected"),
    "GetInstalledCertificateIds": ({}, {"status": "NotFound"}, "rejected"),
    "GetLocalListVersion": ({}, {"versionNumber": 4}, "answered"),
    "GetLog": (
        {
            "logType": "DiagnosticsLog",
            "requestId": 14,
            "log": {"remoteLocation": "https://logs.example.com/up"},
        },
        {"status": "Accepted", "filename": "log-14.txt"},
        "accepted",
    ),
    "GetMonitoringReport": ({"requestId": 15}, {"status": "EmptyResultSet"}, "rejected"),
    "GetReport": (
        {"requestId": 16, "componentCriteria": ["Active"]},
        {"status": "Accepted"},
        "accepted",
    ),
    "GetTransactionStatus": (
        {"transactionId": "tx-1"},
        {"ongoingIndicator": True, "messagesInQueue": False},
        "answered",
    ),
    "GetVariables": (
        {"getVariableData": [HEARTBEAT]},
        {
            "getVariableResult": [
                {"attributeStatus": "Accepted", "attributeValue": "300", **HEARTBEAT}
            ]
        },
        "answered",
    ),
    "InstallCertificate": (
        {"certificateType": "CSMSRootCertificate", "certificate": CERTIFICATE},
        {"status": "Accepted"},
        "accepted",
    ),
    "PublishFirmware": (
        {"location": "https://fw.example.com/x.bin", "checksum": CHECKSUM, "requestId": 17},
        {"status": "Accepted"},
        "accepted",
    ),
    "RequestStartTransaction": (
        {"idToken": TOKEN, "remoteStartId": 42, "evseId": 1},
        {"status": "Accepted"},
        "accepted",
    ),
    "RequestStopTransaction": ({"transactionId": "tx-1"}, {"status": "Rejected"}, "rejected"),
    "ReserveNow": (
        {"id": 7, "expiryDateTime": T, "idToken": TOKEN},
        {"status": "Occupied"},
        "rejected",
    ),
    "Reset": ({"type": "OnIdle"}, {"status": "Scheduled"}, "accepted"),
    "SendLocalList": (
        {
            "versionNumber": 4,
            "updateType": "Full",
            "localAuthorizationList": [{"idToken": TOKEN, "idTokenInfo": {"status": "Accepted"}}],
        },
        {"status": "Accepted"},
        "accepted",
    ),
    "SetChargingProfile": (
        {
            "evseId": 1,
            "chargingProfile": {
                "id": 3,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": [
                    {
                        "id": 1,
                        "chargingRateUnit": "W",
                        "startSchedule": T,
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}],
                    }
                ],
            },
        },
        {"status": "Accepted"},
        "accepted",
    ),
    "SetDisplayMessage": (
        {
            "message": {
                "id": 5,
                "priority": "NormalCycle",
                "message": {"format": "UTF8", "content": "Welcome"},
            }
        },
        {"status": "Accepted"},
        "accepted",
    ),
    "SetMonitoringBase": ({"monitoringBase": "All"}, {"status": "Accepted"}, "accepted"),
    "SetMonitoringLevel": ({"severity": 5}, {"status": "Accepted"}, "accepted"),
    "SetNetworkProfile": (
        {
            "configurationSlot": 1,
            "connectionData": {
                "ocppVersion": "OCPP20",
                "ocppTransport": "JSON",
                "ocppCsmsUrl": "wss://csms.example.com/ocpp",
                "messageTimeout": 30,
                "securityProfile": 2,
                "ocppInterface": "Wired0",
            },
        },
        {"status": "Accepted"},
        "accepted",
    ),
    "SetVariableMonitoring": (
        {"setMonitoringData": [{"value": 80, "type": "UpperThreshold", "severity": 4, **POWER}]},
        {
            "setMonitoringResult": [
                {"status": "Accepted", "type": "UpperThreshold", "severity": 4, "id": 1, **POWER}
            ]
        },
        "answered",
    ),
    "SetVariables": (
        {"setVariableData": [{"attributeValue": "120", **HEARTBEAT}]},
        {"setVariableResult": [{"attributeStatus": "Accepted", **HEARTBEAT}]},
        "answered",
    ),
    "TriggerMessage": (
        {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}},
        {"status": "Accepted"},
        "accepted",
    ),
    "UnlockConnector": ({"evseId": 1, "connectorId": 1}, {"status": "Unlocked"}, "accepted"),
    "UnpublishFirmware": ({"checksum": CHECKSUM}, {"status": "Unpublished"}, "accepted"),
    "UpdateFirmware": (
        {
            "requestId": 18,
            "firmware": {"location": "https://fw.example.com/x.bin", "retrieveDateTime": T},
        },
        {"status": "Accepted"},
        "accepted",
    ),
}

# New in 2.1; the 2.1 charger also gets every 2.0.1 command above.
COMMANDS_21_ONLY: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "AFRRSignal": ({"timestamp": T, "signal": 1}, {"status": "Accepted"}, "accepted"),
    "AdjustPeriodicEventStream": (
        {"id": 1, "params": {"interval": 60}},
        {"status": "Accepted"},
        "accepted",
    ),
    "ChangeTransactionTariff": (
        {"transactionId": "tx-1", "tariff": TARIFF},
        {"status": "Accepted"},
        "accepted",
    ),
    "ClearDERControl": ({"isDefault": True}, {"status": "Accepted"}, "accepted"),
    "ClearTariffs": ({}, {"clearTariffsResult": [{"status": "NoTariff"}]}, "answered"),
    "GetDERControl": ({"requestId": 1}, {"status": "NotFound"}, "rejected"),
    "GetPeriodicEventStream": ({}, {}, "answered"),
    "GetTariffs": ({"evseId": 1}, {"status": "NoTariff"}, "rejected"),
    "NotifyAllowedEnergyTransfer": (
        {"transactionId": "tx-1", "allowedEnergyTransfer": ["AC_single_phase"]},
        {"status": "Accepted"},
        "accepted",
    ),
    "NotifyWebPaymentStarted": ({"evseId": 1, "timeout": 60}, {}, "answered"),
    "RequestBatterySwap": ({"idToken": TOKEN, "requestId": 1}, {"status": "Accepted"}, "accepted"),
    "SetDERControl": (
        {
            "isDefault": True,
            "controlId": "c1",
            "controlType": "EnterService",
            "enterService": {
                "priority": 1,
                "highVoltage": 250,
                "lowVoltage": 200,
                "highFreq": 51,
                "lowFreq": 49,
            },
        },
        {"status": "Accepted"},
        "accepted",
    ),
    "SetDefaultTariff": ({"evseId": 0, "tariff": TARIFF}, {"status": "Accepted"}, "accepted"),
    "UpdateDynamicSchedule": (
        {"chargingProfileId": 3, "scheduleUpdate": {"limit": 10}},
        {"status": "Accepted"},
        "accepted",
    ),
    "UsePriorityCharging": (
        {"transactionId": "tx-1", "activate": True},
        {"status": "Accepted"},
        "accepted",
    ),
}
COMMANDS_21 = {**COMMANDS_201, **COMMANDS_21_ONLY}


def answers(table: dict[str, tuple[dict[str, Any], dict[str, Any], str]]) -> dict[str, Any]:
    return {action: answer for action, (_, answer, _) in table.items()}


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


def test_the_tables_cover_every_command_of_both_versions():
    assert set(COMMANDS_201) == CSMS_ACTIONS["2.0.1"]
    assert set(COMMANDS_21) == CSMS_ACTIONS["2.1"]


def journal(message_id: str) -> list[tuple[str, int, str]] | None:
    rows = list(
        Frame.objects.filter(message_id=message_id)
        .order_by("timestamp", "id")
        .values_list("direction", "kind", "action")
    )
    return rows if len(rows) == 2 else None


@pytest.mark.parametrize("action", sorted(COMMANDS_201))
async def test_every_201_command_reaches_the_charger_and_its_answer_is_recorded(
    server, charger, action
):
    payload, answer, state = COMMANDS_201[action]
    async with answering_charger(
        server.ocpp_url, charger.identity, answers(COMMANDS_201), "ocpp2.0.1"
    ) as client:
        await boot(client)
        command = await create(charger, action, payload)
        assert await client.next_call() == (action, payload)
        row = await finished(command)
    assert (row.state, row.response, row.ocpp_version) == (state, answer, "2.0.1")
    assert row.response_status == answer.get("status", "")
    assert await eventually(lambda: journal(row.message_id)) == [
        ("out", 2, action),
        ("in", 3, action),
    ]
    sent = await sync_to_async(Frame.objects.get)(message_id=row.message_id, direction="out")
    assert json.loads(sent.raw) == [2, row.message_id, action, payload]


async def test_every_21_command_reaches_the_charger_and_its_answer_is_recorded(server, charger):
    async with answering_charger(
        server.ocpp_url, charger.identity, answers(COMMANDS_21), "ocpp2.1"
    ) as client:
        await boot(client)
        outcomes = {}
        for action, (payload, _, _) in sorted(COMMANDS_21.items()):
            command = await create(charger, action, payload)
            assert await client.next_call() == (action, payload)
            row = await finished(command)
            outcomes[action] = (row.state, row.response, row.ocpp_version)
    assert outcomes == {
        action: (state, answer, "2.1") for action, (_, answer, state) in COMMANDS_21.items()
    }


# --- What answers carry ----------------------------------------------------------------------------


def attributes(charger: Any) -> dict[tuple[str, str], str]:
    return {
        (variable.key, attribute.type): attribute.value
        for variable in DeviceVariable.objects.filter(charger=charger).prefetch_related(
            "attributes"
        )
        for attribute in variable.attributes.all()
    }


async def test_get_and_set_variables_keep_the_values_in_the_device_model(server, charger):
    table = {
        "GetVariables": {
            "getVariableResult": [
                {"attributeStatus": "Accepted", "attributeValue": "300", **HEARTBEAT},
                {
                    "attributeStatus": "Accepted",
                    "attributeType": "MaxSet",
                    "attributeValue": "32",
                    **POWER,
                },
                {
                    "attributeStatus": "UnknownVariable",
                    "component": {"name": "Nope"},
                    "variable": {"name": "X"},
                },
            ]
        },
        "SetVariables": {
            "setVariableResult": [
                {"attributeStatus": "Accepted", **HEARTBEAT},
                {"attributeStatus": "Rejected", "attributeType": "MaxSet", **POWER},
            ]
        },
    }
    async with answering_charger(server.ocpp_url, charger.identity, table, "ocpp2.0.1") as client:
        await boot(client)
        got = await finished(
            await create(
                charger,
                "GetVariables",
                {
                    "getVariableData": [
                        HEARTBEAT,
                        {"attributeType": "MaxSet", **POWER},
                        {"component": {"name": "Nope"}, "variable": {"name": "X"}},
                    ]
                },
            )
        )
        assert await sync_to_async(attributes)(charger) == {
            ("OCPPCommCtrlr////HeartbeatInterval/", "Actual"): "300",
            ("EVSE//1//Power/", "MaxSet"): "32",
        }
        set_ = await finished(
            await create(
                charger,
                "SetVariables",
                {
                    "setVariableData": [
                        {"attributeValue": "120", **HEARTBEAT},
                        {"attributeValue": "16", "attributeType": "MaxSet", **POWER},
                    ]
                },
            )
        )
    assert (got.state, set_.state) == ("answered", "answered")
    # The accepted value replaces the reported one; the rejected one leaves it.
    assert await sync_to_async(attributes)(charger) == {
        ("OCPPCommCtrlr////HeartbeatInterval/", "Actual"): "120",
        ("EVSE//1//Power/", "MaxSet"): "32",
    }


async def test_a_data_transfer_with_json_data_is_recorded(server, charger):
    async with answering_charger(
        server.ocpp_url, charger.identity, answers(COMMANDS_201), "ocpp2.0.1"
    ) as client:
        await boot(client)
        await finished(await create(charger, "DataTransfer", COMMANDS_201["DataTransfer"][0]))
    record = await sync_to_async(DataTransferRecord.objects.get)(charger=charger)
    assert (record.direction, record.vendor_id, record.data, record.response_data) == (
        "out",
        "com.acme",
        '{"n":1}',
        '{"n":2}',
    )


@pytest.mark.parametrize("subprotocol", ["ocpp2.0.1", "ocpp2.1"])
async def test_a_request_start_is_linked_to_the_transaction_with_its_remote_start_id(
    server, charger, id_token, subprotocol
):
    async with answering_charger(
        server.ocpp_url,
        charger.identity,
        {"RequestStartTransaction": {"status": "Accepted"}},
        subprotocol,
    ) as client:
        await boot(client)
        payload = {"idToken": TOKEN, "remoteStartId": 4711, "evseId": 1}
        command = await create(charger, "RequestStartTransaction", payload)
        row = await finished(command)
        module = call if subprotocol == "ocpp2.0.1" else call21
        await client.call(
            module.TransactionEvent(
                event_type="Started",
                timestamp=T,
                trigger_reason="RemoteStart",
                seq_no=0,
                transaction_info={"transaction_id": "tx-remote", "remote_start_id": 4711},
                evse={"id": 1, "connector_id": 1},
                id_token={"id_token": "TAG-OK", "type": "ISO14443"},
            ),
            suppress=False,
        )
    session = await sync_to_async(Session.objects.get)(charger=charger, transaction_id="tx-remote")
    linked = await sync_to_async(Command.objects.get)(pk=command.pk)
    assert (row.state, row.remote_start_id) == ("accepted", 4711)
    assert (linked.session_id, session.remote_start_id) == (session.pk, 4711)


async def test_a_charger_that_already_started_names_the_transaction_in_its_answer(
    server, charger, id_token
):
    async with answering_charger(
        server.ocpp_url,
        charger.identity,
        {"RequestStartTransaction": {"status": "Accepted", "transactionId": "tx-early"}},
        "ocpp2.0.1",
    ) as client:
        await boot(client)
        await client.call(
            call.TransactionEvent(
                event_type="Started",
                timestamp=T,
                trigger_reason="CablePluggedIn",
                seq_no=0,
                transaction_info={"transaction_id": "tx-early"},
                evse={"id": 1, "connector_id": 1},
            ),
            suppress=False,
        )
        command = await finished(
            await create(
                charger,
                "RequestStartTransaction",
                {"idToken": TOKEN, "remoteStartId": 7, "evseId": 1},
            )
        )
    session = await sync_to_async(Session.objects.get)(charger=charger, transaction_id="tx-early")
    assert (command.state, command.session_id, session.remote_start_id) == (
        "accepted",
        session.pk,
        7,
    )


async def test_a_command_made_for_another_version_fails_when_the_charger_changed_versions(
    server, charger
):
    charger.ocpp_version = "1.6"
    await sync_to_async(charger.save)(update_fields=["ocpp_version"])
    command = await create(charger, "Reset", {"type": "Soft"}, deliver_when_offline=True)
    async with answering_charger(
        server.ocpp_url, charger.identity, answers(COMMANDS_201), "ocpp2.0.1"
    ):
        row = await finished(command)
    assert (row.state, row.error_code) == ("failed", "VersionChanged")
    assert "now speaks OCPP 2.0.1" in row.error_description
