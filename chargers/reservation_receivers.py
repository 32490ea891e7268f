"""Domain-event receiver of reservations: a finished ReserveNow or CancelReservation moves its
reservation on.

It runs in the thread that committed the command's answer (a charger's database thread of the
gateway) and costs a look-up and a conditional UPDATE; the sweep catches up on a lost event.
"""

from __future__ import annotations

from typing import Any

from .commands import FINISHED
from .events import domain_event

FOLLOWED_ACTIONS = frozenset({"ReserveNow", "CancelReservation"})


def on_domain_event(sender: str, *, data: dict[str, Any], **_: Any) -> None:
    # Signals match senders by identity, and equal strings need not be one object: match the
    # kind here.
    if sender != "command.updated":
        return
    if data.get("action") not in FOLLOWED_ACTIONS or data.get("state") not in FINISHED:
        return
    from .reservation_services import reservation_command_record

    reservation_command_record(command_pk=data["command"])


def connect() -> None:
    domain_event.connect(on_domain_event, dispatch_uid="chargers.reservations")
