"""Alert notifications: e-mail to an organization's subscribed members and signed webhooks to
its endpoints, each a row in the delivery log that records its attempts.

Deliveries are written when an alert is raised, re-opened, acknowledged or resolved (after
commit, in the thread that committed: one insert, no network). A Celery task makes each
attempt; a failed one is tried again with exponential back-off by the periodic sweep, up to
``CPMS_WEBHOOK_MAX_ATTEMPTS``. On the embedded default the sweep (on the server's loop) makes
every attempt, so no charger's database thread ever waits on the network.
"""

from __future__ import annotations

import json
import logging
import secrets
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .alert_rules import EMAIL_EVENTS, retry_delay, wants, webhook_signature
from .models import Alert, AlertDelivery, AlertSubscription, WebhookEndpoint

logger = logging.getLogger(__name__)

USER_AGENT = "CPMS-Webhooks/1"
# A delivery left "sending" this long (its worker died mid-attempt) is tried again.
STUCK_AFTER = timedelta(minutes=5)


def webhook_secret_new() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def alert_payload(alert: Alert, event: str) -> dict[str, Any]:
    """What a webhook receives: the event and the alert as it is at that moment."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    charger = alert.charger
    return {
        "event": event,
        "created_at": timezone.now().isoformat(),
        "organization": alert.organization.slug,
        "alert": {
            "id": alert.pk,
            "kind": alert.kind,
            "severity": alert.severity,
            "state": alert.state,
            "charger": charger.identity,
            "site": charger.site.name if charger.site_id and charger.site else None,
            "connector_id": alert.connector_id,
            "message": alert.message,
            "details": alert.details,
            "fault_at": iso(alert.fault_at),
            "raised_at": iso(alert.raised_at),
            "acknowledged_at": iso(alert.acknowledged_at),
            "resolved_at": iso(alert.resolved_at),
            "mttd_seconds": alert.mttd_seconds,
            "mttr_seconds": alert.mttr_seconds,
            "reopen_count": alert.reopen_count,
            "resolution": alert.resolution,
        },
    }


def alert_deliveries_create(*, alert_id: int, event: str) -> list[int]:
    """Write a delivery for every endpoint and subscriber that wants this alert event."""
    alert = (
        Alert.objects.select_related("charger__site", "organization").filter(pk=alert_id).first()
    )
    if alert is None:
        return []
    name = f"alert.{event}"
    payload = alert_payload(alert, name)
    now = timezone.now()
    rows: list[AlertDelivery] = []
    for endpoint in WebhookEndpoint.objects.filter(
        organization_id=alert.organization_id, enabled=True
    ):
        if wants(
            event=name,
            severity=alert.severity,
            kind=alert.kind,
            events=endpoint.events or [],
            kinds=[],
            minimum=endpoint.min_severity,
        ):
            rows.append(
                AlertDelivery(
                    organization_id=alert.organization_id,
                    alert=alert,
                    channel=AlertDelivery.Channel.WEBHOOK,
                    endpoint=endpoint,
                    recipient=endpoint.url,
                    event=name,
                    payload=payload,
                    next_attempt_at=now,
                )
            )
    if name in EMAIL_EVENTS:
        subscriptions = AlertSubscription.objects.filter(
            organization_id=alert.organization_id,
            user__is_active=True,
            user__memberships__organization_id=alert.organization_id,
        ).select_related("user")
        for subscription in subscriptions:
            email = subscription.user.email
            if email and wants(
                event=name,
                severity=alert.severity,
                kind=alert.kind,
                events=[],
                kinds=subscription.kinds or [],
                minimum=subscription.min_severity,
            ):
                rows.append(
                    AlertDelivery(
                        organization_id=alert.organization_id,
                        alert=alert,
                        channel=AlertDelivery.Channel.EMAIL,
                        recipient=email,
                        event=name,
                        payload=payload,
                        next_attempt_at=now,
                    )
                )
    if not rows:
        return []
    with transaction.atomic():
        created = AlertDelivery.objects.bulk_create(rows)
        pks = [row.pk for row in created]
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            transaction.on_commit(lambda: _enqueue(pks))
    return pks


def _enqueue(pks: list[int]) -> None:
    from .tasks import deliver_alert_notification

    for pk in pks:
        try:
            deliver_alert_notification.delay(pk)
        except Exception:
            # The sweep finds it: the row is the truth.
            logger.exception("could not enqueue alert delivery %s", pk)


def _claim(pk: int, now: datetime) -> AlertDelivery | None:
    """Take a due delivery for one attempt; None when it is not due or someone else has it."""
    due = Q(status__in=[AlertDelivery.Status.PENDING, AlertDelivery.Status.RETRYING]) & Q(
        next_attempt_at__lte=now
    )
    stuck = Q(status=AlertDelivery.Status.SENDING, last_attempt_at__lte=now - STUCK_AFTER)
    claimed = (
        AlertDelivery.objects.filter(pk=pk)
        .filter(due | stuck)
        .update(status=AlertDelivery.Status.SENDING, last_attempt_at=now)
    )
    if not claimed:
        return None
    return AlertDelivery.objects.select_related("endpoint").get(pk=pk)


def alert_delivery_attempt(*, delivery_id: int) -> AlertDelivery | None:
    """Make one attempt at a delivery that is due; records the outcome and, when it failed
    and attempts remain, when to try again."""
    now = timezone.now()
    delivery = _claim(delivery_id, now)
    if delivery is None:
        return None
    code: int | None = None
    error = ""
    try:
        if delivery.channel == AlertDelivery.Channel.WEBHOOK:
            code = _post(delivery)
            if not 200 <= code < 300:
                error = f"HTTP {code}"
        else:
            _email(delivery)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
    attempts = delivery.attempts + 1
    finished = timezone.now()
    fields: dict[str, Any] = {"attempts": attempts, "response_code": code, "error": error}
    if not error:
        fields.update(status=AlertDelivery.Status.DELIVERED, delivered_at=finished)
        fields["next_attempt_at"] = None
    elif attempts >= settings.CPMS_WEBHOOK_MAX_ATTEMPTS:
        fields.update(status=AlertDelivery.Status.FAILED, next_attempt_at=None)
        logger.warning(
            "alert delivery %s to %s failed for good: %s", delivery.pk, delivery.recipient, error
        )
    else:
        delay = retry_delay(attempts, base=settings.CPMS_WEBHOOK_RETRY_BASE)
        fields.update(status=AlertDelivery.Status.RETRYING, next_attempt_at=finished + delay)
    AlertDelivery.objects.filter(pk=delivery.pk, status=AlertDelivery.Status.SENDING).update(
        **fields
    )
    delivery.refresh_from_db()
    return delivery


def _post(delivery: AlertDelivery) -> int:
    endpoint = delivery.endpoint
    if endpoint is None:
        raise ValueError("the webhook endpoint was deleted")
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = int(timezone.now().timestamp())
    request = urllib.request.Request(
        endpoint.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-CPMS-Event": delivery.event,
            "X-CPMS-Delivery": str(delivery.pk),
            "X-CPMS-Timestamp": str(timestamp),
            "X-CPMS-Signature": webhook_signature(endpoint.secret, timestamp, body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.CPMS_WEBHOOK_TIMEOUT) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _email(delivery: AlertDelivery) -> None:
    alert = delivery.payload.get("alert", {})
    where = alert.get("charger", "")
    if alert.get("connector_id"):
        where += f" connector {alert['connector_id']}"
    subject = f"[{str(alert.get('severity', '')).upper()}] {alert.get('kind')} on {where}"
    lines = [
        alert.get("message") or subject,
        "",
        f"Charger: {alert.get('charger')}",
        f"Site: {alert.get('site') or '-'}",
        f"Kind: {alert.get('kind')}",
        f"Severity: {alert.get('severity')}",
        f"Fault at: {alert.get('fault_at')}",
        f"Raised at: {alert.get('raised_at')}",
        f"Alert id: {alert.get('id')}",
    ]
    if delivery.event == "alert.reopened":
        lines.insert(0, f"Re-opened ({alert.get('reopen_count')} times so far).")
    send_mail(
        subject,
        "\n".join(lines),
        settings.CPMS_ALERT_EMAIL_FROM,
        [delivery.recipient],
        fail_silently=False,
    )


def alert_deliveries_due(*, now: datetime | None = None, limit: int = 200) -> list[int]:
    now = now or timezone.now()
    due = Q(status__in=[AlertDelivery.Status.PENDING, AlertDelivery.Status.RETRYING]) & Q(
        next_attempt_at__lte=now
    )
    stuck = Q(status=AlertDelivery.Status.SENDING, last_attempt_at__lte=now - STUCK_AFTER)
    return list(
        AlertDelivery.objects.filter(due | stuck)
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


def alert_deliveries_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Attempt the deliveries that are due (first attempts the task did not make, and retries)."""
    delivered = failed = retrying = 0
    for pk in alert_deliveries_due(now=now):
        delivery = alert_delivery_attempt(delivery_id=pk)
        if delivery is None:
            continue
        if delivery.status == AlertDelivery.Status.DELIVERED:
            delivered += 1
        elif delivery.status == AlertDelivery.Status.FAILED:
            failed += 1
        else:
            retrying += 1
    return {"delivered": delivered, "failed": failed, "retrying": retrying}


def connect() -> None:
    """Write deliveries whenever an alert is announced."""
    from .alerts import alert_listen

    alert_listen(_on_alert)


def _on_alert(pk: int, event: str) -> None:
    alert_deliveries_create(alert_id=pk, event=event)
