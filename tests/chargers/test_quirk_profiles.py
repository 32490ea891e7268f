"""Quirk profiles: matched from the BootNotification, applied to 1.6 and 2.x frames, recorded on
the corrected values; the admin edits them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from chargers.models import (
    Charger,
    ChargerEvent,
    ConnectorStatusChange,
    MeterSample,
    QuirkProfile,
    Session,
    SessionState,
    UnmatchedStop,
)
from chargers.quirks import Correction
from tests.chargers.stations import Station, energy, meter_value, transaction_event

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2025, 7, 1, 10, tzinfo=UTC)


def profile(
    name: str, vendor: str, *corrections: Correction, model_pattern: str = "", **fields
) -> QuirkProfile:
    return QuirkProfile.objects.create(
        name=name,
        vendor=vendor,
        model_pattern=model_pattern,
        corrections=[c.value for c in corrections],
        **fields,
    )


def booted(charger, version: str, vendor: str = "Quirky", model: str = "Q-1") -> Station:
    station = Station(charger, version)
    if version == "1.6":
        reply = station.result(
            "BootNotification", {"chargePointVendor": vendor, "chargePointModel": model}
        )
    else:
        reply = station.boot(vendor=vendor, model=model)
    assert reply["status"] == "Accepted"
    return station


# --- Matching ------------------------------------------------------------------------------------


def test_the_profile_is_matched_at_boot_and_the_most_specific_wins(charger):
    profile("Quirky, any model", "Quirky", Correction.PLACEHOLDER_TIMESTAMP)
    exact = profile("Quirky Q-1", "quirky", Correction.NAIVE_LOCAL_TIME, model_pattern="Q-*")
    profile("Disabled", "Quirky", Correction.DUPLICATE_SEQ_NO, model_pattern="Q-1", enabled=False)
    station = booted(charger, "2.0.1")
    charger.refresh_from_db()
    assert charger.quirk_profile == exact
    assert station.handler.context.corrections == frozenset({"naive_local_time"})
    assert (
        ChargerEvent.objects.get(charger=charger, kind=ChargerEvent.Kind.BOOT).detail[
            "quirk_profile"
        ]
        == "Quirky Q-1"
    )
    # A new boot with another model moves the charger to the profile that matches it.
    booted(charger, "2.0.1", model="Z-9")
    charger.refresh_from_db()
    assert charger.quirk_profile.name == "Quirky, any model"


def test_a_pinned_profile_stays_and_no_match_clears(charger, make_charger):
    chosen = profile("Chosen by hand", "Elsewhere", Correction.REGISTER_RESETS_ON_REBOOT)
    profile("Quirky", "Quirky", Correction.PLACEHOLDER_TIMESTAMP)
    Charger.objects.filter(pk=charger.pk).update(quirk_profile=chosen, quirk_profile_pinned=True)
    booted(charger, "1.6")
    charger.refresh_from_db()
    assert charger.quirk_profile == chosen
    other = make_charger("CP-2", quirk_profile=chosen)
    booted(other, "1.6", vendor="Honest")
    other.refresh_from_db()
    assert other.quirk_profile is None


def test_the_profile_applies_from_the_handshake_on(charger):
    chosen = profile("Zoned", "Quirky", Correction.NAIVE_LOCAL_TIME)
    Charger.objects.filter(pk=charger.pk).update(quirk_profile=chosen)
    station = Station(charger, "2.0.1")  # reconnects without a new boot
    assert station.handler.context.corrections == frozenset({"naive_local_time"})
    assert station.handler.context.time_zone == "Europe/Amsterdam"


# --- Timestamps ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_naive_timestamps_are_read_in_the_sites_zone(charger, version):
    profile("Zoned", "Quirky", Correction.NAIVE_LOCAL_TIME)
    station = booted(charger, version)
    if version == "1.6":
        station.result(
            "StatusNotification",
            {
                "connectorId": 1,
                "errorCode": "NoError",
                "status": "Available",
                "timestamp": "2025-07-01T12:00:00",
            },
        )
    else:
        station.result(
            "StatusNotification",
            {
                "timestamp": "2025-07-01T12:00:00",
                "connectorStatus": "Available",
                "evseId": 1,
                "connectorId": 1,
            },
        )
    change = ConnectorStatusChange.objects.get()
    # Amsterdam is UTC+2 in July.
    assert (change.timestamp, change.corrections) == (T0, ["naive_local_time"])


def test_without_the_profile_a_naive_timestamp_is_utc(charger):
    station = booted(charger, "2.0.1")
    station.result(
        "StatusNotification",
        {
            "timestamp": "2025-07-01T12:00:00",
            "connectorStatus": "Available",
            "evseId": 1,
            "connectorId": 1,
        },
    )
    change = ConnectorStatusChange.objects.get()
    assert (change.timestamp, change.corrections) == (datetime(2025, 7, 1, 12, tzinfo=UTC), [])


def test_the_placeholder_timestamp_is_replaced_in_a_16_start(charger, id_token):
    profile("No clock", "Quirky", Correction.PLACEHOLDER_TIMESTAMP)
    station = booted(charger, "1.6")
    before = datetime.now(UTC)
    station.result(
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": "TAG-OK",
            "meterStart": 100,
            "timestamp": "0001-01-01T00:00:00Z",
        },
    )
    session = Session.objects.get()
    assert session.started_at >= before - timedelta(seconds=1)
    assert session.corrections == ["placeholder_timestamp"]


# --- Energy --------------------------------------------------------------------------------------


def test_16_energy_sent_in_kwh_but_labelled_wh(charger, id_token):
    profile("kWh as Wh", "Quirky", Correction.ENERGY_KWH_LABELLED_WH)
    station = booted(charger, "1.6")
    started = station.result(
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": "TAG-OK",
            "meterStart": 12,
            "timestamp": "2025-07-01T10:00:00Z",
        },
    )
    transaction_id = started["transactionId"]
    station.result(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": transaction_id,
            "meterValue": [
                {
                    "timestamp": "2025-07-01T10:30:00Z",
                    "sampledValue": [{"value": "13.5", "unit": "Wh"}],
                }
            ],
        },
    )
    station.result(
        "StopTransaction",
        {"transactionId": transaction_id, "meterStop": 15, "timestamp": "2025-07-01T11:00:00Z"},
    )
    session = Session.objects.get()
    assert (session.meter_start_wh, session.meter_stop_wh, session.energy_wh) == (
        Decimal(12000),
        Decimal(15000),
        Decimal(3000),
    )
    assert session.corrections == ["energy_kwh_labelled_wh"]
    sample = MeterSample.objects.get()
    assert (sample.value, sample.raw_value, sample.raw_unit, sample.corrections) == (
        Decimal(13500),
        "13.5",
        "Wh",
        ["energy_kwh_labelled_wh"],
    )


def test_2x_energy_sent_in_wh_but_labelled_kwh(charger, id_token):
    profile("Wh as kWh", "Quirky", Correction.ENERGY_WH_LABELLED_KWH)
    station = booted(charger, "2.0.1")
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            id_token="TAG-OK",
            meter_values=[
                meter_value("2025-07-01T10:00:00Z", energy(5000, "Transaction.Begin", unit="kWh"))
            ],
        ),
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Ended",
            1,
            timestamp="2025-07-01T11:00:00Z",
            trigger="StopAuthorized",
            stopped_reason="Local",
            meter_values=[
                meter_value("2025-07-01T11:00:00Z", energy(12000, "Transaction.End", unit="kWh"))
            ],
        ),
    )
    session = Session.objects.get()
    assert (session.meter_start_wh, session.energy_wh) == (Decimal(5000), Decimal(7000))
    assert "energy_wh_labelled_kwh" in session.corrections
    assert set(MeterSample.objects.values_list("raw_unit", flat=True)) == {"kWh"}


@pytest.mark.parametrize("with_quirk", [True, False])
def test_a_register_that_resets_on_reboot(charger, id_token, with_quirk):
    if with_quirk:
        profile("Resets", "Quirky", Correction.REGISTER_RESETS_ON_REBOOT)
    station = booted(charger, "2.0.1")
    station.result(
        "TransactionEvent",
        transaction_event(
            "Started",
            0,
            evse=1,
            id_token="TAG-OK",
            meter_values=[meter_value("2025-07-01T10:00:00Z", energy(50_000, "Transaction.Begin"))],
        ),
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Updated",
            1,
            timestamp="2025-07-01T10:30:00Z",
            trigger="MeterValuePeriodic",
            meter_values=[meter_value("2025-07-01T10:30:00Z", energy(53_000))],
        ),
    )
    # The charger rebooted mid-session: its register starts again from zero.
    station.boot(vendor="Quirky", model="Q-1", reason="Watchdog")
    station.result(
        "TransactionEvent",
        transaction_event(
            "Updated",
            2,
            timestamp="2025-07-01T10:45:00Z",
            trigger="MeterValuePeriodic",
            offline=True,
            meter_values=[meter_value("2025-07-01T10:45:00Z", energy(400))],
        ),
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Ended",
            3,
            timestamp="2025-07-01T11:00:00Z",
            trigger="StopAuthorized",
            stopped_reason="Local",
            meter_values=[meter_value("2025-07-01T11:00:00Z", energy(2_000, "Transaction.End"))],
        ),
    )
    session = Session.objects.get()
    if with_quirk:
        assert session.energy_wh == Decimal(3000 + 2000)
        assert "register_resets_on_reboot" in session.corrections
    else:
        # Detected and flagged, but not counted: the register never climbed back past 53 kWh.
        assert session.energy_wh == Decimal(3000)
        assert "register_fall_ignored" in session.corrections


def test_16_register_reset_counts_through_the_stop(charger, id_token):
    profile("Resets", "Quirky", Correction.REGISTER_RESETS_ON_REBOOT)
    station = booted(charger, "1.6")
    transaction_id = station.result(
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": "TAG-OK",
            "meterStart": 8000,
            "timestamp": "2025-07-01T10:00:00Z",
        },
    )["transactionId"]
    station.result(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": transaction_id,
            "meterValue": [
                {"timestamp": "2025-07-01T10:20:00Z", "sampledValue": [{"value": "9000"}]}
            ],
        },
    )
    station.result(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": transaction_id,
            "meterValue": [
                {"timestamp": "2025-07-01T10:40:00Z", "sampledValue": [{"value": "300"}]}
            ],
        },
    )
    assert Session.objects.get().energy_wh == Decimal(1300)
    station.result(
        "StopTransaction",
        {"transactionId": transaction_id, "meterStop": 700, "timestamp": "2025-07-01T11:00:00Z"},
    )
    session = Session.objects.get()
    assert (session.meter_stop_wh, session.energy_wh) == (Decimal(700), Decimal(1700))


# --- Transactions --------------------------------------------------------------------------------


def test_duplicate_seq_no_with_the_profile_tells_events_apart_by_content(charger, id_token):
    profile("Same seqNo", "Quirky", Correction.DUPLICATE_SEQ_NO)
    station = booted(charger, "2.0.1")
    for minutes, wh in ((0, 1000), (10, 2000), (20, 3000)):
        event_type = "Started" if minutes == 0 else "Updated"
        station.result(
            "TransactionEvent",
            transaction_event(
                event_type,
                0,
                timestamp=f"2025-07-01T10:{minutes:02d}:00Z",
                evse=1,
                id_token="TAG-OK",
                trigger="MeterValuePeriodic",
                meter_values=[meter_value(f"2025-07-01T10:{minutes:02d}:00Z", energy(wh))],
            ),
        )
    # The same frame again is still a re-send.
    station.result(
        "TransactionEvent",
        transaction_event(
            "Updated",
            0,
            timestamp="2025-07-01T10:20:00Z",
            evse=1,
            id_token="TAG-OK",
            trigger="MeterValuePeriodic",
            meter_values=[meter_value("2025-07-01T10:20:00Z", energy(3000))],
        ),
    )
    station.result(
        "TransactionEvent",
        transaction_event(
            "Ended",
            0,
            timestamp="2025-07-01T10:30:00Z",
            trigger="StopAuthorized",
            stopped_reason="Local",
        ),
    )
    session = Session.objects.get()
    assert (session.state, session.energy_wh, session.transaction_events.count()) == (
        SessionState.COMPLETED,
        Decimal(2000),
        4,
    )
    assert "duplicate_seq_no" in session.corrections
    assert not ChargerEvent.objects.filter(kind=ChargerEvent.Kind.RECONCILIATION).exists()


@pytest.mark.parametrize("missing", [True, False])
def test_16_stop_without_a_transaction_id_stops_the_open_session(charger, id_token, missing):
    profile("No tx id", "Quirky", Correction.STOP_WITHOUT_TRANSACTION_ID)
    station = booted(charger, "1.6")
    station.result(
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": "TAG-OK",
            "meterStart": 100,
            "timestamp": "2025-07-01T10:00:00Z",
        },
    )
    stop = {"meterStop": 900, "timestamp": "2025-07-01T11:00:00Z", "idTag": "TAG-OK"}
    if not missing:
        stop["transactionId"] = 0
    reply = station.result("StopTransaction", stop)
    assert reply == {"idTagInfo": {"status": "Accepted"}}
    session = Session.objects.get()
    assert (session.state, session.energy_wh, session.corrections) == (
        SessionState.COMPLETED,
        Decimal(800),
        ["stop_without_transaction_id"],
    )
    # A re-send finds the session it stopped, and nothing is left unmatched.
    assert station.result("StopTransaction", stop) == reply
    assert not UnmatchedStop.objects.exists()


def test_16_stop_without_a_transaction_id_is_refused_without_the_profile(charger, id_token):
    station = booted(charger, "1.6")
    station.result(
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": "TAG-OK",
            "meterStart": 100,
            "timestamp": "2025-07-01T10:00:00Z",
        },
    )
    code, _ = station.error(
        "StopTransaction", {"meterStop": 900, "timestamp": "2025-07-01T11:00:00Z"}
    )
    assert code == "OccurenceConstraintViolation"  # the 1.6 spelling
    station.result(
        "StopTransaction",
        {"transactionId": 0, "meterStop": 900, "timestamp": "2025-07-01T11:00:00Z"},
    )
    assert Session.objects.get().state == SessionState.ACTIVE
    assert UnmatchedStop.objects.get().transaction_id == "0"


def test_an_ambiguous_stop_without_a_transaction_id_is_kept_unmatched(charger, organization):
    profile("No tx id", "Quirky", Correction.STOP_WITHOUT_TRANSACTION_ID)
    from chargers import services

    for tag in ("TAG-A", "TAG-B"):
        services.id_token_create(organization=organization, token=tag)
    station = booted(charger, "1.6")
    for connector, tag in ((1, "TAG-A"), (2, "TAG-B")):
        station.result(
            "StartTransaction",
            {
                "connectorId": connector,
                "idTag": tag,
                "meterStart": 100,
                "timestamp": "2025-07-01T10:00:00Z",
            },
        )
    station.result(
        "StopTransaction",
        {"transactionId": 0, "meterStop": 900, "timestamp": "2025-07-01T11:00:00Z"},
    )
    assert Session.objects.filter(state=SessionState.ACTIVE).count() == 2
    assert UnmatchedStop.objects.count() == 1
    # With the id tag it is no longer ambiguous.
    station.result(
        "StopTransaction",
        {
            "transactionId": 0,
            "meterStop": 950,
            "timestamp": "2025-07-01T11:05:00Z",
            "idTag": "TAG-B",
        },
    )
    assert Session.objects.get(id_tag="TAG-B").state == SessionState.COMPLETED


# --- Admin ---------------------------------------------------------------------------------------


def test_quirk_profiles_are_edited_in_the_admin(client):
    admin = User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client.force_login(admin)
    page = client.get("/admin/chargers/quirkprofile/add/")
    assert page.status_code == 200
    assert b"naive_local_time" in page.content
    response = client.post(
        "/admin/chargers/quirkprofile/add/",
        {
            "name": "Acme AC",
            "vendor": " Acme ",
            "model_pattern": "AC-*",
            "corrections": ["naive_local_time", "duplicate_seq_no"],
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content
    saved = QuirkProfile.objects.get()
    assert (saved.vendor, saved.corrections) == ("Acme", ["naive_local_time", "duplicate_seq_no"])
    refused = client.post(
        "/admin/chargers/quirkprofile/add/",
        {"name": "Bad", "vendor": "X", "corrections": ["no_such_fix"]},
    )
    assert refused.status_code == 200
    assert QuirkProfile.objects.count() == 1
    assert b"no_such_fix is not one of the available choices" in refused.content
