"""Local authorization lists kept in sync with the organization's id tokens.

A charger's list holds the id tokens of its organization marked ``local_list``. A charger with
no confirmed list, or whose reported version differs from ours, gets a Full update; changes to
id tokens go as Differential updates, one version higher each. One SendLocalList is in flight per
charger: what changes meanwhile goes after its answer. A list longer than one message may carry
goes as a Full with the first part and Differential updates with the rest; a list longer than
the charger holds is not sent. Requests reach chargers as ``Command`` rows through
``command_services.command_create``; their answers come back through ``command.updated`` events
(``chargers.locallist_receivers``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import command_services, events
from .commands import FINISHED, CommandState
from .locallist import (
    DEFAULT_ITEMS_PER_MESSAGE,
    FULL,
    TokenRow,
    Update,
    applied,
    desired_entries,
    payload,
    plan_differential,
    plan_full,
    positive_int,
    reported_version,
    too_long,
)
from .locallist_models import LocalListState, LocalListSync
from .models import (
    Charger,
    ChargerConfigurationKey,
    Command,
    DeviceVariable,
    DeviceVariableAttribute,
    IdToken,
)

logger = logging.getLogger(__name__)

SYSTEM = "local list"
EVENT_KIND = "local_list.updated"
SEND = "SendLocalList"
CHECK = "GetLocalListVersion"
# 1.6 configuration keys and 2.x LocalAuthListCtrlr variables that carry the list's limits.
KEY_PER_MESSAGE_16 = "SendLocalListMaxLength"
KEY_MAX_ENTRIES_16 = "LocalAuthListMaxLength"
CONTROLLER = "LocalAuthListCtrlr"
VARIABLE_PER_MESSAGE = "ItemsPerMessage"
VARIABLE_ENTRIES = "Entries"
NOT_SUPPORTED_ERRORS = frozenset({"NotSupported", "NotImplemented"})
# A pending list of a connected charger that has not moved for this long is synced again.
RETRY_AFTER = timedelta(seconds=60)


# --- What the charger can take --------------------------------------------------------------------


def local_list_limits(*, charger: Charger) -> tuple[int, int | None]:
    """Entries per SendLocalList and entries in the whole list, as the charger last reported them
    (a default per message, and no limit on the whole, when it did not)."""
    if charger.ocpp_version == "1.6":
        values = dict(
            ChargerConfigurationKey.objects.filter(
                charger_id=charger.pk, key__in=[KEY_PER_MESSAGE_16, KEY_MAX_ENTRIES_16]
            ).values_list("key", "value")
        )
        per_message = positive_int(values.get(KEY_PER_MESSAGE_16))
        max_entries = positive_int(values.get(KEY_MAX_ENTRIES_16))
    else:
        variables = DeviceVariable.objects.filter(
            charger_id=charger.pk,
            component_name=CONTROLLER,
            component_instance="",
            evse_id__isnull=True,
            variable_name__in=[VARIABLE_PER_MESSAGE, VARIABLE_ENTRIES],
            variable_instance="",
        )
        attributes = {
            (name, kind): value
            for name, kind, value in DeviceVariableAttribute.objects.filter(
                variable__in=variables
            ).values_list("variable__variable_name", "type", "value")
        }
        per_message = positive_int(attributes.get((VARIABLE_PER_MESSAGE, "Actual")))
        # The capacity is the Entries variable's maxLimit (a device model report), or its MaxSet.
        limit = (
            variables.filter(variable_name=VARIABLE_ENTRIES).values_list("max_limit", flat=True)
        ).first()
        max_entries = positive_int(limit) or positive_int(
            attributes.get((VARIABLE_ENTRIES, "MaxSet"))
        )
    return per_message or DEFAULT_ITEMS_PER_MESSAGE, max_entries


def _limits_request(version: str) -> tuple[str, dict[str, Any]]:
    if version == "1.6":
        return "GetConfiguration", {"key": [KEY_PER_MESSAGE_16, KEY_MAX_ENTRIES_16]}
    return "GetVariables", {
        "getVariableData": [
            {"component": {"name": CONTROLLER}, "variable": {"name": VARIABLE_PER_MESSAGE}},
            {
                "component": {"name": CONTROLLER},
                "variable": {"name": VARIABLE_ENTRIES},
                "attributeType": "MaxSet",
            },
        ]
    }


# --- What the list should hold --------------------------------------------------------------------


def _tokens(organization_pk: int) -> list[TokenRow]:
    return [
        TokenRow(token=token, type=kind, status=status, expires_at=expires, group_token=group)
        for token, kind, status, expires, group in IdToken.objects.filter(
            organization_id=organization_pk, local_list=True
        ).values_list("token", "type", "status", "expires_at", "group_token")
    ]


def local_list_desired(*, charger: Charger) -> dict[str, dict[str, Any]]:
    """The entries the charger's list should hold now."""
    return desired_entries(
        _tokens(charger.organization_id),
        version=charger.ocpp_version or "1.6",
        now=timezone.now(),
    )


