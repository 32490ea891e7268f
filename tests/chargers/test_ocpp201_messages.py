"""OCPP 2.0.1: every charger-initiated message beyond the test-case scenarios, the transaction
rules (ordering, gaps, duplicates, re-sends, offline events) and bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from ocpp.messages import get_validator

from chargers import datatransfer, protocol
from chargers.models import (
    ChargerEvent,
    Connector,
    DataTransferRecord,
    DeviceVariable,
    DeviceVariableMonitor,
    EVChargingNeeds,
    ExternalChargingLimit,
    IdToken,
    MeterSample,
    Session,
    SessionState,
    TransactionEventRecord,
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
    station.boot()
    return station


def answer(station: Station, action: str, payload: dict) -> dict:
    """The CALLRESULT payload, checked against the 2.0.1 schema independently of the dispatcher."""
    result = station.result(action, payload)
    get_validator(protocol.CALLRESULT, action, "2.0.1").validate(result)
    return result


def start(
    station: Station,
    transaction_id: str = "tx-1",
    evse: int = 1,
    wh: int = 1000,
    minutes: float = 0,
    **extra,
) -> dict:
    return station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            transaction_id=transaction_id,
            timestamp=at(minutes),
            evse=evse,
            id_token="TAG-OK",
            charging_state="Charging",
            meter_values=[meter_value(at(minutes), energy(wh, "Transaction.Begin"))],
            **extra,
        ),
    )


# --- Transactions: ordering, gaps, duplicates ----------------------------------------------------


def test_a_resent_transaction_event_gets_the_same_answer_and_creates_nothing(station, id_token):
    payload = transaction_event(
        "Started",
        0,
        evse=1,
        id_token="TAG-OK",
        meter_values=[meter_value(at(0), energy(1000, "Transaction.Begin"))],
    )
    first = station.send("TransactionEvent", payload, message_id="first")
    # The reply was lost; the charger sends it again (offline-queued copies say so).
    again = station.send("TransactionEvent", {**payload, "offline": True}, message_id="again")
    assert first[2] == again[2] == {"idTokenInfo": {"status": "Accepted"}}
    assert Session.objects.count() == 1
    assert TransactionEventRecord.objects.count() == 1
    assert MeterSample.objects.count() == 1


def test_a_resent_answer_stays_the_first_one_even_after_the_token_changed(station, id_token):
    payload = transaction_event("Started", 0, evse=1, id_token="TAG-OK")
    assert station.result("TransactionEvent", payload)["idTokenInfo"]["status"] == "Accepted"
    IdToken.objects.filter(pk=id_token.pk).update(status="Blocked")
    assert station.result("TransactionEvent", payload)["idTokenInfo"]["status"] == "Accepted"


def test_events_arriving_out_of_order_build_the_same_session(station, id_token):
    ended = transaction_event(
        "Ended",
        3,
        timestamp=at(30),
        trigger="StopAuthorized",
        stopped_reason="Local",
        meter_values=[meter_value(at(30), energy(4000, "Transaction.End"))],
    )
    updated = transaction_event(
        "Updated",
        1,
        timestamp=at(10),
        trigger="MeterValuePeriodic",
        meter_values=[meter_value(at(10), energy(2000))],
    )
    started = transaction_event(
        "Started",
        0,
        timestamp=at(0),
        evse=1,
        id_token="TAG-OK",
        charging_state="Charging",
        meter_values=[meter_value(at(0), energy(1000, "Transaction.Begin"))],
    )
    later = transaction_event(
        "Updated",
        2,
        timestamp=at(20),
        trigger="MeterValuePeriodic",
        meter_values=[meter_value(at(20), energy(3000))],
    )
    for payload in (updated, ended, started, later):
        station.result("TransactionEvent", payload)
    session = Session.objects.get()
    assert (session.state, session.started_at, session.stopped_at) == (
        SessionState.COMPLETED,
        T0,
        T0 + timedelta(minutes=30),
    )
    assert (session.meter_start_wh, session.meter_stop_wh, session.energy_wh) == (
        Decimal(1000),
        Decimal(4000),
        Decimal(3000),
    )
    assert (session.id_tag, session.connector_number, session.stop_reason) == ("TAG-OK", 1, "Local")
    assert list(session.transaction_events.order_by("seq_no").values_list("seq_no", flat=True)) == [
        0,
        1,
        2,
        3,
    ]


def test_a_gap_in_seq_no_is_reported_when_the_transaction_ends(station, charger, id_token):
    start(station)
    station.result(
        "TransactionEvent",
        transaction_event("Updated", 1, timestamp=at(5), trigger="MeterValuePeriodic"),
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Ended", 4, timestamp=at(30), trigger="StopAuthorized", stopped_reason="Local"
        ),
    )
    gap = ChargerEvent.objects.get(
        charger=charger, kind=ChargerEvent.Kind.RECONCILIATION, status="SeqNoGap"
    )
    assert gap.detail["missing_seq_no"] == [2, 3]
    assert gap.detail["transaction_id"] == "tx-1"


def test_a_reused_seq_no_with_other_content_is_kept_and_reported(station, charger, id_token):
    start(station)
    station.result(
        "TransactionEvent",
        transaction_event(
            "Updated",
            1,
            timestamp=at(5),
            trigger="MeterValuePeriodic",
            meter_values=[meter_value(at(5), energy(1500))],
        ),
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Updated",
            1,
            timestamp=at(10),
            trigger="MeterValuePeriodic",
            meter_values=[meter_value(at(10), energy(2500))],
        ),
    )
    assert Session.objects.get().energy_wh == Decimal(1500)
    assert TransactionEventRecord.objects.filter(seq_no=1).count() == 2
    assert (
        ChargerEvent.objects.filter(
            charger=charger, kind=ChargerEvent.Kind.RECONCILIATION, status="SeqNoReused"
        ).count()
        == 1
    )


def test_offline_events_and_trigger_reasons_are_kept(station, id_token):
    start(station, offline=True)
    station.result(
        "TransactionEvent",
        transaction_event(
            "Updated",
            1,
            timestamp=at(3),
            trigger="ChargingStateChanged",
            charging_state="SuspendedEV",
            offline=True,
        ),
    )
    events = list(
        TransactionEventRecord.objects.order_by("seq_no").values_list(
            "offline", "trigger_reason", "charging_state"
        )
    )
    assert events == [
        (True, "Authorized", "Charging"),
        (True, "ChargingStateChanged", "SuspendedEV"),
    ]


def test_the_id_token_may_first_arrive_in_the_ended_event(station, id_token):
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started", 0, evse=1, trigger="CablePluggedIn", charging_state="EVConnected"
        ),
    )
    reply = station.result(
        "TransactionEvent",
        transaction_event(
            "Ended",
            1,
            timestamp=at(1),
            trigger="StopAuthorized",
            id_token="TAG-OK",
            stopped_reason="Local",
        ),
    )
    assert reply == {"idTokenInfo": {"status": "Accepted"}}
    session = Session.objects.get()
    assert (session.id_tag, session.auth_status, session.id_token_id) == (
        "TAG-OK",
        "Accepted",
        id_token.pk,
    )


def test_a_late_update_after_ended_still_adds_its_readings(station, id_token):
    start(station, wh=1000)
    station.result(
        "TransactionEvent",
        transaction_event(
            "Ended",
            2,
            timestamp=at(30),
            trigger="StopAuthorized",
            stopped_reason="Local",
            meter_values=[meter_value(at(30), energy(3000, "Transaction.End"))],
        ),
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Updated",
            1,
            timestamp=at(15),
            trigger="MeterValuePeriodic",
            meter_values=[meter_value(at(15), energy(2000))],
        ),
    )
    session = Session.objects.get()
    assert (session.state, session.energy_wh, session.meter_stop_wh) == (
        SessionState.COMPLETED,
        Decimal(2000),
        Decimal(3000),
    )
    assert session.meter_samples.count() == 3


def test_a_new_transaction_on_a_connector_closes_the_one_whose_end_was_lost(
    station, charger, id_token
):
    IdToken.objects.filter(pk=id_token.pk).update(allow_concurrent=True)
    start(station, "tx-old", wh=1000)
    station.result(
        "TransactionEvent",
        transaction_event(
            "Updated",
            1,
            transaction_id="tx-old",
            timestamp=at(10),
            trigger="MeterValuePeriodic",
            meter_values=[meter_value(at(10), energy(1800))],
        ),
    )
    start(station, "tx-new", wh=1900, minutes=60)
    old = Session.objects.get(transaction_id="tx-old")
    assert (old.state, old.stop_reason, old.meter_stop_wh, old.energy_wh) == (
        SessionState.COMPLETED,
        "SupersededByNewTransaction",
        Decimal(1800),
        Decimal(800),
    )
    # The real end arrives late (it was queued offline): it wins.
    station.result(
        "TransactionEvent",
        transaction_event(
            "Ended",
            2,
            transaction_id="tx-old",
            timestamp=at(20),
            trigger="EVDeparted",
            stopped_reason="EVDisconnected",
            meter_values=[meter_value(at(20), energy(1850, "Transaction.End"))],
        ),
    )
    old.refresh_from_db()
    assert (old.stop_reason, old.stopped_at, old.energy_wh) == (
        "EVDisconnected",
        T0 + timedelta(minutes=20),
        Decimal(850),
    )
    corrected = ChargerEvent.objects.get(charger=charger, status="SupersededSessionCorrected")
    assert corrected.detail["estimated_meter_stop_wh"] == "1800.000"
    assert Session.objects.get(transaction_id="tx-new").state == SessionState.ACTIVE


def test_a_2x_transaction_id_never_joins_a_16_session(charger, id_token):
    v16 = Station(charger, "1.6")
    v16.result("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "AC"})
    issued = v16.result(
        "StartTransaction",
        {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": at(0)},
    )["transactionId"]
    v201 = Station(charger)
    v201.boot()
    code, description = v201.error(
        "TransactionEvent",
        transaction_event(
            "Updated",
            5,
            transaction_id=str(issued),
            trigger="MeterValuePeriodic",
            meter_values=[meter_value(at(5), energy(999))],
        ),
    )
    assert code == "PropertyConstraintViolation" and "1.6" in description
    session = Session.objects.get()
    assert (session.ocpp_version, session.energy_wh, session.meter_samples.count()) == ("1.6", 0, 0)


def test_a_token_already_charging_elsewhere_is_concurrent(station, id_token):
    start(station, "tx-1", evse=1)
    reply = start(station, "tx-2", evse=2)
    assert reply == {"idTokenInfo": {"status": "ConcurrentTx"}}
    assert Session.objects.get(transaction_id="tx-2").auth_status == "ConcurrentTx"


def test_no_authorization_tokens_are_accepted_without_a_lookup(station):
    reply = station.result("Authorize", {"idToken": {"idToken": "", "type": "NoAuthorization"}})
    assert reply == {"idTokenInfo": {"status": "Accepted"}}
    reply = station.result(
        "TransactionEvent",
        transaction_event("Started", 0, evse=1, id_token="", token_type="NoAuthorization"),
    )
    assert reply == {"idTokenInfo": {"status": "Accepted"}}
    assert Session.objects.get().auth_status == "Accepted"


def test_a_contract_certificate_cannot_be_checked_yet(station, id_token):
    reply = answer(
        station,
        "Authorize",
        {"idToken": {"idToken": "TAG-OK", "type": "eMAID"}, "certificate": "MIIB"},
    )
    assert reply == {
        "idTokenInfo": {"status": "Accepted"},
        "certificateStatus": "NoCertificateAvailable",
    }


# --- Bad input: a clear error and nothing half written -------------------------------------------


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (transaction_event("Started", 0, evse=1000), "PropertyConstraintViolation"),
        (transaction_event("Started", -1, evse=1), "PropertyConstraintViolation"),
        (
            transaction_event("Started", 0, evse=1, timestamp="yesterday"),
            "PropertyConstraintViolation",
        ),
        (
            transaction_event(
                "Started", 0, evse=1, meter_values=[meter_value(at(0), energy(1, multiplier=99))]
            ),
            "PropertyConstraintViolation",
        ),
        (
            {"eventType": "Started", "timestamp": at(0), "triggerReason": "Authorized", "seqNo": 0},
            "OccurrenceConstraintViolation",
        ),
        (transaction_event("Begun", 0, evse=1), "PropertyConstraintViolation"),
        (transaction_event("Started", 0, evse=1, seqNumber=1), "FormatViolation"),
    ],
)
def test_a_bad_transaction_event_is_refused_and_writes_nothing(station, payload, code):
    assert station.error("TransactionEvent", payload)[0] == code
    assert not Session.objects.exists()
    assert not MeterSample.objects.exists()


def test_2x_error_codes_and_unknown_actions(station):
    reply = station.send_text("[2, 'not json")
    assert reply is not None and reply[:3] == [4, "-1", "FormatViolation"]
    assert (
        station.error(
            "RequestStartTransaction",
            {"idToken": {"idToken": "X", "type": "Central"}, "remoteStartId": 1},
        )[0]
        == "NotSupported"
    )
    assert station.error("Teleport", {})[0] == "NotImplemented"
    reply = station.send_text(json.dumps([9, "x-1", "Heartbeat", {}]))
    assert reply is not None and reply[:3] == [4, "x-1", "MessageTypeNotSupported"]


# --- Availability and meter values ---------------------------------------------------------------


def test_meter_values_of_the_charger_itself_go_to_connector_zero(station, charger):
    answer(
        station,
        "MeterValues",
        {"evseId": 0, "meterValue": [meter_value(at(0), energy(99, "Sample.Clock", unit="kWh"))]},
    )
    sample = MeterSample.objects.get(charger=charger)
    assert (sample.connector_number, sample.value, sample.session) == (0, Decimal(99000), None)


def test_reserved_and_faulted_connectors(station):
    answer(
        station,
        "StatusNotification",
        {"timestamp": at(0), "connectorStatus": "Reserved", "evseId": 1, "connectorId": 1},
    )
    answer(
        station,
        "StatusNotification",
        {"timestamp": at(0), "connectorStatus": "Faulted", "evseId": 2, "connectorId": 1},
    )
    assert dict(Connector.objects.values_list("connector_id", "status")) == {
        1: "Reserved",
        2: "Faulted",
    }


# --- Device model, monitoring --------------------------------------------------------------------


def test_a_monitoring_report_is_stored_with_its_variables(station, charger):
    answer(
        station,
        "NotifyMonitoringReport",
        {
            "requestId": 3,
            "seqNo": 0,
            "generatedAt": at(0),
            "monitor": [
                {
                    "component": {"name": "EVSE", "evse": {"id": 1}},
                    "variable": {"name": "Power"},
                    "variableMonitoring": [
                        {
                            "id": 1,
                            "transaction": False,
                            "value": 22000.5,
                            "type": "UpperThreshold",
                            "severity": 4,
                        },
                        {
                            "id": 2,
                            "transaction": True,
                            "value": 500,
                            "type": "Delta",
                            "severity": 8,
                        },
                    ],
                }
            ],
        },
    )
    variable = DeviceVariable.objects.get(charger=charger)
    assert variable.key == "EVSE//1//Power/"
    monitors = list(
        DeviceVariableMonitor.objects.filter(variable=variable)
        .order_by("monitor_id")
        .values_list("monitor_id", "type", "value", "severity", "transaction")
    )
    assert monitors == [
        (1, "UpperThreshold", Decimal("22000.5"), 4, False),
        (2, "Delta", Decimal(500), 8, True),
    ]
    assert (
        ChargerEvent.objects.get(
            charger=charger, kind=ChargerEvent.Kind.MONITORING_REPORT
        ).request_id
        == 3
    )


def test_a_device_event_updates_the_actual_value_in_the_device_model(station, charger):
    answer(
        station,
        "NotifyReport",
        {
            "requestId": 1,
            "generatedAt": at(0),
            "seqNo": 0,
            "reportData": [
                {
                    "component": {"name": "TemperatureSensor"},
                    "variable": {"name": "Temperature"},
                    "variableAttribute": [{"value": "21"}],
                },
            ],
        },
    )
    answer(
        station,
        "NotifyEvent",
        {
            "generatedAt": at(1),
            "seqNo": 0,
            "eventData": [
                {
                    "eventId": 1,
                    "timestamp": at(1),
                    "trigger": "Alerting",
                    "actualValue": "71",
                    "eventNotificationType": "PreconfiguredMonitor",
                    "component": {"name": "TemperatureSensor"},
                    "variable": {"name": "Temperature"},
                    "cause": 7,
                },
            ],
        },
    )
    assert DeviceVariable.objects.get(charger=charger).attributes.get(type="Actual").value == "71"
    event = ChargerEvent.objects.get(charger=charger, kind=ChargerEvent.Kind.DEVICE_EVENT)
    assert (event.status, event.timestamp, event.detail["trigger"]) == (
        "71",
        T0 + timedelta(minutes=1),
        "Alerting",
    )


# --- Smart charging inputs -----------------------------------------------------------------------


SCHEDULE = {
    "id": 1,
    "chargingRateUnit": "W",
    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}],
}


def test_external_charging_limits_are_kept_until_cleared(station, charger):
    answer(
        station,
        "NotifyChargingLimit",
        {
            "evseId": 1,
            "chargingLimit": {"chargingLimitSource": "EMS", "isGridCritical": True},
            "chargingSchedule": [SCHEDULE],
        },
    )
    answer(
        station,
        "NotifyChargingLimit",
        {"evseId": 2, "chargingLimit": {"chargingLimitSource": "EMS"}},
    )
    limit = ExternalChargingLimit.objects.get(evse_id=1)
    assert (limit.source, limit.is_grid_critical, limit.schedules, limit.cleared_at) == (
        "EMS",
        True,
        [SCHEDULE],
        None,
    )
    # A new limit from the same source on the same EVSE replaces the old one.
    answer(
        station,
        "NotifyChargingLimit",
        {"evseId": 1, "chargingLimit": {"chargingLimitSource": "EMS"}},
    )
    assert ExternalChargingLimit.objects.filter(evse_id=1, cleared_at__isnull=True).count() == 1
    answer(station, "ClearedChargingLimit", {"chargingLimitSource": "EMS", "evseId": 1})
    assert list(
        ExternalChargingLimit.objects.filter(cleared_at__isnull=True).values_list(
            "evse_id", flat=True
        )
    ) == [2]
    answer(station, "ClearedChargingLimit", {"chargingLimitSource": "EMS"})
    assert not ExternalChargingLimit.objects.filter(cleared_at__isnull=True).exists()


def test_ev_charging_needs_are_kept_for_smart_charging(station, id_token):
    start(station)
    reply = answer(
        station,
        "NotifyEVChargingNeeds",
        {
            "evseId": 1,
            "maxScheduleTuples": 24,
            "chargingNeeds": {
                "requestedEnergyTransfer": "DC",
                "departureTime": at(240),
                "dcChargingParameters": {
                    "evMaxCurrent": 300,
                    "evMaxVoltage": 800,
                    "energyAmount": 45000,
                    "evMaxPower": 150000,
                    "stateOfCharge": 20,
                    "evEnergyCapacity": 77000,
                },
            },
        },
    )
    assert reply == {"status": "Rejected"}
    needs = EVChargingNeeds.objects.get()
    assert (needs.session, needs.requested_energy_transfer, needs.departure_time) == (
        Session.objects.get(),
        "DC",
        T0 + timedelta(minutes=240),
    )
    assert (
        needs.energy_amount_wh,
        needs.max_current_a,
        needs.max_voltage_v,
        needs.max_power_w,
    ) == (45000, 300, 800, 150000)
    assert (
        needs.state_of_charge,
        needs.energy_capacity_wh,
        needs.max_schedule_tuples,
        needs.response_status,
    ) == (20, 77000, 24, "Rejected")


def test_an_ev_charging_schedule_and_charging_profile_reports_are_recorded(station, charger):
    assert answer(
        station,
        "NotifyEVChargingSchedule",
        {"timeBase": at(0), "evseId": 1, "chargingSchedule": SCHEDULE},
    ) == {"status": "Accepted"}
    profile = {
        "id": 9,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [SCHEDULE],
    }
    answer(
        station,
        "ReportChargingProfiles",
        {
            "requestId": 5,
            "chargingLimitSource": "CSO",
            "evseId": 0,
            "chargingProfile": [profile],
            "tbc": False,
        },
    )
    report = ChargerEvent.objects.get(charger=charger, kind=ChargerEvent.Kind.CHARGING_PROFILES)
    assert (report.request_id, report.status, report.detail["charging_profile"]) == (
        5,
        "CSO",
        [profile],
    )
    assert (
        ChargerEvent.objects.get(
            charger=charger, kind=ChargerEvent.Kind.EV_CHARGING_SCHEDULE
        ).detail["charging_schedule"]
        == SCHEDULE
    )


# --- Reservations, customer information, display messages, logs, publish firmware --------------


def test_notifications_are_recorded(station, charger):
    answer(
        station,
        "ReservationStatusUpdate",
        {"reservationId": 77, "reservationUpdateStatus": "Expired"},
    )
    answer(
        station,
        "NotifyCustomerInformation",
        {
            "data": "card 1234 used 3 times",
            "seqNo": 0,
            "generatedAt": at(0),
            "requestId": 8,
            "tbc": True,
        },
    )
    answer(
        station,
        "NotifyDisplayMessages",
        {
            "requestId": 9,
            "messageInfo": [
                {
                    "id": 1,
                    "priority": "NormalCycle",
                    "message": {"format": "UTF8", "content": "Welkom"},
                }
            ],
        },
    )
    answer(station, "LogStatusNotification", {"status": "Uploaded", "requestId": 10})
    answer(
        station,
        "PublishFirmwareStatusNotification",
        {"status": "Published", "location": ["ftp://local/fw.bin"], "requestId": 11},
    )
    answer(station, "Heartbeat", {})
    recorded = {
        kind: (status, request_id)
        for kind, status, request_id in ChargerEvent.objects.filter(charger=charger)
        .exclude(kind__in=["Boot", "Connection"])
        .values_list("kind", "status", "request_id")
    }
    assert recorded == {
        "ReservationStatus": ("Expired", 77),
        "CustomerInformation": ("ToBeContinued", 8),
        "DisplayMessages": ("Complete", 9),
        "LogStatus": ("Uploaded", 10),
        "PublishFirmwareStatus": ("Published", 11),
    }
    assert (
        ChargerEvent.objects.get(kind="CustomerInformation").detail["data"]
        == "card 1234 used 3 times"
    )


# --- Certificates: recorded and refused clearly --------------------------------------------------


def test_certificate_requests_are_recorded_and_refused_with_a_schema_valid_answer(station, charger):
    refusal = {
        "reasonCode": "NoCAConfigured",
        "additionalInfo": "certificate management is not configured on this CSMS",
    }
    assert answer(
        station,
        "SignCertificate",
        {"csr": "-----BEGIN CERTIFICATE REQUEST-----", "certificateType": "V2GCertificate"},
    ) == {"status": "Rejected", "statusInfo": refusal}
    assert answer(
        station,
        "Get15118EVCertificate",
        {
            "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef",
            "action": "Install",
            "exiRequest": "gAQ=",
        },
    ) == {"status": "Failed", "exiResponse": "", "statusInfo": refusal}
    ocsp = {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": "aa",
        "issuerKeyHash": "bb",
        "serialNumber": "01",
        "responderURL": "http://ocsp.example",
    }
    assert answer(station, "GetCertificateStatus", {"ocspRequestData": ocsp}) == {
        "status": "Failed",
        "statusInfo": refusal,
    }
    records = dict(
        ChargerEvent.objects.filter(
            charger=charger, kind=ChargerEvent.Kind.CERTIFICATE
        ).values_list("status", "detail")
    )
    assert records["SignCertificateRejected"]["csr"] == "-----BEGIN CERTIFICATE REQUEST-----"
    assert records["SignCertificateRejected"]["certificate_type"] == "V2GCertificate"
    assert records["Get15118EVCertificateFailed"]["exi_request"] == "gAQ="
    assert records["GetCertificateStatusFailed"]["ocsp_request_data"] == ocsp


# --- Data transfer -------------------------------------------------------------------------------


def test_data_transfer_keeps_json_data_as_sent(station, charger, settings):
    settings.CPMS_DATATRANSFER_ACCEPT_VENDORS = ["com.acme"]
    data = {"firmwareChannel": "beta", "nested": {"camelCase": [1, 2]}}
    assert answer(
        station, "DataTransfer", {"vendorId": "com.acme", "messageId": "Telemetry", "data": data}
    ) == {"status": "Accepted"}
    record = DataTransferRecord.objects.get(charger=charger)
    assert json.loads(record.data) == data
    assert answer(station, "DataTransfer", {"vendorId": "com.unknown"}) == {
        "status": "UnknownVendorId"
    }


def test_data_transfer_handlers_answer_with_data(station, charger):
    @datatransfer.register("com.acme.pricing", "Price")
    def price(request: datatransfer.Request) -> tuple[str, str | None]:
        return "Accepted", json.dumps({"echo": json.loads(request.data)})

    try:
        reply = answer(
            station,
            "DataTransfer",
            {"vendorId": "com.acme.pricing", "messageId": "Price", "data": {"kWh": 3}},
        )
    finally:
        datatransfer.unregister("com.acme.pricing", "Price")
    assert reply == {"status": "Accepted", "data": '{"echo": {"kWh": 3}}'}


# --- Coverage ------------------------------------------------------------------------------------

CHARGER_INITIATED_201 = {
    "Authorize",
    "BootNotification",
    "ClearedChargingLimit",
    "DataTransfer",
    "FirmwareStatusNotification",
    "Get15118EVCertificate",
    "GetCertificateStatus",
    "Heartbeat",
    "LogStatusNotification",
    "MeterValues",
    "NotifyChargingLimit",
    "NotifyCustomerInformation",
    "NotifyDisplayMessages",
    "NotifyEVChargingNeeds",
    "NotifyEVChargingSchedule",
    "NotifyEvent",
    "NotifyMonitoringReport",
    "NotifyReport",
    "PublishFirmwareStatusNotification",
    "ReportChargingProfiles",
    "ReservationStatusUpdate",
    "SecurityEventNotification",
    "SignCertificate",
    "StatusNotification",
    "TransactionEvent",
}


def test_the_201_endpoint_handles_every_charger_initiated_message(station):
    handled = {
        action
        for action, handlers in station.dispatcher.route_map.items()
        if "_on_action" in handlers
    }
    assert handled == CHARGER_INITIATED_201
    # The rest of 2.0.1 is sent by the CSMS: a charger sending it gets NotSupported.
    assert station.error("Reset", {"type": "Immediate"})[0] == "NotSupported"
