"""Vendor quirks: named, opt-in corrections for chargers known to deviate from OCPP.

Pure functions, no database. A charger's quirk profile (matched from its BootNotification) gives a
set of correction names; the readers here apply them to values taken from a payload and report
which ones they applied, so that the normalized value can record it. The raw frame in the journal
is never touched.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import normalize

T = TypeVar("T")


class Correction(StrEnum):
    NAIVE_LOCAL_TIME = "naive_local_time"
    PLACEHOLDER_TIMESTAMP = "placeholder_timestamp"
    ENERGY_KWH_LABELLED_WH = "energy_kwh_labelled_wh"
    ENERGY_WH_LABELLED_KWH = "energy_wh_labelled_kwh"
    DUPLICATE_SEQ_NO = "duplicate_seq_no"
    STOP_WITHOUT_TRANSACTION_ID = "stop_without_transaction_id"
    REGISTER_RESETS_ON_REBOOT = "register_resets_on_reboot"

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self]


DESCRIPTIONS: dict[Correction, str] = {
    Correction.NAIVE_LOCAL_TIME: (
        "Timestamps without a time zone are read in the site's time zone instead of UTC"
    ),
    Correction.PLACEHOLDER_TIMESTAMP: (
        "The placeholder timestamp 0001-01-01 (no clock yet) is replaced by the time we received it"
    ),
    Correction.ENERGY_KWH_LABELLED_WH: "Energy labelled Wh is really kWh: multiplied by 1000",
    Correction.ENERGY_WH_LABELLED_KWH: "Energy labelled kWh is really Wh: divided by 1000",
    Correction.DUPLICATE_SEQ_NO: (
        "2.x: the charger reuses seqNo; TransactionEvents are told apart by their content"
    ),
    Correction.STOP_WITHOUT_TRANSACTION_ID: (
        "1.6: a StopTransaction with a missing or zero transactionId stops the charger's open session"
    ),
    Correction.REGISTER_RESETS_ON_REBOOT: (
        "The energy register restarts from zero when the charger reboots; energy keeps counting"
    ),
}

CHOICES: list[tuple[str, str]] = [(c.value, c.description) for c in Correction]


def unknown_corrections(names: Iterable[str]) -> list[str]:
    known = {c.value for c in Correction}
    return [name for name in names if name not in known]


@dataclass(frozen=True, slots=True)
class Context:
    """How to read one charger's values: its corrections and its site's time zone."""

    corrections: frozenset[str] = frozenset()
    time_zone: str = "UTC"

    def has(self, correction: Correction) -> bool:
        return correction.value in self.corrections

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.time_zone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class Corrected(Generic[T]):
    value: T
    corrections: tuple[str, ...] = ()


# --- Matching a profile --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
    pk: int
    vendor: str
    model_pattern: str
    corrections: frozenset[str] = field(default_factory=frozenset)


def match_profile(profiles: Sequence[Profile], *, vendor: str, model: str) -> Profile | None:
    """The profile for a charger's vendor and model: an exact model beats a pattern beats none."""

    def rank(profile: Profile) -> tuple[int, int, int]:
        pattern = profile.model_pattern.strip()
        if not pattern or pattern == "*":
            return (0, 0, -profile.pk)
        wildcards = sum(pattern.count(ch) for ch in "*?[")
        return (2 if wildcards == 0 else 1, len(pattern) - wildcards, -profile.pk)

    candidates = [
        p
        for p in profiles
        if p.vendor.strip().casefold() == vendor.strip().casefold()
        and (
            not p.model_pattern.strip()
            or fnmatch.fnmatchcase(model.casefold(), p.model_pattern.strip().casefold())
        )
    ]
    return max(candidates, key=rank) if candidates else None


# --- Timestamps ----------------------------------------------------------------------------------


def is_placeholder(text: str) -> bool:
    return text.strip().startswith("0001-01-01")


