"""OCPP 2.1: every charger-initiated message is accepted, validated against the 2.1 schemas and
answered with a schema-valid reply; those 2.1 shares with 2.0.1 land in the normalized model."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from ocpp.messages import get_validator
from ocpp.v21.enums import Action

from chargers import protocol
from chargers.models import ChargerEvent, Connector, EVChargingNeeds, IdToken, Session, SessionState
from chargers.ocpp21 import SEND
from tests.chargers.stations import Station, energy, meter_value, transaction_event

pytestmark = pytest.mark.django_db(transaction=True)

T = "2025-03-01T10:00:00Z"
HASH = {
    "hashAlgorithm": "SHA256",
    "issuerNameHash": "aa",
    "issuerKeyHash": "bb",
    "serialNumber": "01",
}
SCHEDULE = {
    "id": 1,
    "chargingRateUnit": "W",
    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}],
}

# One valid request for every message a 2.1 charger sends to the CSMS.
CHARGER_INITIATED: dict[str, dict[str, Any]] = {
    "Authorize": {"idToken": {"idToken": "TAG-OK", "type": "ISO14443"}},
    "BatterySwap": {
        "eventType": "BatteryIn",
        "requestId": 1,
        "idToken": {"idToken": "TAG-OK", "type": "ISO14443"},
        "batteryData": [{"evseId": 1, "serialNumber": "BAT-1", "soC": 80, "soH": 97.5}],
    },
    "BootNotification": {
        "reason": "PowerUp",
        "chargingStation": {"vendorName": "Acme", "model": "AC-22"},
    },
    "ClearedChargingLimit": {"chargingLimitSource": "EMS", "evseId": 1},
    "ClosePeriodicEventStream": {"id": 4},
    "DataTransfer": {"vendorId": "com.unknown", "data": [1, 2]},
    "FirmwareStatusNotification": {"status": "Installed", "requestId": 2},
    "Get15118EVCertificate": {
        "iso15118SchemaVersion": "urn:iso:std:iso:15118:-20:CommonMessages",
        "action": "Install",
        "exiRequest": "gAQ=",
    },
    "GetCertificateChainStatus": {
        "certificateStatusRequests": [
            {"certificateHashData": HASH, "source": "OCSP", "urls": ["http://ocsp.example"]}
        ]
    },
    "GetCertificateStatus": {"ocspRequestData": {**HASH, "responderURL": "http://ocsp.example"}},
    "Heartbeat": {},
    "LogStatusNotification": {"status": "Uploading", "requestId": 3},
    "MeterValues": {
        "evseId": 1,
        "meterValue": [meter_value(T, energy(1.5, "Sample.Clock", unit="kWh"))],
    },
    "NotifyChargingLimit": {
        "evseId": 1,
        "chargingLimit": {"chargingLimitSource": "SO", "isGridCritical": False},
        "chargingSchedule": [SCHEDULE],
    },
    "NotifyCustomerInformation": {"data": "none", "seqNo": 0, "generatedAt": T, "requestId": 5},
    "NotifyDERAlarm": {
        "controlType": "FreqDroop",
        "gridEventFault": "OverFrequency",
        "timestamp": T,
    },
    "NotifyDERStartStop": {"controlId": "c-1", "started": True, "timestamp": T},
    "NotifyDisplayMessages": {"requestId": 6},
    "NotifyEVChargingNeeds": {
        "evseId": 1,
        "chargingNeeds": {
            "requestedEnergyTransfer": "AC_three_phase",
            "acChargingParameters": {
                "energyAmount": 20000,
                "evMinCurrent": 6,
                "evMaxCurrent": 32,
                "evMaxVoltage": 400,
            },
        },
    },
    "NotifyEVChargingSchedule": {"timeBase": T, "evseId": 1, "chargingSchedule": SCHEDULE},
    "NotifyEvent": {
        "generatedAt": T,
        "seqNo": 0,
        "eventData": [
            {
                "eventId": 1,
                "timestamp": T,
                "trigger": "Delta",
                "actualValue": "Occupied",
                "eventNotificationType": "HardWiredNotification",
                "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                "variable": {"name": "AvailabilityState"},
            }
        ],
    },
    "NotifyMonitoringReport": {"requestId": 7, "seqNo": 0, "generatedAt": T},
    "NotifyPriorityCharging": {"transactionId": "tx-p", "activated": True},
    "NotifyReport": {
        "requestId": 8,
        "generatedAt": T,
        "seqNo": 0,
        "reportData": [
            {
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
                "variableAttribute": [{"value": "60"}],
            }
        ],
    },
    "NotifySettlement": {
        "pspRef": "psp-9",
        "status": "Settled",
        "settlementAmount": 12.34,
        "settlementTime": T,
        "transactionId": "tx-p",
    },
    "OpenPeriodicEventStream": {
        "constantStreamData": {"id": 4, "variableMonitoringId": 2, "params": {"interval": 10}}
    },
    "PublishFirmwareStatusNotification": {"status": "Downloading", "requestId": 9},
    "PullDynamicScheduleUpdate": {"chargingProfileId": 12},
    "ReportChargingProfiles": {
        "requestId": 10,
        "chargingLimitSource": "CSO",
        "evseId": 0,
        "chargingProfile": [
            {
                "id": 1,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": [SCHEDULE],
            }
        ],
    },
    "ReportDERControl": {"requestId": 11},
    "ReservationStatusUpdate": {"reservationId": 3, "reservationUpdateStatus": "NoTransaction"},
    "SecurityEventNotification": {"type": "StartupOfTheDevice", "timestamp": T},
    "SignCertificate": {"csr": "CSR", "certificateType": "V2G20Certificate"},
    "StatusNotification": {
        "timestamp": T,
        "connectorStatus": "Available",
        "evseId": 1,
        "connectorId": 1,
    },
    "TransactionEvent": transaction_event(
        "Started", 0, evse=1, id_token="TAG-OK", charging_state="Charging"
    ),
    "VatNumberValidation": {"vatNumber": "NL123456789B01", "evseId": 1},
}
# Sent as SEND (6): no answer.
CHARGER_SENDS = {
    "NotifyPeriodicEventStream": {
        "id": 4,
        "pending": 0,
        "basetime": T,
        "data": [{"t": 0, "v": "230.1"}, {"t": 10, "v": "229.8"}],
    }
}


@pytest.fixture
def station(charger) -> Station:
    station = Station(charger, "2.1")
    station.boot()
    return station


def test_the_21_endpoint_handles_exactly_the_charger_initiated_messages(station):
    handled = {
        action
        for action, handlers in station.dispatcher.route_map.items()
        if "_on_action" in handlers
    }
    assert handled == set(CHARGER_INITIATED) | set(CHARGER_SENDS)
    # Everything else 2.1 knows is sent by the CSMS only.
    assert set(CHARGER_INITIATED) <= {a.value for a in Action}


@pytest.mark.parametrize("action", sorted(CHARGER_INITIATED))
def test_every_21_message_is_validated_and_answered_schema_valid(station, id_token, action):
    payload = CHARGER_INITIATED[action]
    get_validator(protocol.CALL, action, "2.1").validate(payload)
    result = station.result(action, payload)
    get_validator(protocol.CALLRESULT, action, "2.1").validate(result)


@pytest.mark.parametrize("action", sorted(CHARGER_INITIATED))
def test_every_21_message_breaking_its_schema_gets_a_callerror(station, action):
    code, description = station.error(action, {**CHARGER_INITIATED[action], "notInTheSchema": 1})
    assert code == "FormatViolation" and "notInTheSchema" in description


def test_21_transactions_map_to_the_same_sessions(station, id_token):
    station.result(
        "StatusNotification",
        {"timestamp": T, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
    )
    reply = station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            id_token="TAG-OK",
            charging_state="Charging",
            meter_values=[meter_value(T, energy(10, "Transaction.Begin", unit="kWh"))],
            costDetails={
                "totalCost": {
                    "currency": "EUR",
                    "typeOfCost": "NormalCost",
                    "total": {"inclTax": 0},
                },
                "totalUsage": {"energy": 0, "chargingTime": 0, "idleTime": 0},
            },
            preconditioningStatus="Ready",
        ),
    )
    assert reply == {"idTokenInfo": {"status": "Accepted"}}
    station.result(
        "TransactionEvent",
        transaction_event(
            "Ended",
            1,
            timestamp="2025-03-01T11:00:00Z",
            trigger="StopAuthorized",
            stopped_reason="ReqEnergyTransferRejected",
            meter_values=[
                meter_value("2025-03-01T11:00:00Z", energy(22, "Transaction.End", unit="kWh"))
            ],
        ),
    )
    session = Session.objects.get()
    assert (session.ocpp_version, session.state, session.energy_wh, session.stop_reason) == (
        "2.1",
        SessionState.COMPLETED,
        Decimal(12000),
        "ReqEnergyTransferRejected",
    )
    assert Connector.objects.get(connector_id=1).status == "Finishing"


def test_21_id_tokens_may_be_longer(station, organization):
    long_token = "E" * 200
    IdToken.objects.create(organization=organization, token=long_token, type="eMAID")
    assert station.result("Authorize", {"idToken": {"idToken": long_token, "type": "eMAID"}}) == {
        "idTokenInfo": {"status": "Accepted"}
    }
    station.result(
        "TransactionEvent",
        transaction_event("Started", 0, evse=1, id_token=long_token, token_type="eMAID"),
    )
    assert Session.objects.get().id_tag == long_token


def test_ev_charging_needs_get_no_charging_profile_in_21(station):
    assert station.result("NotifyEVChargingNeeds", CHARGER_INITIATED["NotifyEVChargingNeeds"]) == {
        "status": "NoChargingProfile"
    }
    needs = EVChargingNeeds.objects.get()
    assert (
        needs.energy_amount_wh,
        needs.min_current_a,
        needs.max_current_a,
        needs.response_status,
    ) == (20000, 6, 32, "NoChargingProfile")


def test_21_only_messages_are_recorded(station, charger):
    for action in (
        "BatterySwap",
        "NotifySettlement",
        "NotifyDERAlarm",
        "OpenPeriodicEventStream",
        "VatNumberValidation",
        "PullDynamicScheduleUpdate",
    ):
        station.result(action, CHARGER_INITIATED[action])
    recorded = dict(ChargerEvent.objects.filter(charger=charger).values_list("kind", "status"))
    assert recorded["BatterySwap"] == "BatteryIn"
    assert recorded["Settlement"] == "Settled"
    assert recorded["DER"] == "Alarm"
    assert recorded["PeriodicEventStream"] == "Opened"
    assert recorded["VatNumberValidation"] == "Rejected"
    assert recorded["DynamicSchedule"] == "Rejected"
    settlement = ChargerEvent.objects.get(kind="Settlement")
    assert (settlement.detail["settlementAmount"], settlement.timestamp) == (
        12.34,
        datetime(2025, 3, 1, 10, tzinfo=UTC),
    )


def test_certificate_chain_status_is_refused_per_certificate(station):
    reply = station.result(
        "GetCertificateChainStatus", CHARGER_INITIATED["GetCertificateChainStatus"]
    )
    (status,) = reply["certificateStatus"]
    assert (status["certificateHashData"], status["source"], status["status"]) == (
        HASH,
        "OCSP",
        "Failed",
    )


def test_a_send_gets_no_answer_but_is_validated(station):
    assert (
        station.send_text(
            json.dumps(
                [
                    SEND,
                    "s-1",
                    "NotifyPeriodicEventStream",
                    CHARGER_SENDS["NotifyPeriodicEventStream"],
                ]
            )
        )
        is None
    )
    assert (station.last.kind, station.last.action, station.last.message_id) == (
        SEND,
        "NotifyPeriodicEventStream",
        "s-1",
    )
    # An invalid SEND is not answered either (it is journaled as received).
    assert (
        station.send_text(json.dumps([SEND, "s-2", "NotifyPeriodicEventStream", {"id": 4}])) is None
    )
    assert station.send_text(json.dumps([SEND, "s-3", "Teleport", {}])) is None


def test_a_send_only_message_sent_as_a_call_is_refused(station):
    code, description = station.error(
        "NotifyPeriodicEventStream", CHARGER_SENDS["NotifyPeriodicEventStream"]
    )
    assert code == "NotSupported" and "SEND" in description


def test_a_callresulterror_is_taken_without_an_answer(station):
    assert (
        station.send_text(json.dumps([5, "our-call-1", "FormatViolation", "bad result", {}]))
        is None
    )
    assert station.last.kind == 5


def test_21_uses_the_2x_error_spellings_and_the_minus_one_id(station):
    reply = station.send_text("not a frame")
    assert reply == [4, "-1", "FormatViolation", reply[3], {}]
    assert station.error("Authorize", {})[0] == "OccurrenceConstraintViolation"
