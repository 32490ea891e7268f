"""Turns OCPP 2.0.1 and 2.1 payloads into the normalized model shared with 1.6.

Pure functions over the payload as the charger sent it (camelCase keys, nothing renamed), no
database. EVSE and connector become one charger-wide connector number; statuses map onto the
common status set with the raw value kept; readings are scaled to SI units with their
``unitOfMeasure`` multiplier; signed meter values are kept verbatim.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from . import normalize, quirks
from .normalize import ENERGY_REGISTER, NormalizationError, Sample

# --- EVSEs and connectors ------------------------------------------------------------------------

# Connector numbers: EVSE n's first connector is number n (as connector n of 1.6, which has one
# connector per EVSE); its k-th connector is n + 1000 * (k - 1). EVSE 0 is the charger itself.
CONNECTOR_STRIDE = 1000
MAX_EVSE_ID = CONNECTOR_STRIDE - 1
MAX_CONNECTORS_PER_EVSE = 99


def connector_number(evse_id: int, connector_id: int | None = None) -> int:
    """The charger-wide connector number of an (EVSE, connector) pair."""
    normalize.check_integer(evse_id, "evse id", maximum=MAX_EVSE_ID)
    if connector_id is None or evse_id == 0:
        return evse_id
    normalize.check_integer(connector_id, "connectorId", minimum=1, maximum=MAX_CONNECTORS_PER_EVSE)
    return evse_id + CONNECTOR_STRIDE * (connector_id - 1)


def evse_of(number: int) -> tuple[int, int]:
    """The (EVSE, connector) pair of a connector number; the inverse of ``connector_number``."""
    if number == 0:
        return 0, 0
    return number % CONNECTOR_STRIDE, number // CONNECTOR_STRIDE + 1


# --- Connector status ----------------------------------------------------------------------------

_V2_STATUSES = {"Available", "Occupied", "Reserved", "Unavailable", "Faulted"}

# A transaction's chargingState says more than "Occupied" does; this is its 1.6 equivalent.
_CHARGING_STATES = {
    "Charging": "Charging",
    "SuspendedEV": "SuspendedEV",
    "SuspendedEVSE": "SuspendedEVSE",
    "EVConnected": "Preparing",
    "Idle": "Preparing",
}


def status_from_v2(raw: str, *, charging_state: str = "", transaction: str = "") -> str:
    """Map a 2.x connectorStatus onto the common status set.

    ``transaction`` is "active" while a transaction runs on the connector, "ended" once it has
    ended with the cable still in, and "" when there is none. An occupied connector then reads as
    1.6 would say it: Preparing, Charging, SuspendedEV(SE) or Finishing.
    """
    if raw not in _V2_STATUSES:
        return "Unknown"
    if raw != "Occupied":
        return raw
    if transaction == "active" and charging_state in _CHARGING_STATES:
        return _CHARGING_STATES[charging_state]
    if transaction == "ended":
        return "Finishing"
    return "Occupied"


# --- Id tokens -----------------------------------------------------------------------------------

NO_AUTHORIZATION = "NoAuthorization"


@dataclass(frozen=True, slots=True)
class IdTokenIn:
    token: str
    type: str

    @property
    def needs_lookup(self) -> bool:
        return self.type != NO_AUTHORIZATION


def id_token(data: dict[str, Any] | None) -> IdTokenIn | None:
    if not data:
        return None
    return IdTokenIn(token=str(data.get("idToken", "")), type=str(data.get("type", "")))


# --- Meter values --------------------------------------------------------------------------------

MAX_MULTIPLIER = 15


def _number_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise NormalizationError(f"not a number: {value!r}")
    return repr(value) if isinstance(value, float) else str(value)


def _with_multiplier(raw: str, multiplier: int) -> str:
    if not multiplier:
        return raw
    if "e" in raw.lower():
        return str(Decimal(raw).scaleb(multiplier))
    return f"{raw}E{multiplier}"


def dumps(data: Any) -> str:
    """Compact JSON in the order the charger sent it, for values we keep verbatim."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def samples_from_v2(
    meter_values: list[dict[str, Any]], context: quirks.Context, *, received_at: datetime
) -> list[Sample]:
    """Flatten 2.x ``meterValue`` entries into samples in SI units."""
    samples: list[Sample] = []
    for entry in meter_values:
        moment = quirks.read_timestamp(str(entry["timestamp"]), context, received_at=received_at)
        for sampled in entry.get("sampledValue", []):
            measurand = sampled.get("measurand") or ENERGY_REGISTER
            unit_of_measure = sampled.get("unitOfMeasure") or {}
            raw_unit = str(unit_of_measure.get("unit") or "")
            multiplier = normalize.check_integer(
                int(unit_of_measure.get("multiplier") or 0),
                "multiplier",
                minimum=-MAX_MULTIPLIER,
                maximum=MAX_MULTIPLIER,
            )
            raw_value = _number_text(sampled.get("value"))
            value, unit = normalize.to_si(
                normalize.parse_decimal(raw_value),
                raw_unit or normalize.default_unit(measurand),
                multiplier,
            )
            normalize.check_reading(value, raw_value)
            fixed = quirks.correct_energy(
                value, measurand=measurand, unit_label=raw_unit, context=context
            )
            signed = sampled.get("signedMeterValue")
            samples.append(
                Sample(
                    timestamp=moment.value,
                    measurand=measurand,
                    phase=sampled.get("phase") or "",
                    location=sampled.get("location") or "",
                    context=sampled.get("context") or "Sample.Periodic",
                    value=fixed.value,
                    unit=unit,
                    # The multiplier goes into the raw value, so raw value and unit still read
                    # as the charger meant them: 12.5 with multiplier 3 is "12.5E3".
                    raw_value=_with_multiplier(raw_value, multiplier),
                    raw_unit=raw_unit,
                    signed_data=dumps(signed) if signed else "",
                    corrections=quirks.merge(moment.corrections, fixed.corrections),
                )
            )
    return samples


