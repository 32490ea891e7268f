"""OCPP 1.6J handlers: frames in, exact frames out, through the dispatcher (no socket)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone
from ocpp.messages import Call
from ocpp.v16 import enums

from chargers import datatransfer, normalize, ocpp16, services
from chargers.batching import BatchWriter
from chargers.dispatch import Dispatcher
from chargers.models import (
    Charger,
    ChargerEvent,
    Connector,
    DataTransferRecord,
    IdToken,
    MeterSample,
    Session,
    SessionState,
    UnmatchedStop,
)
from tests.conftest import CHARGER_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

T0 = "2024-03-01T12:00:00.000Z"


def at(minutes: float) -> str:
    return normalize.format_datetime(normalize.parse_datetime(T0) + timedelta(minutes=minutes))


class Link:
    """One charger's side of the conversation, driven frame by frame through a Dispatcher."""

    def __init__(self, dispatcher: Dispatcher, writer: BatchWriter):
        self.dispatcher = dispatcher
        self.writer = writer
        self._ids = itertools.count(1)

    async def send_text(self, text: str) -> list[Any] | None:
        outcome = await self.dispatcher.handle_text(text)
        return json.loads(outcome.reply) if outcome.reply is not None else None

    async def call(
        self, action: str, payload: dict[str, Any], message_id: str | None = None
    ) -> list[Any]:
        message_id = message_id or f"m-{next(self._ids)}"
        reply = await self.send_text(Call(message_id, action, payload).to_json())
        assert reply is not None
        assert reply[1] == message_id
        return reply

    async def result(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        reply = await self.call(action, payload)
        assert reply[0] == 3, reply
        return reply[2]

    async def error(self, action: str, payload: dict[str, Any]) -> tuple[str, str]:
        reply = await self.call(action, payload)
        assert reply[0] == 4, reply
        assert isinstance(reply[3], str) and reply[3]
        assert reply[4] == {}
        return reply[2], reply[3]


@pytest.fixture
async def writer(settings: Any) -> AsyncIterator[BatchWriter]:
    # Flushed by the tests only, so that what the hot path leaves in memory can be seen.
    settings.CPMS_FLUSH_INTERVAL = 3600
    writer = BatchWriter(asyncio.get_running_loop())
    yield writer
    await writer.flush()
    writer._task.cancel()
    await asyncio.gather(writer._task, return_exceptions=True)
    # The ORM ran in asgiref's worker thread: close its connection, or the test database could
    # not be dropped at the end of the run.
    await sync_to_async(connections.close_all)()


def connect(charger: Charger) -> services.Connection:
    return services.charger_connect(
        identity=charger.identity,
        password=CHARGER_PASSWORD,
        ocpp_version="1.6",
        channel_name="test.channel",
    )


async def link_for(charger: Charger, writer: BatchWriter) -> Link:
    connection = await sync_to_async(connect)(charger)
    handlers = ocpp16.ChargePoint16(connection, writer)
    return Link(Dispatcher(handlers, version="1.6", known_actions=ocpp16.KNOWN_ACTIONS), writer)


@pytest.fixture
async def link(charger: Charger, writer: BatchWriter) -> Link:
    return await link_for(charger, writer)


@pytest.fixture
async def booted(link: Link) -> Link:
    assert (await link.result("BootNotification", BOOT))["status"] == "Accepted"
    return link


BOOT = {"chargePointVendor": "ACME", "chargePointModel": "Wallbox 22"}


def assert_now(text: str, before: datetime) -> None:
    assert text.endswith("Z")
    moment = normalize.parse_datetime(text)
    assert before - timedelta(milliseconds=1) <= moment <= normalize.utc_now()


# --- BootNotification ----------------------------------------------------------------------------


async def test_boot_accepted_with_the_heartbeat_interval(link, charger, settings):
    settings.CPMS_HEARTBEAT_INTERVAL = 120
    before = normalize.utc_now()
    reply = await link.call(
        "BootNotification",
        {
            **BOOT,
            "chargePointSerialNumber": "CP-SN-1",
            "firmwareVersion": "4.2.0",
            "iccid": "8931",
            "imsi": "20404",
            "meterType": "Eastron",
            "meterSerialNumber": "M-77",
        },
        message_id="boot-1",
    )
    assert reply[:2] == [3, "boot-1"]
    assert set(reply[2]) == {"currentTime", "interval", "status"}
    assert (reply[2]["status"], reply[2]["interval"]) == ("Accepted", 120)
    assert_now(reply[2]["currentTime"], before)
    await charger.arefresh_from_db()
    assert (charger.vendor, charger.model, charger.serial_number, charger.firmware_version) == (
        "ACME",
        "Wallbox 22",
        "CP-SN-1",
        "4.2.0",
    )
    assert (charger.iccid, charger.imsi, charger.meter_type, charger.meter_serial_number) == (
        "8931",
        "20404",
        "Eastron",
        "M-77",
    )


@pytest.mark.parametrize("registration", ["Pending", "Rejected"])
async def test_boot_pending_or_rejected_gets_the_retry_interval_and_nothing_else(
    make_charger, writer, settings, registration
):
    settings.CPMS_BOOT_RETRY_INTERVAL = 42
    charger = await sync_to_async(make_charger)("CP-9", registration_status=registration)
    link = await link_for(charger, writer)
    reply = await link.result("BootNotification", BOOT)
    assert (reply["status"], reply["interval"]) == (registration, 42)
    for action, payload in [
        ("Heartbeat", {}),
        ("Authorize", {"idTag": "TAG-OK"}),
        ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
        (
            "StartTransaction",
            {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": T0},
        ),
    ]:
        code, _ = await link.error(action, payload)
        assert code == "SecurityError"
    assert not await Session.objects.filter(charger=charger).aexists()


async def test_a_pending_charger_accepted_by_the_operator_is_accepted_at_its_next_boot(
    make_charger, writer
):
    charger = await sync_to_async(make_charger)("CP-9", registration_status="Pending")
    link = await link_for(charger, writer)
    assert (await link.result("BootNotification", BOOT))["status"] == "Pending"
    await Charger.objects.filter(pk=charger.pk).aupdate(registration_status="Accepted")
    assert (await link.result("BootNotification", BOOT))["status"] == "Accepted"
    assert set(await link.result("Heartbeat", {})) == {"currentTime"}


async def test_before_any_boot_an_accepted_charger_may_talk(link):
    # A charger that was Accepted before keeps its registration across reconnects.
    assert set(await link.result("Heartbeat", {})) == {"currentTime"}


# --- Heartbeat and StatusNotification ------------------------------------------------------------


async def test_heartbeat_returns_the_current_time(booted):
    before = normalize.utc_now()
    reply = await booted.call("Heartbeat", {}, message_id="hb-1")
    assert reply[:2] == [3, "hb-1"]
    assert list(reply[2]) == ["currentTime"]
    assert_now(reply[2]["currentTime"], before)


async def test_status_notifications_are_batched_and_connector_zero_is_the_charger(booted, charger):
    assert await booted.call(
        "StatusNotification",
        {"connectorId": 0, "errorCode": "NoError", "status": "Available", "timestamp": at(0)},
        message_id="s-0",
    ) == [3, "s-0", {}]
    assert (
        await booted.result(
            "StatusNotification",
            {
                "connectorId": 1,
                "errorCode": "GroundFailure",
                "status": "Faulted",
                "timestamp": at(1),
                "info": "RCD tripped",
                "vendorId": "com.acme",
                "vendorErrorCode": "E-17",
            },
        )
        == {}
    )
    # The hot path writes nothing itself: the rows wait for the batch writer.
    assert not await Connector.objects.filter(charger=charger).aexists()
    await booted.writer.flush()
    charger_row = await Connector.objects.aget(charger=charger, connector_id=0)
    assert (charger_row.status, charger_row.evse_id, charger_row.status_at) == (
        "Available",
        None,
        normalize.parse_datetime(at(0)),
    )
    faulted = await Connector.objects.aget(charger=charger, connector_id=1)
    assert (
        faulted.status,
        faulted.raw_status,
        faulted.error_code,
        faulted.info,
        faulted.vendor_id,
        faulted.vendor_error_code,
    ) == ("Faulted", "Faulted", "GroundFailure", "RCD tripped", "com.acme", "E-17")
    assert await faulted.history.acount() == 1


async def test_a_status_without_timestamp_is_stamped_on_arrival(booted, charger):
    before = timezone.now()
    await booted.result(
        "StatusNotification", {"connectorId": 2, "errorCode": "NoError", "status": "Preparing"}
    )
    await booted.writer.flush()
    connector = await Connector.objects.aget(charger=charger, connector_id=2)
    assert before <= connector.status_at <= timezone.now()


async def test_a_negative_connector_id_is_refused_and_never_reaches_the_writer(booted, charger):
    code, description = await booted.error(
        "StatusNotification", {"connectorId": -1, "errorCode": "NoError", "status": "Available"}
    )
    assert code == "PropertyConstraintViolation"
    assert "connectorId" in description
    assert not booted.writer.batch.statuses


# --- Authorize -----------------------------------------------------------------------------------


async def test_authorize_accepted_with_parent_and_expiry(booted, organization):
    await sync_to_async(services.id_token_create)(
        organization=organization,
        token="CARD-1",
        group_token="FLEET-7",
        expires_at=datetime(2031, 1, 1, 8, 30, tzinfo=UTC),
    )
    reply = await booted.call("Authorize", {"idTag": "CARD-1"}, message_id="a-1")
    assert reply == [
        3,
        "a-1",
        {
            "idTagInfo": {
                "status": "Accepted",
                "parentIdTag": "FLEET-7",
                "expiryDate": "2031-01-01T08:30:00.000Z",
            }
        },
    ]


@pytest.mark.parametrize("status", ["Blocked", "Expired", "Invalid"])
async def test_authorize_answers_the_stored_status(booted, organization, status):
    await sync_to_async(services.id_token_create)(
        organization=organization, token="CARD-1", status=status
    )
    assert await booted.result("Authorize", {"idTag": "CARD-1"}) == {
        "idTagInfo": {"status": status}
    }


async def test_authorize_an_expired_token(booted, organization):
    expired = timezone.now() - timedelta(days=1)
    await sync_to_async(services.id_token_create)(
        organization=organization, token="CARD-1", expires_at=expired
    )
    reply = await booted.result("Authorize", {"idTag": "CARD-1"})
    assert reply == {
        "idTagInfo": {"status": "Expired", "expiryDate": normalize.format_datetime(expired)}
    }


async def test_authorize_an_unknown_token_is_invalid(booted):
    assert await booted.result("Authorize", {"idTag": "NOBODY"}) == {
        "idTagInfo": {"status": "Invalid"}
    }


async def test_authorize_a_token_already_charging_is_concurrent_tx(booted, id_token):
    await booted.result(
        "StartTransaction", {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": T0}
    )
    assert await booted.result("Authorize", {"idTag": "TAG-OK"}) == {
        "idTagInfo": {"status": "ConcurrentTx"}
    }


# --- Transactions --------------------------------------------------------------------------------


async def test_start_transaction_issues_an_integer_id_and_persists_before_answering(
    booted, charger, id_token
):
    reply = await booted.call(
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": "TAG-OK",
            "meterStart": 1234,
            "timestamp": T0,
            "reservationId": 9,
        },
        message_id="st-1",
    )
    assert reply == [3, "st-1", {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}]
    session = await Session.objects.aget(charger=charger)
    assert (
        session.transaction_id,
        session.state,
        session.meter_start_wh,
        session.reservation_id,
        session.ocpp_version,
        session.connector_number,
    ) == ("1", SessionState.ACTIVE, Decimal(1234), 9, "1.6", 1)
    second = await booted.result(
        "StartTransaction", {"connectorId": 2, "idTag": "NOBODY", "meterStart": 0, "timestamp": T0}
    )
    assert second == {"transactionId": 2, "idTagInfo": {"status": "Invalid"}}


async def test_a_resent_start_transaction_gets_the_same_answer(booted, charger, id_token):
    payload = {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 1234, "timestamp": T0}
    first = await booted.result("StartTransaction", payload)
    again = await booted.result("StartTransaction", payload)
    assert again == first
    assert await Session.objects.filter(charger=charger).acount() == 1


async def test_a_new_start_on_the_same_connector_supersedes_the_open_session(
    booted, charger, id_token
):
    first = await booted.result(
        "StartTransaction",
        {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 100, "timestamp": T0},
    )
    second = await booted.result(
        "StartTransaction",
        {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 900, "timestamp": at(30)},
    )
    assert second["transactionId"] != first["transactionId"]
    assert second["idTagInfo"] == {"status": "Accepted"}
    old = await Session.objects.aget(transaction_id=str(first["transactionId"]))
    assert (old.state, old.stop_reason, old.meter_stop_wh) == (
        SessionState.COMPLETED,
        "SupersededByNewTransaction",
        Decimal(900),
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"connectorId": 0, "idTag": "TAG-OK", "meterStart": 0, "timestamp": T0},
        {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 10**16, "timestamp": T0},
        {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": "yesterday"},
        {"connectorId": 2**40, "idTag": "TAG-OK", "meterStart": 0, "timestamp": T0},
    ],
)
async def test_an_impossible_start_is_refused_and_writes_nothing(
    booted, charger, id_token, payload
):
    code, _ = await booted.error("StartTransaction", payload)
    assert code == "PropertyConstraintViolation"
    assert not await Session.objects.aexists()


def every_sampled_value() -> list[dict[str, str]]:
    """One sampled value per measurand, phase, location and context of OCPP 1.6, unit left out."""
    values = [{"value": "1", "measurand": m.value} for m in enums.Measurand]
    values += [{"value": "230", "measurand": "Voltage", "phase": p.value} for p in enums.Phase]
    values += [
        {"value": "30", "measurand": "Temperature", "location": loc.value} for loc in enums.Location
    ]
    values += [
        {
            "value": "2",
            "measurand": "Power.Active.Import",
            "context": c.value,
            "unit": "kW",
            "location": "Cable",
        }
        for c in enums.ReadingContext
    ]
    return values


async def test_meter_values_in_a_transaction_are_stored_with_the_session(booted, charger, id_token):
    start = await booted.result(
        "StartTransaction",
        {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 1000, "timestamp": T0},
    )
    sampled = [*every_sampled_value(), {"value": "3.5", "unit": "kWh", "context": "Sample.Clock"}]
    reply = await booted.call(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": start["transactionId"],
            "meterValue": [{"timestamp": at(5), "sampledValue": sampled}],
        },
        message_id="mv-1",
    )
    assert reply == [3, "mv-1", {}]
    # Energy inside a transaction is persisted before the answer, not batched.
    session = await Session.objects.aget(charger=charger)
    samples = await sync_to_async(list)(session.meter_samples.all())
    assert len(samples) == len(sampled)
    keys = {(s.measurand, s.phase, s.location, s.context) for s in samples}
    assert {m.value for m in enums.Measurand} <= {k[0] for k in keys}
    assert {p.value for p in enums.Phase} <= {k[1] for k in keys}
    assert {loc.value for loc in enums.Location} <= {k[2] for k in keys}
    assert {c.value for c in enums.ReadingContext} <= {k[3] for k in keys}
    units = {
        s.measurand: s.unit
        for s in samples
        if s.context == "Sample.Periodic" and not s.phase and not s.location
    }
    assert units["Current.Offered"] == "A"
    assert units["Energy.Reactive.Import.Register"] == "varh"
    assert units["Power.Reactive.Export"] == "var"
    assert units["SoC"] == "%"
    assert units["Temperature"] == "Celsius"
    kw = [s for s in samples if s.location == "Cable" and s.measurand == "Power.Active.Import"]
    assert len(kw) == len(enums.ReadingContext)
    assert {s.value for s in kw} == {Decimal(2000)} and {s.unit for s in kw} == {"W"}
    # The latest total import register (3.5 kWh) sets the session's energy.
    assert session.energy_wh == Decimal(2500)


