"""Alerts: raising, clearing, acknowledging and resolving them, debounced and correlated.

``alert_raise`` and ``alert_clear`` are what the rules (and other parts of the system) call;
they are idempotent, so a condition reported again and again makes one alert. A condition that
must hold for a while (offline, a faulted connector) waits as an ``AlertCondition`` until it
has; a resolved alert that comes back within the re-open window re-opens. While a charger is
offline, its connectors' alerts are recorded as suppressed and nobody is notified of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from . import events
from .alert_rules import (
    ACTIVE,
    OFFLINE,
    AlertPolicy,
    AlertState,
    held_long_enough,
    seconds_between,
    transition,
)
from .models import Alert, AlertCondition, Charger

logger = logging.getLogger(__name__)

# Called after commit with (alert id, event) for every alert someone should hear about:
# event is raised, acknowledged, resolved or reopened. Notifications hook in here.
AlertListener = Callable[[int, str], None]
_listeners: list[AlertListener] = []


def alert_listen(listener: AlertListener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def alert_policy() -> AlertPolicy:
    return AlertPolicy(
        debounce=timedelta(seconds=settings.CPMS_ALERT_DEBOUNCE),
        offline_grace=timedelta(seconds=settings.CPMS_ALERT_OFFLINE_GRACE),
        reopen_window=timedelta(seconds=settings.CPMS_ALERT_REOPEN_WINDOW),
        offline_heartbeats=settings.CPMS_ALERT_OFFLINE_HEARTBEATS,
        boot_loop_count=settings.CPMS_ALERT_BOOT_LOOP_COUNT,
        boot_loop_window=timedelta(seconds=settings.CPMS_ALERT_BOOT_LOOP_WINDOW),
        silent_session=timedelta(seconds=settings.CPMS_ALERT_SILENT_SESSION),
    )


def _scope(charger: Charger, kind: str, connector_id: int | None) -> dict[str, Any]:
    return {"charger_id": charger.pk, "kind": kind, "connector_id": connector_id or 0}


def alert_raise(
    *,
    charger: Charger,
    kind: str,
    connector_id: int | None = None,
    severity: str = "major",
    message: str = "",
    fault_at: datetime | None = None,
    details: dict[str, Any] | None = None,
) -> Alert | None:
    """Report that a condition holds; returns the active alert for it, or None while the
    condition has not yet held for its debounce period (it is remembered until it has)."""
    now = timezone.now()
    policy = alert_policy()
    scope = _scope(charger, kind, connector_id)
    fault_at = min(fault_at or now, now)
    with transaction.atomic():
        active = Alert.objects.select_for_update().filter(state__in=ACTIVE, **scope).first()
        if active is not None:
            Alert.objects.filter(pk=active.pk).update(
                last_seen_at=now, occurrences=F("occurrences") + 1
            )
            active.refresh_from_db()
            return active
        condition = AlertCondition.objects.select_for_update().filter(**scope).first()
        since = min(condition.since, fault_at) if condition is not None else fault_at
        debounce = policy.debounce_for(kind)
        if not held_long_enough(since=since, now=now, debounce=debounce):
            if condition is None:
                _condition_record(
                    scope=scope,
                    severity=severity,
                    message=message,
                    details=details or {},
                    since=since,
                    due_at=since + debounce,
                )
            elif since < condition.since:
                AlertCondition.objects.filter(pk=condition.pk).update(
                    since=since, due_at=since + debounce
                )
            return None
        if condition is not None:
            condition.delete()
        return _alert_open(
            charger=charger,
            scope=scope,
            severity=severity,
            message=message,
            details=details or {},
            fault_at=since,
            now=now,
            policy=policy,
        )


def _condition_record(
    *,
    scope: dict[str, Any],
    severity: str,
    message: str,
    details: dict[str, Any],
    since: datetime,
    due_at: datetime,
) -> None:
    try:
        with transaction.atomic():
            AlertCondition.objects.create(
                severity=severity,
                message=message[:500],
                details=details,
                since=since,
                due_at=due_at,
                **scope,
            )
    except IntegrityError:
        # Recorded by a concurrent report of the same condition.
        pass


def _charger_offline(charger: Charger) -> tuple[bool, Alert | None]:
    """Whether the charger counts as offline for correlation, and its offline alert if any."""
    offline_alert = Alert.objects.filter(
        charger_id=charger.pk, kind=OFFLINE, state__in=ACTIVE
    ).first()
    if offline_alert is not None:
        return True, offline_alert
    if AlertCondition.objects.filter(charger_id=charger.pk, kind=OFFLINE).exists():
        return True, None
    connected = Charger.objects.filter(pk=charger.pk).values_list("connected", flat=True).first()
    return not connected, None


def _alert_open(
    *,
    charger: Charger,
    scope: dict[str, Any],
    severity: str,
    message: str,
    details: dict[str, Any],
    fault_at: datetime,
    now: datetime,
    policy: AlertPolicy,
) -> Alert:
    kind = scope["kind"]
    suppressed, suppressor = False, None
    if scope["connector_id"] and kind != OFFLINE:
        suppressed, suppressor = _charger_offline(charger)
    recent = (
        Alert.objects.select_for_update()
        .filter(
            state=AlertState.RESOLVED,
            resolved_at__gte=now - policy.reopen_window,
            **scope,
        )
        .order_by("-resolved_at", "-pk")
        .first()
    )
    if recent is not None:
        recent.state = transition(recent.state, AlertState.OPEN)
        recent.resolved_at = None
        recent.resolved_by = None
        recent.resolution = ""
        recent.mttr_seconds = None
        recent.acknowledged_at = None
        recent.acknowledged_by = None
        recent.reopen_count += 1
        recent.occurrences += 1
        recent.last_seen_at = now
        recent.severity = severity
        if message:
            recent.message = message[:500]
        recent.details = {**recent.details, **details}
        recent.save()
        _announce(recent, "reopened")
        return recent
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                organization_id=charger.organization_id,
                severity=severity,
                message=message[:500],
                details=details,
                suppressed=suppressed,
                suppressed_by=suppressor,
                fault_at=fault_at,
                raised_at=now,
                last_seen_at=now,
                mttd_seconds=seconds_between(fault_at, now),
                **scope,
            )
    except IntegrityError:
        # A concurrent report opened it first: fold into that one.
        return Alert.objects.get(state__in=ACTIVE, **scope)
    if kind == OFFLINE:
        # Connector alerts recorded while the offline condition was still being debounced
        # belong to this outage.
        Alert.objects.filter(
            charger_id=charger.pk,
            suppressed=True,
            suppressed_by__isnull=True,
            state__in=ACTIVE,
            raised_at__gte=fault_at,
        ).exclude(pk=alert.pk).update(suppressed_by=alert)
    _announce(alert, "raised")
    return alert


def alert_clear(
    *,
    charger: Charger,
    kind: str,
    connector_id: int | None = None,
    at: datetime | None = None,
) -> int:
    """The condition no longer holds: forget it if it was still being debounced, and resolve
    its active alert. Returns how many alerts were resolved."""
    now = timezone.now()
    at = min(at or now, now)
    scope = _scope(charger, kind, connector_id)
    with transaction.atomic():
        AlertCondition.objects.filter(**scope).delete()
        resolved = 0
        for alert in Alert.objects.select_for_update().filter(state__in=ACTIVE, **scope):
            _alert_close(alert, at=max(at, alert.raised_at), user=None, resolution="cleared")
            resolved += 1
    return resolved


class AlertNotActive(Exception):
    """The alert is in a state that does not allow the requested move."""


def alert_acknowledge(*, alert: Alert, user: Any | None = None, note: str = "") -> Alert:
    """Someone has taken the alert; it stays until the condition clears or they resolve it."""
    now = timezone.now()
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        alert.state = _move(alert, AlertState.ACKNOWLEDGED)
        alert.acknowledged_at = now
        alert.acknowledged_by = user if user is not None and user.is_authenticated else None
        if note:
            alert.details = {**alert.details, "acknowledge_note": note[:500]}
        alert.save()
        _announce(alert, "acknowledged")
    return alert


def alert_resolve(*, alert: Alert, user: Any | None = None, note: str = "") -> Alert:
    """Close the alert by hand (the condition may have gone unnoticed, or been fixed on site)."""
    now = timezone.now()
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        _move(alert, AlertState.RESOLVED)
        resolver = user if user is not None and user.is_authenticated else None
        _alert_close(alert, at=now, user=resolver, resolution=note[:200] or "resolved by hand")
        # A condition still being debounced is forgotten with it.
        AlertCondition.objects.filter(
            charger_id=alert.charger_id, kind=alert.kind, connector_id=alert.connector_id
        ).delete()
    return alert


def _move(alert: Alert, target: AlertState) -> AlertState:
    try:
        return transition(alert.state, target)
    except Exception as exc:
        raise AlertNotActive(str(exc)) from exc


def _alert_close(alert: Alert, *, at: datetime, user: Any | None, resolution: str) -> None:
    alert.state = transition(alert.state, AlertState.RESOLVED)
    alert.resolved_at = at
    alert.resolved_by = user
    alert.resolution = resolution
    alert.mttr_seconds = seconds_between(alert.raised_at, at)
    alert.save()
    _announce(alert, "resolved")


def alert_event(alert: Alert) -> dict[str, Any]:
    """What a live page (and a webhook) learns of an alert."""
    return {
        "alert": alert.pk,
        "kind": alert.kind,
        "severity": alert.severity,
        "state": alert.state,
        "connector": alert.connector_id,
        "suppressed": alert.suppressed,
        "message": alert.message,
        "fault_at": alert.fault_at.isoformat() if alert.fault_at else None,
        "raised_at": alert.raised_at.isoformat() if alert.raised_at else None,
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "mttd_seconds": alert.mttd_seconds,
        "mttr_seconds": alert.mttr_seconds,
    }


def _announce(alert: Alert, event: str) -> None:
    identity = Charger.objects.filter(pk=alert.charger_id).values_list("identity", flat=True).get()
    events.publish(
        f"alert.{event}",
        organization_pk=alert.organization_id,
        charger=identity,
        data=alert_event(alert),
    )
    if alert.suppressed:
        return
    pk = alert.pk

    def committed() -> None:
        for listener in list(_listeners):
            try:
                listener(pk, event)
            except Exception:
                logger.exception("an alert listener failed for alert %s", pk)

    transaction.on_commit(committed)


# --- The periodic check ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    promoted: int  # held conditions that became alerts
    discarded: int  # conditions found no longer holding
    offline: int  # connected chargers found silent


def alerts_check(*, now: datetime | None = None) -> CheckResult:
    """Raise the conditions that have now held long enough, and find chargers gone silent."""
    now = now or timezone.now()
    policy = alert_policy()
    promoted = discarded = offline = 0
    for condition in AlertCondition.objects.filter(due_at__lte=now).select_related("charger"):
        charger = condition.charger
        if (
            condition.kind == OFFLINE
            and charger.connected
            and _seen_since(charger, condition.since)
        ):
            # Back before the grace period ran out, and the clearing event was lost.
            AlertCondition.objects.filter(pk=condition.pk).delete()
            discarded += 1
            continue
        alert = alert_raise(
            charger=charger,
            kind=condition.kind,
            connector_id=condition.connector_id,
            severity=condition.severity,
            message=condition.message,
            fault_at=condition.since,
            details=condition.details,
        )
        promoted += alert is not None
    default_interval = settings.CPMS_HEARTBEAT_INTERVAL
    silent = Charger.objects.filter(connected=True, last_seen__isnull=False).exclude(
        pk__in=Alert.objects.filter(kind=OFFLINE, state__in=ACTIVE).values("charger_id")
    )
    for charger in silent.only(
        "pk", "identity", "organization_id", "last_seen", "heartbeat_interval"
    ):
        interval = charger.heartbeat_interval or default_interval
        limit = timedelta(seconds=interval * policy.offline_heartbeats)
        if charger.last_seen is not None and now - charger.last_seen >= limit:
            raised = alert_raise(
                charger=charger,
                kind=OFFLINE,
                severity="critical",
                message=f"No frame for {int(limit.total_seconds())} s",
                fault_at=charger.last_seen,
                details={"reason": "silent", "last_seen": charger.last_seen.isoformat()},
            )
            offline += raised is not None
    return CheckResult(promoted=promoted, discarded=discarded, offline=offline)


def _seen_since(charger: Charger, since: datetime) -> bool:
    return charger.last_seen is not None and charger.last_seen > since
