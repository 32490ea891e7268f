"""Reservations without I/O: the state machine, the ReserveNow request of each OCPP version and
what the charger's answers and reports mean."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chargers.reservations import (
    FINISHED,
    LIVE,
    IllegalReservationMove,
    ReservationState,
    reserve_now_answered,
    reserve_now_payload,
    sources,
    status_update_state,
    transition,
)

EXPIRY = datetime(2030, 5, 1, 12, 30, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("requested", "active"),
        ("requested", "rejected"),
        ("requested", "failed"),
        ("active", "used"),
        ("active", "cancelled"),
        ("active", "expired"),
        ("active", "removed"),
    ],
)
def test_the_moves_a_reservation_makes(current, target):
    assert transition(current, target) == target


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("requested", "cancelled"),
        ("requested", "removed"),
        ("active", "active"),
        ("active", "rejected"),
        *[(state.value, "active") for state in FINISHED],
        *[(state.value, "used") for state in FINISHED],
    ],
)
def test_illegal_moves_are_refused(current, target):
    with pytest.raises(IllegalReservationMove):
        transition(current, target)


def test_finished_reservations_never_move_and_live_ones_hold_their_connector():
    assert {ReservationState.REQUESTED, ReservationState.ACTIVE} == LIVE
    for state in FINISHED:
        assert not any(state in sources(target) for target in ReservationState)
    assert sources("cancelled") == {ReservationState.ACTIVE}


@pytest.mark.parametrize(
    ("command_state", "status", "expected"),
    [
        ("accepted", "Accepted", ReservationState.ACTIVE),
        ("rejected", "Occupied", ReservationState.REJECTED),
        ("rejected", "Faulted", ReservationState.REJECTED),
        ("error", "", ReservationState.FAILED),
        ("timeout", "", ReservationState.FAILED),
        ("failed", "", ReservationState.FAILED),
        ("sent", "", None),
        ("queued", "", None),
    ],
)
def test_what_a_reserve_now_answer_means(command_state, status, expected):
    assert reserve_now_answered(command_state, status) == expected


def test_only_expired_and_removed_updates_end_a_reservation():
    assert status_update_state("Expired") == ReservationState.EXPIRED
    assert status_update_state("Removed") == ReservationState.REMOVED
    assert status_update_state("Other") is None


def test_the_16_request_has_the_parent_only_when_there_is_one():
    common = {
        "reservation_id": 7,
        "expires_at": EXPIRY,
        "connector": 2,
        "id_token": "TAG-1",
        "id_token_type": "ISO14443",
    }
    assert reserve_now_payload(version="1.6", group_token="", **common) == {
        "connectorId": 2,
        "expiryDate": "2030-05-01T12:30:15Z",
        "idTag": "TAG-1",
        "reservationId": 7,
    }
    assert reserve_now_payload(version="1.6", group_token="FLEET", **common)["parentIdTag"] == (
        "FLEET"
    )


def test_the_2x_request_names_the_evse_only_when_one_is_reserved():
    payload = reserve_now_payload(
        version="2.0.1",
        reservation_id=9,
        expires_at=EXPIRY,
        connector=0,
        id_token="TAG-2",
        id_token_type="eMAID",
        group_token="FLEET",
    )
    assert payload == {
        "id": 9,
        "expiryDateTime": "2030-05-01T12:30:15Z",
        "idToken": {"idToken": "TAG-2", "type": "eMAID"},
        "groupIdToken": {"idToken": "FLEET", "type": "Central"},
    }
    with_evse = reserve_now_payload(
        version="2.1",
        reservation_id=9,
        expires_at=EXPIRY,
        connector=3,
        id_token="TAG-2",
        id_token_type="",
        group_token="",
    )
    assert (with_evse["evseId"], with_evse["idToken"]["type"]) == (3, "ISO14443")
    assert "groupIdToken" not in with_evse