async def test_meter_values_outside_a_transaction_are_batched(booted, charger):
    payload = {
        "connectorId": 0,
        "meterValue": [
            {
                "timestamp": at(1),
                "sampledValue": [
                    {"value": "50.02", "measurand": "Frequency"},
                    {"value": "12345", "unit": "Wh", "location": "Inlet"},
                ],
            }
        ],
    }
    assert await booted.result("MeterValues", payload) == {}
    assert not await MeterSample.objects.aexists()
    await booted.writer.flush()
    samples = {s.measurand: s async for s in MeterSample.objects.filter(charger=charger)}
    assert (
        samples["Frequency"].value,
        samples["Frequency"].unit,
        samples["Frequency"].session_id,
    ) == (Decimal("50.02"), "Hz", None)
    assert (
        samples[normalize.ENERGY_REGISTER].value,
        samples[normalize.ENERGY_REGISTER].location,
    ) == (Decimal(12345), "Inlet")


async def test_meter_values_with_an_unreadable_value_are_refused_whole(booted, charger, id_token):
    start = await booted.result(
        "StartTransaction", {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": T0}
    )
    code, description = await booted.error(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": start["transactionId"],
            "meterValue": [
                {"timestamp": at(1), "sampledValue": [{"value": "100"}, {"value": "lots"}]}
            ],
        },
    )
    assert code == "PropertyConstraintViolation"
    assert "lots" in description
    assert not await MeterSample.objects.aexists()


