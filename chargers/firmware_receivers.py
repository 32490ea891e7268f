"""Domain-event receivers of firmware campaigns and diagnostics uploads.

They run in the thread that committed the event (often a charger's database thread of the
gateway), so they only filter and hand ids to Celery tasks.
"""

from __future__ import annotations

from typing import Any

from .commands import FINISHED
from .events import DomainEvent, domain_events, handle_boots
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


def _being_updated(identities: set[str]) -> dict[str, int]:
    """Of the chargers, those a campaign is updating, by identity to pk: one indexed query for
    any number of chargers."""
    if not identities:
        return {}
    return dict(
        FirmwareTarget.objects.filter(
            charger__identity__in=identities, state__in=list(ACTIVE_TARGET_STATES)
        ).values_list("charger__identity", "charger_id")
    )


_BY_KIND = {
    "charger.event": on_charger_event,
    "command.updated": on_command_updated,
}


def on_domain_events(sender: Any, *, events: list[DomainEvent], **_: Any) -> None:
    """A transaction's events in order; a booted charger a campaign is updating gets a task."""
    from .tasks import firmware_booted

    handle_boots(events, among=_being_updated, booted=firmware_booted.delay, receivers=_BY_KIND)


def connect() -> None:
    domain_events.connect(on_domain_events, dispatch_uid="chargers.firmware")
