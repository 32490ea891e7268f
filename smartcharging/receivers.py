"""Domain events that move a site's picture: each receiver only looks up ids and enqueues a task
(they run in the thread that committed, often the gateway's)."""

from __future__ import annotations

import time
from typing import Any

from chargers.commands import FINISHED
from chargers.models import Charger

from .models import SiteCapacity

PROFILE_ACTIONS = frozenset({"SetChargingProfile", "GetCompositeSchedule"})


# Meter events come with every sample: whether a charger stands on a managed site is remembered
# this long, so that chargers on other sites cost no query and no task.
MANAGED_CACHE_SECONDS = 30.0
_managed_cache: dict[str, tuple[tuple[int, int] | None, float]] = {}


def _managed(identity: str, *, cached: bool = False) -> tuple[int, int] | None:
    """(charger pk, site pk) when the charger stands on a managed site."""
    if cached:
        hit = _managed_cache.get(identity)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
    row = Charger.objects.filter(identity=identity).values_list("pk", "site_id").first()
    managed: tuple[int, int] | None = None
    if (
        row is not None
        and row[1] is not None
        and SiteCapacity.objects.filter(site_id=row[1], managed=True).exists()
    ):
        managed = (row[0], row[1])
    if len(_managed_cache) > 10000:
        _managed_cache.clear()
    _managed_cache[identity] = (managed, time.monotonic() + MANAGED_CACHE_SECONDS)
    return managed


def on_session_started(sender: str, *, charger: str, data: dict[str, Any], **kwargs: Any) -> None:
    from .tasks import rebalance_site

    managed = _managed(charger)
    if managed:
        rebalance_site.delay(managed[1], "session started")


def on_session_ended(sender: str, *, charger: str, data: dict[str, Any], **kwargs: Any) -> None:
    from .tasks import session_ended

    managed = _managed(charger)
    if managed and data.get("session"):
        session_ended.delay(int(data["session"]), managed[1])


def on_session_meter(sender: str, *, charger: str, data: dict[str, Any], **kwargs: Any) -> None:
    from .services import measured_current
    from .tasks import session_measured

    measured = measured_current(data.get("samples") or [])
    if measured is None or not data.get("session") or data.get("state") != "Active":
        return
    if _managed(charger, cached=True):
        session_measured.delay(int(data["session"]), measured)


def on_charger_booted(sender: str, *, charger: str, **kwargs: Any) -> None:
    from .tasks import charger_failsafe

    managed = _managed(charger)
    if managed:
        charger_failsafe.delay(managed[0])


def on_command_updated(sender: str, *, data: dict[str, Any], **kwargs: Any) -> None:
    from .tasks import profile_answered

    if data.get("action") in PROFILE_ACTIONS and data.get("state") in FINISHED:
        profile_answered.delay(int(data["command"]))


RECEIVERS = {
    "session.started": on_session_started,
    "session.ended": on_session_ended,
    "session.meter": on_session_meter,
    "charger.booted": on_charger_booted,
    "command.updated": on_command_updated,
}


def on_domain_event(sender: str, **kwargs: Any) -> None:
    # Signals match a sender by identity, and equal strings need not be one object: match here.
    receiver = RECEIVERS.get(sender)
    if receiver is not None:
        receiver(sender, **kwargs)


def connect() -> None:
    from chargers.events import domain_event

    domain_event.connect(on_domain_event, dispatch_uid="smartcharging.domain_event")
