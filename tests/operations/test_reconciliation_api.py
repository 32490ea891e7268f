"""The reconciliation REST API: cases with their audit trail, close / dismiss / ask with a reason,
clear refusals, and nothing of another organization."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chargers.models import Charger, Connector, Session, SessionState
from cpms.models import Role
from operations import reconciliation
from operations.models import ReconciliationCase
from tests.cpms.api_world import World, build_world

pytestmark = pytest.mark.django_db

URL = "/api/v1/reconciliation-cases/"


@pytest.fixture
def world() -> World:
    world = build_world()
    # Every session of the world is open on a connector that reported Available after it began.
    Connector.objects.update(status="Available", status_at=timezone.now() - timedelta(hours=1))
    Session.objects.update(started_at=timezone.now() - timedelta(hours=2))
    reconciliation.reconciliation_detect()
    return world


def case_of(identity: str) -> ReconciliationCase:
    return ReconciliationCase.objects.get(charger__identity=identity)


def test_operators_list_the_cases_of_their_organization_only(world):
    response = world.client(Role.OPERATOR).get(URL)
    assert response.status_code == 200, response.content
    rows = response.json()["results"]
    assert sorted(row["charger"] for row in rows) == ["ACME-1", "ACME-2"]
    row = next(row for row in rows if row["charger"] == "ACME-1")
    assert (row["kind"], row["state"], row["transaction_id"]) == (
        "open_on_available",
        "open",
        "ACME-1-tx",
    )
    assert [entry["step"] for entry in row["entries"]] == ["detected"]
    other = case_of("OTHER-1")
    assert world.client(Role.OPERATOR).get(f"{URL}{other.pk}/").status_code == 404


def test_filters_narrow_the_list_and_unknown_ones_are_refused(world):
    client = world.client(Role.OPERATOR)
    rows = client.get(URL, {"charger": "ACME-2", "state": "open"}).json()["results"]
    assert [row["charger"] for row in rows] == ["ACME-2"]
    assert client.get(URL, {"state": "nonsense"}).status_code == 400


@pytest.mark.parametrize("role", [Role.SITE_HOST, Role.INTEGRATOR])
def test_other_roles_may_not_see_cases(world, role):
    assert world.client(role).get(URL).status_code == 403


def test_an_operator_closes_a_session_with_a_reason(world):
    case = case_of("ACME-1")
    response = world.client(Role.OPERATOR).post(
        f"{URL}{case.pk}/close/", {"reason": "Cable found unplugged"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["state"], body["resolution"], body["reason"]) == (
        "resolved",
        "session_closed",
        "Cable found unplugged",
    )
    assert body["entries"][-1]["step"] == "session_closed"
    session = Session.objects.get(transaction_id="ACME-1-tx")
    # The last energy register reading of the world's session is 2100 Wh.
    assert (session.state, session.stop_reason, str(session.meter_stop_wh)) == (
        SessionState.COMPLETED,
        "Reconciled",
        "2100.000",
    )
    again = world.client(Role.OPERATOR).post(
        f"{URL}{case.pk}/dismiss/", {"reason": "again"}, format="json"
    )
    assert again.status_code == 409
    assert "resolved already" in again.json()["error"]["message"]


def test_a_reason_is_required(world):
    case = case_of("ACME-1")
    for body in ({}, {"reason": "   "}):
        response = world.client(Role.OPERATOR).post(f"{URL}{case.pk}/dismiss/", body, format="json")
        assert response.status_code == 400, response.content
    case.refresh_from_db()
    assert case.state == "open"


def test_dismissing_leaves_the_session_open(world):
    case = case_of("ACME-2")
    response = world.client(Role.OPERATOR_ADMIN).post(
        f"{URL}{case.pk}/dismiss/", {"reason": "Known meter display fault"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["resolution"] == "dismissed"
    assert Session.objects.get(transaction_id="ACME-2-tx").state == SessionState.ACTIVE


def test_asking_an_offline_charger_is_a_conflict(world):
    Charger.objects.filter(identity="ACME-1").update(connected=False, ocpp_version="1.6")
    response = world.client(Role.OPERATOR).post(f"{URL}{case_of('ACME-1').pk}/ask/")
    assert response.status_code == 409
    assert "offline" in response.json()["error"]["message"]


def test_asking_a_connected_charger_sends_the_question(world):
    Charger.objects.filter(identity="ACME-1").update(
        connected=True, ocpp_version="1.6", channel_name="specific.test!1"
    )
    response = world.client(Role.OPERATOR).post(f"{URL}{case_of('ACME-1').pk}/ask/")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["state"] == "asked"
    assert body["entries"][-1]["actor"]  # the token's user, or the system
    case = case_of("ACME-1")
    assert case.command.action == "TriggerMessage"
