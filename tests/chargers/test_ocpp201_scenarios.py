"""OCPP 2.0.1 CSMS test cases: the charger-initiated parts of provisioning (B), authorization
(C), transactions (E), remote start (F), availability (G), meter values (J) and firmware (L).

Each test is named after the public OCPP 2.0.1 CSMS test case it follows; the charger's frames go
through the real dispatcher and handlers, and the frames sent back are checked as the test tool
would check them, plus what the CSMS must have stored.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import override_settings

from chargers.models import (
    Charger,
    ChargerEvent,
    Connector,
    ConnectorStatusChange,
    DeviceVariable,
    DeviceVariableAttribute,
    IdToken,
    MeterSample,
    RegistrationStatus,
    Session,
    SessionState,
)
from chargers.normalize import format_datetime
from tests.chargers.stations import Station, energy, meter_value, transaction_event

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2025, 3, 1, 10, tzinfo=UTC)


def at(minutes: float) -> str:
    return format_datetime(T0 + timedelta(minutes=minutes))


@pytest.fixture
def station(charger) -> Station:
    station = Station(charger)
    assert station.boot()["status"] == "Accepted"
    return station


def token(organization, value: str, **fields) -> IdToken:
    return IdToken.objects.create(organization=organization, token=value, **fields)


def session(transaction_id: str = "tx-1") -> Session:
    return Session.objects.get(transaction_id=transaction_id)


# --- B: Provisioning -----------------------------------------------------------------------------


def test_TC_B_01_CSMS_cold_boot_charging_station_accepted(charger):
    station = Station(charger)
    reply = station.send(
        "BootNotification",
        {
            "reason": "PowerUp",
            "chargingStation": {
                "vendorName": "Acme",
                "model": "AC-22",
                "serialNumber": "SN-1",
                "firmwareVersion": "4.2",
                "modem": {"iccid": "8931", "imsi": "2040"},
            },
        },
        message_id="boot-1",
    )
    assert reply[:2] == [3, "boot-1"]
    assert set(reply[2]) == {"currentTime", "interval", "status"}
    assert (reply[2]["status"], reply[2]["interval"]) == ("Accepted", 300)
    assert reply[2]["currentTime"].endswith("Z")
    # The charger then reports the state of all its connectors.
    for evse in (1, 2):
        assert station.send(
            "StatusNotification",
            {"timestamp": at(0), "connectorStatus": "Available", "evseId": evse, "connectorId": 1},
            message_id=f"status-{evse}",
        ) == [3, f"status-{evse}", {}]
    charger.refresh_from_db()
    assert (charger.vendor, charger.model, charger.serial_number, charger.firmware_version) == (
        "Acme",
        "AC-22",
        "SN-1",
        "4.2",
    )
    assert (charger.iccid, charger.imsi) == ("8931", "2040")
    boot = ChargerEvent.objects.get(charger=charger, kind=ChargerEvent.Kind.BOOT)
    assert boot.detail["reason"] == "PowerUp"
    connectors = Connector.objects.filter(charger=charger).order_by("connector_id")
    assert [
        (c.connector_id, c.evse_id, c.evse_connector_id, c.status, c.raw_status) for c in connectors
    ] == [
        (1, 1, 1, "Available", "Available"),
        (2, 2, 1, "Available", "Available"),
    ]


@override_settings(CPMS_BOOT_RETRY_INTERVAL=45)
def test_TC_B_02_CSMS_cold_boot_charging_station_pending(make_charger):
    charger = make_charger(registration_status=RegistrationStatus.PENDING)
    station = Station(charger)
    reply = station.boot()
    assert (reply["status"], reply["interval"]) == ("Pending", 45)
    # B02.FR.09: no other message than BootNotification while Pending.
    assert station.error("Heartbeat", {})[0] == "SecurityError"
    Charger.objects.filter(pk=charger.pk).update(registration_status=RegistrationStatus.ACCEPTED)
    assert station.boot()["status"] == "Accepted"
    assert "currentTime" in station.result("Heartbeat", {})


@override_settings(CPMS_BOOT_RETRY_INTERVAL=120)
def test_TC_B_03_CSMS_cold_boot_charging_station_rejected(make_charger):
    charger = make_charger(registration_status=RegistrationStatus.REJECTED)
    station = Station(charger)
    reply = station.boot()
    assert (reply["status"], reply["interval"]) == ("Rejected", 120)
    assert (
        station.error(
            "StatusNotification",
            {"timestamp": at(0), "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
        )[0]
        == "SecurityError"
    )
    assert not Connector.objects.filter(charger=charger).exists()


def test_TC_B_30_CSMS_pending_station_sending_other_messages_gets_security_error(make_charger):
    charger = make_charger(registration_status=RegistrationStatus.PENDING)
    station = Station(charger)
    station.boot()
    code, description = station.error(
        "TransactionEvent",
        transaction_event("Started", 0, evse=1, meter_values=[meter_value(at(0), energy(100))]),
    )
    assert code == "SecurityError" and "BootNotification" in description
    assert not Session.objects.exists()


def test_TC_B_13_CSMS_full_inventory_report_builds_the_device_model(station, charger):
    part_one = {
        "requestId": 7,
        "generatedAt": at(0),
        "seqNo": 0,
        "tbc": True,
        "reportData": [
            {
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
                "variableAttribute": [
                    {"value": "300", "mutability": "ReadWrite", "persistent": True}
                ],
                "variableCharacteristics": {
                    "unit": "s",
                    "dataType": "integer",
                    "minLimit": 10,
                    "maxLimit": 86400,
                    "supportsMonitoring": False,
                },
            },
            {
                "component": {"name": "EVSE", "evse": {"id": 1}},
                "variable": {"name": "Power"},
                "variableAttribute": [
                    {"type": "Actual", "value": "0"},
                    {"type": "MaxSet", "value": "22000"},
                ],
                "variableCharacteristics": {
                    "unit": "W",
                    "dataType": "decimal",
                    "maxLimit": 22000,
                    "supportsMonitoring": True,
                },
            },
        ],
    }
    part_two = {
        "requestId": 7,
        "generatedAt": at(0),
        "seqNo": 1,
        "reportData": [
            {
                "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                "variable": {"name": "ConnectorType"},
                "variableAttribute": [
                    {"value": "cType2", "mutability": "ReadOnly", "constant": True}
                ],
                "variableCharacteristics": {
                    "dataType": "OptionList",
                    "valuesList": "cType2,sType2",
                    "supportsMonitoring": False,
                },
            },
            {
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
                "variableAttribute": [{"mutability": "WriteOnly"}],
                "variableCharacteristics": {"dataType": "string", "supportsMonitoring": False},
            },
        ],
    }
    assert station.result("NotifyReport", part_one) == {}
    assert station.result("NotifyReport", part_two) == {}
    variables = {v.key: v for v in DeviceVariable.objects.filter(charger=charger)}
    assert set(variables) == {
        "OCPPCommCtrlr////HeartbeatInterval/",
        "EVSE//1//Power/",
        "Connector//1/1/ConnectorType/",
        "SecurityCtrlr////BasicAuthPassword/",
    }
    heartbeat = variables["OCPPCommCtrlr////HeartbeatInterval/"]
    assert (heartbeat.unit, heartbeat.data_type, heartbeat.min_limit, heartbeat.max_limit) == (
        "s",
        "integer",
        Decimal(10),
        Decimal(86400),
    )
    assert heartbeat.report_request_id == 7
    actual = heartbeat.attributes.get()
    assert (actual.type, actual.value, actual.mutability, actual.persistent, actual.constant) == (
        "Actual",
        "300",
        "ReadWrite",
        True,
        False,
    )
    power = variables["EVSE//1//Power/"]
    assert power.evse_id == 1 and power.supports_monitoring is True
    assert dict(power.attributes.values_list("type", "value")) == {"Actual": "0", "MaxSet": "22000"}
    connector_type = variables["Connector//1/1/ConnectorType/"]
    assert (connector_type.connector_id, connector_type.values_list) == (1, "cType2,sType2")
    password = variables["SecurityCtrlr////BasicAuthPassword/"].attributes.get()
    assert (password.has_value, password.mutability) == (False, "WriteOnly")
    reports = ChargerEvent.objects.filter(
        charger=charger, kind=ChargerEvent.Kind.DEVICE_REPORT
    ).order_by("id")
    assert [(r.status, r.request_id, r.detail["variables"]) for r in reports] == [
        ("ToBeContinued", 7, 2),
        ("Complete", 7, 2),
    ]
    # A later report updates what changed and keeps the rest.
    part_one["reportData"][0]["variableAttribute"][0]["value"] = "120"
    station.result("NotifyReport", {**part_one, "requestId": 8, "tbc": False})
    assert DeviceVariableAttribute.objects.get(variable=heartbeat).value == "120"
    assert DeviceVariable.objects.filter(charger=charger).count() == 4


# --- C: Authorization ----------------------------------------------------------------------------


def test_TC_C_02_CSMS_local_start_authorization_invalid_or_unknown(station, organization):
    token(organization, "TAG-INVALID", status="Invalid")
    assert station.result(
        "Authorize", {"idToken": {"idToken": "TAG-NOBODY", "type": "ISO14443"}}
    ) == {"idTokenInfo": {"status": "Unknown"}}
    assert station.result(
        "Authorize", {"idToken": {"idToken": "TAG-INVALID", "type": "ISO14443"}}
    ) == {"idTokenInfo": {"status": "Invalid"}}


def test_TC_C_06_CSMS_local_start_authorization_blocked(station, organization):
    token(organization, "TAG-BLOCKED", status="Blocked")
    reply = station.result("Authorize", {"idToken": {"idToken": "TAG-BLOCKED", "type": "ISO14443"}})
    assert reply == {"idTokenInfo": {"status": "Blocked"}}


def test_TC_C_07_CSMS_local_start_authorization_expired(station, organization):
    token(organization, "TAG-OLD", expires_at=T0 - timedelta(days=1))
    reply = station.result("Authorize", {"idToken": {"idToken": "TAG-OLD", "type": "ISO14443"}})
    assert reply == {
        "idTokenInfo": {
            "status": "Expired",
            "cacheExpiryDateTime": format_datetime(T0 - timedelta(days=1)),
        }
    }


def test_TC_C_08_CSMS_authorization_through_cache_accepted(station, organization):
    expiry = datetime(2099, 1, 1, tzinfo=UTC)
    token(organization, "TAG-CACHED", expires_at=expiry)
    # The charger authorized from its cache: the first the CSMS hears is the transaction.
    reply = station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            id_token="TAG-CACHED",
            charging_state="Charging",
            meter_values=[meter_value(at(0), energy(100, "Transaction.Begin"))],
        ),
    )
    assert reply == {
        "idTokenInfo": {"status": "Accepted", "cacheExpiryDateTime": format_datetime(expiry)}
    }
    assert (session().id_tag, session().auth_status) == ("TAG-CACHED", "Accepted")


def test_TC_C_39_CSMS_authorization_by_group_id(station, organization):
    token(organization, "FLEET-GROUP", type="Central")
    token(organization, "TAG-MEMBER", group_token="FLEET-GROUP")
    reply = station.result("Authorize", {"idToken": {"idToken": "tag-member", "type": "ISO14443"}})
    # idTokens are case insensitive in 2.x.
    assert reply == {
        "idTokenInfo": {
            "status": "Accepted",
            "groupIdToken": {"idToken": "FLEET-GROUP", "type": "Central"},
        }
    }


def test_TC_C_49_CSMS_stop_transaction_with_a_master_pass_without_ui(station, organization):
    token(organization, "TAG-A")
    token(organization, "TAG-B")
    token(organization, "MASTER", group_token="MasterPassGroup")
    for evse, tag in ((1, "TAG-A"), (2, "TAG-B")):
        station.result(
            "TransactionEvent",
            transaction_event(
                "Started",
                0,
                transaction_id=f"tx-{evse}",
                evse=evse,
                id_token=tag,
                charging_state="Charging",
                meter_values=[meter_value(at(0), energy(1000 * evse, "Transaction.Begin"))],
            ),
        )
    assert (
        station.result("Authorize", {"idToken": {"idToken": "MASTER", "type": "ISO14443"}})[
            "idTokenInfo"
        ]["groupIdToken"]["idToken"]
        == "MasterPassGroup"
    )
    for evse in (1, 2):
        reply = station.result(
            "TransactionEvent",
            transaction_event(
                "Ended",
                1,
                transaction_id=f"tx-{evse}",
                timestamp=at(20),
                trigger="StopAuthorized",
                id_token="MASTER",
                stopped_reason="MasterPass",
                meter_values=[meter_value(at(20), energy(1000 * evse + 500, "Transaction.End"))],
            ),
        )
        assert reply["idTokenInfo"]["status"] == "Accepted"
    for evse, tag in ((1, "TAG-A"), (2, "TAG-B")):
        ended = session(f"tx-{evse}")
        assert (
            ended.state,
            ended.stop_reason,
            ended.id_tag,
            ended.stop_id_tag,
            ended.energy_wh,
        ) == (SessionState.COMPLETED, "MasterPass", tag, "MASTER", Decimal(500))


# --- E: Transactions -----------------------------------------------------------------------------


def test_TC_E_01_CSMS_start_transaction_options_power_path_closed(station, id_token):
    reply = station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            trigger="ChargingStateChanged",
            id_token="TAG-OK",
            charging_state="Charging",
            meter_values=[meter_value(at(0), energy(2000, "Transaction.Begin"))],
        ),
    )
    assert reply == {"idTokenInfo": {"status": "Accepted"}}
    started = session()
    assert (
        started.state,
        started.connector_number,
        started.evse_id,
        started.meter_start_wh,
        started.started_at,
    ) == (SessionState.ACTIVE, 1, 1, Decimal(2000), T0)
    assert started.ocpp_version == "2.0.1" and started.transaction_id == "tx-1"


def test_TC_E_02_CSMS_start_transaction_options_energy_transfer(station, id_token):
    station.result(
        "StatusNotification",
        {"timestamp": at(0), "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            trigger="ChargingStateChanged",
            id_token="TAG-OK",
            charging_state="Charging",
        ),
    )
    # The occupied connector shows what 1.6 would say: Charging; the raw 2.x value is kept.
    connector = Connector.objects.get(connector_id=1)
    assert (connector.status, connector.raw_status) == ("Charging", "Occupied")


def test_TC_E_03_CSMS_local_start_cable_plugin_first(station, id_token):
    station.result(
        "StatusNotification",
        {"timestamp": at(0), "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
    )
    assert (
        station.result(
            "TransactionEvent",
            transaction_event(
                "Started",
                0,
                evse=1,
                trigger="CablePluggedIn",
                charging_state="EVConnected",
                meter_values=[meter_value(at(0), energy(500, "Transaction.Begin"))],
            ),
        )
        == {}
    )
    assert Connector.objects.get(connector_id=1).status == "Preparing"
    assert session().id_tag == ""
    # The idToken arrives in a later event.
    reply = station.result(
        "TransactionEvent",
        transaction_event(
            "Updated",
            1,
            timestamp=at(1),
            trigger="Authorized",
            id_token="TAG-OK",
            charging_state="Charging",
        ),
    )
    assert reply == {"idTokenInfo": {"status": "Accepted"}}
    assert (session().id_tag, session().auth_status, session().id_token_id) == (
        "TAG-OK",
        "Accepted",
        id_token.pk,
    )
    assert Connector.objects.get(connector_id=1).status == "Charging"


def test_TC_E_04_CSMS_local_start_authorization_first(station, id_token):
    assert (
        station.result("Authorize", {"idToken": {"idToken": "TAG-OK", "type": "ISO14443"}})[
            "idTokenInfo"
        ]["status"]
        == "Accepted"
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started", 0, evse=1, trigger="Authorized", id_token="TAG-OK", charging_state="Idle"
        ),
    )
    station.result(
        "StatusNotification",
        {"timestamp": at(1), "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
    )
    assert Connector.objects.get(connector_id=1).status == "Preparing"
    station.result(
        "TransactionEvent",
        transaction_event(
            "Updated", 1, timestamp=at(1), trigger="CablePluggedIn", charging_state="EVConnected"
        ),
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Updated", 2, timestamp=at(2), trigger="ChargingStateChanged", charging_state="Charging"
        ),
    )
    history = list(
        ConnectorStatusChange.objects.filter(connector__connector_id=1)
        .order_by("timestamp", "id")
        .values_list("status", flat=True)
    )
    assert history[-1] == "Charging" and "Preparing" in history


def test_TC_E_07_CSMS_stop_transaction_options_local_stop(station, id_token):
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            id_token="TAG-OK",
            charging_state="Charging",
            meter_values=[meter_value(at(0), energy(1000, "Transaction.Begin"))],
        ),
    )
    station.result(
        "StatusNotification",
        {"timestamp": at(0), "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
    )
    reply = station.result(
        "TransactionEvent",
        transaction_event(
            "Ended",
            1,
            timestamp=at(40),
            trigger="StopAuthorized",
            id_token="TAG-OK",
            charging_state="EVConnected",
            stopped_reason="Local",
            meter_values=[meter_value(at(40), energy(8400, "Transaction.End"))],
        ),
    )
    assert reply == {"idTokenInfo": {"status": "Accepted"}}
    ended = session()
    assert (
        ended.state,
        ended.stopped_at,
        ended.stop_reason,
        ended.meter_stop_wh,
        ended.energy_wh,
        ended.stop_id_tag,
    ) == (
        SessionState.COMPLETED,
        T0 + timedelta(minutes=40),
        "Local",
        Decimal(8400),
        Decimal(7400),
        "TAG-OK",
    )
    # Cable still in after the transaction: Finishing, as 1.6 would say.
    assert Connector.objects.get(connector_id=1).status == "Finishing"
    station.result(
        "StatusNotification",
        {"timestamp": at(41), "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
    )
    assert Connector.objects.get(connector_id=1).status == "Available"


def test_TC_E_11_CSMS_start_transaction_options_data_signed(station, id_token):
    signed = {
        "signedMeterData": "QmFzZTY0IHNpZ25lZA==",
        "signingMethod": "ECDSA-secp256r1-SHA256",
        "encodingMethod": "OCMF",
        "publicKey": "MFkwEwYH",
    }
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            trigger="SignedDataReceived",
            id_token="TAG-OK",
            meter_values=[
                meter_value(at(0), energy(1000, "Transaction.Begin", signedMeterValue=signed))
            ],
        ),
    )
    sample = MeterSample.objects.get(session=session())
    assert sample.value == Decimal(1000)
    assert json.loads(sample.signed_data) == signed
    assert sample.signed_data == json.dumps(signed, separators=(",", ":"))


def test_TC_E_14_CSMS_stop_transaction_options_ev_disconnected(station, id_token):
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            id_token="TAG-OK",
            charging_state="Charging",
            meter_values=[meter_value(at(0), energy(0, "Transaction.Begin"))],
        ),
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Ended",
            1,
            timestamp=at(10),
            trigger="EVCommunicationLost",
            charging_state="Idle",
            stopped_reason="EVDisconnected",
            meter_values=[meter_value(at(10), energy(1500, "Transaction.End"))],
        ),
    )
    assert (session().stop_reason, session().energy_wh, session().stop_id_tag) == (
        "EVDisconnected",
        Decimal(1500),
        "",
    )


def test_TC_E_16_CSMS_stop_transaction_options_deauthorized_invalid_id_token(station, organization):
    token(organization, "TAG-BAD", status="Invalid")
    reply = station.result(
        "TransactionEvent",
        transaction_event("Started", 0, evse=1, id_token="TAG-BAD", charging_state="EVConnected"),
    )
    assert reply == {"idTokenInfo": {"status": "Invalid"}}
    station.result(
        "TransactionEvent",
        transaction_event(
            "Ended",
            1,
            timestamp=at(0.2),
            trigger="Deauthorized",
            charging_state="EVConnected",
            stopped_reason="DeAuthorized",
        ),
    )
    ended = session()
    assert (ended.auth_status, ended.stop_reason, ended.state, ended.energy_wh) == (
        "Invalid",
        "DeAuthorized",
        SessionState.COMPLETED,
        0,
    )


def test_TC_E_21_CSMS_stop_transaction_options_remote(station, id_token):
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            id_token="TAG-OK",
            charging_state="Charging",
            meter_values=[meter_value(at(0), energy(100, "Transaction.Begin"))],
        ),
    )
    assert (
        station.result(
            "TransactionEvent",
            transaction_event(
                "Ended",
                1,
                timestamp=at(5),
                trigger="RemoteStop",
                stopped_reason="Remote",
                meter_values=[meter_value(at(5), energy(600, "Transaction.End"))],
            ),
        )
        == {}
    )
    assert (session().stop_reason, session().energy_wh) == ("Remote", Decimal(500))


def test_TC_E_39_CSMS_stop_transaction_options_deauthorized_timeout(station, id_token):
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            id_token="TAG-OK",
            charging_state="Idle",
            meter_values=[meter_value(at(0), energy(100, "Transaction.Begin"))],
        ),
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Ended",
            1,
            timestamp=at(1),
            trigger="EVConnectTimeout",
            stopped_reason="Timeout",
            meter_values=[meter_value(at(1), energy(100, "Transaction.End"))],
        ),
    )
    assert (session().stop_reason, session().energy_wh, session().state) == (
        "Timeout",
        0,
        SessionState.COMPLETED,
    )


def test_TC_E_53_CSMS_seq_no_restarts_at_zero_for_every_transaction(station, id_token):
    for number in (1, 2):
        start = (number - 1) * 60
        station.result(
            "TransactionEvent",
            transaction_event(
                "Started",
                0,
                transaction_id=f"tx-{number}",
                timestamp=at(start),
                evse=1,
                id_token="TAG-OK",
                meter_values=[meter_value(at(start), energy(1000 * number, "Transaction.Begin"))],
            ),
        )
        station.result(
            "TransactionEvent",
            transaction_event(
                "Ended",
                1,
                transaction_id=f"tx-{number}",
                timestamp=at(start + 30),
                trigger="StopAuthorized",
                stopped_reason="Local",
                meter_values=[
                    meter_value(at(start + 30), energy(1000 * number + 250, "Transaction.End"))
                ],
            ),
        )
    sessions = Session.objects.order_by("started_at")
    assert [(s.transaction_id, s.state, s.energy_wh) for s in sessions] == [
        ("tx-1", SessionState.COMPLETED, Decimal(250)),
        ("tx-2", SessionState.COMPLETED, Decimal(250)),
    ]
    assert sorted(s.transaction_events.count() for s in sessions) == [2, 2]


# --- F: Remote start (the charger's part) --------------------------------------------------------


def test_TC_F_02_CSMS_remote_start_first_keeps_the_remote_start_id(station, id_token):
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            trigger="RemoteStart",
            id_token="TAG-OK",
            charging_state="EVConnected",
            remoteStartId=424242,
        ),
    )
    assert session().remote_start_id == 424242
    # It stays with the session, also when later events leave it out.
    station.result(
        "TransactionEvent",
        transaction_event(
            "Updated", 1, timestamp=at(1), trigger="ChargingStateChanged", charging_state="Charging"
        ),
    )
    assert session().remote_start_id == 424242


# --- G: Availability -----------------------------------------------------------------------------


def test_TC_G_03_CSMS_change_availability_evse_operative_to_inoperative(station):
    station.result(
        "StatusNotification",
        {"timestamp": at(0), "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
    )
    station.result(
        "StatusNotification",
        {"timestamp": at(1), "connectorStatus": "Unavailable", "evseId": 1, "connectorId": 1},
    )
    connector = Connector.objects.get(connector_id=1)
    assert (connector.status, connector.raw_status, connector.status_at) == (
        "Unavailable",
        "Unavailable",
        T0 + timedelta(minutes=1),
    )


def test_TC_G_04_CSMS_change_availability_evse_inoperative_to_operative(station):
    station.result(
        "StatusNotification",
        {"timestamp": at(0), "connectorStatus": "Unavailable", "evseId": 2, "connectorId": 1},
    )
    station.result(
        "StatusNotification",
        {"timestamp": at(1), "connectorStatus": "Available", "evseId": 2, "connectorId": 1},
    )
    assert Connector.objects.get(connector_id=2).status == "Available"
    assert list(
        ConnectorStatusChange.objects.filter(connector__connector_id=2)
        .order_by("timestamp")
        .values_list("status", flat=True)
    ) == ["Unavailable", "Available"]


def test_TC_G_05_CSMS_change_availability_charging_station_to_inoperative(station):
    # Two EVSEs, the second with two connectors: each connector gets its own number.
    for evse, connector in ((1, 1), (2, 1), (2, 2)):
        station.result(
            "StatusNotification",
            {
                "timestamp": at(1),
                "connectorStatus": "Unavailable",
                "evseId": evse,
                "connectorId": connector,
            },
        )
    connectors = Connector.objects.order_by("connector_id")
    assert [(c.connector_id, c.evse_id, c.evse_connector_id, c.status) for c in connectors] == [
        (1, 1, 1, "Unavailable"),
        (2, 2, 1, "Unavailable"),
        (1002, 2, 2, "Unavailable"),
    ]


def test_TC_G_20_CSMS_connector_status_notification_lock_failure(station, charger):
    reply = station.result(
        "NotifyEvent",
        {
            "generatedAt": at(0),
            "seqNo": 0,
            "eventData": [
                {
                    "eventId": 11,
                    "timestamp": at(0),
                    "trigger": "Delta",
                    "actualValue": "true",
                    "eventNotificationType": "HardWiredNotification",
                    "component": {
                        "name": "ConnectorPlugRetentionLock",
                        "evse": {"id": 1, "connectorId": 1},
                    },
                    "variable": {"name": "Problem"},
                    "techCode": "LockFail",
                },
                {
                    "eventId": 12,
                    "timestamp": at(0),
                    "trigger": "Delta",
                    "actualValue": "Faulted",
                    "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                    "variable": {"name": "AvailabilityState"},
                },
            ],
        },
    )
    assert reply == {}
    problem = ChargerEvent.objects.get(
        charger=charger, kind=ChargerEvent.Kind.DEVICE_EVENT, detail__eventId=11
    )
    assert (problem.status, problem.detail["component"]["name"], problem.detail["techCode"]) == (
        "true",
        "ConnectorPlugRetentionLock",
        "LockFail",
    )
    # Availability reported as an event moves the connector's status too.
    assert Connector.objects.get(connector_id=1).status == "Faulted"


# --- J: Meter values -----------------------------------------------------------------------------


def test_TC_J_01_CSMS_clock_aligned_meter_values_no_transaction(station, charger):
    reply = station.result(
        "MeterValues",
        {
            "evseId": 1,
            "meterValue": [
                meter_value(
                    at(15),
                    energy(12.345, "Sample.Clock", unit="kWh"),
                    {
                        "value": 230.1,
                        "measurand": "Voltage",
                        "phase": "L1-N",
                        "context": "Sample.Clock",
                        "unitOfMeasure": {"unit": "V"},
                    },
                )
            ],
        },
    )
    assert reply == {}
    samples = {s.measurand: s for s in MeterSample.objects.filter(charger=charger)}
    assert samples["Energy.Active.Import.Register"].value == Decimal(12345)
    assert samples["Energy.Active.Import.Register"].session is None
    assert (samples["Voltage"].value, samples["Voltage"].phase, samples["Voltage"].unit) == (
        Decimal("230.1"),
        "L1-N",
        "V",
    )
    assert all(s.context == "Sample.Clock" and s.connector_number == 1 for s in samples.values())


def test_TC_J_02_CSMS_clock_aligned_meter_values_transaction_ongoing(station, id_token):
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            id_token="TAG-OK",
            meter_values=[meter_value(at(0), energy(100, "Transaction.Begin"))],
        ),
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Updated",
            1,
            timestamp=at(15),
            trigger="MeterValueClock",
            meter_values=[meter_value(at(15), energy(2100, "Sample.Clock"))],
        ),
    )
    assert session().energy_wh == Decimal(2000)
    assert session().meter_samples.filter(context="Sample.Clock").count() == 1


def test_TC_J_03_CSMS_clock_aligned_meter_values_event_type_ended(station, id_token):
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            id_token="TAG-OK",
            meter_values=[meter_value(at(0), energy(100, "Transaction.Begin"))],
        ),
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Ended",
            1,
            timestamp=at(30),
            trigger="StopAuthorized",
            stopped_reason="Local",
            meter_values=[
                meter_value(at(15), energy(1100, "Sample.Clock")),
                meter_value(at(30), energy(2100, "Transaction.End")),
            ],
        ),
    )
    ended = session()
    assert (ended.meter_stop_wh, ended.energy_wh) == (Decimal(2100), Decimal(2000))
    assert sorted(ended.meter_samples.values_list("context", flat=True)) == [
        "Sample.Clock",
        "Transaction.Begin",
        "Transaction.End",
    ]


def test_TC_J_04_CSMS_clock_aligned_meter_values_signed(station, charger):
    signed = {
        "signedMeterData": "T0NNRnx7Li4ufQ==",
        "signingMethod": "",
        "encodingMethod": "OCMF",
        "publicKey": "",
    }
    station.result(
        "MeterValues",
        {
            "evseId": 1,
            "meterValue": [
                meter_value(at(15), energy(5000, "Sample.Clock", signedMeterValue=signed))
            ],
        },
    )
    sample = MeterSample.objects.get(charger=charger)
    assert (sample.value, json.loads(sample.signed_data)) == (Decimal(5000), signed)


def test_TC_J_07_CSMS_sampled_meter_values_event_type_started_evse_known(station, id_token):
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            id_token="TAG-OK",
            meter_values=[
                meter_value(
                    at(0),
                    energy(7.5, "Transaction.Begin", unit="kWh"),
                    {
                        "value": 0,
                        "measurand": "Power.Active.Import",
                        "context": "Transaction.Begin",
                        "unitOfMeasure": {"unit": "W"},
                    },
                )
            ],
        ),
    )
    started = session()
    assert started.meter_start_wh == Decimal(7500)
    assert started.meter_samples.count() == 2


def test_TC_J_08_CSMS_sampled_meter_values_transaction_begin_evse_not_known(station, id_token):
    # Authorized before an EVSE was chosen: the Started event names no EVSE.
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            id_token="TAG-OK",
            charging_state="Idle",
            meter_values=[meter_value(at(0), energy(300, "Transaction.Begin"))],
        ),
    )
    assert (session().connector_number, session().connector_id) == (0, None)
    station.result(
        "TransactionEvent",
        transaction_event(
            "Updated",
            1,
            timestamp=at(1),
            trigger="CablePluggedIn",
            evse=2,
            charging_state="EVConnected",
        ),
    )
    placed = session()
    assert (placed.connector_number, placed.evse_id, placed.connector.evse_id) == (2, 2, 2)


def test_TC_J_09_CSMS_sampled_meter_values_event_type_updated(station, id_token):
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            id_token="TAG-OK",
            meter_values=[meter_value(at(0), energy(0, "Transaction.Begin"))],
        ),
    )
    for seq_no, minutes in enumerate((5, 10, 15), start=1):
        station.result(
            "TransactionEvent",
            transaction_event(
                "Updated",
                seq_no,
                timestamp=at(minutes),
                trigger="MeterValuePeriodic",
                meter_values=[
                    meter_value(
                        at(minutes),
                        energy(minutes * 100),
                        {
                            "value": 7.2,
                            "measurand": "Power.Active.Import",
                            "unitOfMeasure": {"unit": "kW"},
                        },
                    )
                ],
            ),
        )
    assert session().energy_wh == Decimal(1500)
    assert set(
        session()
        .meter_samples.filter(measurand="Power.Active.Import")
        .values_list("value", flat=True)
    ) == {Decimal(7200)}


def test_TC_J_10_CSMS_sampled_meter_values_event_type_ended(station, id_token):
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            id_token="TAG-OK",
            meter_values=[
                meter_value(at(0), energy(10, "Transaction.Begin", unit="Wh", multiplier=3))
            ],
        ),
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Ended",
            1,
            timestamp=at(60),
            trigger="StopAuthorized",
            stopped_reason="Local",
            meter_values=[
                meter_value(at(60), energy(21.25, "Transaction.End", unit="Wh", multiplier=3))
            ],
        ),
    )
    ended = session()
    assert (ended.meter_start_wh, ended.meter_stop_wh, ended.energy_wh) == (
        Decimal(10000),
        Decimal(21250),
        Decimal(11250),
    )
    end_sample = ended.meter_samples.get(context="Transaction.End")
    assert (end_sample.raw_value, end_sample.raw_unit) == ("21.25E3", "Wh")


def test_TC_J_11_CSMS_sampled_meter_values_signed(station, id_token):
    signed = {
        "signedMeterData": "c2lnbmVk",
        "signingMethod": "ECDSA",
        "encodingMethod": "EDL",
        "publicKey": "a2V5",
    }
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            id_token="TAG-OK",
            meter_values=[
                meter_value(at(0), energy(100, "Transaction.Begin", signedMeterValue=signed))
            ],
        ),
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Updated",
            1,
            timestamp=at(5),
            trigger="MeterValuePeriodic",
            meter_values=[
                meter_value(
                    at(5), energy(600, signedMeterValue={**signed, "signedMeterData": "b3RoZXI="})
                )
            ],
        ),
    )
    data = sorted(
        json.loads(s)["signedMeterData"]
        for s in session().meter_samples.values_list("signed_data", flat=True)
    )
    assert data == ["b3RoZXI=", "c2lnbmVk"]
    assert session().energy_wh == Decimal(500)


# --- L: Firmware management ----------------------------------------------------------------------


def firmware_statuses(charger) -> list[tuple[str, int | None]]:
    return list(
        ChargerEvent.objects.filter(charger=charger, kind=ChargerEvent.Kind.FIRMWARE)
        .order_by("id")
        .values_list("status", "request_id")
    )


def test_TC_L_01_CSMS_secure_firmware_update_installation_successful(station, charger):
    for status in (
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "InstallRebooting",
    ):
        assert (
            station.result("FirmwareStatusNotification", {"status": status, "requestId": 31}) == {}
        )
    # The charger reboots into the new firmware and says so.
    assert station.boot(reason="FirmwareUpdate", firmwareVersion="5.0.0")["status"] == "Accepted"
    station.result("FirmwareStatusNotification", {"status": "Installed", "requestId": 31})
    assert firmware_statuses(charger) == [
        (status, 31)
        for status in (
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "Installing",
            "InstallRebooting",
            "Installed",
        )
    ]
    charger.refresh_from_db()
    assert (charger.firmware_status, charger.firmware_version) == ("Installed", "5.0.0")
    assert ChargerEvent.objects.filter(
        charger=charger, kind=ChargerEvent.Kind.BOOT, detail__reason="FirmwareUpdate"
    ).exists()


def test_TC_L_02_CSMS_secure_firmware_update_install_scheduled(station, charger):
    for status in ("Downloading", "Downloaded", "SignatureVerified", "InstallScheduled"):
        station.result("FirmwareStatusNotification", {"status": status, "requestId": 32})
    charger.refresh_from_db()
    assert charger.firmware_status == "InstallScheduled"


def test_TC_L_03_CSMS_secure_firmware_update_download_scheduled(station, charger):
    station.result("FirmwareStatusNotification", {"status": "DownloadScheduled", "requestId": 33})
    assert firmware_statuses(charger) == [("DownloadScheduled", 33)]


def test_TC_L_05_CSMS_secure_firmware_update_invalid_certificate(station, charger):
    assert (
        station.result(
            "SecurityEventNotification",
            {
                "type": "InvalidFirmwareSigningCertificate",
                "timestamp": at(0),
                "techInfo": "chain does not verify",
            },
        )
        == {}
    )
    event = ChargerEvent.objects.get(charger=charger, kind=ChargerEvent.Kind.SECURITY)
    assert (event.status, event.timestamp, event.detail["tech_info"]) == (
        "InvalidFirmwareSigningCertificate",
        T0,
        "chain does not verify",
    )


def test_TC_L_06_CSMS_secure_firmware_update_invalid_signature(station, charger):
    station.result("FirmwareStatusNotification", {"status": "Downloading", "requestId": 36})
    station.result("FirmwareStatusNotification", {"status": "Downloaded", "requestId": 36})
    station.result("FirmwareStatusNotification", {"status": "InvalidSignature", "requestId": 36})
    station.result(
        "SecurityEventNotification", {"type": "InvalidFirmwareSignature", "timestamp": at(1)}
    )
    charger.refresh_from_db()
    assert charger.firmware_status == "InvalidSignature"
    assert ChargerEvent.objects.filter(
        charger=charger, kind=ChargerEvent.Kind.SECURITY, status="InvalidFirmwareSignature"
    ).exists()


@pytest.mark.parametrize(
    ("case", "final"),
    [
        ("TC_L_07_CSMS", "DownloadFailed"),
        ("TC_L_08_CSMS", "InstallVerificationFailed"),
        ("TC_L_09_CSMS", "InstallationFailed"),
    ],
)
def test_TC_L_07_08_09_CSMS_secure_firmware_update_failures(station, charger, case, final):
    station.result("FirmwareStatusNotification", {"status": "Downloading", "requestId": 40})
    station.result("FirmwareStatusNotification", {"status": final, "requestId": 40})
    charger.refresh_from_db()
    assert charger.firmware_status == final, case
    assert firmware_statuses(charger)[-1] == (final, 40)
