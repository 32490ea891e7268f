"""Routing changes made by other processes, on the embedded default.

With Redis, ``routing.redial.routing_changed`` reaches the consumers of every node over the channel
layer. The in-memory layer reaches only the process that made the change, so a policy applied by
``routing_apply`` (a process of its own) would reach live chargers only when they reconnect. Each
server process of the embedded default therefore watches the change record, like it polls for
commands (``CPMS_COMMAND_POLL_INTERVAL``), and has the chargers it holds follow their routes when a
change appears; a charger whose route did not change keeps its legs as they are.
"""

from __future__ import annotations

import asyncio
import logging

from channels.layers import get_channel_layer
from django.conf import settings

from chargers import command_services
from chargers.dbpool import background_sync_to_async

from .models import RoutingChange
from .redial import ROUTING_CHANGED

logger = logging.getLogger(__name__)

_watchers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


def latest_change() -> int:
    return RoutingChange.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def watch_start(loop: asyncio.AbstractEventLoop) -> None:
    """Start this loop's watch (once), on the embedded default only."""
    if command_services.layer_spans_processes() or loop in _watchers:
        return
    _watchers[loop] = loop.create_task(_watch(), name="cpms-routing-watch")


async def _watch() -> None:
    seen: int | None = None
    while True:
        try:
            latest = await background_sync_to_async(latest_change)()
            if seen is not None and latest > seen and command_services.LOCAL_CHANNELS:
                layer = get_channel_layer()
                assert layer is not None
                for channel in list(command_services.LOCAL_CHANNELS):
                    await layer.send(channel, {"type": ROUTING_CHANGED})
            seen = latest
        except Exception:
            logger.exception("watching routing changes failed")
        await asyncio.sleep(max(settings.CPMS_COMMAND_POLL_INTERVAL, 0.25))
