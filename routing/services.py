"""The live path's writes: observer outboxes, 1.6 transaction-id maps and leg status.

Called from the gateway on the charger's database thread; each call is one or two statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from .models import LOCAL, LegStatus, OutboxEntry, TransactionMap, Upstream


@dataclass(frozen=True, slots=True)
class Queued:
    """One outbox entry as a leg holds it in memory."""

    pk: int
    message_id: str
    action: str
    payload: dict[str, Any]
    transactional: bool


def upstream_local() -> Upstream:
    """The built-in CSMS as an upstream (the data migration creates it; this keeps it there)."""
    upstream, _ = Upstream.objects.get_or_create(name=LOCAL, defaults={"url": ""})
    return upstream


def upstream_pks(*, names: list[str]) -> dict[str, int]:
    if LOCAL in names:
        upstream_local()
    return dict(Upstream.objects.filter(name__in=names).values_list("name", "pk"))


def outbox_append(
    *,
    charger_pk: int,
    upstream_pks: list[int],
    message_id: str,
    action: str,
    payload: dict[str, Any],
    transactional: bool,
) -> list[int]:
    """A charger CALL copied into the outbox of each of these upstreams; the new rows' ids."""
    now = timezone.now()
    rows = OutboxEntry.objects.bulk_create(
        [
            OutboxEntry(
                charger_id=charger_pk,
                upstream_id=upstream_pk,
                message_id=message_id,
                action=action,
                payload=payload,
                transactional=transactional,
                created_at=now,
            )
            for upstream_pk in upstream_pks
        ]
    )
    return [row.pk for row in rows]


def outbox_pending(*, charger_pk: int, upstream_pk: int) -> list[Queued]:
    """What is waiting for one observer, oldest first."""
    return [
        Queued(pk, message_id, action, payload, transactional)
        for pk, message_id, action, payload, transactional in OutboxEntry.objects.filter(
            charger_id=charger_pk, upstream_id=upstream_pk
        )
        .order_by("id")
        .values_list("pk", "message_id", "action", "payload", "transactional")
    ]


def outbox_remove(*, pk: int) -> None:
    """The observer answered: the entry leaves the outbox."""
    OutboxEntry.objects.filter(pk=pk).delete()


def outbox_drop(*, charger_pk: int, upstream_pk: int, pks: list[int], reason: str = "") -> int:
    """Entries dropped (at the outbox bound, or because ``reason``), counted on the leg's
    status with the reason."""
    with transaction.atomic():
        dropped, _ = OutboxEntry.objects.filter(pk__in=pks).delete()
        if dropped:
            fields: dict[str, Any] = {"dropped": F("dropped") + dropped}
            if reason:
                fields["last_problem"] = reason[:300]
            updated = LegStatus.objects.filter(
                charger_id=charger_pk, upstream_id=upstream_pk
            ).update(**fields)
            if not updated:
                LegStatus.objects.create(
                    charger_id=charger_pk,
                    upstream_id=upstream_pk,
                    role="observer",
                    dropped=dropped,
                    last_problem=reason[:300],
                )
    return dropped


def outbox_claim(*, pk: int, owner: str, lease_seconds: float) -> bool | None:
    """Take an outbox entry to send it, so that two senders (two gateways holding the charger
    for a moment, or a gateway and a replay) never both send it: True when ``owner`` has it,
    False when another does (and its lease runs), None when it is gone (delivered)."""
    now = timezone.now()
    taken = (
        OutboxEntry.objects.filter(pk=pk)
        .filter(
            Q(claimed_by="")
            | Q(claimed_by=owner)
            | Q(claimed_at__lt=now - timedelta(seconds=lease_seconds))
        )
        .update(claimed_by=owner, claimed_at=now)
    )
    if taken:
        return True
    return False if OutboxEntry.objects.filter(pk=pk).exists() else None


def outbox_release(*, charger_pk: int, upstream_pk: int, owner: str) -> None:
    """A sender stops: the entries it had taken are free for another at once."""
    OutboxEntry.objects.filter(
        charger_id=charger_pk, upstream_id=upstream_pk, claimed_by=owner
    ).update(claimed_by="", claimed_at=None)


def leg_copy_refused(*, charger_pk: int, upstream_pk: int, problem: str) -> None:
    """An observer answered a copy with a CALLERROR: counted, and the reason kept, on its leg."""
    updated = LegStatus.objects.filter(charger_id=charger_pk, upstream_id=upstream_pk).update(
        refused=F("refused") + 1, last_problem=problem[:300]
    )
    if not updated:
        LegStatus.objects.create(
            charger_id=charger_pk,
            upstream_id=upstream_pk,
            role="observer",
            refused=1,
            last_problem=problem[:300],
        )


def transaction_maps_open(*, charger_pk: int) -> list[tuple[int, str, int | None, int | None]]:
    """The charger's 1.6 transactions still open at any upstream:
    (upstream pk, start message id, charger's id, upstream's id)."""
    return list(
        TransactionMap.objects.filter(charger_id=charger_pk, stopped_at__isnull=True)
        .order_by("id")
        .values_list(
            "upstream_id", "start_message_id", "charger_transaction_id", "upstream_transaction_id"
        )
    )


