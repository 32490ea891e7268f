"""Normalization of OCPP values: times to UTC, readings to SI units, start fingerprints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargers import normalize
from chargers.normalize import NormalizationError

# --- Timestamps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01T12:00:00Z", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T12:00:00z", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T12:00:00.250Z", datetime(2024, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)),
        ("2024-03-01T13:30:00+01:30", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T07:00:00-05:00", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        # No zone: taken as UTC.
        ("2024-03-01T12:00:00", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        (" 2024-03-01T12:00:00Z ", datetime(2024, 3, 1, 12, tzinfo=UTC)),
    ],
)
def test_parse_datetime_gives_utc(text, expected):
    parsed = normalize.parse_datetime(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-03-01T25:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_unreadable_timestamps_are_normalization_errors(text):
    with pytest.raises(NormalizationError):
        normalize.parse_datetime(text)


def test_format_datetime_is_utc_milliseconds_ending_in_z():
    moment = datetime(2024, 3, 1, 13, 30, 15, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert normalize.format_datetime(moment) == "2024-03-01T12:30:15.123Z"


def test_format_datetime_refuses_naive_datetimes():
    with pytest.raises(ValueError):
        normalize.format_datetime(datetime(2024, 3, 1, 12))


aware_datetimes = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)


@given(aware_datetimes)
def test_parse_of_format_round_trips_to_the_millisecond(moment):
    text = normalize.format_datetime(moment)
    assert text.endswith("Z")
    parsed = normalize.parse_datetime(text)
    assert parsed.tzinfo is not None
    assert parsed == moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert normalize.format_datetime(parsed) == text


def test_utc_now_is_aware():
    assert normalize.utc_now().utcoffset() == timedelta(0)


# --- Units ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "expected", "si_unit"),
    [
        ("12.5", "kWh", "12500", "Wh"),
        ("12500", "Wh", "12500", "Wh"),
        ("7.4", "kW", "7400", "W"),
        ("7400", "W", "7400", "W"),
        ("2", "kvarh", "2000", "varh"),
        ("2", "kvar", "2000", "var"),
        ("3", "kVA", "3000", "VA"),
        ("16", "A", "16", "A"),
        ("230.1", "V", "230.1", "V"),
        ("80", "Percent", "80", "%"),
        ("50", "Hertz", "50", "Hz"),
        ("300", "K", "26.85", "Celsius"),
        ("212", "Fahrenheit", "100", "Celsius"),
        ("32", "Fahrenheit", "0", "Celsius"),
        ("21", "Celsius", "21", "Celsius"),
        ("21", "Celcius", "21", "Celsius"),
    ],
)
def test_to_si(value, unit, expected, si_unit):
    converted, converted_unit = normalize.to_si(Decimal(value), unit)
    assert converted == Decimal(expected)
    assert converted_unit == si_unit


def test_to_si_applies_a_power_of_ten_multiplier():
    assert normalize.to_si(Decimal("7.4"), "W", 3) == (Decimal("7400"), "W")


@given(
    st.decimals(
        min_value=-(10**9), max_value=10**9, places=3, allow_nan=False, allow_infinity=False
    )
)
def test_kwh_scaled_equals_wh(value):
    assert normalize.to_si(value, "kWh")[0] == normalize.to_si(value * 1000, "Wh")[0]
    assert normalize.to_si(value, "kW")[0] == normalize.to_si(value * 1000, "W")[0]


@given(st.decimals(min_value=-400, max_value=1000, places=2, allow_nan=False, allow_infinity=False))
def test_temperature_scales_agree(celsius):
    kelvin = normalize.to_si(celsius + Decimal("273.15"), "K")[0]
    fahrenheit = normalize.to_si(celsius * 9 / 5 + 32, "Fahrenheit")[0]
    assert kelvin == celsius
    assert abs(fahrenheit - celsius) < Decimal("1e-20")


@pytest.mark.parametrize(
    ("measurand", "unit"),
    [
        ("Energy.Active.Import.Register", "Wh"),
        ("Energy.Active.Export.Interval", "Wh"),
        ("Energy.Reactive.Import.Register", "varh"),
        ("Power.Active.Import", "W"),
        ("Power.Offered", "W"),
        ("Power.Reactive.Export", "var"),
        ("Power.Factor", ""),
        ("Current.Import", "A"),
        ("Current.Offered", "A"),
        ("Voltage", "V"),
        ("Frequency", "Hertz"),
        ("Temperature", "Celsius"),
        ("SoC", "Percent"),
    ],
)
def test_default_unit_per_measurand(measurand, unit):
    assert normalize.default_unit(measurand) == unit


@pytest.mark.parametrize("text", ["", "abc", "NaN", "Infinity", "-inf", "1,5"])
def test_parse_decimal_refuses_non_numbers(text):
    with pytest.raises(NormalizationError):
        normalize.parse_decimal(text)


# --- Meter values --------------------------------------------------------------------------------


def test_samples_from_v16_flattens_and_normalizes():
    samples = normalize.samples_from_v16(
        [
            {
                "timestamp": "2024-03-01T13:00:00+01:00",
                "sampled_value": [
                    {"value": "12.5", "unit": "kWh"},
                    {
                        "value": "7.4",
                        "measurand": "Power.Active.Import",
                        "unit": "kW",
                        "context": "Sample.Clock",
                        "location": "Outlet",
                    },
                    {"value": "16.2", "measurand": "Current.Import", "phase": "L2"},
                    {"value": "56", "measurand": "SoC", "location": "EV"},
                ],
            },
            {"timestamp": "2024-03-01T12:01:00Z", "sampled_value": [{"value": "12600"}]},
        ]
    )
    at = datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert [
        (s.measurand, s.phase, s.location, s.context, s.value, s.unit, s.raw_value, s.raw_unit)
        for s in samples
    ] == [
        (
            "Energy.Active.Import.Register",
            "",
            "",
            "Sample.Periodic",
            Decimal("12500"),
            "Wh",
            "12.5",
            "kWh",
        ),
        ("Power.Active.Import", "", "Outlet", "Sample.Clock", Decimal("7400"), "W", "7.4", "kW"),
        ("Current.Import", "L2", "", "Sample.Periodic", Decimal("16.2"), "A", "16.2", ""),
        ("SoC", "", "EV", "Sample.Periodic", Decimal("56"), "%", "56", ""),
        (
            "Energy.Active.Import.Register",
            "",
            "",
            "Sample.Periodic",
            Decimal("12600"),
            "Wh",
            "12600",
            "",
        ),
    ]
    assert [s.timestamp for s in samples] == [at] * 4 + [at + timedelta(minutes=1)]


def test_signed_values_are_kept_verbatim():
    signed = 'OCMF|{"FV":"1.0","RD":[{"RV":12.5,"RU":"kWh"}]}|{"SD":"3045..."}'
    samples = normalize.samples_from_v16(
        [
            {
                "timestamp": "2024-03-01T12:00:00Z",
                "sampled_value": [
                    {
                        "value": signed,
                        "format": "SignedData",
                        "context": "Transaction.End",
                        "measurand": "Energy.Active.Import.Register",
                        "unit": "kWh",
                    },
                ],
            }
        ]
    )
    [sample] = samples
    assert sample.signed_data == signed
    assert sample.value is None
    assert sample.context == "Transaction.End"


def test_a_signed_value_beside_its_plain_reading_joins_it():
    samples = normalize.samples_from_v16(
        [
            {
                "timestamp": "2024-03-01T12:00:00Z",
                "sampled_value": [
                    {"value": "12.5", "unit": "kWh", "context": "Transaction.End"},
                    {"value": "AAECAw==", "format": "SignedData", "context": "Transaction.End"},
                ],
            }
        ]
    )
    [sample] = samples
    assert (sample.value, sample.unit, sample.signed_data) == (Decimal("12500"), "Wh", "AAECAw==")


@pytest.mark.parametrize(
    "value", ["twelve", "NaN", "1e30", "-1e30", "1" * 40, "0." + "0" * 3000 + "1"]
)
def test_unreadable_or_out_of_range_readings_are_refused(value):
    with pytest.raises(NormalizationError):
        normalize.samples_from_v16(
            [{"timestamp": "2024-03-01T12:00:00Z", "sampled_value": [{"value": value}]}]
        )


def test_last_energy_register_takes_the_latest_total():
    at = datetime(2024, 3, 1, 12, tzinfo=UTC)

    def sample(measurand: str, value: str, minutes: int, phase: str = "") -> normalize.Sample:
        return normalize.Sample(
            at + timedelta(minutes=minutes),
            measurand,
            phase,
            "",
            "Sample.Periodic",
            Decimal(value),
            "Wh",
            value,
            "Wh",
        )

    assert normalize.last_energy_register([]) is None
    assert normalize.last_energy_register([sample("Power.Active.Import", "7000", 0)]) is None
    assert normalize.last_energy_register(
        [
            sample(normalize.ENERGY_REGISTER, "200", 2),
            sample(normalize.ENERGY_REGISTER, "100", 1),
            sample(normalize.ENERGY_REGISTER, "999", 3, phase="L1"),
        ]
    ) == Decimal("200")


# --- Status and sessions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [
        "Available",
        "Preparing",
        "Charging",
        "SuspendedEVSE",
        "SuspendedEV",
        "Finishing",
        "Reserved",
        "Unavailable",
        "Faulted",
    ],
)
def test_v16_statuses_map_to_themselves(status):
    assert normalize.status_from_v16(status) == status


def test_an_unknown_status_is_unknown():
    assert normalize.status_from_v16("Occupied") == "Unknown"


def test_start_fingerprint_is_the_same_for_the_same_moment_in_any_zone():
    first = normalize.start_fingerprint(
        connector_id=1, id_tag="T", meter_start=10, timestamp="2024-03-01T12:00:00Z"
    )
    same = normalize.start_fingerprint(
        connector_id=1, id_tag="T", meter_start=10, timestamp="2024-03-01T13:00:00+01:00"
    )
    assert first == same
    assert len(first) == 64


@pytest.mark.parametrize(
    "changed",
    [
        {"connector_id": 2},
        {"id_tag": "U"},
        {"meter_start": 11},
        {"timestamp": "2024-03-01T12:00:01Z"},
    ],
)
def test_start_fingerprint_differs_when_any_field_differs(changed):
    fields = {
        "connector_id": 1,
        "id_tag": "T",
        "meter_start": 10,
        "timestamp": "2024-03-01T12:00:00Z",
    }
    assert normalize.start_fingerprint(**fields) != normalize.start_fingerprint(
        **{**fields, **changed}
    )
