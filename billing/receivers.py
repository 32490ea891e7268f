"""Billing's reactions to domain events: cheap, they enqueue tasks with ids.

Every meter reading of every session is an event; whether its charger shows cost is read once
per charger and minute (and again when it connects), so chargers that show no cost cost nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from chargers.events import domain_event

SHOWS_COST_TTL = 60.0
_shows_cost: dict[str, tuple[float, bool]] = {}
_lock = threading.Lock()


def _session_id(data: dict[str, Any]) -> int | None:
    value = data.get("session")
    return value if isinstance(value, int) else None


def charger_shows_cost(identity: str) -> bool:
    now = time.monotonic()
    with _lock:
        hit = _shows_cost.get(identity)
    if hit is not None and hit[0] > now:
        return hit[1]
    from chargers.models import Charger

    from .record_services import cost_display_enabled

    charger = Charger.objects.filter(identity=identity).first()
    shows = charger is not None and cost_display_enabled(charger=charger)
    with _lock:
        _shows_cost[identity] = (now + SHOWS_COST_TTL, shows)
    return shows


def forget(identity: str | None = None) -> None:
    with _lock:
        if identity is None:
            _shows_cost.clear()
        else:
            _shows_cost.pop(identity, None)


def on_domain_event(sender: str, **kwargs: Any) -> None:
    from . import tasks

    identity = str(kwargs.get("charger") or "")
    if sender in ("charger.connected", "charger.booted"):
        forget(identity)
        return
    session_id = _session_id(kwargs.get("data") or {})
    if session_id is None:
        return
    if sender == "session.ended":
        tasks.cdr_create.delay(session_id)
    elif sender == "session.meter" and charger_shows_cost(identity):
        tasks.running_cost_send.delay(session_id)
    elif sender == "session.started" and charger_shows_cost(identity):
        tasks.tariff_text_send.delay(session_id)


def connect() -> None:
    domain_event.connect(on_domain_event, dispatch_uid="billing.on_domain_event")
