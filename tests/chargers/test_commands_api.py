"""The commands REST API: send a command (202, 400 with the schema's message, 409 for an offline
charger), follow it, list and filter, retry; who may, and what another organization never sees.

The delivery itself is tested end to end over real sockets (tests/e2e/test_commands_*.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from chargers.models import Charger, Command
from cpms.models import Membership, Role
from tests.cpms.api_world import World, build_world

pytestmark = pytest.mark.django_db

RESET = {"action": "Reset", "payload": {"type": "Soft"}}


@pytest.fixture
def world() -> World:
    world = build_world()
    Charger.objects.filter(identity__in=["ACME-1", "OTHER-1"]).update(
        connected=True, ocpp_version="1.6", channel_name="specific.test!1"
    )
    Charger.objects.filter(identity="ACME-2").update(connected=False, ocpp_version="2.0.1")
    return world


def send(client: APIClient, identity: str, body: dict[str, Any]) -> Any:
    return client.post(f"/api/v1/chargers/{identity}/commands/", body, format="json")


def error(response: Any) -> dict[str, Any]:
    return response.json()["error"]


# --- Sending ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.OPERATOR_ADMIN])
def test_an_operator_sends_a_command_and_gets_202_with_it(world, role):
    response = send(world.client(role), "ACME-1", RESET)
    assert response.status_code == 202, response.content
    body = response.json()
    command = Command.objects.get()
    assert body["id"] == command.pk
    assert {
        k: body[k]
        for k in ("charger", "action", "payload", "ocpp_version", "state", "deliver_when_offline")
    } == {
        "charger": "ACME-1",
        "action": "Reset",
        "payload": {"type": "Soft"},
        "ocpp_version": "1.6",
        "state": "requested",
        "deliver_when_offline": False,
    }
    assert (body["source"], body["requested_by"]) == ("api_token", f"{role} client")
    assert (body["response"], body["message_id"], body["sent_at"], body["retry_of"]) == (
        None,
        "",
        None,
        None,
    )
    assert (command.source, command.api_token) == ("api_token", world.acme.tokens[role])


def test_a_signed_in_operator_is_named_as_who_asked(world):
    user = User.objects.create_user("olga")
    Membership.objects.create(user=user, organization=world.acme.organization, role=Role.OPERATOR)
    client = APIClient()
    client.force_authenticate(user)
    response = send(client, "ACME-1", {"action": "ClearCache"})
    assert response.status_code == 202, response.content
    assert (response.json()["requested_by"], response.json()["payload"]) == ("olga", {})
    assert Command.objects.get().requested_by == user


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"action": "Reset", "payload": {"type": "Gentle"}},
            "payload",
            "Not a valid OCPP 1.6 Reset request: type: 'Gentle' is not one of ['Hard', 'Soft']",
        ),
        (
            {"action": "Reset", "payload": {}},
            "payload",
            "Not a valid OCPP 1.6 Reset request: payload: 'type' is a required property",
        ),
        (
            {"action": "GetVariables", "payload": {}},
            "action",
            "'GetVariables' is not a command a CSMS sends in OCPP 1.6; one of: CancelReservation",
        ),
        (
            {"action": "Reset", "payload": ["Soft"]},
            "payload",
            'Expected a dictionary of items but got type "list".',
        ),
        ({"payload": {"type": "Soft"}}, "action", "This field is required."),
        (
            {"action": "Reset", "payload": {"type": "So\u0000ft"}},
            "payload",
            "Strings must not contain NUL characters.",
        ),
        ({"action": 12, "payload": {}}, "action", "Not a valid string."),
    ],
)
def test_a_bad_command_is_a_400_with_the_reason(world, body, field, message):
    response = send(world.client(Role.OPERATOR), "ACME-1", body)
    assert response.status_code == 400, response.content
    details = error(response)["details"]
    assert list(details) == [field]
    assert details[field][0]["message"].startswith(message)
    assert not Command.objects.exists()


def test_an_offline_charger_is_a_409_unless_the_command_may_wait(world):
    client = world.client(Role.OPERATOR)
    refused = send(client, "ACME-2", {"action": "Reset", "payload": {"type": "Immediate"}})
    assert refused.status_code == 409
    assert error(refused)["code"] == "charger_offline"
    assert error(refused)["message"] == (
        "ACME-2 is offline, so the command was not sent. Send it with deliver_when_offline to "
        "queue it until the charger connects."
    )
    assert not Command.objects.exists()
    queued = send(
        client,
        "ACME-2",
        {"action": "Reset", "payload": {"type": "Immediate"}, "deliver_when_offline": True},
    )
    assert queued.status_code == 202
    assert (queued.json()["state"], queued.json()["deliver_when_offline"]) == ("queued", True)


def test_another_organizations_charger_or_an_unknown_one_is_a_404(world):
    client = world.client(Role.OPERATOR)
    for identity in ("OTHER-1", "NOPE"):
        response = send(client, identity, RESET)
        assert response.status_code == 404
        assert client.get(f"/api/v1/chargers/{identity}/commands/").status_code == 404
    assert not Command.objects.exists()


@pytest.mark.parametrize("role", [Role.SITE_HOST, Role.INTEGRATOR])
def test_site_hosts_and_integrators_may_not_send_or_read_commands(world, role):
    command = Command.objects.create(
        charger=world.acme.chargers["ACME-1"],
        action="Reset",
        payload={"type": "Soft"},
        ocpp_version="1.6",
    )
    client = world.client(role)
    for response in (
        send(client, "ACME-1", RESET),
        client.get("/api/v1/chargers/ACME-1/commands/"),
        client.get("/api/v1/commands/"),
        client.get(f"/api/v1/commands/{command.pk}/"),
        client.post(f"/api/v1/commands/{command.pk}/retry/"),
    ):
        assert response.status_code == 403, response.content
        assert error(response)["code"] == "permission_denied"
    assert Command.objects.count() == 1


def test_without_credentials_it_is_a_401(world):
    assert send(APIClient(), "ACME-1", RESET).status_code == 401


# --- Reading ---------------------------------------------------------------------------------------


def test_commands_are_listed_newest_first_and_filtered(world):
    client = world.client(Role.OPERATOR)
    first = send(client, "ACME-1", RESET).json()
    second = send(client, "ACME-1", {"action": "ClearCache"}).json()
    queued = send(
        client,
        "ACME-2",
        {"action": "Reset", "payload": {"type": "Immediate"}, "deliver_when_offline": True},
    ).json()
    send(world.client(Role.OPERATOR, "other"), "OTHER-1", RESET)

    def ids(url: str) -> list[int]:
        response = client.get(url)
        assert response.status_code == 200, response.content
        return [c["id"] for c in response.json()["results"]]

    assert ids("/api/v1/commands/") == [queued["id"], second["id"], first["id"]]
    assert ids("/api/v1/commands/?charger=ACME-1") == [second["id"], first["id"]]
    assert ids("/api/v1/commands/?state=queued") == [queued["id"]]
    assert ids("/api/v1/commands/?action=Reset") == [queued["id"], first["id"]]
    assert ids("/api/v1/chargers/ACME-2/commands/") == [queued["id"]]
    assert ids("/api/v1/chargers/ACME-1/commands/?action=ClearCache") == [second["id"]]
    detail = client.get(f"/api/v1/commands/{first['id']}/")
    assert detail.status_code == 200
    assert detail.json() == first


def test_a_bad_filter_is_a_400(world):
    client = world.client(Role.OPERATOR)
    assert client.get("/api/v1/commands/?state=done").status_code == 400
    assert client.get("/api/v1/commands/?state=sent&state=queued").status_code == 400


def test_another_organizations_command_is_a_404(world):
    other = send(world.client(Role.OPERATOR, "other"), "OTHER-1", RESET).json()
    client = world.client(Role.OPERATOR)
    assert client.get(f"/api/v1/commands/{other['id']}/").status_code == 404
    assert client.post(f"/api/v1/commands/{other['id']}/retry/").status_code == 404
    assert client.get("/api/v1/commands/?charger=OTHER-1").json()["results"] == []


# --- Retry -----------------------------------------------------------------------------------------


def test_a_failed_command_is_retried_and_a_succeeded_one_is_a_409(world):
    client = world.client(Role.OPERATOR)
    command = send(client, "ACME-1", RESET).json()
    Command.objects.filter(pk=command["id"]).update(state="timeout")
    retried = client.post(f"/api/v1/commands/{command['id']}/retry/")
    assert retried.status_code == 202, retried.content
    body = retried.json()
    assert (
        body["retry_of"],
        body["retry_count"],
        body["action"],
        body["payload"],
        body["state"],
    ) == (
        command["id"],
        1,
        "Reset",
        {"type": "Soft"},
        "requested",
    )
    Command.objects.filter(pk=body["id"]).update(state="accepted")
    refused = client.post(f"/api/v1/commands/{body['id']}/retry/")
    assert refused.status_code == 409
    assert (
        "is accepted; only rejected, error, timeout and failed commands can be retried"
        in error(refused)["message"]
    )


def test_a_retry_for_a_charger_that_went_offline_is_a_409(world):
    client = world.client(Role.OPERATOR)
    command = send(client, "ACME-1", RESET).json()
    Command.objects.filter(pk=command["id"]).update(state="failed")
    Charger.objects.filter(identity="ACME-1").update(connected=False)
    refused = client.post(f"/api/v1/commands/{command['id']}/retry/")
    assert refused.status_code == 409
    assert error(refused)["message"].startswith("ACME-1 is offline")