async def test_stop_transaction_with_transaction_data(booted, charger, id_token):
    start = await booted.result(
        "StartTransaction",
        {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 1000, "timestamp": T0},
    )
    reply = await booted.call(
        "StopTransaction",
        {
            "transactionId": start["transactionId"],
            "idTag": "TAG-OK",
            "meterStop": 11000,
            "timestamp": at(60),
            "reason": "EVDisconnected",
            "transactionData": [
                {
                    "timestamp": T0,
                    "sampledValue": [{"value": "1000", "context": "Transaction.Begin"}],
                },
                {
                    "timestamp": at(60),
                    "sampledValue": [
                        {"value": "11", "unit": "kWh", "context": "Transaction.End"},
                        {
                            "value": "OCMF|{}|{}",
                            "format": "SignedData",
                            "context": "Transaction.End",
                        },
                    ],
                },
            ],
        },
        message_id="stop-1",
    )
    assert reply == [3, "stop-1", {"idTagInfo": {"status": "Accepted"}}]
    session = await Session.objects.aget(charger=charger)
    assert (
        session.state,
        session.meter_stop_wh,
        session.energy_wh,
        session.stop_reason,
        session.stopped_at,
    ) == (
        SessionState.COMPLETED,
        Decimal(11000),
        Decimal(10000),
        "EVDisconnected",
        normalize.parse_datetime(at(60)),
    )
    samples = [s async for s in session.meter_samples.order_by("timestamp")]
    assert [(s.context, s.value, s.signed_data) for s in samples] == [
        ("Transaction.Begin", Decimal(1000), ""),
        ("Transaction.End", Decimal(11000), "OCMF|{}|{}"),
    ]
    # A re-sent stop is answered the same and changes nothing.
    again = await booted.call(
        "StopTransaction",
        {
            "transactionId": start["transactionId"],
            "idTag": "TAG-OK",
            "meterStop": 11000,
            "timestamp": at(60),
        },
        message_id="stop-2",
    )
    assert again == [3, "stop-2", {"idTagInfo": {"status": "Accepted"}}]
    assert await session.meter_samples.acount() == 2


