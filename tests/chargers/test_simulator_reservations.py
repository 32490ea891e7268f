"""How the simulator answers reservations, without a socket: it holds a connector for one id
token, refuses a busy, unavailable or faulted one with the status a charger gives, lets only
that token start there, and hands the reservation to its session."""

from __future__ import annotations

import random

import pytest

from chargers.simulator import FleetConfig, SimulatedCharger, SimulatedCharger201, Stats

EXPIRY = "2030-01-01T00:00:00Z"


def charger16() -> SimulatedCharger:
    return SimulatedCharger("SIM-1", FleetConfig(connectors=2), Stats(), random.Random(1))


def charger201() -> SimulatedCharger201:
    config = FleetConfig(connectors=2, protocol="ocpp2.0.1")
    return SimulatedCharger201("SIM-2", config, Stats(), random.Random(1))


def reserve16(sim: SimulatedCharger, connector: int, reservation_id: int, tag: str = "T1") -> str:
    answer, _ = sim.answer_ReserveNow(
        {
            "connectorId": connector,
            "expiryDate": EXPIRY,
            "idTag": tag,
            "reservationId": reservation_id,
        }
    )
    return str(answer["status"])


def test_a_16_charger_refuses_what_a_charger_refuses():
    sim = charger16()
    sim.busy.add(1)
    sim.state.unavailable.add(2)
    assert reserve16(sim, 1, 1) == "Occupied"
    assert reserve16(sim, 2, 2) == "Unavailable"
    sim.state.unavailable.clear()
    sim.state.faulted.add(2)
    assert reserve16(sim, 2, 3) == "Faulted"
    assert reserve16(sim, 7, 4) == "Rejected"
    assert sim.state.reservations == {}


def test_only_the_reserved_token_starts_on_a_held_connector():
    sim = charger16()
    assert reserve16(sim, 1, 8, tag="T1") == "Accepted"
    assert sim._shown(1) == "Reserved"
    refused, _ = sim.answer_RemoteStartTransaction({"connectorId": 1, "idTag": "T2"})
    assert refused == {"status": "Rejected"}
    # A remote start with no connector goes to the one held for its token.
    accepted, _ = sim.answer_RemoteStartTransaction({"idTag": "T1"})
    assert accepted == {"status": "Accepted"}
    assert 1 in sim.busy
    assert sim.take_reservation(1, "T1") == 8
    assert sim.take_reservation(1, "T1") is None
    assert sim.state.reservations == {}


def test_a_cancel_frees_the_connector_and_an_unknown_one_is_rejected():
    sim = charger16()
    reserve16(sim, 2, 3)
    answer, _ = sim.answer_CancelReservation({"reservationId": 3})
    again, _ = sim.answer_CancelReservation({"reservationId": 3})
    assert (answer["status"], again["status"]) == ("Accepted", "Rejected")
    assert sim._free(2)


@pytest.mark.parametrize("evse", [1, None])
def test_a_2x_charger_holds_an_evse_for_its_token(evse):
    sim = charger201()
    request = {"id": 5, "expiryDateTime": EXPIRY, "idToken": {"idToken": "T1", "type": "ISO14443"}}
    if evse:
        request["evseId"] = evse
    answer, _ = sim.answer_ReserveNow(request)
    assert answer == {"status": "Accepted"}
    assert sim.state.reservations == {5: 1}
    other, _ = sim.answer_RequestStartTransaction(
        {"evseId": 1, "idToken": {"idToken": "T2", "type": "ISO14443"}, "remoteStartId": 1}
    )
    own, _ = sim.answer_RequestStartTransaction(
        {"idToken": {"idToken": "T1", "type": "ISO14443"}, "remoteStartId": 2}
    )
    assert (other["status"], own["status"]) == ("Rejected", "Accepted")
    assert sim.take_reservation(1, "T1") == 5
