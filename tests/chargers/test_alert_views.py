"""The alerts pages: the list with its filters and figures, acknowledge and resolve (plain and
htmx), who may do what, the e-mail subscription and the webhook endpoints form."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from chargers.models import Alert, AlertSubscription, Charger, WebhookEndpoint
from cpms.models import Membership, Organization, Role

pytestmark = pytest.mark.django_db


def member(organization: Organization, role: str, name: str) -> Client:
    user = User.objects.create_user(name, f"{name}@example.com", "pw-123456789")
    Membership.objects.create(user=user, organization=organization, role=role)
    client = Client()
    client.force_login(user)
    return client


def raise_alert(charger: Charger, kind: str, **fields: Any) -> Alert:
    now = timezone.now()
    return Alert.objects.create(
        organization_id=charger.organization_id,
        charger=charger,
        kind=kind,
        fault_at=now - timedelta(seconds=45),
        raised_at=now,
        mttd_seconds=45.0,
        **fields,
    )


@pytest.fixture
def alerts(charger: Charger) -> dict[str, Alert]:
    return {
        "offline": raise_alert(
            charger, "offline", severity="critical", message="Connection closed"
        ),
        "faulted": raise_alert(charger, "connector_faulted", connector_id=2, suppressed=True),
        "old": raise_alert(
            charger,
            "boot_loop",
            state="resolved",
            resolved_at=timezone.now(),
            mttr_seconds=300.0,
        ),
    }


def test_the_list_shows_what_needs_attention_with_figures(organization, alerts):
    client = member(organization, Role.SITE_HOST, "sue")
    Membership.objects.filter(user__username="sue").first().sites.set(  # type: ignore[union-attr]
        organization.sites.all()
    )
    page = client.get("/alerts/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'id="alert-{alerts["offline"].pk}"' in html
    assert f'id="alert-{alerts["faulted"].pk}"' in html
    assert f'id="alert-{alerts["old"].pk}"' not in html  # resolved: not by default
    assert "suppressed" in html
    assert "/acknowledge" not in html  # site hosts look, operators act
    resolved = client.get("/alerts/?state=resolved").content.decode()
    assert f'id="alert-{alerts["old"].pk}"' in resolved
    assert f'id="alert-{alerts["offline"].pk}"' not in resolved
    only_offline = client.get("/alerts/?state=all&kind=offline").content.decode()
    assert f'id="alert-{alerts["offline"].pk}"' in only_offline
    assert f'id="alert-{alerts["faulted"].pk}"' not in only_offline
    figures = client.get("/alerts/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="alert-figures")
    text = figures.content.decode()
    assert text.lstrip().startswith('<div id="alert-figures"')
    assert "45 <small>s</small>" in text and "300 <small>s</small>" in text


def test_an_operator_acknowledges_then_resolves(organization, alerts):
    client = member(organization, Role.OPERATOR, "olga")
    alert = alerts["offline"]
    row = client.post(f"/alerts/{alert.pk}/acknowledge", HTTP_HX_REQUEST="true")
    assert row.status_code == 200
    assert 'data-alert-state="acknowledged"' in row.content.decode()
    alert.refresh_from_db()
    assert alert.state == "acknowledged" and alert.acknowledged_by.username == "olga"

    again = client.post(f"/alerts/{alert.pk}/acknowledge", HTTP_HX_REQUEST="true")
    assert "an alert that is acknowledged cannot become acknowledged" in again.content.decode()

    done = client.post(f"/alerts/{alert.pk}/resolve", {"next": "/alerts/?state=all"})
    assert done.status_code == 302 and done["Location"] == "/alerts/?state=all"
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.mttr_seconds is not None
    assert client.get(f"/alerts/{alert.pk}/resolve").status_code == 405


def test_a_site_host_may_not_move_alerts_and_other_organizations_are_not_found(
    organization, alerts
):
    host = member(organization, Role.SITE_HOST, "sue")
    assert host.post(f"/alerts/{alerts['offline'].pk}/acknowledge").status_code == 403
    other = Organization.objects.create(name="Other", slug="other")
    stranger = member(other, Role.OPERATOR, "otto")
    assert stranger.post(f"/alerts/{alerts['offline'].pk}/acknowledge").status_code == 404
    assert f"alert-{alerts['offline'].pk}" not in stranger.get("/alerts/").content.decode()


def test_subscribing_to_alert_emails(organization):
    client = member(organization, Role.OPERATOR, "olga")
    client.post("/alerts/subscription", {"min_severity": "critical", "kinds": ["offline"]})
    subscription = AlertSubscription.objects.get()
    assert (subscription.min_severity, subscription.kinds) == ("critical", ["offline"])
    assert "olga@example.com" in client.get("/alerts/").content.decode()
    client.post("/alerts/subscription", {"min_severity": "loud"})
    assert AlertSubscription.objects.get().min_severity == "critical"  # refused, kept
    client.post("/alerts/subscription", {"unsubscribe": "1"})
    assert not AlertSubscription.objects.exists()


def test_webhook_endpoints_form(organization):
    admin = member(organization, Role.OPERATOR_ADMIN, "ada")
    assert member(organization, Role.OPERATOR, "olga").get("/alerts/webhooks/").status_code == 403

    bad = admin.post(
        "/alerts/webhooks/",
        {"name": "pager", "url": "ftp://x.example.com/", "min_severity": "info"},
    )
    assert bad.status_code == 400
    assert "Enter a valid URL." in bad.content.decode()
    assert not WebhookEndpoint.objects.exists()

    created = admin.post(
        "/alerts/webhooks/",
        {
            "name": "pager",
            "url": "https://ops.example.com/hook",
            "events": ["alert.raised", "alert.resolved"],
            "min_severity": "major",
            "enabled": "on",
        },
    )
    assert created.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["alert.raised", "alert.resolved"]
    assert endpoint.secret.startswith("whsec_")
    page = admin.get("/alerts/webhooks/").content.decode()
    assert endpoint.secret in page and "https://ops.example.com/hook" in page

    duplicate = admin.post(
        "/alerts/webhooks/",
        {"name": "pager", "url": "https://ops.example.com/2", "min_severity": "info"},
    )
    assert "An endpoint with this name exists already." in duplicate.content.decode()

    admin.post(f"/alerts/webhooks/{endpoint.pk}/toggle")
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    admin.post(f"/alerts/webhooks/{endpoint.pk}/delete")
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("model", ["alert", "webhookendpoint", "alertdelivery"])
def test_admin_changelists_render(client, alerts, model):
    user = User.objects.create_superuser("root", "root@example.com", "pw-for-tests-1")
    client.force_login(user)
    endpoint = WebhookEndpoint.objects.create(
        organization_id=alerts["offline"].organization_id,
        name="pager",
        url="https://pager.example.com/",
        secret="s" * 20,
    )
    alerts["offline"].deliveries.create(
        organization_id=endpoint.organization_id,
        channel="webhook",
        endpoint=endpoint,
        recipient=endpoint.url,
        event="alert.raised",
    )
    page = client.get(f"/admin/chargers/{model}/")
    assert page.status_code == 200
    assert "CP-1" in page.content.decode() or "pager" in page.content.decode()