async def test_stop_transaction_without_id_tag_has_an_empty_answer(booted, id_token):
    start = await booted.result(
        "StartTransaction", {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": T0}
    )
    reply = await booted.result(
        "StopTransaction",
        {"transactionId": start["transactionId"], "meterStop": 10, "timestamp": at(1)},
    )
    assert reply == {}


async def test_stop_for_an_unknown_transaction_is_answered_and_recorded(booted, charger, id_token):
    reply = await booted.result(
        "StopTransaction",
        {
            "transactionId": 4711,
            "idTag": "TAG-OK",
            "meterStop": 500,
            "timestamp": at(1),
            "reason": "PowerLoss",
        },
    )
    assert reply == {"idTagInfo": {"status": "Accepted"}}
    unmatched = await UnmatchedStop.objects.aget(charger=charger)
    assert (unmatched.transaction_id, unmatched.meter_stop_wh, unmatched.reason) == (
        "4711",
        Decimal(500),
        "PowerLoss",
    )
    assert unmatched.payload["transactionId"] == 4711


# --- DataTransfer --------------------------------------------------------------------------------


async def test_data_transfer_from_an_unknown_vendor(booted, charger):
    reply = await booted.call(
        "DataTransfer",
        {"vendorId": "com.nobody", "messageId": "Hello", "data": "x"},
        message_id="dt-1",
    )
    assert reply == [3, "dt-1", {"status": "UnknownVendorId"}]
    record = await DataTransferRecord.objects.aget(charger=charger)
    assert (
        record.direction,
        record.vendor_id,
        record.message_id,
        record.data,
        record.response_status,
    ) == ("in", "com.nobody", "Hello", "x", "UnknownVendorId")


async def test_data_transfer_from_an_accepted_vendor_is_recorded(booted, charger, settings):
    settings.CPMS_DATATRANSFER_ACCEPT_VENDORS = ["com.acme"]
    assert await booted.result(
        "DataTransfer", {"vendorId": "com.acme", "messageId": "Telemetry", "data": '{"t":21}'}
    ) == {"status": "Accepted"}
    record = await DataTransferRecord.objects.aget(charger=charger)
    assert (record.vendor_id, record.message_id, record.data, record.response_status) == (
        "com.acme",
        "Telemetry",
        '{"t":21}',
        "Accepted",
    )


@pytest.fixture
def price_handler():
    seen: list[datatransfer.Request] = []

    @datatransfer.register("com.example", "Price")
    def answer(request: datatransfer.Request) -> tuple[str, str | None]:
        seen.append(request)
        return "Accepted", json.dumps({"price": "0.39", "charger": request.charger_identity})

    yield seen
    datatransfer.unregister("com.example", "Price")


async def test_data_transfer_to_a_registered_handler(booted, charger, price_handler):
    reply = await booted.result(
        "DataTransfer", {"vendorId": "com.example", "messageId": "Price", "data": "connector=1"}
    )
    assert reply == {
        "status": "Accepted",
        "data": json.dumps({"price": "0.39", "charger": charger.identity}),
    }
    assert [(r.vendor_id, r.message_id, r.data) for r in price_handler] == [
        ("com.example", "Price", "connector=1")
    ]
    record = await DataTransferRecord.objects.aget(charger=charger)
    assert record.response_data == reply["data"]


async def test_data_transfer_known_vendor_unknown_message(booted, price_handler):
    assert await booted.result(
        "DataTransfer", {"vendorId": "com.example", "messageId": "Weather"}
    ) == {"status": "UnknownMessageId"}
    assert price_handler == []


# --- Firmware, diagnostics and the security extension --------------------------------------------


async def test_diagnostics_status_notification(booted, charger):
    assert await booted.result("DiagnosticsStatusNotification", {"status": "Uploading"}) == {}
    await charger.arefresh_from_db()
    assert charger.diagnostics_status == "Uploading"
    assert await charger.events.filter(
        kind=ChargerEvent.Kind.DIAGNOSTICS, status="Uploading"
    ).aexists()


async def test_firmware_status_notification_updates_the_charger(booted, charger):
    before = timezone.now()
    assert await booted.result("FirmwareStatusNotification", {"status": "Installing"}) == {}
    await charger.arefresh_from_db()
    assert charger.firmware_status == "Installing"
    assert charger.firmware_status_at >= before
    assert await booted.result("FirmwareStatusNotification", {"status": "Installed"}) == {}
    await charger.arefresh_from_db()
    assert charger.firmware_status == "Installed"
    assert await charger.events.filter(kind=ChargerEvent.Kind.FIRMWARE).acount() == 2


async def test_security_event_notification(booted, charger):
    reply = await booted.result(
        "SecurityEventNotification",
        {
            "type": "TamperDetectionActivated",
            "timestamp": "2024-03-01T13:00:00+01:00",
            "techInfo": "lid",
        },
    )
    assert reply == {}
    event = await charger.events.aget(kind=ChargerEvent.Kind.SECURITY)
    assert (event.status, event.timestamp, event.detail) == (
        "TamperDetectionActivated",
        normalize.parse_datetime(T0),
        {"tech_info": "lid"},
    )


async def test_log_status_notification(booted, charger):
    assert (
        await booted.result("LogStatusNotification", {"status": "Uploaded", "requestId": 17}) == {}
    )
    event = await charger.events.aget(kind=ChargerEvent.Kind.LOG)
    assert (event.status, event.request_id) == ("Uploaded", 17)


async def test_signed_firmware_status_notification(booted, charger):
    assert (
        await booted.result(
            "SignedFirmwareStatusNotification", {"status": "SignatureVerified", "requestId": 3}
        )
        == {}
    )
    await charger.arefresh_from_db()
    assert charger.firmware_status == "SignatureVerified"
    event = await charger.events.aget(kind=ChargerEvent.Kind.SIGNED_FIRMWARE)
    assert event.request_id == 3


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("LogStatusNotification", {"status": "Uploaded", "requestId": 2**70}),
        ("SignedFirmwareStatusNotification", {"status": "Installed", "requestId": -(2**70)}),
    ],
)
async def test_request_ids_beyond_64_bits_are_refused(booted, charger, action, payload):
    code, _ = await booted.error(action, payload)
    assert code == "PropertyConstraintViolation"
    assert not await charger.events.exclude(kind__in=["Boot", "Connection"]).aexists()


