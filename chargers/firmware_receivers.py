"""Domain-event receivers of firmware campaigns and diagnostics uploads.

They run in the thread that committed the event (often a charger's database thread of the
gateway), so they only filter and hand ids to Celery tasks.
"""

from __future__ import annotations

from typing import Any

from .commands import FINISHED
from .events import domain_event
from .firmware import ACTIVE_TARGET_STATES
from .models import Charger, ChargerEvent, FirmwareTarget

FOLLOWED_EVENT_KINDS = frozenset(
    {
        ChargerEvent.Kind.FIRMWARE,
        ChargerEvent.Kind.SIGNED_FIRMWARE,
        ChargerEvent.Kind.DIAGNOSTICS,
        ChargerEvent.Kind.LOG,
    }
)
FOLLOWED_ACTIONS = frozenset({"UpdateFirmware", "SignedUpdateFirmware", "GetDiagnostics", "GetLog"})


def on_charger_event(sender: str, *, charger: str, data: dict[str, Any], **_: Any) -> None:
    if data.get("kind") not in FOLLOWED_EVENT_KINDS:
        return
    from .tasks import firmware_status

    pk = Charger.objects.filter(identity=charger).values_list("pk", flat=True).first()
    if pk is not None:
        firmware_status.delay(pk, data["kind"], data.get("status") or "", data.get("request_id"))


def on_command_updated(sender: str, *, data: dict[str, Any], **_: Any) -> None:
    if data.get("action") not in FOLLOWED_ACTIONS or data.get("state") not in FINISHED:
        return
    from .tasks import firmware_command_finished

    firmware_command_finished.delay(data["command"])


def on_charger_booted(sender: str, *, charger: str, **_: Any) -> None:
    # Boots come in storms: one indexed look-up, and a task only for a charger being updated.
    pk = (
        FirmwareTarget.objects.filter(
            charger__identity=charger, state__in=list(ACTIVE_TARGET_STATES)
        )
        .values_list("charger_id", flat=True)
        .first()
    )
    if pk is None:
        return
    from .tasks import firmware_booted

    firmware_booted.delay(pk)


_BY_KIND = {
    "charger.event": on_charger_event,
    "command.updated": on_command_updated,
    "charger.booted": on_charger_booted,
}


def on_domain_event(sender: str, **kwargs: Any) -> None:
    # Signals match senders by identity, and equal strings need not be one object: match the
    # kind here.
    receiver = _BY_KIND.get(sender)
    if receiver is not None:
        receiver(sender, **kwargs)


def connect() -> None:
    domain_event.connect(on_domain_event, dispatch_uid="chargers.firmware")