# --- Transactions --------------------------------------------------------------------------------

SEQ_NO_MAX = 2**63 - 1
ID_MIN, ID_MAX = -(2**63), 2**63 - 1


def fingerprint(payload: dict[str, Any]) -> str:
    """Identifies a message by content; the offline flag a re-send may add does not count."""
    content = {k: v for k, v in payload.items() if k != "offline"}
    return hashlib.sha256(
        json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


@dataclass(frozen=True, slots=True)
class TransactionEventIn:
    """A TransactionEvent in the normalized model."""

    event_type: str
    timestamp: datetime
    trigger_reason: str
    seq_no: int
    transaction_id: str
    offline: bool
    charging_state: str
    stopped_reason: str
    remote_start_id: int | None
    reservation_id: int | None
    evse_id: int | None
    connector_number: int | None
    evse_connector_id: int | None
    id_token: IdTokenIn | None
    fingerprint: str
    samples: list[Sample] = field(default_factory=list)
    corrections: tuple[str, ...] = ()

    @property
    def event_key(self) -> str:
        return f"seq:{self.seq_no}"


def transaction_event(
    payload: dict[str, Any], context: quirks.Context, *, received_at: datetime
) -> TransactionEventIn:
    info = payload["transactionInfo"]
    moment = quirks.read_timestamp(str(payload["timestamp"]), context, received_at=received_at)
    evse = payload.get("evse")
    evse_id = connector_id = number = None
    if evse:
        evse_id = int(evse["id"])
        connector_id = evse.get("connectorId")
        number = connector_number(evse_id, connector_id)
    remote_start_id = info.get("remoteStartId")
    reservation_id = payload.get("reservationId")
    for name, value in (("remoteStartId", remote_start_id), ("reservationId", reservation_id)):
        if value is not None:
            normalize.check_integer(value, name, minimum=ID_MIN, maximum=ID_MAX)
    samples = samples_from_v2(payload.get("meterValue") or [], context, received_at=received_at)
    return TransactionEventIn(
        event_type=payload["eventType"],
        timestamp=moment.value,
        trigger_reason=payload["triggerReason"],
        seq_no=normalize.check_integer(payload["seqNo"], "seqNo", maximum=SEQ_NO_MAX),
        transaction_id=str(info["transactionId"]),
        offline=bool(payload.get("offline", False)),
        charging_state=info.get("chargingState") or "",
        stopped_reason=info.get("stoppedReason") or "",
        remote_start_id=remote_start_id,
        reservation_id=reservation_id,
        evse_id=evse_id,
        connector_number=number,
        evse_connector_id=connector_id if evse_id else None,
        id_token=id_token(payload.get("idToken")),
        fingerprint=fingerprint(payload),
        samples=samples,
        corrections=quirks.merge(moment.corrections, *(s.corrections for s in samples)),
    )


# --- Smart charging inputs -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EVChargingNeedsIn:
    evse_id: int
    requested_energy_transfer: str
    departure_time: datetime | None
    energy_amount_wh: Decimal | None
    min_current_a: Decimal | None
    max_current_a: Decimal | None
    max_voltage_v: Decimal | None
    max_power_w: Decimal | None
    state_of_charge: int | None
    energy_capacity_wh: Decimal | None
    max_schedule_tuples: int | None
    detail: dict[str, Any]


_PHYSICAL_MAX = Decimal(10) ** 12


def _quantity(value: Any, name: str) -> Decimal | None:
    if value is None:
        return None
    number = normalize.parse_decimal(_number_text(value))
    if abs(number) >= _PHYSICAL_MAX:
        raise NormalizationError(f"{name} out of range: {value!r}")
    return number


def ev_charging_needs(
    payload: dict[str, Any], context: quirks.Context, *, received_at: datetime
) -> EVChargingNeedsIn:
    """NotifyEVChargingNeeds: what the EV asks for, in Wh, A, V and W (AC or DC parameters)."""
    needs = payload["chargingNeeds"]
    ac = needs.get("acChargingParameters") or {}
    dc = needs.get("dcChargingParameters") or {}
    departure = needs.get("departureTime")
    max_tuples = payload.get("maxScheduleTuples")
    soc = dc.get("stateOfCharge")
    return EVChargingNeedsIn(
        evse_id=normalize.check_integer(payload["evseId"], "evseId", maximum=MAX_EVSE_ID),
        requested_energy_transfer=str(needs["requestedEnergyTransfer"]),
        departure_time=(
            quirks.read_timestamp(str(departure), context, received_at=received_at).value
            if departure
            else None
        ),
        energy_amount_wh=_quantity(ac.get("energyAmount", dc.get("energyAmount")), "energyAmount"),
        min_current_a=_quantity(ac.get("evMinCurrent"), "evMinCurrent"),
        max_current_a=_quantity(ac.get("evMaxCurrent", dc.get("evMaxCurrent")), "evMaxCurrent"),
        max_voltage_v=_quantity(ac.get("evMaxVoltage", dc.get("evMaxVoltage")), "evMaxVoltage"),
        max_power_w=_quantity(dc.get("evMaxPower"), "evMaxPower"),
        state_of_charge=normalize.check_integer(soc, "stateOfCharge", maximum=100)
        if soc is not None
        else None,
        energy_capacity_wh=_quantity(dc.get("evEnergyCapacity"), "evEnergyCapacity"),
        max_schedule_tuples=(
            normalize.check_integer(max_tuples, "maxScheduleTuples")
            if max_tuples is not None
            else None
        ),
        detail=payload,
    )
