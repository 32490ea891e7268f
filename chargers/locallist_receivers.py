"""Receivers that keep local authorization lists in sync: chargers' boots, the answers to the
list's commands (domain events, a transaction at a time) and changes to id tokens (model
signals).

They run in the thread that committed (often a charger's database thread of the gateway), so
they only filter and hand ids to Celery tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from .commands import FINISHED
from .events import DomainEvent, domain_events, handle_boots
from .locallist_models import LocalListSync
from .models import Charger, IdToken

logger = logging.getLogger(__name__)

FOLLOWED_ACTIONS = frozenset({"SendLocalList", "GetLocalListVersion"})


def on_command_updated(sender: str, *, data: dict[str, Any], **_: Any) -> None:
    if data.get("action") not in FOLLOWED_ACTIONS or data.get("state") not in FINISHED:
        return
    from .tasks import local_list_command_finished

    local_list_command_finished.delay(data["command"])


def _with_lists(identities: set[str]) -> dict[str, int]:
    """Of the chargers, those that have a list or whose organization keeps tokens in local lists,
    by identity to pk: three queries for any number of chargers."""
    if not identities:
        return {}
    chargers = {
        identity: (pk, organization_pk)
        for identity, pk, organization_pk in Charger.objects.filter(
            identity__in=identities
        ).values_list("identity", "pk", "organization_id")
    }
    if not chargers:
        return {}
    with_sync = set(
        LocalListSync.objects.filter(
            charger_id__in=[pk for pk, _ in chargers.values()]
        ).values_list("charger_id", flat=True)
    )
    others = {organization_pk for pk, organization_pk in chargers.values() if pk not in with_sync}
    keeping = (
        set(
            IdToken.objects.filter(organization_id__in=others, local_list=True)
            .values_list("organization_id", flat=True)
            .order_by()
            .distinct()
        )
        if others
        else set()
    )
    return {
        identity: pk
        for identity, (pk, organization_pk) in chargers.items()
        if pk in with_sync or organization_pk in keeping
    }


_BY_KIND: dict[str, Callable[..., None]] = {
    "command.updated": on_command_updated,
}


def on_domain_events(sender: Any, *, events: list[DomainEvent], **_: Any) -> None:
    """A transaction's events in order; a booted charger that has a list, or whose organization
    keeps tokens in local lists, gets a task."""
    from .tasks import local_list_connected

    handle_boots(events, among=_with_lists, booted=local_list_connected.delay, receivers=_BY_KIND)


def _organization_changed(organization_pk: int) -> None:
    from .tasks import local_list_organization_changed

    try:
        local_list_organization_changed.delay(organization_pk)
    except Exception:
        # The token's change is committed; the lists catch up at the next change or connect.
        logger.exception("local lists of organization %s were not synced", organization_pk)


def on_id_token_changed(sender: Any, instance: IdToken, **kwargs: Any) -> None:
    """A token in the lists (or one that was: its organization's chargers have lists) changed."""
    organization_pk = instance.organization_id
    if (
        not instance.local_list
        and not LocalListSync.objects.filter(charger__organization_id=organization_pk).exists()
    ):
        return
    transaction.on_commit(lambda: _organization_changed(organization_pk))


def connect() -> None:
    domain_events.connect(on_domain_events, dispatch_uid="chargers.locallist")
    post_save.connect(on_id_token_changed, sender=IdToken, dispatch_uid="chargers.locallist.save")
    post_delete.connect(
        on_id_token_changed, sender=IdToken, dispatch_uid="chargers.locallist.delete"
    )
