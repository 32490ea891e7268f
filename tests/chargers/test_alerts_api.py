"""The alerts REST API: lists and filters per tenant, acknowledge and resolve, MTTD/MTTR figures,
webhook endpoints with their delivery log, and one's own e-mail subscription."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from chargers.models import Alert, AlertDelivery, AlertSubscription, WebhookEndpoint
from cpms.models import Membership, Role
from tests.cpms.api_world import World, build_world

pytestmark = pytest.mark.django_db


def make_alert(charger: Any, kind: str, **fields: Any) -> Alert:
    now = timezone.now()
    values: dict[str, Any] = {
        "organization_id": charger.organization_id,
        "charger": charger,
        "kind": kind,
        "fault_at": now - timedelta(seconds=30),
        "raised_at": now,
        "mttd_seconds": 30.0,
    }
    values.update(fields)
    return Alert.objects.create(**values)


@pytest.fixture
def world() -> World:
    world = build_world()
    acme1, acme2 = world.acme.chargers["ACME-1"], world.acme.chargers["ACME-2"]
    make_alert(acme1, "offline", severity="critical")
    make_alert(acme1, "connector_faulted", connector_id=1, suppressed=True)
    make_alert(
        acme2,
        "boot_loop",
        state="resolved",
        resolved_at=timezone.now(),
        mttd_seconds=10.0,
        mttr_seconds=600.0,
    )
    make_alert(
        acme2,
        "offline",
        state="resolved",
        resolved_at=timezone.now(),
        mttd_seconds=120.0,
        mttr_seconds=60.0,
    )
    make_alert(world.other.chargers["OTHER-1"], "offline")
    return world


def ids(response: Any) -> list[tuple[str, str]]:
    assert response.status_code == 200, response.content
    return sorted((a["charger"], a["kind"]) for a in response.json()["results"])


def test_the_list_is_the_callers_organization_and_a_site_host_sees_their_sites(world):
    everything = ids(world.client(Role.INTEGRATOR).get("/api/v1/alerts/"))
    assert everything == [
        ("ACME-1", "connector_faulted"),
        ("ACME-1", "offline"),
        ("ACME-2", "boot_loop"),
        ("ACME-2", "offline"),
    ]
    depot = ids(world.client(Role.SITE_HOST).get("/api/v1/alerts/"))
    assert depot == [("ACME-1", "connector_faulted"), ("ACME-1", "offline")]
    other = world.other.chargers["OTHER-1"].alerts.get()
    assert world.client(Role.OPERATOR).get(f"/api/v1/alerts/{other.pk}/").status_code == 404


def test_filters(world):
    client = world.client(Role.OPERATOR)
    assert ids(client.get("/api/v1/alerts/?state=open")) == [
        ("ACME-1", "connector_faulted"),
        ("ACME-1", "offline"),
    ]
    assert ids(client.get("/api/v1/alerts/?kind=offline")) == [
        ("ACME-1", "offline"),
        ("ACME-2", "offline"),
    ]
    assert ids(client.get("/api/v1/alerts/?charger=ACME-2")) == [
        ("ACME-2", "boot_loop"),
        ("ACME-2", "offline"),
    ]
    harbour = world.acme.sites["Harbour"].pk
    assert ids(client.get(f"/api/v1/alerts/?site={harbour}&kind=boot_loop")) == [
        ("ACME-2", "boot_loop")
    ]
    assert ids(client.get("/api/v1/alerts/?suppressed=true")) == [("ACME-1", "connector_faulted")]
    assert client.get("/api/v1/alerts/?suppressed=yes").status_code == 400
    bad = client.get("/api/v1/alerts/?state=sleeping")
    assert bad.status_code == 400
    assert "state" in bad.json()["error"]["details"]


def test_an_alert_shows_its_lifecycle_and_figures(world):
    alert = Alert.objects.get(charger__identity="ACME-2", kind="boot_loop")
    body = world.client(Role.OPERATOR).get(f"/api/v1/alerts/{alert.pk}/").json()
    assert body["charger"] == "ACME-2"
    assert body["site"] == world.acme.sites["Harbour"].pk
    assert body["state"] == "resolved"
    assert body["mttd_seconds"] == 10.0 and body["mttr_seconds"] == 600.0
    assert body["connector_id"] == 0 and body["suppressed"] is False


def test_acknowledge_and_resolve(world):
    operator = User.objects.create_user("olga", password="pw-olga-12345")
    Membership.objects.create(
        user=operator, organization=world.acme.organization, role=Role.OPERATOR
    )
    client = APIClient()
    client.force_login(operator)
    alert = Alert.objects.get(charger__identity="ACME-1", kind="offline")

    acked = client.post(
        f"/api/v1/alerts/{alert.pk}/acknowledge/", {"note": "driving there"}, format="json"
    )
    assert acked.status_code == 200, acked.content
    assert acked.json()["state"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == "olga"

    again = client.post(f"/api/v1/alerts/{alert.pk}/acknowledge/", {}, format="json")
    assert again.status_code == 409
    assert (
        again.json()["error"]["message"]
        == "an alert that is acknowledged cannot become acknowledged"
    )

    resolved = client.post(
        f"/api/v1/alerts/{alert.pk}/resolve/", {"note": "modem replaced"}, format="json"
    )
    assert resolved.status_code == 200
    body = resolved.json()
    assert (body["state"], body["resolved_by"], body["resolution"]) == (
        "resolved",
        "olga",
        "modem replaced",
    )
    assert body["mttr_seconds"] is not None and body["mttr_seconds"] >= 0
    assert client.post(f"/api/v1/alerts/{alert.pk}/resolve/", {}, format="json").status_code == 409

    too_long = client.post(
        f"/api/v1/alerts/{alert.pk}/resolve/", {"note": "x" * 201}, format="json"
    )
    assert too_long.status_code == 400


@pytest.mark.parametrize("role", [Role.SITE_HOST, Role.INTEGRATOR])
def test_only_operators_move_alerts(world, role):
    alert = Alert.objects.get(charger__identity="ACME-1", kind="offline")
    response = world.client(role).post(f"/api/v1/alerts/{alert.pk}/acknowledge/", {}, format="json")
    assert response.status_code == 403
    alert.refresh_from_db()
    assert alert.state == "open"


def test_stats(world):
    body = world.client(Role.OPERATOR).get("/api/v1/alert-stats/").json()
    assert (body["count"], body["open"], body["resolved"], body["suppressed"]) == (4, 2, 2, 1)
    assert body["mttd"] == {"count": 4, "mean": 47.5, "median": 30.0, "p90": 120.0, "max": 120.0}
    assert body["mttr"] == {"count": 2, "mean": 330.0, "median": 330.0, "p90": 600.0, "max": 600.0}
    offline = next(k for k in body["by_kind"] if k["kind"] == "offline")
    assert offline["count"] == 2
    assert offline["mttd"]["mean"] == 75.0
    assert offline["mttr"]["mean"] == 60.0

    only_harbour = world.client(Role.OPERATOR).get(
        f"/api/v1/alert-stats/?site={world.acme.sites['Harbour'].pk}"
    )
    assert only_harbour.json()["count"] == 2
    assert world.client(Role.SITE_HOST).get("/api/v1/alert-stats/").json()["count"] == 2


def test_webhook_endpoints_are_for_operator_admins(world):
    admin = world.client(Role.OPERATOR_ADMIN)
    created = admin.post(
        "/api/v1/webhook-endpoints/",
        {"name": "pager", "url": "https://ops.example.com/hooks", "events": ["alert.raised"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 30
    assert body["events"] == ["alert.raised"]
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.organization == world.acme.organization

    duplicate = admin.post(
        "/api/v1/webhook-endpoints/",
        {"name": "pager", "url": "https://ops.example.com/other"},
        format="json",
    )
    assert duplicate.status_code == 400
    assert "name" in duplicate.json()["error"]["details"]
    for url in ["ftp://ops.example.com/x", "not a url", "file:///etc/passwd"]:
        refused = admin.post("/api/v1/webhook-endpoints/", {"name": "x", "url": url}, format="json")
        assert refused.status_code == 400, url
        assert "url" in refused.json()["error"]["details"]
    bad_event = admin.post(
        "/api/v1/webhook-endpoints/",
        {"name": "y", "url": "https://a.example.com/", "events": ["alert.exploded"]},
        format="json",
    )
    assert bad_event.status_code == 400

    changed = admin.patch(
        f"/api/v1/webhook-endpoints/{endpoint.pk}/", {"enabled": False}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["enabled"] is False

    for role in (Role.OPERATOR, Role.SITE_HOST, Role.INTEGRATOR):
        assert world.client(role).get("/api/v1/webhook-endpoints/").status_code == 403
    assert (
        world.client(Role.OPERATOR_ADMIN, "other")
        .get(f"/api/v1/webhook-endpoints/{endpoint.pk}/")
        .status_code
        == 404
    )

    assert admin.delete(f"/api/v1/webhook-endpoints/{endpoint.pk}/").status_code == 204
    assert not WebhookEndpoint.objects.exists()


def test_the_delivery_log(world):
    alert = Alert.objects.get(charger__identity="ACME-1", kind="offline")
    endpoint = WebhookEndpoint.objects.create(
        organization=world.acme.organization,
        name="pager",
        url="https://a.example.com/",
        secret="s" * 20,
    )
    AlertDelivery.objects.create(
        organization=world.acme.organization,
        alert=alert,
        channel="webhook",
        endpoint=endpoint,
        recipient=endpoint.url,
        event="alert.raised",
        status="retrying",
        attempts=2,
        response_code=502,
        error="HTTP 502",
    )
    AlertDelivery.objects.create(
        organization=world.acme.organization,
        alert=alert,
        channel="email",
        recipient="ops@example.com",
        event="alert.raised",
        status="delivered",
        attempts=1,
    )
    client = world.client(Role.OPERATOR)
    rows = client.get(f"/api/v1/alert-deliveries/?endpoint={endpoint.pk}").json()["results"]
    assert [(r["status"], r["attempts"], r["response_code"], r["error"]) for r in rows] == [
        ("retrying", 2, 502, "HTTP 502")
    ]
    emails = client.get("/api/v1/alert-deliveries/?channel=email").json()["results"]
    assert [r["recipient"] for r in emails] == ["ops@example.com"]
    assert (
        world.client(Role.OPERATOR, "other").get("/api/v1/alert-deliveries/").json()["results"]
        == []
    )


def test_a_person_subscribes_to_alert_emails(world):
    user = User.objects.create_user("sam", email="sam@example.com", password="pw-sam-123456")
    Membership.objects.create(user=user, organization=world.acme.organization, role=Role.OPERATOR)
    client = APIClient()
    client.force_login(user)
    assert client.get("/api/v1/alert-subscription/").status_code == 404
    put = client.put(
        "/api/v1/alert-subscription/",
        {"min_severity": "critical", "kinds": ["offline"]},
        format="json",
    )
    assert put.status_code == 200, put.content
    assert put.json()["email"] == "sam@example.com"
    subscription = AlertSubscription.objects.get()
    assert (subscription.user, subscription.min_severity, subscription.kinds) == (
        user,
        "critical",
        ["offline"],
    )
    assert (
        client.patch(
            "/api/v1/alert-subscription/", {"kinds": ["nonsense"]}, format="json"
        ).status_code
        == 400
    )
    assert client.delete("/api/v1/alert-subscription/").status_code == 204
    assert not AlertSubscription.objects.exists()

    token = world.client(Role.OPERATOR).put(
        "/api/v1/alert-subscription/", {"min_severity": "major"}, format="json"
    )
    assert token.status_code == 403
    assert token.json()["error"]["message"].startswith("Subscriptions belong to people")
