"""Domain events, published after commit to the channel layer for dashboards and other nodes.

Groups: ``org.<pk>`` for an organization's dashboards and ``charger.<identity>`` for one charger's
pages. Messages carry primitives only; delivery is at most once, so the database stays the truth.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

_GROUP_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def organization_group(organization_pk: int) -> str:
    return f"org.{organization_pk}"


def charger_group(identity: str) -> str:
    # Group names allow only ASCII letters, digits, hyphens, underscores and periods.
    return "charger." + _GROUP_UNSAFE.sub("_", identity)[:80]


def publish(kind: str, *, organization_pk: int, charger: str, data: dict[str, Any]) -> None:
    """Send an event to the organization's and the charger's groups once the transaction commits."""
    message = {"type": "cpms.event", "kind": kind, "charger": charger, "data": data}

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(organization_group(organization_pk), message)
            async_to_sync(layer.group_send)(charger_group(charger), message)
        except Exception:
            # Live updates are best effort; the database already holds the change.
            logger.exception("could not publish %s for %s", kind, charger)

    transaction.on_commit(send)


def publish_to_chargers(kind: str, *, items: list[tuple[str, dict[str, Any]]]) -> None:
    """Send one event per charger to the charger groups only, after commit, in one hop.

    For chatty events such as journal frames, which only a charger's own page shows: the
    organization's pages never receive them.
    """
    if not items:
        return

    async def send_all(layer: Any) -> None:
        for charger, data in items:
            message = {"type": "cpms.event", "kind": kind, "charger": charger, "data": data}
            await layer.group_send(charger_group(charger), message)

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(send_all)(layer)
        except Exception:
            logger.exception("could not publish %s for %d chargers", kind, len(items))

    transaction.on_commit(send)