def router_state(*, charger_pk: int) -> tuple[int, list[tuple[int, str, int | None, int | None]]]:
    """What a router starts from, in one thread hop: the pk of ``local`` and the charger's open
    transaction maps (``transaction_maps_open``)."""
    return upstream_local().pk, transaction_maps_open(charger_pk=charger_pk)


def transaction_map_charger_assigned(
    *,
    charger_pk: int,
    upstream_pks: list[int],
    start_message_id: str,
    connector_id: int,
    transaction_id: int,
    issued_by: int | None = None,
) -> None:
    """The primary answered the charger's StartTransaction: the id the charger now uses, for
    each observer's map; ``issued_by`` (the primary) keeps the id as its own, so that it can
    follow the transaction as an observer after a cut-over, even across a process restart."""
    with transaction.atomic():
        for upstream_pk in upstream_pks:
            TransactionMap.objects.update_or_create(
                charger_id=charger_pk,
                upstream_id=upstream_pk,
                start_message_id=start_message_id,
                defaults={"charger_transaction_id": transaction_id, "connector_id": connector_id},
            )
        if issued_by is not None:
            TransactionMap.objects.update_or_create(
                charger_id=charger_pk,
                upstream_id=issued_by,
                start_message_id=start_message_id,
                defaults={
                    "charger_transaction_id": transaction_id,
                    "upstream_transaction_id": transaction_id,
                    "connector_id": connector_id,
                },
            )


def transaction_map_upstream_assigned(
    *, charger_pk: int, upstream_pk: int, start_message_id: str, transaction_id: int
) -> None:
    """An observer answered its copy of the StartTransaction with its own id."""
    TransactionMap.objects.update_or_create(
        charger_id=charger_pk,
        upstream_id=upstream_pk,
        start_message_id=start_message_id,
        defaults={"upstream_transaction_id": transaction_id},
    )


def transaction_map_stopped(
    *, charger_pk: int, upstream_pk: int, upstream_transaction_id: int
) -> None:
    """The upstream answered the transaction's StopTransaction: its map is no longer loaded."""
    TransactionMap.objects.filter(
        charger_id=charger_pk,
        upstream_id=upstream_pk,
        upstream_transaction_id=upstream_transaction_id,
        stopped_at__isnull=True,
    ).update(stopped_at=timezone.now())


def leg_status_connected(
    *, charger_pk: int, upstream_pk: int, role: str, channel_name: str, reconnect: bool
) -> None:
    """A leg's socket is open; it takes the status row over from any older connection's leg."""
    now = timezone.now()
    status, created = LegStatus.objects.get_or_create(
        charger_id=charger_pk,
        upstream_id=upstream_pk,
        defaults={
            "role": role,
            "channel_name": channel_name,
            "connected": True,
            "connected_at": now,
        },
    )
    if not created:
        LegStatus.objects.filter(pk=status.pk).update(
            role=role,
            channel_name=channel_name,
            connected=True,
            connected_at=now,
            last_error="",
            reconnects=F("reconnects") + (1 if reconnect else 0),
        )


def leg_status_disconnected(
    *,
    charger_pk: int,
    upstream_pk: int,
    channel_name: str,
    error: str,
    latency_ms: float | None,
    at: datetime | None = None,
) -> None:
    """A leg's socket closed (or could not open); a stale leg's report changes nothing."""
    fields: dict[str, Any] = {
        "connected": False,
        "disconnected_at": at or timezone.now(),
        "last_error": error[:300],
    }
    if latency_ms is not None:
        fields["latency_ms"] = latency_ms
    updated = LegStatus.objects.filter(
        charger_id=charger_pk, upstream_id=upstream_pk, channel_name=channel_name
    ).update(**fields)
    if (
        not updated
        and not LegStatus.objects.filter(charger_id=charger_pk, upstream_id=upstream_pk).exists()
    ):
        LegStatus.objects.create(
            charger_id=charger_pk, upstream_id=upstream_pk, channel_name=channel_name, **fields
        )


def leg_status_latency(
    *, charger_pk: int, upstream_pk: int, channel_name: str, latency_ms: float
) -> None:
    LegStatus.objects.filter(
        charger_id=charger_pk, upstream_id=upstream_pk, channel_name=channel_name
    ).update(latency_ms=latency_ms)


def leg_alert_raise(*, charger_pk: int, upstream: str, role: str, error: str) -> None:
    """An upstream leg of the charger is down: the ``upstream_down`` condition holds (the alert
    opens once it has held for the kind's debounce period)."""
    from chargers.alerts import alert_raise
    from chargers.models import Alert, Charger

    charger = Charger.objects.filter(pk=charger_pk).first()
    if charger is None:
        return
    alert_raise(
        charger=charger,
        kind=Alert.Kind.UPSTREAM_DOWN,
        severity="major" if role == "primary" else "minor",
        message=f"{role} upstream {upstream} unreachable: {error}"[:500],
        details={"upstream": upstream, "role": role, "error": error[:300]},
    )


def leg_alert_clear(*, charger_pk: int) -> None:
    """Every upstream leg of the charger is up again."""
    from chargers.alerts import alert_clear
    from chargers.models import Alert, Charger

    charger = Charger.objects.filter(pk=charger_pk).first()
    if charger is not None:
        alert_clear(charger=charger, kind=Alert.Kind.UPSTREAM_DOWN)