def _types(charger: Charger, sync: LocalListSync) -> dict[str, str]:
    types = {token: str(info.get("type") or "") for token, info in sync.entries.items()}
    types.update(
        IdToken.objects.filter(organization_id=charger.organization_id).values_list("token", "type")
    )
    return {token: kind for token, kind in types.items() if kind}


# --- Sync -----------------------------------------------------------------------------------------


def _locked(charger_pk: int) -> LocalListSync:
    LocalListSync.objects.get_or_create(charger_id=charger_pk)
    return LocalListSync.objects.select_for_update().get(charger_id=charger_pk)


def _in_flight(command_pk: int | None) -> Command | None:
    if command_pk is None:
        return None
    return (
        Command.objects.filter(pk=command_pk).only("pk", "state", "response", "error_code").first()
    )


def _finish(sync: LocalListSync, state: str, error: str = "") -> None:
    sync.state = state
    sync.last_error = error
    sync.command = None
    sync.message = None
    sync.plan = []
    sync.full_requested = False
    sync.save()


def _send(sync: LocalListSync, charger: Charger, update: Update) -> None:
    """Send one update; a charger that cannot take it now leaves the list pending."""
    request = payload(charger.ocpp_version, update, _types(charger, sync))
    try:
        with transaction.atomic():
            command = command_services.command_create(
                charger=charger, action=SEND, payload=request, system=SYSTEM
            )
    except command_services.CommandInvalid as exc:
        _finish(sync, LocalListState.FAILED, exc.message)
        return
    except command_services.ControlledElsewhere as exc:
        _finish(sync, LocalListState.FAILED, str(exc))
        return
    except command_services.CommandRefused as exc:
        _finish(
            sync,
            LocalListState.PENDING,
            f"{exc} The list is sent when the charger connects.",
        )
        return
    sync.command = command
    sync.message = update.as_json()
    sync.state = LocalListState.PENDING
    sync.save()


def _advance(
    sync: LocalListSync, charger: Charger, *, full: bool = False, reported: int | None = None
) -> None:
    """With no update in flight: send the next part of a split list, else what brings the
    charger's list to what it should hold (Full when asked, when the charger has no confirmed
    list, or when its version is not ours)."""
    if sync.plan:
        update, sync.plan = Update.from_json(sync.plan[0]), sync.plan[1:]
        _send(sync, charger, update)
        return
    full = full or sync.full_requested
    sync.full_requested = False
    per_message, max_entries = local_list_limits(charger=charger)
    desired = local_list_desired(charger=charger)
    if reason := too_long(len(desired), max_entries):
        _finish(sync, LocalListState.TOO_LONG, reason)
        return
    if full or sync.version <= 0 or (reported is not None and reported != sync.version):
        version = max(sync.version, reported or 0) + 1
        updates = plan_full(desired, version=version, per_message=per_message)
    else:
        updates = plan_differential(
            sync.entries, desired, version=sync.version + 1, per_message=per_message
        )
    if not updates:
        _finish(sync, LocalListState.IN_SYNC)
        return
    sync.plan = [update.as_json() for update in updates[1:]]
    _send(sync, charger, updates[0])


def _charger(charger_pk: int) -> Charger | None:
    return Charger.objects.filter(pk=charger_pk).first()


def _announce(sync: LocalListSync, charger: Charger) -> None:
    """Tell dashboards (after commit) how the charger's list stands."""
    events.publish(
        EVENT_KIND,
        organization_pk=charger.organization_id,
        charger=charger.identity,
        data={"state": sync.state, "version": sync.version, "entries": len(sync.entries)},
    )


def local_list_of(*, charger: Charger) -> LocalListSync:
    """The charger's list as far as we know it (an unsaved, empty one before its first sync)."""
    return LocalListSync.objects.filter(charger_id=charger.pk).first() or LocalListSync(
        charger=charger
    )


