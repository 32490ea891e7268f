"""The reservations REST API: make one (202 with ReserveNow on its way), the checks that refuse a
request with field errors, an offline charger (409), cancelling, who may, and what another
organization never sees.

What chargers answer and how reservations end is tested over real sockets
(tests/e2e/test_reservations.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from chargers.models import Charger, ChargerConfigurationKey, Command, IdToken, Reservation
from cpms.models import Role
from tests.cpms.api_world import World, build_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> World:
    world = build_world()
    Charger.objects.filter(identity__in=["ACME-1", "OTHER-1"]).update(
        connected=True, ocpp_version="1.6", channel_name="specific.test!1"
    )
    Charger.objects.filter(identity="ACME-2").update(connected=True, ocpp_version="2.0.1")
    return world


def soon(minutes: float = 30) -> str:
    return (timezone.now() + timedelta(minutes=minutes)).isoformat()


def reserve(client: APIClient, **body: Any) -> Any:
    request = {"charger": "ACME-1", "connector": 1, "id_token": "ACME-TAG-1", "expires_at": soon()}
    request.update(body)
    return client.post("/api/v1/reservations/", request, format="json")


def fields(response: Any) -> dict[str, list[str]]:
    """The field errors of a 400: each field's messages."""
    assert response.status_code == 400, response.content
    details = response.json()["error"]["details"]
    return {name: [item["message"] for item in items] for name, items in details.items()}


def test_an_operator_reserves_and_reserve_now_goes_out(world):
    expires = timezone.now() + timedelta(hours=2)
    response = reserve(world.client(Role.OPERATOR), expires_at=expires.isoformat())
    assert response.status_code == 202, response.content
    body = response.json()
    reservation = Reservation.objects.get()
    command = Command.objects.get()
    assert {k: body[k] for k in ("id", "charger", "connector", "id_token", "state")} == {
        "id": reservation.pk,
        "charger": "ACME-1",
        "connector": 1,
        "id_token": "ACME-TAG-1",
        "state": "requested",
    }
    assert body["reservation_id"] == 1
    assert body["created_by"] == "operator client"
    assert [(c["id"], c["action"]) for c in body["commands"]] == [(command.pk, "ReserveNow")]
    assert command.payload == {
        "connectorId": 1,
        "expiryDate": expires.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "idTag": "ACME-TAG-1",
        "reservationId": 1,
    }
    assert reservation.connector == world.acme.connectors["ACME-1"]
    assert reservation.id_token == world.acme.id_tokens[0]


def test_reservation_ids_are_allocated_per_charger(world):
    client = world.client(Role.OPERATOR)
    assert reserve(client).json()["reservation_id"] == 1
    Reservation.objects.update(state="cancelled")
    assert reserve(client).json()["reservation_id"] == 2


def test_a_2x_reservation_names_the_evse_and_the_group(world):
    IdToken.objects.filter(token="ACME-TAG-2").update(group_token="FLEET-7", type="eMAID")
    Charger.objects.filter(identity="ACME-2").update(channel_name="specific.test!2")
    world.acme.connectors["ACME-2"].evse_id = 1
    world.acme.connectors["ACME-2"].save()
    response = reserve(world.client(Role.OPERATOR), charger="ACME-2", id_token="ACME-TAG-2")
    assert response.status_code == 202, response.content
    payload = Command.objects.get().payload
    assert payload["id"] == 1
    assert payload["evseId"] == 1
    assert payload["idToken"] == {"idToken": "ACME-TAG-2", "type": "eMAID"}
    assert payload["groupIdToken"] == {"idToken": "FLEET-7", "type": "Central"}


@pytest.mark.parametrize(
    ("change", "body", "field", "words"),
    [
        (None, {"id_token": "NOBODY"}, "id_token", "not an id token of this organization"),
        (None, {"id_token": "OTHER-TAG"}, "id_token", "not an id token of this organization"),
        ("blocked", {}, "id_token", "is Blocked"),
        ("expired", {}, "id_token", "expired on"),
        (None, {"expires_at": soon(-1)}, "expires_at", "in the future"),
        (None, {"expires_at": soon(60 * 25)}, "expires_at", "at most 24 hours"),
        (None, {"connector": 7}, "connector", "has no connector 7"),
        (None, {"connector": 0}, "connector", "ReserveConnectorZeroSupported"),
        (None, {"charger": "OTHER-1"}, "charger", "No charger of yours"),
        (None, {"connector": -1}, "connector", ""),
        (None, {"expires_at": "tomorrow"}, "expires_at", ""),
    ],
)
def test_a_bad_request_is_a_400_naming_the_field(world, change, body, field, words):
    token = IdToken.objects.get(token="ACME-TAG-1")
    if change == "blocked":
        token.status = "Blocked"
    elif change == "expired":
        token.expires_at = timezone.now() - timedelta(days=1)
    token.save()
    details = fields(reserve(world.client(Role.OPERATOR), **body))
    assert list(details) == [field]
    assert words in " ".join(details[field])
    assert not Reservation.objects.exists()
    assert not Command.objects.exists()


