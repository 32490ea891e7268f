"""Telling the gateways that routes changed: whoever holds a charger's socket, on any node,
re-resolves its route and re-dials the legs that changed, keeping the charger's socket open."""

from __future__ import annotations

from typing import Any

from chargers import events
from chargers.command_services import reachable
from chargers.models import Charger

# The channel-layer message type; the consumer's ``routing_changed`` handler takes it.
ROUTING_CHANGED = "routing.changed"


def routing_changed(*, charger_identities: list[str] | None) -> None:
    """After the transaction commits, tell the consumers holding these chargers (every connected
    charger when None) to re-resolve their routes. Delivery is at most once, like every
    channel-layer message; a charger that connects afterwards resolves the new route anyway."""
    chargers = Charger.objects.filter(connected=True).exclude(channel_name="")
    if charger_identities is not None:
        chargers = chargers.filter(identity__in=charger_identities)
    channels = [
        channel for channel in chargers.values_list("channel_name", flat=True) if reachable(channel)
    ]
    if not channels:
        return

    async def send(layer: Any) -> None:
        for channel in channels:
            await layer.send(channel, {"type": ROUTING_CHANGED})

    events.send_after_commit(send)