def local_list_sync(*, charger_pk: int, full: bool = False) -> LocalListSync | None:
    """Bring the charger's list to what it should hold: a differential, or a full update when
    ``full`` (or when needed). With an update in flight, this waits for its answer."""
    charger = _charger(charger_pk)
    if charger is None:
        return None
    with transaction.atomic():
        sync = _locked(charger_pk)
        command = _in_flight(sync.command_id)
        if command is not None and command.state not in FINISHED:
            sync.full_requested = sync.full_requested or full
            sync.save(update_fields=["full_requested", "updated_at"])
            _announce(sync, charger)
            return sync
        if command is not None:
            # Answered, and its answer not taken yet: take it first.
            _answered(sync, charger, command)
            if full and sync.command_id is not None:
                sync.full_requested = True
                sync.save(update_fields=["full_requested", "updated_at"])
            elif sync.command_id is None and (full or sync.state != LocalListState.IN_SYNC):
                _advance(sync, charger, full=full)
            _announce(sync, charger)
            return sync
        sync.command = None
        sync.message = None
        if full:
            sync.plan = []
        checking = _in_flight(sync.check_command_id)
        if checking is not None and checking.state not in FINISHED:
            # The version check's answer sends what is needed.
            sync.full_requested = sync.full_requested or full
            sync.save(update_fields=["command", "message", "plan", "full_requested", "updated_at"])
        elif sync.version <= 0 and sync.reported_version is None:
            # Never asked: learn the charger's limits and version first.
            _check(sync, charger)
        else:
            _advance(sync, charger, full=full)
        _announce(sync, charger)
    return sync


def _check(sync: LocalListSync, charger: Charger) -> None:
    """Ask for the charger's limits and its list version (the row is locked)."""
    action, request = _limits_request(charger.ocpp_version)
    try:
        with transaction.atomic():
            command_services.command_create(
                charger=charger, action=action, payload=request, system=SYSTEM
            )
            check = command_services.command_create(
                charger=charger, action=CHECK, payload={}, system=SYSTEM
            )
    except command_services.CommandRefused as exc:
        sync.last_error = f"{exc} The list is checked when the charger connects."
        if sync.state == LocalListState.UNKNOWN:
            sync.state = LocalListState.PENDING
        sync.save(update_fields=["last_error", "state", "updated_at"])
        return
    sync.check_command = check
    sync.save(update_fields=["check_command", "updated_at"])


def local_list_check(*, charger_pk: int) -> LocalListSync | None:
    """Ask the charger for its limits and its list version; the answer decides whether the list
    is sent again (``local_list_command_finished``)."""
    charger = _charger(charger_pk)
    if charger is None or not charger.ocpp_version:
        return None
    with transaction.atomic():
        sync = _locked(charger_pk)
        _check(sync, charger)
        _announce(sync, charger)
    return sync


def local_list_connected(*, charger_pk: int) -> LocalListSync | None:
    """A charger (re)connected and booted: the update in flight that finished is taken as it
    ended (one the charger answered before it went may not have been taken yet: its task can
    run after the boot's; one it never answered is sent again), and its list version is
    checked, in one transaction."""
    charger = _charger(charger_pk)
    if charger is None or not charger.ocpp_version:
        return None
    with transaction.atomic():
        sync = _locked(charger_pk)
        if sync.command_id is not None:
            command = _in_flight(sync.command_id)
            if command is None:
                sync.command = None
                sync.message = None
                sync.plan = []
                sync.save()
            elif command.state in FINISHED:
                _answered(sync, charger, command)
        _check(sync, charger)
        _announce(sync, charger)
    return sync


def local_list_organization_changed(*, organization_pk: int) -> int:
    """Id tokens of the organization changed: sync the lists of its connected chargers (the
    others catch up when they connect). Returns how many chargers were looked at."""
    pks = list(
        Charger.objects.filter(organization_id=organization_pk, connected=True)
        .exclude(ocpp_version="")
        .exclude(local_list__state=LocalListState.NOT_SUPPORTED)
        .values_list("pk", flat=True)
    )
    for pk in pks:
        try:
            local_list_sync(charger_pk=pk)
        except Exception:
            logger.exception("local list of charger %s could not be synced", pk)
    return len(pks)


def local_lists_retry(*, now: datetime | None = None) -> int:
    """Sync again the pending lists of connected chargers that have not moved for a while: an
    update that timed out while the charger stayed connected, or an answer whose task was lost.
    Returns how many chargers were looked at."""
    now = now or timezone.now()
    finished = list(FINISHED)
    pks = list(
        LocalListSync.objects.filter(
            Q(command__isnull=True) | Q(command__state__in=finished),
            Q(check_command__isnull=True) | Q(check_command__state__in=finished),
            state=LocalListState.PENDING,
            charger__connected=True,
            updated_at__lt=now - RETRY_AFTER,
        )
        .order_by("updated_at")
        .values_list("charger_id", flat=True)[:500]
    )
    for pk in pks:
        try:
            local_list_sync(charger_pk=pk)
        except Exception:
            logger.exception("local list of charger %s could not be synced", pk)
    return len(pks)