def test_several_bad_fields_are_named_together(world):
    details = fields(
        reserve(world.client(Role.OPERATOR), id_token="NOBODY", connector=9, expires_at=soon(-5))
    )
    assert sorted(details) == ["connector", "expires_at", "id_token"]


def test_any_connector_needs_the_charger_to_support_it(world):
    ChargerConfigurationKey.objects.create(
        charger=world.acme.chargers["ACME-1"],
        key="ReserveConnectorZeroSupported",
        value="true",
        reported_at=timezone.now(),
    )
    response = reserve(world.client(Role.OPERATOR), connector=0)
    assert response.status_code == 202, response.content
    assert Command.objects.get().payload["connectorId"] == 0


def test_a_held_connector_cannot_be_reserved_again(world):
    client = world.client(Role.OPERATOR)
    assert reserve(client).status_code == 202
    details = fields(reserve(client, id_token="ACME-TAG-2"))
    assert "already holds this connector" in details["connector"][0]
    assert Reservation.objects.count() == 1


def test_an_offline_charger_is_refused_with_a_409(world):
    Charger.objects.filter(identity="ACME-1").update(connected=False)
    response = reserve(world.client(Role.OPERATOR))
    assert response.status_code == 409, response.content
    assert "ACME-1 is offline" in response.json()["error"]["message"]
    assert not Reservation.objects.exists()
    assert not Command.objects.exists()


@pytest.mark.parametrize("role", [Role.INTEGRATOR, Role.SITE_HOST])
def test_readers_list_but_do_not_reserve_or_cancel(world, role):
    assert reserve(world.client(Role.OPERATOR)).status_code == 202
    reservation = Reservation.objects.get()
    Reservation.objects.update(state="active")
    client = world.client(role)
    assert reserve(client, connector=1).status_code == 403
    listed = client.get("/api/v1/reservations/")
    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()["results"]] == [reservation.pk]
    assert client.post(f"/api/v1/reservations/{reservation.pk}/cancel/").status_code == 403


def test_another_organization_never_sees_them(world):
    assert reserve(world.client(Role.OPERATOR)).status_code == 202
    reservation = Reservation.objects.get()
    Reservation.objects.update(state="active")
    other = world.client(Role.OPERATOR, "other")
    assert other.get("/api/v1/reservations/").json()["results"] == []
    assert other.get(f"/api/v1/reservations/{reservation.pk}/").status_code == 404
    assert other.post(f"/api/v1/reservations/{reservation.pk}/cancel/").status_code == 404
    assert Command.objects.count() == 1


def test_filters_by_charger_and_state(world):
    client = world.client(Role.OPERATOR)
    assert reserve(client).status_code == 202
    Charger.objects.filter(identity="ACME-2").update(channel_name="specific.test!2")
    world.acme.connectors["ACME-2"].evse_id = 1
    world.acme.connectors["ACME-2"].save()
    assert reserve(client, charger="ACME-2", id_token="ACME-TAG-2").status_code == 202
    Reservation.objects.filter(charger__identity="ACME-2").update(state="active")

    def ids(query: str) -> list[str]:
        response = client.get(f"/api/v1/reservations/?{query}")
        assert response.status_code == 200, response.content
        return [r["charger"] for r in response.json()["results"]]

    assert ids("charger=ACME-1") == ["ACME-1"]
    assert ids("state=active") == ["ACME-2"]
    assert ids("state=requested&charger=ACME-2") == []
    assert client.get("/api/v1/reservations/?state=nope").status_code == 400


def test_cancelling_sends_cancel_reservation_and_only_an_active_one(world):
    client = world.client(Role.OPERATOR)
    assert reserve(client).status_code == 202
    reservation = Reservation.objects.get()
    early = client.post(f"/api/v1/reservations/{reservation.pk}/cancel/")
    assert early.status_code == 409
    assert "only an active reservation" in early.json()["error"]["message"]
    Reservation.objects.update(state="active")
    response = client.post(f"/api/v1/reservations/{reservation.pk}/cancel/")
    assert response.status_code == 202, response.content
    assert [c["action"] for c in response.json()["commands"]] == [
        "ReserveNow",
        "CancelReservation",
    ]
    cancel = Command.objects.get(action="CancelReservation")
    assert cancel.payload == {"reservationId": reservation.reservation_id}
    assert response.json()["state"] == "active"  # until the charger accepts
