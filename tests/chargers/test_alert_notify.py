"""Alert notifications: signed webhooks delivered to a real local HTTP server with retries and a
delivery log, and e-mail to subscribed members through Django's e-mail backend."""

from __future__ import annotations

import json
import socket
from datetime import timedelta

import pytest
from django.core import mail
from django.test import override_settings

from chargers.alert_notify import alert_deliveries_sweep, alert_delivery_attempt
from chargers.alert_rules import webhook_signature, webhook_signature_valid
from chargers.alerts import alert_acknowledge, alert_clear, alert_raise
from chargers.models import AlertDelivery, AlertSubscription, Charger, WebhookEndpoint
from cpms.models import Membership, Role
from tests.chargers.conftest import T0
from tests.chargers.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.django_db(transaction=True)


def endpoint_for(charger: Charger, url: str, **fields: object) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        organization_id=charger.organization_id,
        name=fields.pop("name", "ops"),  # type: ignore[arg-type]
        url=url,
        secret="whsec_test-secret",
        **fields,
    )


@override_settings(CPMS_WEBHOOK_RETRY_BASE=30, CPMS_WEBHOOK_MAX_ATTEMPTS=5)
def test_a_signed_webhook_is_retried_with_backoff_until_delivered(online, clock):
    with webhook_receiver(statuses=[500, 503, 200]) as receiver:
        endpoint = endpoint_for(online, receiver.url)
        alert = alert_raise(
            charger=online, kind="boot_loop", message="3 boots within 10 min", severity="major"
        )
        assert alert is not None
        delivery = AlertDelivery.objects.get()
        assert (delivery.channel, delivery.event, delivery.status) == (
            "webhook",
            "alert.raised",
            "pending",
        )
        assert delivery.endpoint == endpoint and delivery.recipient == receiver.url

        assert alert_deliveries_sweep() == {"delivered": 0, "failed": 0, "retrying": 1}
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.response_code) == ("retrying", 1, 500)
        assert delivery.error == "HTTP 500"
        assert delivery.next_attempt_at == T0 + timedelta(seconds=30)

        clock.advance(29)
        assert alert_deliveries_sweep() == {"delivered": 0, "failed": 0, "retrying": 0}
        clock.advance(1)
        alert_deliveries_sweep()
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.response_code) == ("retrying", 2, 503)
        assert delivery.next_attempt_at == clock.now + timedelta(seconds=60)  # doubled

        clock.advance(60)
        assert alert_deliveries_sweep() == {"delivered": 1, "failed": 0, "retrying": 0}
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 3, 200)
        assert delivery.delivered_at == clock.now and delivery.error == ""
        assert alert_delivery_attempt(delivery_id=delivery.pk) is None  # done is done

        requests = receiver.wait_for(3)
    assert len(requests) == 3
    for request in requests:
        assert request.path == "/hooks/cpms"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-cpms-event"] == "alert.raised"
        assert request.headers["x-cpms-delivery"] == str(delivery.pk)
        timestamp = int(request.headers["x-cpms-timestamp"])
        signature = request.headers["x-cpms-signature"]
        assert webhook_signature_valid("whsec_test-secret", timestamp, request.body, signature)
        assert not webhook_signature_valid("another-secret", timestamp, request.body, signature)
        assert not webhook_signature_valid(
            "whsec_test-secret", timestamp + 1, request.body, signature
        )
    body = json.loads(requests[0].body)
    assert body["event"] == "alert.raised"
    assert body["organization"] == "acme"
    assert body["alert"]["id"] == alert.pk
    assert body["alert"]["charger"] == "CP-1"
    assert body["alert"]["site"] == "Depot"
    assert body["alert"]["kind"] == "boot_loop"
    assert body["alert"]["message"] == "3 boots within 10 min"
    assert body["alert"]["state"] == "open"


@override_settings(CPMS_WEBHOOK_RETRY_BASE=10, CPMS_WEBHOOK_MAX_ATTEMPTS=3)
def test_a_delivery_gives_up_after_the_last_attempt(online, clock):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port: every attempt is refused.
    endpoint_for(online, f"http://127.0.0.1:{port}/hook")
    alert_raise(charger=online, kind="meter_backwards", connector_id=1)
    for step in (0, 10, 20):
        clock.advance(step)
        alert_deliveries_sweep()
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 3, None)
    assert "Connection refused" in delivery.error or "URLError" in delivery.error
    assert delivery.next_attempt_at is None
    clock.advance(3600)
    assert alert_deliveries_sweep() == {"delivered": 0, "failed": 0, "retrying": 0}


