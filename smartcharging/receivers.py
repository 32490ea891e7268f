"""Domain events that move a site's picture: each receiver only looks up ids and enqueues a task
(they run in the thread that committed, often the gateway's)."""

from __future__ import annotations

from typing import Any

from chargers.commands import FINISHED
from chargers.events import DomainEvent, domain_events, handle_boots
from chargers.models import Charger
from chargers.remembered import Remembered

from .models import SiteCapacity

PROFILE_ACTIONS = frozenset({"SetChargingProfile", "GetCompositeSchedule"})


# Meter events come with every sample: whether a charger stands on a managed site is remembered
# about this long, so that chargers on other sites cost no query and no task, and a batch's meter
# events read the chargers not remembered in one go.
MANAGED_CACHE_SECONDS = 30.0


def _read_managed(identities: set[str]) -> dict[str, tuple[int, int] | None]:
    """Of each charger, (charger pk, site pk) when it stands on a managed site: two queries for
    any number of chargers."""
    rows = Charger.objects.filter(identity__in=identities, site__isnull=False).values_list(
        "identity", "pk", "site_id"
    )
    sites = {identity: (pk, site_pk) for identity, pk, site_pk in rows}
    managed_sites = (
        set(
            SiteCapacity.objects.filter(
                site_id__in={site_pk for _, site_pk in sites.values()}, managed=True
            ).values_list("site_id", flat=True)
        )
        if sites
        else set()
    )
    return {
        identity: site if (site := sites.get(identity)) and site[1] in managed_sites else None
        for identity in identities
    }


MANAGED: Remembered[tuple[int, int] | None] = Remembered(
    _read_managed, seconds=MANAGED_CACHE_SECONDS, missing=None
)


def _managed(identity: str, *, cached: bool = False) -> tuple[int, int] | None:
    """(charger pk, site pk) when the charger stands on a managed site."""
    if cached:
        return MANAGED.get(identity)
    return _managed_among({identity})[identity]


def _managed_among(identities: set[str]) -> dict[str, tuple[int, int] | None]:
    """``_read_managed``, read afresh and remembered."""
    return MANAGED.read(identities)


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


def on_command_updated(sender: str, *, data: dict[str, Any], **kwargs: Any) -> None:
    from .tasks import profile_answered

    if data.get("action") in PROFILE_ACTIONS and data.get("state") in FINISHED:
        profile_answered.delay(int(data["command"]))


RECEIVERS = {
    "session.started": on_session_started,
    "session.ended": on_session_ended,
    "session.meter": on_session_meter,
    "command.updated": on_command_updated,
}


def on_domain_events(sender: Any, *, events: list[DomainEvent], **kwargs: Any) -> None:
    """A transaction's events in order; a booted charger on a managed site gets its fail-safe
    profiles."""
    from .tasks import charger_failsafe

    def failsafe(site: tuple[int, int]) -> None:
        charger_failsafe.delay(site[0])

    # Whether the chargers of the batch's meter events are managed, in one read for those not
    # remembered (a booted charger is read afresh by handle_boots all the same).
    MANAGED.get_many({event.charger for event in events if event.kind == "session.meter"})
    handle_boots(events, among=_managed_among, booted=failsafe, receivers=RECEIVERS)


def connect() -> None:
    domain_events.connect(on_domain_events, dispatch_uid="smartcharging.domain_event")
