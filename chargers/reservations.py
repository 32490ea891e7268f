"""Reservations, sans I/O: the reservation's state machine, the ReserveNow request each OCPP
version takes, and what a charger's answers and reports mean for a reservation.

Nothing here touches the database; ``chargers.reservation_services`` builds on it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any


class ReservationState(StrEnum):
    REQUESTED = "requested"  # ReserveNow is on its way to the charger
    ACTIVE = "active"  # the charger accepted it: the connector is held for the id token
    REJECTED = "rejected"  # the charger refused it (Faulted, Occupied, Rejected, Unavailable)
    FAILED = "failed"  # ReserveNow was not answered in time, or answered with an error
    CANCELLED = "cancelled"  # the charger accepted CancelReservation
    EXPIRED = "expired"  # its time passed unused
    REMOVED = "removed"  # 2.x: the charger removed it (ReservationStatusUpdate Removed)
    USED = "used"  # a session of the id token began with it


# A reservation in these states holds its connector.
LIVE = frozenset({ReservationState.REQUESTED, ReservationState.ACTIVE})
FINISHED = frozenset(ReservationState) - LIVE

_MOVES: dict[ReservationState, frozenset[ReservationState]] = {
    ReservationState.REQUESTED: frozenset(
        {
            ReservationState.ACTIVE,
            ReservationState.REJECTED,
            ReservationState.FAILED,
            ReservationState.EXPIRED,
            ReservationState.USED,
        }
    ),
    ReservationState.ACTIVE: frozenset(
        {
            ReservationState.CANCELLED,
            ReservationState.EXPIRED,
            ReservationState.REMOVED,
            ReservationState.USED,
        }
    ),
    **{state: frozenset() for state in FINISHED},
}

# The statuses a charger gives when it refuses a ReserveNow.
REJECTION_REASONS = ("Faulted", "Occupied", "Rejected", "Unavailable")


class IllegalReservationMove(Exception):
    def __init__(self, current: str, target: str):
        super().__init__(f"a reservation that is {current} cannot become {target}")
        self.current = current
        self.target = target


def transition(current: str, target: str) -> ReservationState:
    """The state after moving from ``current`` to ``target``; refuses every move the machine
    does not have (including staying put)."""
    source, goal = ReservationState(current), ReservationState(target)
    if goal not in _MOVES[source]:
        raise IllegalReservationMove(source, goal)
    return goal


def sources(target: str) -> frozenset[ReservationState]:
    """The states from which a reservation may move to ``target``."""
    goal = ReservationState(target)
    return frozenset(state for state, moves in _MOVES.items() if goal in moves)


def reserve_now_answered(command_state: str, status: str) -> ReservationState | None:
    """What a finished ReserveNow command means for its reservation (None: not finished)."""
    if command_state == "accepted":
        return ReservationState.ACTIVE
    if command_state == "rejected":
        return ReservationState.REJECTED
    if command_state in ("error", "timeout", "failed", "answered"):
        return ReservationState.FAILED
    return None


def status_update_state(status: str) -> ReservationState | None:
    """What a 2.x ReservationStatusUpdate means: Expired or Removed."""
    return {"Expired": ReservationState.EXPIRED, "Removed": ReservationState.REMOVED}.get(status)


def _ocpp_time(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def reserve_now_payload(
    *,
    version: str,
    reservation_id: int,
    expires_at: datetime,
    connector: int,
    id_token: str,
    id_token_type: str,
    group_token: str,
) -> dict[str, Any]:
    """The ReserveNow request of ``version``; ``connector`` is the 1.6 connectorId or the 2.x
    evseId, 0 for any connector."""
    if version == "1.6":
        payload: dict[str, Any] = {
            "connectorId": connector,
            "expiryDate": _ocpp_time(expires_at),
            "idTag": id_token,
            "reservationId": reservation_id,
        }
        if group_token:
            payload["parentIdTag"] = group_token
        return payload
    payload = {
        "id": reservation_id,
        "expiryDateTime": _ocpp_time(expires_at),
        "idToken": {"idToken": id_token, "type": id_token_type or "ISO14443"},
    }
    if connector:
        payload["evseId"] = connector
    if group_token:
        payload["groupIdToken"] = {"idToken": group_token, "type": "Central"}
    return payload


def cancel_payload(*, reservation_id: int) -> dict[str, Any]:
    return {"reservationId": reservation_id}