# --- Answers --------------------------------------------------------------------------------------


def _answered(sync: LocalListSync, charger: Charger, command: Command) -> None:
    """Take the answer to the SendLocalList in flight (the row is locked)."""
    update = Update.from_json(sync.message) if sync.message else None
    sync.command = None
    sync.message = None
    now = timezone.now()
    status = str((command.response or {}).get("status", ""))
    if command.state == CommandState.ACCEPTED and update is not None:
        sync.entries = applied(sync.entries, update)
        sync.version = update.version
        # What the charger holds now, as it would report it.
        sync.reported_version = update.version
        sync.last_synced_at = now
        sync.last_error = ""
        _advance(sync, charger)
    elif command.state == CommandState.REJECTED and status == "VersionMismatch":
        if update is not None and update.update_type == FULL:
            _finish(
                sync, LocalListState.FAILED, "The charger refused a full list: VersionMismatch."
            )
            return
        sync.plan = []
        sync.last_error = "The charger reported a version mismatch; the full list was sent."
        # The full list takes a version above the refused one.
        _advance(sync, charger, full=True, reported=update.version if update else None)
    elif command.state == CommandState.REJECTED and status == "NotSupported":
        _finish(
            sync,
            LocalListState.NOT_SUPPORTED,
            "The charger answered NotSupported: it has no local authorization list.",
        )
    elif command.state == CommandState.REJECTED:
        _finish(
            sync,
            LocalListState.FAILED,
            f"The charger answered {status or 'with a refusal'}: it could not update its list.",
        )
    elif command.state == CommandState.ERROR and command.error_code in NOT_SUPPORTED_ERRORS:
        _finish(
            sync,
            LocalListState.NOT_SUPPORTED,
            f"The charger does not take SendLocalList ({command.error_code}).",
        )
    elif command.state == CommandState.ERROR:
        _finish(
            sync,
            LocalListState.FAILED,
            f"The charger answered with an error: {command.error_code} "
            f"{command.error_description}".strip(),
        )
    else:
        _finish(
            sync,
            LocalListState.PENDING,
            f"The update was not answered ({command.state}); it is sent again when the "
            "charger connects.",
        )


def _superseded(check: Command) -> bool:
    """Whether the charger accepted a list update after it answered this version check (one
    CALL at a time on its socket, so the answers' times are the charger's order)."""
    return (
        check.answered_at is not None
        and Command.objects.filter(
            charger_id=check.charger_id,
            action="SendLocalList",
            state=CommandState.ACCEPTED,
            answered_at__gt=check.answered_at,
        ).exists()
    )


def _version_checked(sync: LocalListSync, charger: Charger, command: Command) -> None:
    sync.check_command = None
    if command.state == CommandState.ANSWERED:
        reported = reported_version(charger.ocpp_version, command.response or {})
        sync.reported_version = reported
        if reported is not None and reported < 0:
            _finish(
                sync,
                LocalListState.NOT_SUPPORTED,
                "The charger reports version -1: it has no local authorization list.",
            )
            return
        if _superseded(command):
            # The charger answered before it applied an update whose answer was taken first:
            # its report is older than what we know.
            sync.save()
            return
        if sync.command_id is not None:
            # The charger may have applied the update in flight already.
            expected = {sync.version}
            if sync.message:
                expected.add(Update.from_json(sync.message).version)
            sync.full_requested = sync.full_requested or reported not in expected
            sync.save()
            return
        if reported != sync.version:
            sync.plan = []
            if sync.version > 0:
                sync.last_error = (
                    f"The charger reported version {reported}, not {sync.version}; "
                    "the full list was sent."
                )
        _advance(sync, charger, reported=reported)
    elif command.state == CommandState.ERROR and command.error_code in NOT_SUPPORTED_ERRORS:
        _finish(
            sync,
            LocalListState.NOT_SUPPORTED,
            f"The charger does not take GetLocalListVersion ({command.error_code}).",
        )
    else:
        sync.save()


def local_list_command_finished(*, command_pk: int) -> LocalListSync | None:
    """A SendLocalList or GetLocalListVersion of a list finished: take its answer."""
    command = Command.objects.filter(pk=command_pk, state__in=list(FINISHED)).first()
    if command is None:
        return None
    charger = _charger(command.charger_id)
    if charger is None:
        return None
    with transaction.atomic():
        sync = (
            LocalListSync.objects.select_for_update().filter(charger_id=command.charger_id).first()
        )
        if sync is None:
            return None
        if sync.command_id == command.pk:
            _answered(sync, charger, command)
        elif sync.check_command_id == command.pk:
            _version_checked(sync, charger, command)
        else:
            return None
        _announce(sync, charger)
    return sync
