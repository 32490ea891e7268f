"""The routing REST API: read and apply policies (400 naming the problems, 409 for an unconfirmed
cut-over), the change record and each charger's legs; operators only, within their organization."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from chargers.models import Charger
from cpms.models import Membership, Role
from routing.models import LegStatus, OutboxEntry, Route, RoutingChange, Upstream
from tests.cpms.api_world import World, all_pages, build_world

pytestmark = pytest.mark.django_db

POLICY_URL = "/api/v1/routing/policy/"
LEGACY = "ws://legacy.acme.example:9000/ocpp"


@pytest.fixture
def world() -> World:
    return build_world()


def legacy_primary(identity: str = "ACME-1") -> dict[str, Any]:
    return {
        "upstreams": {"legacy": {"url": LEGACY}},
        "routes": [
            {
                "charger_id": identity,
                "upstreams": [
                    {"upstream": "legacy", "role": "primary"},
                    {"upstream": "local", "role": "observer"},
                ],
            }
        ],
    }


def post(world: World, body: dict[str, Any], role: str = Role.OPERATOR) -> Any:
    return world.client(role).post(POLICY_URL, body, format="json")


def test_a_cutover_needs_confirming_then_applies(world: World) -> None:
    refused = post(world, {"policy": legacy_primary()})
    assert refused.status_code == 409
    message = refused.json()["error"]["message"]
    assert "charger ACME-1 (local to legacy)" in message and "confirm_cutover" in message
    assert not Route.objects.exists()

    dry = post(world, {"policy": legacy_primary(), "dry_run": True})
    assert dry.status_code == 200 and dry.json()["applied"] is False
    assert dry.json()["changes"][0]["cutover"] is True
    assert not Route.objects.exists()

    applied = post(world, {"policy": legacy_primary(), "confirm_cutover": True})
    assert applied.status_code == 200, applied.json()
    body = applied.json()
    assert body["applied"] is True and len(body["records"]) == 1
    record = RoutingChange.objects.get(pk=body["records"][0])
    assert record.source == "api" and record.organization == world.acme.organization
    assert record.actor.startswith("API token")
    # The new upstream belongs to the caller's organization.
    assert Upstream.objects.get(name="legacy").organization == world.acme.organization

    live = world.client(Role.OPERATOR).get(POLICY_URL).json()
    assert live["upstreams"]["legacy"]["url"] == LEGACY
    assert live["routes"][0]["charger_id"] == "ACME-1"

    # Adding an observer moves no primary: no confirmation needed.
    with_observer = legacy_primary()
    with_observer["upstreams"]["analytics"] = {"url": "wss://analytics.acme.example/ocpp"}
    with_observer["routes"][0]["upstreams"].append({"upstream": "analytics", "role": "observer"})
    assert post(world, {"policy": with_observer}).status_code == 200

    changes = all_pages(world.client(Role.OPERATOR), "/api/v1/routing/changes/")
    assert changes[0]["summary"] == (
        "charger ACME-1: primary legacy, observers analytics, local; upstream analytics: added "
        "(wss://analytics.acme.example/ocpp)"
    )
    assert changes[1]["after"]["routes"][0]["upstreams"][0]["upstream"] == "legacy"


@pytest.mark.parametrize(
    ("policy", "path", "message"),
    [
        (
            {"charger_id": "ACME-1", "upstreams": [{"upstream": "ghost", "role": "primary"}]},
            "routes[0].upstreams[0].upstream",
            "unknown upstream 'ghost'",
        ),
        (
            {
                "charger_id": "ACME-1",
                "upstreams": [
                    {"upstream": "local", "role": "primary"},
                    {"url": "ws://x.example/", "role": "primary"},
                ],
            },
            "routes[0].upstreams",
            "two primaries (local, x.example): exactly one upstream may be primary",
        ),
        (
            {"charger_id": "OTHER-1", "upstreams": [{"upstream": "local", "role": "primary"}]},
            "routes[0].charger_id",
            "no charger 'OTHER-1'",
        ),
        (
            {
                "routes": [
                    {"scope": "default", "upstreams": [{"upstream": "local", "role": "primary"}]}
                ]
            },
            "routes[0]",
            "the global route is set by an administrator",
        ),
        ("not a policy", "policy", "a policy is an object"),
    ],
)
def test_a_bad_policy_is_a_400_naming_the_problem(
    world: World, policy: Any, path: str, message: str
) -> None:
    response = post(world, {"policy": policy, "confirm_cutover": True})
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert any(message in item["message"] for item in details[path]), details
    assert not Route.objects.exists() and not RoutingChange.objects.exists()


def test_another_organizations_upstream_is_unknown(world: World) -> None:
    Upstream.objects.create(
        name="theirs", url="ws://theirs.example/", organization=world.other.organization
    )
    response = post(
        world,
        {
            "policy": {
                "charger_id": "ACME-1",
                "upstreams": [{"upstream": "theirs", "role": "primary"}],
            },
            "confirm_cutover": True,
        },
    )
    assert response.status_code == 400
    assert "unknown upstream 'theirs'" in str(response.json())


@pytest.mark.parametrize("role", [Role.SITE_HOST, Role.INTEGRATOR])
def test_only_operators_read_or_change_routing(world: World, role: str) -> None:
    client = world.client(role)
    assert client.get(POLICY_URL).status_code == 403
    assert client.post(POLICY_URL, {"policy": legacy_primary()}, format="json").status_code == 403
    assert client.get("/api/v1/routing/changes/").status_code == 403
    assert client.get("/api/v1/routing/chargers/").status_code == 403


def test_changes_of_another_organization_stay_hidden(world: World) -> None:
    assert post(world, {"policy": legacy_primary(), "confirm_cutover": True}).status_code == 200
    other_client = world.client(Role.OPERATOR, "other")
    assert all_pages(other_client, "/api/v1/routing/changes/") == []
    assert other_client.get(POLICY_URL).json() == {"upstreams": {}, "routes": []}


def test_charger_legs_with_their_health(world: World) -> None:
    post(world, {"policy": legacy_primary(), "confirm_cutover": True})
    charger = Charger.objects.get(identity="ACME-1")
    Charger.objects.filter(pk=charger.pk).update(connected=True)
    legacy = Upstream.objects.get(name="legacy")
    LegStatus.objects.create(
        charger=charger,
        upstream=legacy,
        role="primary",
        connected=True,
        latency_ms=8.5,
        dropped=3,
        reconnects=1,
    )
    for n in range(2):
        OutboxEntry.objects.create(
            charger=charger, upstream=legacy, message_id=f"m{n}", action="MeterValues", payload={}
        )
    client = world.client(Role.OPERATOR)
    rows = all_pages(client, "/api/v1/routing/chargers/")
    by_charger = {row["charger"]: row for row in rows}
    assert set(by_charger) == {"ACME-1", "ACME-2"}
    routed = by_charger["ACME-1"]
    assert routed["scope"] == "charger" and routed["local_controls"] is False
    assert routed["primary"]["upstream"] == "legacy"
    assert routed["primary"]["state"] == "backlog"
    assert routed["primary"]["latency_ms"] == 8.5
    assert routed["primary"]["outbox_depth"] == 2 and routed["primary"]["dropped"] == 3
    assert (
        routed["observers"][0]["upstream"] == "local"
        and routed["observers"][0]["connected"] is True
    )
    plain = by_charger["ACME-2"]
    assert (
        plain["scope"] == "default" and plain["local_controls"] is True and plain["observers"] == []
    )
    only_routed = all_pages(client, "/api/v1/routing/chargers/?routed=true")
    assert [row["charger"] for row in only_routed] == ["ACME-1"]


def test_metrics_show_leg_health(world: World, client: Any) -> None:
    post(world, {"policy": legacy_primary(), "confirm_cutover": True})
    charger = Charger.objects.get(identity="ACME-1")
    Charger.objects.filter(pk=charger.pk).update(connected=True)
    legacy = Upstream.objects.get(name="legacy")
    LegStatus.objects.create(
        charger=charger,
        upstream=legacy,
        role="primary",
        connected=True,
        latency_ms=20.0,
        reconnects=4,
    )
    OutboxEntry.objects.create(
        charger=charger, upstream=legacy, message_id="m", action="Heartbeat", payload={}
    )
    text = client.get("/metrics").content.decode()
    labels = 'charger="ACME-1",role="primary",upstream="legacy"'
    assert f"cpms_routing_leg_connected{{{labels}}} 1.0" in text
    assert f"cpms_routing_leg_latency_seconds{{{labels}}} 0.02" in text
    assert f"cpms_routing_leg_reconnects{{{labels}}} 4.0" in text
    assert 'cpms_routing_outbox_depth{upstream="legacy"} 1.0' in text
    assert 'cpms_routing_upstream_legs{state="connected",upstream="legacy"} 1.0' in text


def test_a_bad_filter_is_a_400(world: World) -> None:
    client = world.client(Role.OPERATOR)
    response = client.get("/api/v1/routing/chargers/?routed=3")
    assert response.status_code == 400
    assert "routed" in response.json()["error"]["details"]


def test_an_upstream_password_is_write_only_and_encrypted_at_rest(world: World) -> None:
    secret = "legacy-basic-secret-9"
    policy = legacy_primary()
    policy["upstreams"]["legacy"] = {
        "url": LEGACY,
        "credentials": "basic_upstream",
        "username": "acme",
        "password": secret,
    }
    applied = post(world, {"policy": policy, "confirm_cutover": True})
    assert applied.status_code == 200, applied.json()
    assert secret not in applied.content.decode()

    # Stored as a token; the gateway reads the password itself.
    legacy = Upstream.objects.get(name="legacy")
    assert legacy.password == secret
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM routing_upstream WHERE id = %s", [legacy.pk])
        (column,) = cursor.fetchone()
    assert secret not in column and column.startswith("gAAAAA")

    # Never shown back: not in the live policy, the change record, nor the routing page.
    client = world.client(Role.OPERATOR)
    live = client.get(POLICY_URL)
    assert live.status_code == 200
    assert secret not in live.content.decode()
    assert "password" not in live.json()["upstreams"]["legacy"]
    changes = client.get("/api/v1/routing/changes/")
    assert changes.status_code == 200 and secret not in changes.content.decode()
    user = User.objects.create_user("operator", password="a-long-password")
    Membership.objects.create(user=user, organization=world.acme.organization, role=Role.OPERATOR)
    page = Client()
    page.force_login(user)
    overview = page.get("/routing/")
    assert overview.status_code == 200 and secret not in overview.content.decode()

    # The document read back applies as it is, and the password stays what it was.
    again = post(world, {"policy": live.json(), "confirm_cutover": True})
    assert again.status_code == 200, again.json()
    assert Upstream.objects.get(name="legacy").password == secret
