"""OCPP 2.x normalization, session energy and quirk corrections: pure functions, no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from chargers import metering, normalize, normalize2x, quirks
from chargers.metering import Reading, session_energy
from chargers.normalize import NormalizationError
from chargers.quirks import Context, Correction

T0 = datetime(2025, 3, 1, 10, tzinfo=UTC)
NOW = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
PLAIN = Context()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# --- EVSEs and connectors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("evse", "connector", "number"),
    [(0, None, 0), (1, None, 1), (1, 1, 1), (3, 1, 3), (1, 2, 1001), (2, 2, 1002), (999, 3, 2999)],
)
def test_connector_numbers_match_16_for_one_connector_per_evse(evse, connector, number):
    assert normalize2x.connector_number(evse, connector) == number
    if connector and evse:
        assert normalize2x.evse_of(number) == (evse, connector)


@pytest.mark.parametrize(("evse", "connector"), [(1000, 1), (-1, 1), (1, 0), (1, 100)])
def test_connector_numbers_refuse_what_they_cannot_hold(evse, connector):
    with pytest.raises(NormalizationError):
        normalize2x.connector_number(evse, connector)


# --- Status --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "charging_state", "transaction", "status"),
    [
        ("Available", "", "", "Available"),
        ("Reserved", "", "", "Reserved"),
        ("Unavailable", "Charging", "active", "Unavailable"),
        ("Faulted", "", "", "Faulted"),
        ("Occupied", "", "", "Occupied"),
        ("Occupied", "Charging", "active", "Charging"),
        ("Occupied", "SuspendedEV", "active", "SuspendedEV"),
        ("Occupied", "SuspendedEVSE", "active", "SuspendedEVSE"),
        ("Occupied", "EVConnected", "active", "Preparing"),
        ("Occupied", "Idle", "active", "Preparing"),
        ("Occupied", "", "ended", "Finishing"),
        ("Occupied", "Charging", "", "Occupied"),
        ("Broken", "", "", "Unknown"),
    ],
)
def test_2x_statuses_map_onto_the_common_set(raw, charging_state, transaction, status):
    assert (
        normalize2x.status_from_v2(raw, charging_state=charging_state, transaction=transaction)
        == status
    )


# --- Meter values --------------------------------------------------------------------------------


def sampled(value, measurand="Energy.Active.Import.Register", **extra):
    return {"value": value, "measurand": measurand, **extra}


def read(*sampled_values, timestamp="2025-03-01T10:00:00Z", context=PLAIN):
    return normalize2x.samples_from_v2(
        [{"timestamp": timestamp, "sampledValue": list(sampled_values)}], context, received_at=NOW
    )


@pytest.mark.parametrize(
    ("value", "unit_of_measure", "si_value", "si_unit"),
    [
        (1234, None, Decimal(1234), "Wh"),  # energy defaults to Wh
        (1.5, {"unit": "kWh"}, Decimal(1500), "Wh"),
        (12, {"unit": "Wh", "multiplier": 3}, Decimal(12000), "Wh"),
        (12.5, {"unit": "kWh", "multiplier": -1}, Decimal(1250), "Wh"),
        (7, {"unit": "kvarh"}, Decimal(7000), "varh"),
    ],
)
def test_energy_is_scaled_to_wh_with_units_and_multipliers(
    value, unit_of_measure, si_value, si_unit
):
    extra = {"unitOfMeasure": unit_of_measure} if unit_of_measure else {}
    measurand = (
        "Energy.Reactive.Import.Register" if si_unit == "varh" else "Energy.Active.Import.Register"
    )
    (sample,) = read(sampled(value, measurand, **extra))
    assert (sample.value, sample.unit) == (si_value, si_unit)


def test_other_measurands_keep_their_units_phases_locations_and_contexts():
    samples = read(
        sampled(11, "Power.Active.Import", unitOfMeasure={"unit": "kW"}, context="Sample.Clock"),
        sampled(16.2, "Current.Import", phase="L2", location="Outlet"),
        sampled(231, "Voltage", phase="L1-N"),
        sampled(55, "SoC", location="EV"),
        sampled(2, "Power.Active.Import", unitOfMeasure={"unit": "W", "multiplier": 3}),
    )
    assert [(s.measurand, s.value, s.unit, s.phase, s.location, s.context) for s in samples] == [
        ("Power.Active.Import", Decimal(11000), "W", "", "", "Sample.Clock"),
        ("Current.Import", Decimal("16.2"), "A", "L2", "Outlet", "Sample.Periodic"),
        ("Voltage", Decimal(231), "V", "L1-N", "", "Sample.Periodic"),
        ("SoC", Decimal(55), "%", "", "EV", "Sample.Periodic"),
        ("Power.Active.Import", Decimal(2000), "W", "", "", "Sample.Periodic"),
    ]


def test_the_raw_reading_is_kept_with_its_multiplier():
    (sample,) = read(sampled(21.25, unitOfMeasure={"unit": "kWh", "multiplier": 1}))
    assert (sample.raw_value, sample.raw_unit, sample.value) == (
        "21.25E1",
        "kWh",
        Decimal("212500"),
    )
    assert normalize.to_si(Decimal(sample.raw_value), sample.raw_unit)[0] == sample.value


def test_signed_meter_values_are_kept_verbatim():
    signed = {
        "signedMeterData": "AAEC+/==",
        "signingMethod": "ECDSA-secp384r1-SHA256",
        "encodingMethod": "OCMF",
        "publicKey": "ü-key",
    }
    (sample,) = read(sampled(100, signedMeterValue=signed))
    assert sample.value == Decimal(100)
    assert (
        sample.signed_data
        == '{"signedMeterData":"AAEC+/==","signingMethod":"ECDSA-secp384r1-SHA256","encodingMethod":"OCMF","publicKey":"ü-key"}'
    )
    assert json.loads(sample.signed_data) == signed


@pytest.mark.parametrize(
    "bad",
    [
        sampled(1, unitOfMeasure={"unit": "Wh", "multiplier": 40}),
        sampled(10**16),
        sampled(True),
    ],
)
def test_unreadable_readings_are_refused(bad):
    with pytest.raises(NormalizationError):
        read(bad)


# --- Transaction events --------------------------------------------------------------------------


def event_payload(**overrides):
    payload = {
        "eventType": "Started",
        "timestamp": "2025-03-01T10:00:00+01:00",
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {
            "transactionId": "abc",
            "chargingState": "Charging",
            "remoteStartId": 5,
        },
        "evse": {"id": 2, "connectorId": 1},
        "idToken": {"idToken": "TAG", "type": "ISO14443"},
        "meterValue": [{"timestamp": "2025-03-01T09:00:00Z", "sampledValue": [{"value": 10}]}],
    }
    payload.update(overrides)
    return payload


def test_a_transaction_event_is_read_into_the_normalized_model():
    event = normalize2x.transaction_event(event_payload(), PLAIN, received_at=NOW)
    assert (event.event_type, event.seq_no, event.transaction_id, event.trigger_reason) == (
        "Started",
        0,
        "abc",
        "Authorized",
    )
    assert event.timestamp == datetime(2025, 3, 1, 9, tzinfo=UTC)
    assert (event.evse_id, event.connector_number, event.evse_connector_id) == (2, 2, 1)
    assert (event.charging_state, event.remote_start_id, event.offline) == ("Charging", 5, False)
    assert event.id_token == normalize2x.IdTokenIn("TAG", "ISO14443")
    assert [s.value for s in event.samples] == [Decimal(10)]


def test_the_fingerprint_ignores_the_offline_flag_of_a_resend():
    first = normalize2x.transaction_event(event_payload(), PLAIN, received_at=NOW)
    again = normalize2x.transaction_event(event_payload(offline=True), PLAIN, received_at=NOW)
    other = normalize2x.transaction_event(
        event_payload(triggerReason="CablePluggedIn"), PLAIN, received_at=NOW
    )
    assert first.fingerprint == again.fingerprint != other.fingerprint
    assert again.offline is True


# --- Session energy ------------------------------------------------------------------------------


def readings(*values, start=0):
    return [Reading(at(start + i), Decimal(v)) for i, v in enumerate(values)]


def test_energy_is_the_register_difference():
    result = session_energy(readings(1000, 1500, 2500))
    assert (result.energy_wh, result.first_wh, result.last_wh, result.anomalies) == (
        Decimal(1500),
        1000,
        2500,
        (),
    )


def test_energy_does_not_depend_on_arrival_order():
    ordered = readings(100, 400, 900, 1600)
    assert session_energy(list(reversed(ordered))).energy_wh == Decimal(1500)


def test_16_start_and_stop_readings_bracket_the_samples():
    result = session_energy(
        readings(1200, 1800, start=1),
        start=Reading(at(0), Decimal(1000)),
        stop=Reading(at(10), Decimal(2000)),
    )
    assert result.energy_wh == Decimal(1000)


def test_a_rollover_is_counted_through():
    wrap = Decimal(10) ** 9
    result = session_energy(readings(wrap - 300, wrap - 100, 50, 400))
    assert (result.energy_wh, result.rollovers) == (Decimal(700), 1)
    assert result.anomalies == ("register_rollover",)


def test_a_32_bit_counter_rollover_is_counted_through():
    result = session_energy(readings(2**32 - 10, 5))
    assert (result.energy_wh, result.rollovers) == (Decimal(15), 1)


def test_a_fall_is_a_glitch_unless_the_register_resets_on_reboot():
    values = readings(1000, 1500, 20, 200, 400, 1600)
    glitch = session_energy(values)
    assert (glitch.energy_wh, glitch.ignored_falls, glitch.anomalies) == (
        Decimal(600),
        1,
        ("register_fall_ignored",),
    )
    reset = session_energy(values, resets_on_reboot=True)
    # 500 before the reboot, then the new register's 1600 from zero.
    assert (reset.energy_wh, reset.resets) == (Decimal(2100), 1)


def test_a_fall_from_low_in_the_range_is_no_rollover():
    # 95 kWh falling to 0 is a reset (or glitch), not a wrap of a 100 kWh register.
    result = session_energy(readings(95_000, 10))
    assert (result.rollovers, result.energy_wh) == (0, Decimal(0))


def test_only_the_outlet_total_register_counts():
    samples = [
        normalize.Sample(
            at(0),
            metering.ENERGY_REGISTER,
            "",
            "",
            "Transaction.Begin",
            Decimal(10),
            "Wh",
            "10",
            "Wh",
        ),
        normalize.Sample(
            at(1),
            metering.ENERGY_REGISTER,
            "L1",
            "",
            "Sample.Periodic",
            Decimal(99),
            "Wh",
            "99",
            "Wh",
        ),
        normalize.Sample(
            at(1),
            metering.ENERGY_REGISTER,
            "",
            "EV",
            "Sample.Periodic",
            Decimal(99),
            "Wh",
            "99",
            "Wh",
        ),
        normalize.Sample(
            at(1), "Power.Active.Import", "", "", "Sample.Periodic", Decimal(99), "W", "99", "W"
        ),
        normalize.Sample(
            at(2),
            metering.ENERGY_REGISTER,
            "",
            "Outlet",
            "Transaction.End",
            Decimal(60),
            "Wh",
            "60",
            "Wh",
        ),
    ]
    assert session_energy(metering.readings_from(samples)).energy_wh == Decimal(50)


# --- Quirks --------------------------------------------------------------------------------------


def profiles():
    return [
        quirks.Profile(1, "Acme", "", frozenset({"a"})),
        quirks.Profile(2, "Acme", "AC-22*", frozenset({"b"})),
        quirks.Profile(3, "Acme", "AC-22 Pro", frozenset({"c"})),
        quirks.Profile(4, "Other", "", frozenset({"d"})),
    ]


@pytest.mark.parametrize(
    ("vendor", "model", "pk"),
    [
        ("Acme", "AC-22 Pro", 3),
        ("ACME ", "ac-22 pro", 3),
        ("Acme", "AC-22 Lite", 2),
        ("Acme", "DC-150", 1),
        ("Other", "X", 4),
        ("Nobody", "X", None),
    ],
)
def test_the_most_specific_profile_matches(vendor, model, pk):
    match = quirks.match_profile(profiles(), vendor=vendor, model=model)
    assert (match.pk if match else None) == pk


def test_naive_timestamps_are_utc_unless_the_profile_reads_them_in_the_sites_zone():
    assert quirks.read_timestamp("2025-07-01T12:00:00", PLAIN, received_at=NOW).value == datetime(
        2025, 7, 1, 12, tzinfo=UTC
    )
    local = Context(frozenset({Correction.NAIVE_LOCAL_TIME}), "Europe/Amsterdam")
    corrected = quirks.read_timestamp("2025-07-01T12:00:00", local, received_at=NOW)
    assert corrected.value == datetime(2025, 7, 1, 10, tzinfo=UTC)  # CEST is UTC+2
    assert corrected.corrections == ("naive_local_time",)
    # A timestamp with a zone is read as sent, also with the correction on.
    aware = quirks.read_timestamp("2025-07-01T12:00:00-05:00", local, received_at=NOW)
    assert (aware.value, aware.corrections) == (datetime(2025, 7, 1, 17, tzinfo=UTC), ())


def test_the_placeholder_timestamp_becomes_the_time_it_arrived():
    with_quirk = Context(frozenset({Correction.PLACEHOLDER_TIMESTAMP}))
    corrected = quirks.read_timestamp("0001-01-01T00:00:00Z", with_quirk, received_at=NOW)
    assert (corrected.value, corrected.corrections) == (NOW, ("placeholder_timestamp",))
    assert quirks.read_timestamp("0001-01-01T00:00:00Z", PLAIN, received_at=NOW).value.year == 1


@pytest.mark.parametrize(
    ("correction", "unit", "value", "fixed"),
    [
        (Correction.ENERGY_KWH_LABELLED_WH, "Wh", Decimal("12.5"), Decimal(12500)),
        (Correction.ENERGY_KWH_LABELLED_WH, "", Decimal("12.5"), Decimal(12500)),
        (Correction.ENERGY_KWH_LABELLED_WH, "kWh", Decimal(12500), Decimal(12500)),
        (Correction.ENERGY_WH_LABELLED_KWH, "kWh", Decimal(12_500_000), Decimal(12500)),
        (Correction.ENERGY_WH_LABELLED_KWH, "Wh", Decimal(12500), Decimal(12500)),
    ],
)
def test_energy_unit_labels_are_corrected(correction, unit, value, fixed):
    result = quirks.correct_energy(
        value,
        measurand="Energy.Active.Import.Register",
        unit_label=unit,
        context=Context(frozenset({correction})),
    )
    assert result.value == fixed
    assert result.corrections == ((correction.value,) if fixed != value else ())


def test_energy_corrections_leave_other_measurands_alone():
    context = Context(frozenset({Correction.ENERGY_KWH_LABELLED_WH}))
    (power,) = read(sampled(7, "Power.Active.Import", unitOfMeasure={"unit": "W"}), context=context)
    (register,) = read(sampled(7, unitOfMeasure={"unit": "Wh"}), context=context)
    assert (power.value, power.corrections) == (Decimal(7), ())
    assert (register.value, register.corrections) == (Decimal(7000), ("energy_kwh_labelled_wh",))


def test_16_meter_values_carry_the_corrections_applied():
    context = Context(
        frozenset({Correction.NAIVE_LOCAL_TIME, Correction.ENERGY_KWH_LABELLED_WH}), "Asia/Tokyo"
    )
    samples = quirks.samples_from_v16(
        [
            {
                "timestamp": "2025-03-01T09:00:00",
                "sampled_value": [
                    {"value": "3.25", "unit": "Wh"},
                    {"value": "16", "measurand": "Current.Import"},
                ],
            }
        ],
        context,
        received_at=NOW,
    )
    energy, current = samples
    assert energy.timestamp == datetime(2025, 3, 1, 0, tzinfo=UTC)
    assert (energy.value, energy.corrections) == (
        Decimal(3250),
        ("naive_local_time", "energy_kwh_labelled_wh"),
    )
    assert (current.value, current.corrections) == (Decimal(16), ("naive_local_time",))
    assert energy.raw_value == "3.25"  # what the charger sent stays as sent


def test_unknown_correction_names_are_found():
    assert quirks.unknown_corrections(["naive_local_time", "made_up"]) == ["made_up"]