def _is_naive(text: str) -> bool:
    body = text.strip()
    if body.endswith(("Z", "z")):
        return False
    time_part = body.partition("T")[2] or body.partition(" ")[2]
    return "+" not in time_part and "-" not in time_part


def read_timestamp(text: str, context: Context, *, received_at: datetime) -> Corrected[datetime]:
    """An OCPP timestamp as tz-aware UTC, with the corrections the charger's profile asks for."""
    if context.has(Correction.PLACEHOLDER_TIMESTAMP) and is_placeholder(text):
        return Corrected(received_at.astimezone(UTC), (Correction.PLACEHOLDER_TIMESTAMP.value,))
    if context.has(Correction.NAIVE_LOCAL_TIME) and _is_naive(text):
        try:
            parsed = datetime.fromisoformat(text.strip())
        except ValueError as exc:
            raise normalize.NormalizationError(f"not an RFC 3339 timestamp: {text!r}") from exc
        try:
            local = parsed.replace(tzinfo=context.zone())
            return Corrected(local.astimezone(UTC), (Correction.NAIVE_LOCAL_TIME.value,))
        except OverflowError as exc:
            raise normalize.NormalizationError(f"not an RFC 3339 timestamp: {text!r}") from exc
    return Corrected(normalize.parse_datetime(text))


# --- Energy --------------------------------------------------------------------------------------


def correct_energy(
    value: Decimal, *, measurand: str, unit_label: str, context: Context
) -> Corrected[Decimal]:
    """An energy value (already in Wh) whose unit label the charger gets wrong, put right.

    ``unit_label`` is the unit the charger wrote ("" when it left it out, which means Wh).
    """
    if not measurand.startswith("Energy."):
        return Corrected(value)
    label = unit_label or "Wh"
    if label == "Wh" and context.has(Correction.ENERGY_KWH_LABELLED_WH):
        return Corrected(value * 1000, (Correction.ENERGY_KWH_LABELLED_WH.value,))
    if label == "kWh" and context.has(Correction.ENERGY_WH_LABELLED_KWH):
        return Corrected(value / 1000, (Correction.ENERGY_WH_LABELLED_KWH.value,))
    return Corrected(value)


def correct_sample(sample: normalize.Sample, context: Context) -> normalize.Sample:
    if sample.value is None:
        return sample
    fixed = correct_energy(
        sample.value, measurand=sample.measurand, unit_label=sample.raw_unit, context=context
    )
    if not fixed.corrections:
        return sample
    return replace(
        sample, value=fixed.value, corrections=merge(sample.corrections, fixed.corrections)
    )


def merge(*groups: Iterable[str]) -> tuple[str, ...]:
    """Correction names in first-seen order, each once."""
    seen: dict[str, None] = {}
    for group in groups:
        for name in group:
            seen.setdefault(name, None)
    return tuple(seen)


# --- 1.6 meter values ----------------------------------------------------------------------------


def samples_from_v16(
    meter_values: list[dict[str, Any]], context: Context, *, received_at: datetime
) -> list[normalize.Sample]:
    """1.6 ``meterValue`` entries (snake_case keys) read with the charger's corrections."""
    if not context.corrections:
        return normalize.samples_from_v16(meter_values)
    fixed_entries: list[dict[str, Any]] = []
    applied: dict[datetime, tuple[str, ...]] = {}
    for entry in meter_values:
        moment = read_timestamp(str(entry.get("timestamp", "")), context, received_at=received_at)
        if moment.corrections:
            applied[moment.value] = merge(applied.get(moment.value, ()), moment.corrections)
        fixed_entries.append({**entry, "timestamp": moment.value.isoformat()})
    samples = normalize.samples_from_v16(fixed_entries)
    out: list[normalize.Sample] = []
    for sample in samples:
        stamped = applied.get(sample.timestamp)
        if stamped:
            sample = replace(sample, corrections=merge(sample.corrections, stamped))
        out.append(correct_sample(sample, context))
    return out