def test_endpoints_get_only_the_events_and_severities_they_ask_for(online, clock):
    with webhook_receiver() as receiver:
        endpoint_for(online, receiver.url, name="all")
        endpoint_for(online, receiver.url, name="raised only", events=["alert.raised"])
        endpoint_for(online, receiver.url, name="critical", min_severity="critical")
        endpoint_for(online, receiver.url, name="off", enabled=False)
        alert = alert_raise(charger=online, kind="boot_loop", severity="major")
        assert alert is not None
        alert_acknowledge(alert=alert)
        clock.advance(60)
        alert_clear(charger=online, kind="boot_loop")
        rows = sorted(AlertDelivery.objects.values_list("endpoint__name", "event"))
        assert rows == [
            ("all", "alert.acknowledged"),
            ("all", "alert.raised"),
            ("all", "alert.resolved"),
            ("raised only", "alert.raised"),
        ]
        alert_deliveries_sweep()
        receiver.wait_for(4)
        resolved = AlertDelivery.objects.get(event="alert.resolved")
        assert resolved.status == "delivered"
        assert resolved.payload["alert"]["state"] == "resolved"
        assert resolved.payload["alert"]["mttr_seconds"] == 60.0


@override_settings(CPMS_ALERT_OFFLINE_GRACE=0)
def test_suppressed_alerts_notify_nobody(online, clock):
    with webhook_receiver() as receiver:
        endpoint_for(online, receiver.url)
        Charger.objects.filter(pk=online.pk).update(connected=False)
        alert_raise(charger=online, kind="offline")
        for connector in (1, 2, 3):
            alert_raise(charger=online, kind="silent_session", connector_id=connector)
        assert list(AlertDelivery.objects.values_list("event", "alert__kind")) == [
            ("alert.raised", "offline")
        ]


def test_subscribed_members_get_an_email_for_new_alerts(online, clock, django_user_model):
    organization = online.organization
    alice = django_user_model.objects.create_user("alice", email="alice@example.com")
    bob = django_user_model.objects.create_user("bob", email="bob@example.com")
    carol = django_user_model.objects.create_user("carol", email="carol@example.com")
    Membership.objects.create(user=alice, organization=organization, role=Role.OPERATOR)
    Membership.objects.create(user=bob, organization=organization, role=Role.OPERATOR)
    # Carol left the organization; her subscription no longer counts.
    AlertSubscription.objects.create(organization=organization, user=alice, min_severity="major")
    AlertSubscription.objects.create(organization=organization, user=bob, min_severity="critical")
    AlertSubscription.objects.create(organization=organization, user=carol)

    alert = alert_raise(
        charger=online,
        kind="meter_backwards",
        connector_id=2,
        message="Energy register went back from 1500 Wh to 900 Wh in transaction 7",
    )
    assert alert is not None
    alert_acknowledge(alert=alert)  # acknowledgements go to systems, not inboxes
    critical = alert_raise(
        charger=online, kind="offline", severity="critical", fault_at=T0 - timedelta(hours=1)
    )
    assert critical is not None
    assert alert_deliveries_sweep()["delivered"] == 3

    sent = sorted((m.to[0], m.subject) for m in mail.outbox)
    assert sent == [
        ("alice@example.com", "[CRITICAL] offline on CP-1"),
        ("alice@example.com", "[MAJOR] meter_backwards on CP-1 connector 2"),
        ("bob@example.com", "[CRITICAL] offline on CP-1"),
    ]
    message = next(m for m in mail.outbox if "meter_backwards" in m.subject)
    assert "Energy register went back from 1500 Wh to 900 Wh" in message.body
    assert "Site: Depot" in message.body
    assert message.from_email == "cpms-alerts@localhost"
    assert AlertDelivery.objects.filter(channel="email", status="delivered").count() == 3


def test_the_signature_is_an_hmac_of_timestamp_and_body():
    import hashlib
    import hmac

    body = b'{"event":"alert.raised"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhook_signature("s3cret", 1700000000, body) == "sha256=" + expected
