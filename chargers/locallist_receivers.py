"""Receivers that keep local authorization lists in sync: a charger's boot, the answers to the
list's commands (domain events) and changes to id tokens (model signals).

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
from .events import domain_event
from .locallist_models import LocalListSync
from .models import Charger, IdToken

logger = logging.getLogger(__name__)

FOLLOWED_ACTIONS = frozenset({"SendLocalList", "GetLocalListVersion"})


def on_command_updated(sender: str, *, data: dict[str, Any], **_: Any) -> None:
    if data.get("action") not in FOLLOWED_ACTIONS or data.get("state") not in FINISHED:
        return
    from .tasks import local_list_command_finished

    local_list_command_finished.delay(data["command"])


def on_charger_booted(sender: str, *, charger: str, **_: Any) -> None:
    # Boots come in storms: a task only for a charger that has a list, or whose organization
    # keeps tokens in local lists.
    row = Charger.objects.filter(identity=charger).values_list("pk", "organization_id").first()
    if row is None:
        return
    pk, organization_pk = row
    if not (
        LocalListSync.objects.filter(charger_id=pk).exists()
        or IdToken.objects.filter(organization_id=organization_pk, local_list=True).exists()
    ):
        return
    from .tasks import local_list_connected

    local_list_connected.delay(pk)


_BY_KIND: dict[str, Callable[..., None]] = {
    "command.updated": on_command_updated,
    "charger.booted": on_charger_booted,
}


def on_domain_event(sender: str, **kwargs: Any) -> None:
    # Signals match senders by identity, and equal strings need not be one object: match the
    # kind here.
    receiver = _BY_KIND.get(sender)
    if receiver is not None:
        receiver(sender, **kwargs)


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
    domain_event.connect(on_domain_event, dispatch_uid="chargers.locallist")
    post_save.connect(on_id_token_changed, sender=IdToken, dispatch_uid="chargers.locallist.save")
    post_delete.connect(
        on_id_token_changed, sender=IdToken, dispatch_uid="chargers.locallist.delete"
    )