async def test_sign_certificate_is_rejected_without_a_certificate_authority(booted, charger):
    assert await booted.result(
        "SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"}
    ) == {"status": "Rejected"}
    assert await charger.events.filter(
        kind=ChargerEvent.Kind.SECURITY, status="SignCertificateRejected"
    ).aexists()


# --- What a charger may not send -----------------------------------------------------------------


async def test_an_unknown_action_is_not_implemented(booted):
    reply = await booted.call("MakeCoffee", {"sugar": 2}, message_id="c-1")
    assert reply[:3] == [4, "c-1", "NotImplemented"]


@pytest.mark.parametrize(
    "action", ["Reset", "RemoteStartTransaction", "GetConfiguration", "TriggerMessage"]
)
async def test_a_central_system_action_sent_by_a_charger_is_not_supported(booted, action):
    code, description = await booted.error(action, {"type": "Soft"})
    assert code == "NotSupported"
    assert action in description


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"chargePointModel": "M"}, "OccurenceConstraintViolation"),
        ({"chargePointVendor": 7, "chargePointModel": "M"}, "TypeConstraintViolation"),
        ({"chargePointVendor": "V" * 21, "chargePointModel": "M"}, "PropertyConstraintViolation"),
        ({**BOOT, "colour": "red"}, "FormationViolation"),
    ],
)
async def test_schema_violations_get_the_16_error_codes(link, charger, payload, code):
    assert (await link.error("BootNotification", payload))[0] == code
    assert not await charger.events.filter(kind=ChargerEvent.Kind.BOOT).aexists()


