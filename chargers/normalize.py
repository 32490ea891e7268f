"""Turns OCPP payload values into the normalized model: tz-aware UTC times and SI units.

Pure functions over plain values, no database: handlers call these once at the boundary, and
nothing past them sees version-specific shapes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

ENERGY_REGISTER = "Energy.Active.Import.Register"


class NormalizationError(ValueError):
    """A value the charger sent that cannot be read (the handler answers with a CALLERROR)."""


def parse_datetime(value: str) -> datetime:
    """Read an OCPP timestamp; a value without a zone is taken as UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        # OverflowError: a moment at the very edge of the calendar that UTC cannot hold.
        raise NormalizationError(f"not an RFC 3339 timestamp: {value!r}") from exc


def format_datetime(value: datetime) -> str:
    """Write a timestamp the way we send them: UTC, millisecond precision, ending in Z."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now() -> datetime:
    return datetime.now(UTC)


# --- Units -------------------------------------------------------------------------------------

# unit as sent -> (SI unit, factor)
_UNITS: dict[str, tuple[str, Decimal]] = {
    "Wh": ("Wh", Decimal(1)),
    "kWh": ("Wh", Decimal(1000)),
    "varh": ("varh", Decimal(1)),
    "kvarh": ("varh", Decimal(1000)),
    "W": ("W", Decimal(1)),
    "kW": ("W", Decimal(1000)),
    "VA": ("VA", Decimal(1)),
    "kVA": ("VA", Decimal(1000)),
    "var": ("var", Decimal(1)),
    "kvar": ("var", Decimal(1000)),
    "A": ("A", Decimal(1)),
    "V": ("V", Decimal(1)),
    "Percent": ("%", Decimal(1)),
    "Hertz": ("Hz", Decimal(1)),
    "Celsius": ("Celsius", Decimal(1)),
    "Celcius": ("Celsius", Decimal(1)),  # 1.6 schema spelling
    "s": ("s", Decimal(1)),
}

# The unit a measurand has when the charger leaves it out (1.6 defaults to Wh for all).
_DEFAULT_UNITS: dict[str, str] = {
    "Current.Import": "A",
    "Current.Export": "A",
    "Current.Offered": "A",
    "Voltage": "V",
    "Frequency": "Hertz",
    "Temperature": "Celsius",
    "SoC": "Percent",
    "RPM": "s",
}


def default_unit(measurand: str) -> str:
    if measurand.startswith("Power.Factor"):
        return ""
    if measurand.startswith("Power.Reactive"):
        return "var"
    if measurand.startswith("Power."):
        return "W"
    if measurand.startswith("Energy.Reactive"):
        return "varh"
    return _DEFAULT_UNITS.get(measurand, "Wh")


def to_si(value: Decimal, unit: str, multiplier: int = 0) -> tuple[Decimal, str]:
    """Scale a reading to its SI unit; 2.x ``unitOfMeasure.multiplier`` is a power of ten."""
    if multiplier:
        value = value.scaleb(multiplier)
    if unit == "K":
        return value - Decimal("273.15"), "Celsius"
    if unit == "Fahrenheit":
        return (value - 32) * 5 / 9, "Celsius"
    si_unit, factor = _UNITS.get(unit, (unit, Decimal(1)))
    return value * factor, si_unit


# Readings beyond this in their SI unit are no meter reading; the bound also keeps every value
# and difference of values inside the database columns (18 digits, 3 or 6 of them decimals).
MAX_READING = Decimal(10) ** 15
MAX_READING_CHARS = 2500


def check_reading(value: Decimal, raw: str) -> Decimal:
    if len(raw) > MAX_READING_CHARS or abs(value) >= MAX_READING:
        raise NormalizationError(f"reading out of range: {raw[:40]!r}")
    return value


def check_integer(value: int, name: str, *, minimum: int = 0, maximum: int = 2**31 - 1) -> int:
    """An integer field the schema leaves unbounded (connector, transaction and meter values)."""
    if not minimum <= value <= maximum:
        raise NormalizationError(f"{name} must be between {minimum} and {maximum}, not {value}")
    return value


def parse_decimal(text: Any) -> Decimal:
    try:
        number = Decimal(str(text).strip())
    except (InvalidOperation, ValueError) as exc:
        raise NormalizationError(f"not a number: {text!r}") from exc
    if not number.is_finite():
        raise NormalizationError(f"not a finite number: {text!r}")
    return number


# --- Meter values --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    timestamp: datetime
    measurand: str
    phase: str
    location: str
    context: str
    value: Decimal | None
    unit: str
    raw_value: str
    raw_unit: str
    signed_data: str = ""
    # Quirk corrections applied to what the charger sent (see chargers.quirks).
    corrections: tuple[str, ...] = ()


def samples_from_v16(meter_values: list[dict[str, Any]]) -> list[Sample]:
    """Flatten 1.6 ``meterValue`` entries (snake_case keys, as handlers get them) into samples."""
    samples: list[Sample] = []
    for entry in meter_values:
        timestamp = parse_datetime(entry["timestamp"])
        for sampled in entry.get("sampled_value", []):
            measurand = sampled.get("measurand") or ENERGY_REGISTER
            raw_value = str(sampled.get("value", ""))
            raw_unit = sampled.get("unit") or ""
            if sampled.get("format") == "SignedData":
                samples.append(
                    Sample(
                        timestamp=timestamp,
                        measurand=measurand,
                        phase=sampled.get("phase") or "",
                        location=sampled.get("location") or "",
                        context=sampled.get("context") or "Sample.Periodic",
                        value=None,
                        unit="",
                        raw_value="",
                        raw_unit=raw_unit,
                        signed_data=raw_value,
                    )
                )
                continue
            value, unit = to_si(parse_decimal(raw_value), raw_unit or default_unit(measurand))
            check_reading(value, raw_value)
            samples.append(
                Sample(
                    timestamp=timestamp,
                    measurand=measurand,
                    phase=sampled.get("phase") or "",
                    location=sampled.get("location") or "",
                    context=sampled.get("context") or "Sample.Periodic",
                    value=value,
                    unit=unit,
                    raw_value=raw_value,
                    raw_unit=raw_unit,
                )
            )
    return _join_signed(samples)


def _join_signed(samples: list[Sample]) -> list[Sample]:
    """A signed value sent beside the plain reading it signs becomes part of that sample."""

    def key(s: Sample) -> tuple[datetime, str, str, str, str]:
        return (s.timestamp, s.measurand, s.phase, s.location, s.context)

    plain = {key(s): i for i, s in enumerate(samples) if s.value is not None}
    joined: list[Sample | None] = list(samples)
    for i, s in enumerate(samples):
        target = plain.get(key(s)) if s.signed_data else None
        current = joined[target] if target is not None else None
        if target is not None and current is not None and not current.signed_data:
            joined[target] = replace(current, signed_data=s.signed_data)
            joined[i] = None
    return [s for s in joined if s is not None]


def last_energy_register(samples: list[Sample]) -> Decimal | None:
    """The latest total (no phase) active import register reading, in Wh."""
    best: Sample | None = None
    for sample in samples:
        if (
            sample.measurand == ENERGY_REGISTER
            and sample.value is not None
            and sample.phase == ""
            and (best is None or sample.timestamp >= best.timestamp)
        ):
            best = sample
    return best.value if best else None


# --- Connector status ----------------------------------------------------------------------------

_V16_STATUSES = {
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEVSE",
    "SuspendedEV",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
}


def status_from_v16(raw: str) -> str:
    return raw if raw in _V16_STATUSES else "Unknown"


# --- Sessions ------------------------------------------------------------------------------------


def start_fingerprint(*, connector_id: int, id_tag: str, meter_start: int, timestamp: str) -> str:
    """Identifies a StartTransaction, so that a re-send after a lost reply is recognized."""
    moment = format_datetime(parse_datetime(timestamp))
    key = f"{connector_id}|{id_tag}|{meter_start}|{moment}"
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StartRequest:
    connector_id: int
    id_tag: str
    meter_start_wh: Decimal
    timestamp: datetime
    start_key: str
    reservation_id: int | None = None
    corrections: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StopRequest:
    transaction_id: str
    id_tag: str
    meter_stop_wh: Decimal
    timestamp: datetime
    reason: str
    samples: list[Sample] = field(default_factory=list)
    corrections: tuple[str, ...] = ()
