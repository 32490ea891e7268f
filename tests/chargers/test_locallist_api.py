"""The local list REST API: a charger's list state and entries, sync (full or differential)
and version checks, the chargers list filtered by list state; bad bodies, roles and tenancy.

The charger's answers are recorded through the same services its connection uses."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from chargers import command_services, locallist_services, protocol, services
from chargers.locallist_models import LocalListSync
from chargers.models import Charger, Command, IdToken
from cpms.celery import app
from cpms.models import Role
from tests.cpms.api_world import World, build_world

pytestmark = pytest.mark.django_db(transaction=True)


def url(identity: str, action: str = "") -> str:
    return f"/api/v1/chargers/{identity}/local-list/" + (f"{action}/" if action else "")


@pytest.fixture(autouse=True)
def celery_inline() -> Iterator[None]:
    """Tasks run where they are sent, as on the embedded default, also with a broker: these
    tests check what the services do; a real worker runs them in tests/e2e."""
    eager, propagates = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = eager, propagates


@pytest.fixture
def world() -> World:
    world = build_world()
    Charger.objects.filter(identity__in=["ACME-1", "OTHER-1"]).update(
        connected=True, ocpp_version="1.6", channel_name="specific.test!1"
    )
    IdToken.objects.filter(token="ACME-TAG-1").update(local_list=True)
    return world


def answer(action: str, payload: dict[str, Any]) -> Command:
    """The charger answers the oldest waiting command of that action."""
    command = Command.objects.filter(action=action, state__in=["requested", "queued"]).earliest(
        "id"
    )
    holder = command_services.Holder(
        pk=command.charger_id,
        identity=command.charger.identity,
        organization_id=command.charger.organization_id,
    )
    claim = command_services.command_claim(
        command_pk=command.pk, charger=holder, version="1.6", message_id=f"m{command.pk}"
    )
    assert claim is not None
    command_services.command_answer_record(
        command_pk=command.pk,
        charger=holder,
        action=action,
        payload=claim.payload,
        message_id=f"m{command.pk}",
        version="1.6",
        answer=protocol.CallResult(f"m{command.pk}", payload),
    )
    command.refresh_from_db()
    return command


def limits(per_message: int = 10, total: int = 100) -> dict[str, Any]:
    return {
        "configurationKey": [
            {"key": "SendLocalListMaxLength", "readonly": True, "value": str(per_message)},
            {"key": "LocalAuthListMaxLength", "readonly": True, "value": str(total)},
        ]
    }


def test_an_operator_syncs_a_list_and_reads_what_the_charger_holds(world):
    client = world.client(Role.OPERATOR)
    before = client.get(url("ACME-1"))
    assert before.status_code == 200
    assert before.json()["state"] == "unknown" and before.json()["entries"] == []

    response = client.post(url("ACME-1", "sync"), {"full": True}, format="json")
    assert response.status_code == 202, response.content
    # Never asked before: the charger's limits and version come first.
    answer("GetConfiguration", limits())
    answer("GetLocalListVersion", {"listVersion": 0})
    sent = answer("SendLocalList", {"status": "Accepted"})
    assert sent.payload == {
        "listVersion": 1,
        "updateType": "Full",
        "localAuthorizationList": [{"idTag": "ACME-TAG-1", "idTagInfo": {"status": "Accepted"}}],
    }
    body = client.get(url("ACME-1")).json()
    assert body["state"] == "in_sync"
    assert body["version"] == 1 and body["reported_version"] == 1
    assert body["entry_count"] == 1 and body["in_flight"] is False
    assert body["entries"] == [
        {
            "token": "ACME-TAG-1",
            "type": "ISO14443",
            "status": "Accepted",
            "expires_at": None,
            "group_token": "",
        }
    ]
    assert body["last_synced_at"] is not None

    # A change while an update is in flight goes after its answer.
    tag = IdToken.objects.get(token="ACME-TAG-2")
    services.id_token_update(id_token=tag, data={"local_list": True})
    services.id_token_update(id_token=tag, data={"status": "Blocked"})
    assert Command.objects.filter(action="SendLocalList", state="requested").count() == 1
    second = answer("SendLocalList", {"status": "Accepted"})
    assert second.payload["updateType"] == "Differential"
    third = answer("SendLocalList", {"status": "Accepted"})
    assert third.payload == {
        "listVersion": 3,
        "updateType": "Differential",
        "localAuthorizationList": [{"idTag": "ACME-TAG-2", "idTagInfo": {"status": "Blocked"}}],
    }
    assert LocalListSync.objects.get(charger__identity="ACME-1").version == 3


def test_an_update_that_timed_out_is_sent_again_while_the_charger_stays_connected(world):
    client = world.client(Role.OPERATOR)
    client.post(url("ACME-1", "check"), format="json")
    answer("GetConfiguration", limits())
    answer("GetLocalListVersion", {"listVersion": 0})
    command = Command.objects.get(action="SendLocalList")
    holder = command_services.Holder(
        pk=command.charger_id, identity="ACME-1", organization_id=command.charger.organization_id
    )
    command_services.command_claim(
        command_pk=command.pk, charger=holder, version="1.6", message_id="lost"
    )
    command_services.command_timeout(
        command_pk=command.pk, charger=holder, action="SendLocalList", message_id="lost", seconds=30
    )
    sync = LocalListSync.objects.get(charger__identity="ACME-1")
    assert sync.state == "pending" and "timeout" in sync.last_error
    # Not yet: the list has just moved.
    assert locallist_services.local_lists_retry() == 0
    later = timezone.now() + timedelta(minutes=2)
    assert locallist_services.local_lists_retry(now=later) == 1
    again = answer("SendLocalList", {"status": "Accepted"})
    assert again.pk != command.pk and again.payload["updateType"] == "Full"
    assert LocalListSync.objects.get(charger__identity="ACME-1").state == "in_sync"
    assert locallist_services.local_lists_retry(now=later + timedelta(minutes=2)) == 0


def test_a_version_check_answered_before_an_update_does_not_resend_the_list(world):
    """The check's answer is taken after the update's (its task ran later): the version it
    reports is older than the update and asks for no full list."""
    client = world.client(Role.OPERATOR)
    client.post(url("ACME-1", "sync"), {"full": True}, format="json")
    answer("GetConfiguration", limits())
    answer("GetLocalListVersion", {"listVersion": 0})
    answer("SendLocalList", {"status": "Accepted"})
    client.post(url("ACME-1", "check"), format="json")
    check = Command.objects.get(action="GetLocalListVersion", state="requested")
    # The charger answers the check with the version it holds, 1; that answer is recorded...
    Command.objects.filter(pk=check.pk).update(
        state="answered", response={"listVersion": 1}, answered_at=timezone.now()
    )
    # ...then applies a differential, whose answer is taken first.
    tag = IdToken.objects.get(token="ACME-TAG-2")
    services.id_token_update(id_token=tag, data={"local_list": True})
    differential = answer("SendLocalList", {"status": "Accepted"})
    assert differential.payload["updateType"] == "Differential"
    locallist_services.local_list_command_finished(command_pk=check.pk)
    sync = LocalListSync.objects.get(charger__identity="ACME-1")
    assert (sync.state, sync.version, sync.check_command_id) == ("in_sync", 2, None)
    assert not Command.objects.filter(action="SendLocalList", state="requested").exists()


def test_an_update_the_charger_answered_before_it_rebooted_is_taken_at_its_boot(world):
    """The charger accepted a differential and rebooted before that answer's task ran (a busy
    worker): the boot takes the answer instead of forgetting it, and the version the charger
    then reports asks for no full list."""
    client = world.client(Role.OPERATOR)
    client.post(url("ACME-1", "sync"), {"full": True}, format="json")
    answer("GetConfiguration", limits())
    answer("GetLocalListVersion", {"listVersion": 0})
    answer("SendLocalList", {"status": "Accepted"})
    tag = IdToken.objects.get(token="ACME-TAG-2")
    services.id_token_update(id_token=tag, data={"local_list": True})
    differential = Command.objects.get(action="SendLocalList", state="requested")
    assert differential.payload["updateType"] == "Differential"
    # Its answer is recorded; the task that takes it has not run yet.
    Command.objects.filter(pk=differential.pk).update(
        state="accepted",
        response={"status": "Accepted"},
        response_status="Accepted",
        answered_at=timezone.now(),
    )
    locallist_services.local_list_connected(charger_pk=differential.charger_id)
    answer("GetConfiguration", limits())
    answer("GetLocalListVersion", {"listVersion": 2})
    sync = LocalListSync.objects.get(charger__identity="ACME-1")
    assert (sync.state, sync.version, sync.command_id) == ("in_sync", 2, None)
    assert set(sync.entries) == {"ACME-TAG-1", "ACME-TAG-2"}
    sent = Command.objects.filter(action="SendLocalList").order_by("id")
    assert [c.payload["updateType"] for c in sent] == ["Full", "Differential"]


def test_a_failed_update_says_why_and_the_filter_finds_chargers_out_of_sync(world):
    client = world.client(Role.OPERATOR)
    client.post(url("ACME-1", "check"), format="json")
    answer("GetConfiguration", limits())
    answer("GetLocalListVersion", {"listVersion": 0})
    answer("SendLocalList", {"status": "Failed"})
    body = client.get(url("ACME-1")).json()
    assert body["state"] == "failed"
    assert "Failed" in body["last_error"]
    chargers = client.get("/api/v1/chargers/", {"local_list": "out_of_sync"}).json()["results"]
    assert [c["identity"] for c in chargers] == ["ACME-1"]
    unknown = client.get("/api/v1/chargers/", {"local_list": "unknown"}).json()["results"]
    assert [c["identity"] for c in unknown] == ["ACME-2"]
    assert client.get("/api/v1/chargers/", {"local_list": "nonsense"}).status_code == 400


def test_a_charger_without_a_local_list_is_not_supported(world):
    client = world.client(Role.OPERATOR)
    client.post(url("ACME-1", "check"), format="json")
    answer("GetConfiguration", {"configurationKey": [], "unknownKey": ["SendLocalListMaxLength"]})
    answer("GetLocalListVersion", {"listVersion": -1})
    body = client.get(url("ACME-1")).json()
    assert body["state"] == "not_supported"
    assert "-1" in body["last_error"]
    assert not Command.objects.filter(action="SendLocalList").exists()


@pytest.mark.parametrize(
    "body",
    [{"full": "yes"}, {"full": 1}, {"full": None}, ["full"]],
)
def test_a_bad_sync_body_is_a_400(world, body):
    response = world.client(Role.OPERATOR).post(url("ACME-1", "sync"), body, format="json")
    assert response.status_code == 400
    assert not Command.objects.filter(action__in=["SendLocalList", "GetLocalListVersion"]).exists()


def test_a_charger_that_never_connected_is_a_409(world):
    Charger.objects.filter(identity="ACME-2").update(ocpp_version="")
    response = world.client(Role.OPERATOR).post(url("ACME-2", "sync"), {}, format="json")
    assert response.status_code == 409
    assert "never connected" in response.json()["error"]["message"]


def test_another_organizations_charger_is_a_404(world):
    client = world.client(Role.OPERATOR)
    assert client.get(url("OTHER-1")).status_code == 404
    assert client.post(url("OTHER-1", "sync"), {"full": True}, format="json").status_code == 404
    assert client.post(url("OTHER-1", "check"), format="json").status_code == 404
    assert not Command.objects.exists()


def test_integrators_read_and_other_roles_may_not_act(world):
    integrator = world.client(Role.INTEGRATOR)
    assert integrator.get(url("ACME-1")).status_code == 200
    assert integrator.post(url("ACME-1", "sync"), {}, format="json").status_code == 403
    assert integrator.post(url("ACME-1", "check"), format="json").status_code == 403
    site_host = world.client(Role.SITE_HOST)
    assert site_host.get(url("ACME-1")).status_code == 403
    assert site_host.post(url("ACME-1", "sync"), {}, format="json").status_code == 403
    assert not Command.objects.exists()
