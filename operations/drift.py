"""Configuration drift: a baseline's desired values against what a charger last reported, and what
it answered when they were applied. Pure, with no database: the service loads, this compares.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class DriftState(StrEnum):
    MATCHING = "matching"  # reported, and equal to the desired value
    DIFFERING = "differing"  # reported with another value
    MISSING = "missing"  # the charger reported its configuration, without this one
    UNKNOWN = "unknown"  # never reported: nothing was read from the charger yet


# Answers to ChangeConfiguration / SetVariables that took the value.
TAKEN = frozenset({"Accepted", "RebootRequired"})


@dataclass(frozen=True, slots=True)
class Desired:
    ref: str
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class Reported:
    value: str
    has_value: bool = True
    readonly: bool = False


@dataclass(frozen=True, slots=True)
class Applied:
    value: str
    status: str  # empty while the command is under way
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DriftRow:
    ref: str
    label: str
    desired: str
    reported: str | None
    state: DriftState
    readonly: bool
    applied: Applied | None

    @property
    def needs_apply(self) -> bool:
        """Whether applying the baseline would send this value."""
        return self.state != DriftState.MATCHING and not self.readonly

    @property
    def refused(self) -> bool:
        """The charger answered the last attempt to set this value with a refusal."""
        return (
            self.applied is not None
            and bool(self.applied.status)
            and (self.applied.status not in TAKEN)
        )


@dataclass(frozen=True, slots=True)
class DriftReport:
    rows: tuple[DriftRow, ...]
    ever_reported: bool

    def count(self, state: DriftState) -> int:
        return sum(1 for row in self.rows if row.state == state)

    @property
    def counts(self) -> dict[str, int]:
        return {state.value: self.count(state) for state in DriftState}

    @property
    def in_line(self) -> bool:
        return all(row.state == DriftState.MATCHING for row in self.rows)

    @property
    def to_apply(self) -> tuple[DriftRow, ...]:
        return tuple(row for row in self.rows if row.needs_apply)


def same(desired: str, reported: str) -> bool:
    """Equal as a charger means it: booleans and numbers compare by value, text exactly."""
    if desired == reported:
        return True
    low_d, low_r = desired.strip().lower(), reported.strip().lower()
    if low_d in ("true", "false") and low_r in ("true", "false"):
        return low_d == low_r
    try:
        return float(desired) == float(reported)
    except ValueError:
        return False


def report(
    desired: Iterable[Desired],
    reported: Mapping[str, Reported],
    applied: Mapping[str, Applied] | None = None,
    *,
    ever_reported: bool,
) -> DriftReport:
    applied = applied or {}
    rows = []
    for item in desired:
        seen = reported.get(item.ref)
        if seen is None or not seen.has_value:
            state = DriftState.MISSING if ever_reported else DriftState.UNKNOWN
            value = None
        else:
            value = seen.value
            state = DriftState.MATCHING if same(item.value, value) else DriftState.DIFFERING
        rows.append(
            DriftRow(
                ref=item.ref,
                label=item.label,
                desired=item.value,
                reported=value,
                state=state,
                readonly=seen.readonly if seen is not None else False,
                applied=applied.get(item.ref),
            )
        )
    return DriftReport(rows=tuple(rows), ever_reported=ever_reported)
