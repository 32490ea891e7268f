"""Celery tasks of routing: outboxes left behind after a restart, replayed and expired."""

from __future__ import annotations

import threading
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import connections, transaction

# On the embedded default the sweep runs on the server's own loop: replays, which wait on the
# network, go to one thread of their own rather than holding up the server.
_replaying = threading.Lock()


@shared_task(name="routing.outbox_sweep", ignore_result=True)
def outbox_sweep() -> dict[str, int]:
    """Expire old copies outside transactions; replay every outbox no gateway drains."""
    from .replay import outbox_expire, outboxes_left_behind

    expired = outbox_expire()
    legs = outboxes_left_behind(older_than=timedelta(seconds=settings.CPMS_ROUTING_REPLAY_AFTER))
    if legs and settings.CELERY_TASK_ALWAYS_EAGER:
        if _replaying.acquire(blocking=False):
            threading.Thread(
                target=_replay_in_thread, args=(legs,), name="routing-replay", daemon=True
            ).start()
    else:
        for charger_pk, upstream_pk in legs:
            transaction.on_commit(
                lambda c=charger_pk, u=upstream_pk: outbox_replay.delay(c, u)  # type: ignore[misc]
            )
    return {"expired": expired, "replays": len(legs)}


def _replay_in_thread(legs: list[tuple[int, int]]) -> None:
    try:
        for charger_pk, upstream_pk in legs:
            outbox_replay.apply(args=(charger_pk, upstream_pk))
    finally:
        connections.close_all()
        _replaying.release()


@shared_task(name="routing.outbox_replay", ignore_result=True)
def outbox_replay(charger_pk: int, upstream_pk: int) -> dict[str, object]:
    """Deliver one left-behind outbox; what is left waits for the next sweep."""
    from .replay import outbox_replay as replay

    result = replay(charger_pk=charger_pk, upstream_pk=upstream_pk)
    return {"delivered": result.delivered, "remaining": result.remaining, "stopped": result.stopped}
