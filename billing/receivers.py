"""Billing's reactions to domain events: cheap, they enqueue tasks with ids.

Every meter reading of every session is an event; whether its charger shows cost is remembered
per charger for about a minute (and read again when it connects or boots), and the chargers of a
batch of events that are not remembered are read together in one query, so chargers that show no
cost cost nothing.
"""

from __future__ import annotations

from typing import Any

from chargers.events import DomainEvent, domain_events, handle_each
from chargers.remembered import Remembered

SHOWS_COST_TTL = 60.0
COST_EVENTS = frozenset({"session.meter", "session.started"})
FORGETTING = frozenset({"charger.connected", "charger.booted"})


def _read_shows_cost(identities: set[str]) -> dict[str, bool]:
    from .record_services import chargers_showing_cost

    return chargers_showing_cost(identities)


SHOWS_COST: Remembered[bool] = Remembered(_read_shows_cost, seconds=SHOWS_COST_TTL, missing=False)


def _session_id(data: dict[str, Any]) -> int | None:
    value = data.get("session")
    return value if isinstance(value, int) else None


def charger_shows_cost(identity: str) -> bool:
    return SHOWS_COST.get(identity)


def forget(identity: str | None = None) -> None:
    SHOWS_COST.forget(identity)


def on_domain_events(sender: Any, *, events: list[DomainEvent], **kwargs: Any) -> None:
    """A transaction's events in order: an ended session gets its CDR; a started or running
    session on a charger that shows cost gets its tariff text or running cost."""
    from . import tasks

    for event in events:
        if event.kind in FORGETTING:
            forget(event.charger)
    shows = SHOWS_COST.get_many(
        {
            event.charger
            for event in events
            if event.kind in COST_EVENTS and _session_id(event.data) is not None
        }
    )

    def handle(event: DomainEvent) -> None:
        session_id = _session_id(event.data)
        if session_id is None:
            return
        if event.kind == "session.ended":
            tasks.cdr_create.delay(session_id)
        elif event.kind == "session.meter" and shows[event.charger]:
            tasks.running_cost_send.delay(session_id)
        elif event.kind == "session.started" and shows[event.charger]:
            tasks.tariff_text_send.delay(session_id)

    handle_each(events, handle)


def connect() -> None:
    domain_events.connect(on_domain_events, dispatch_uid="billing.on_domain_event")
