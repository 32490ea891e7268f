"""Charging-profile payloads for SetChargingProfile, in the OCPP 1.6 and 2.x shapes. Pure.

Profile ids are fixed per purpose and connector, so a new limit replaces the profile it updates on
the charger instead of piling up beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

STACK_LEVEL = 1
# Ids: 1000 + connector for TxProfile, 2000 + connector for TxDefaultProfile, 3000 for the
# charger's maximum.
TX_PROFILE_BASE = 1000
TX_DEFAULT_BASE = 2000
CHARGER_MAX_ID = 3000

TX = "TxProfile"
TX_DEFAULT = "TxDefaultProfile"


@dataclass(frozen=True, slots=True)
class ProfileRequest:
    """One limit for one place on a charger (connector or EVSE; 0 is the whole charger)."""

    purpose: str  # TxProfile, TxDefaultProfile, or the charger's maximum ("ChargerMax")
    where: int
    limit: float
    rate_unit: str  # "A" or "W"
    number_phases: int
    transaction_id: str | None = None
    # Fail-safe: from ``start`` + ``fallback_after`` seconds on, the limit drops to
    # ``fallback_limit`` unless a newer profile replaces this one first. The central system
    # refreshes its profiles well within that time; if it goes away, the chargers fall back.
    fallback_limit: float | None = None
    fallback_after: int | None = None
    start: str | None = None  # ISO 8601 UTC, when the schedule starts


CHARGER_MAX = "ChargerMax"


def schedule_limit(value: float) -> float:
    """``value`` rounded down to a tenth that the 1.6 schema's ``multipleOf 0.1`` accepts: float
    division makes some tenths fail it (6.3 / 0.1 is 62.99...), so step down to the next that
    passes (whole numbers always do)."""
    tenths = math.floor(max(0.0, value) * 10 + 1e-9)
    while tenths > 0:
        limit = tenths / 10
        if limit / 0.1 == int(limit / 0.1):
            return limit
        tenths -= 1
    return 0.0


def _profile_id(request: ProfileRequest) -> int:
    if request.purpose == TX:
        return TX_PROFILE_BASE + request.where
    if request.purpose == TX_DEFAULT:
        return TX_DEFAULT_BASE + request.where
    return CHARGER_MAX_ID


def _purpose(request: ProfileRequest, version: str) -> str:
    if request.purpose == CHARGER_MAX:
        return "ChargePointMaxProfile" if version == "1.6" else "ChargingStationMaxProfile"
    return request.purpose


def set_charging_profile(request: ProfileRequest, *, version: str) -> dict[str, Any]:
    """The SetChargingProfile payload for a charger speaking ``version`` (1.6, 2.0.1 or 2.1)."""
    periods: list[dict[str, Any]] = [{"startPeriod": 0, "limit": schedule_limit(request.limit)}]
    if request.fallback_limit is not None and request.fallback_after:
        periods.append(
            {"startPeriod": request.fallback_after, "limit": schedule_limit(request.fallback_limit)}
        )
    if request.number_phases in (1, 3):
        for period in periods:
            period["numberPhases"] = request.number_phases
    timed = request.start is not None
    kind = "Relative" if request.purpose == TX and not timed else "Absolute"
    start = request.start or "2000-01-01T00:00:00Z"
    if version == "1.6":
        schedule: dict[str, Any] = {
            "chargingRateUnit": request.rate_unit,
            "chargingSchedulePeriod": periods,
        }
        profile: dict[str, Any] = {
            "chargingProfileId": _profile_id(request),
            "stackLevel": STACK_LEVEL,
            "chargingProfilePurpose": _purpose(request, version),
            "chargingProfileKind": kind,
            "chargingSchedule": schedule,
        }
        if kind == "Absolute":
            # An absolute schedule needs its start; with no fallback, a start long past makes
            # its one period hold from now on.
            schedule["startSchedule"] = start
        if request.transaction_id is not None:
            profile["transactionId"] = int(request.transaction_id)
        return {"connectorId": request.where, "csChargingProfiles": profile}
    schedule2: dict[str, Any] = {
        "id": _profile_id(request),
        "chargingRateUnit": request.rate_unit,
        "chargingSchedulePeriod": periods,
    }
    if kind == "Absolute":
        schedule2["startSchedule"] = start
    profile2: dict[str, Any] = {
        "id": _profile_id(request),
        "stackLevel": STACK_LEVEL,
        "chargingProfilePurpose": _purpose(request, version),
        "chargingProfileKind": kind,
        "chargingSchedule": [schedule2],
    }
    if request.transaction_id is not None:
        profile2["transactionId"] = request.transaction_id
    return {"evseId": request.where, "chargingProfile": profile2}


def get_composite_schedule(where: int, *, version: str, duration: int = 300) -> dict[str, Any]:
    if version == "1.6":
        return {"connectorId": where, "duration": duration, "chargingRateUnit": "A"}
    return {"evseId": where, "duration": duration, "chargingRateUnit": "A"}


def composite_limit_a(response: dict[str, Any], *, voltage: float, phases: int) -> float | None:
    """The limit in force now in a GetCompositeSchedule answer, in amperes per phase."""
    schedule = response.get("chargingSchedule") or response.get("schedule")
    if not isinstance(schedule, dict):
        return None
    periods = schedule.get("chargingSchedulePeriod") or []
    if not periods:
        return None
    first = min(periods, key=lambda p: p.get("startPeriod", 0))
    limit = float(first["limit"])
    if schedule.get("chargingRateUnit") == "W":
        limit = limit / (voltage * max(1, int(first.get("numberPhases") or phases)))
    return limit