@pytest.mark.parametrize(
    ("text", "reply_id", "code"),
    [
        ("{not json", "-1", "FormationViolation"),
        ('{"a": 1}', "-1", "FormationViolation"),
        ('[2, 5, "Heartbeat", {}]', "5", "FormationViolation"),
        ('[2, "m-1", "Heartbeat"]', "m-1", "FormationViolation"),
        ('[7, "m-1", "Heartbeat", {}]', "m-1", "ProtocolError"),
    ],
)
async def test_malformed_frames_get_a_call_error(booted, text, reply_id, code):
    reply = await booted.send_text(text)
    assert reply is not None
    assert reply[:3] == [4, reply_id, code]
    assert await booted.result("Heartbeat", {})


async def test_answers_to_our_calls_are_matched_and_unknown_ones_ignored(booted):
    booted.dispatcher.pending["ours-1"] = "Reset"
    outcome = await booted.dispatcher.handle_text('[3, "ours-1", {"status": "Accepted"}]')
    assert (outcome.reply, outcome.kind, outcome.action) == (None, 3, "Reset")
    assert "ours-1" not in booted.dispatcher.pending
    outcome = await booted.dispatcher.handle_text('[3, "nobody", {}]')
    assert (outcome.reply, outcome.kind, outcome.message_id, outcome.action) == (
        None,
        3,
        "nobody",
        "",
    )
    outcome = await booted.dispatcher.handle_text('[4, "nobody-2", "InternalError", "oops", {}]')
    assert (outcome.reply, outcome.kind) == (None, 4)


async def test_a_charger_deleted_mid_session_gets_an_internal_error_not_a_crash(booted, charger):
    await IdToken.objects.all().adelete()
    await Charger.objects.filter(pk=charger.pk).adelete()
    code, _ = await booted.error(
        "StartTransaction", {"connectorId": 1, "idTag": "X", "meterStart": 0, "timestamp": T0}
    )
    assert code == "InternalError"
