"""Commands to a charger: create and retry them, and record each step of their delivery.

API, dashboard and Celery create a ``Command`` row and send a small channel-layer message with its
id to the consumer holding the charger's socket, on whichever node it is. That consumer claims the
row, sends the CALL and records the answer here; every change is published as a
``command.updated`` event. The channel layer delivers at most once, so the row is the truth:
``commands_sweep`` times out what was never answered and sends waiting commands again.

Every function is synchronous; the consumer calls them through one ``database_sync_to_async`` hop,
or (claims and answers, many connections' at once) through a group commit (chargers.groupcommit).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, connections, router, transaction
from django.utils import timezone

from cpms.models import ApiToken
from routing.models import LOCAL
from routing.selectors import primary_upstream_sql

from . import devicemodel, events, protocol
from .commands import (
    FINISHED,
    REMOTE_START,
    RETRYABLE,
    WAITING,
    CommandState,
    IllegalTransition,
    UnknownAction,
    check_action,
    outcome,
    transition,
)
from .models import (
    Charger,
    ChargerConfigurationKey,
    Command,
    DataTransferRecord,
    DeviceVariable,
    DeviceVariableAttribute,
    Frame,
    Session,
)

logger = logging.getLogger(__name__)

COMMAND_MESSAGE = "chargers.command"
EVENT_KIND = "command.updated"
# A sent command whose connection never recorded an answer or a timeout (its process died) is
# timed out by the sweep this long after the connection itself would have.
SWEEP_GRACE_SECONDS = 30.0
# A waiting command of a connected charger is sent to its connection again after this long.
REDELIVER_AFTER_SECONDS = 5.0
# A 1.6 StartTransaction follows a RemoteStartTransaction within this long, or not at all.
REMOTE_START_WINDOW = timedelta(minutes=10)

# Channel names of the consumers in this process that hold a charger's socket.
LOCAL_CHANNELS: set[str] = set()


class CommandInvalid(Exception):
    """The request is not a valid command: ``field`` (action or payload) says which part."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class CommandRefused(Exception):
    """The command is valid but cannot be accepted now (the charger is offline, ...)."""


class ChargerOffline(CommandRefused):
    """The charger is offline and the command may not wait for it."""

    def __init__(self, identity: str):
        super().__init__(
            f"{identity} is offline, so the command was not sent. Send it with "
            "deliver_when_offline to queue it until the charger connects."
        )
        self.identity = identity


class ControlledElsewhere(CommandRefused):
    """Another CSMS is the charger's primary upstream; only it sends the charger commands."""

    def __init__(self, identity: str, upstream: str):
        super().__init__(
            f"{identity} is controlled by the upstream CSMS {upstream!r}; this system only "
            "observes it, so commands go through that CSMS."
        )
        self.identity = identity
        self.upstream = upstream


def layer_spans_processes() -> bool:
    """Whether the channel layer reaches consumers in other processes (Redis) or only this one."""
    backend = str(settings.CHANNEL_LAYERS["default"]["BACKEND"])
    return not backend.endswith("InMemoryChannelLayer")


def reachable(channel_name: str) -> bool:
    """Whether a channel-layer message from this process can reach that consumer."""
    return bool(channel_name) and (layer_spans_processes() or channel_name in LOCAL_CHANNELS)


# --- Events and delivery ---------------------------------------------------------------------------


def _event_data(command: Command) -> dict[str, Any]:
    return {
        "command": command.pk,
        "action": command.action,
        "state": command.state,
        "response_status": command.response_status,
        "error_code": command.error_code,
    }


def _publish(command: Command, charger: Charger | Holder, *, deliver_to: str = "") -> None:
    """After commit: tell dashboards, and (``deliver_to``) the consumer holding the socket."""
    event: dict[str, Any] = {
        "type": "cpms.event",
        "kind": EVENT_KIND,
        "charger": charger.identity,
        "data": _event_data(command),
    }
    pk = command.pk
    organization_pk = charger.organization_id

    def committed() -> None:
        groups = events.listened_groups(organization_pk, charger.identity)
        if not groups and not deliver_to:
            return

        async def send(layer: Any) -> None:
            # The event first: the consumer's own events about the command come after it.
            for group in groups:
                await layer.group_send(group, event)
            if deliver_to:
                await layer.send(deliver_to, {"type": COMMAND_MESSAGE, "command": pk})

        events.send_soon(send, charger=charger.identity)

    transaction.on_commit(committed)
    identity, data = charger.identity, event["data"]
    events.notify_after_commit(events.DomainEvent(EVENT_KIND, organization_pk, identity, data))


def _deliver(charger: Charger, pks: Iterable[int]) -> None:
    """After commit: send waiting commands to the consumer holding the charger's socket."""
    channel = charger.channel_name
    pks = list(pks)
    if not pks or not reachable(channel):
        return

    async def send(layer: Any) -> None:
        for pk in pks:
            await layer.send(channel, {"type": COMMAND_MESSAGE, "command": pk})

    events.send_after_commit(send, charger=charger.identity)


# --- Create and retry ------------------------------------------------------------------------------


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _validated(action: str, payload: Any, version: str) -> None:
    try:
        check_action(action, version)
    except UnknownAction as exc:
        raise CommandInvalid("action", str(exc)) from None
    if not isinstance(payload, dict):
        raise CommandInvalid("payload", "The payload must be a JSON object.")
    if _has_nul(payload):
        # No database keeps NUL in text alike, and no charger expects one.
        raise CommandInvalid("payload", "Strings must not contain NUL characters.")
    try:
        protocol.validate(protocol.CALL, action, payload, version, "-")
    except protocol.FrameError as exc:
        raise CommandInvalid(
            "payload", f"Not a valid OCPP {version} {action} request: {exc.description}"
        ) from None


@dataclass(frozen=True, slots=True)
class Target:
    """A command's charger as it is when the command is created (the caller's copy may be old:
    connection state changes all the time)."""

    identity: str
    organization_pk: int
    ocpp_version: str
    connected: bool
    channel_name: str
    # The upstream that controls the charger when it is not local.
    controller: str | None


@functools.cache
def _target_sql() -> str:
    table = connection.ops.quote_name(Charger._meta.db_table)
    return (
        "SELECT charger.identity, charger.organization_id, charger.ocpp_version,"
        f" charger.connected, charger.channel_name, {primary_upstream_sql('charger')}"
        f" FROM {table} AS charger WHERE charger.id = %s"
    )


def _target(charger_pk: int) -> Target | None:
    """The charger's row and its route's primary upstream, in one query with nothing for the ORM
    to build: it runs for every command."""
    with connection.cursor() as cursor:
        cursor.execute(_target_sql(), [charger_pk])
        row = cursor.fetchone()
    if row is None:
        return None
    identity, organization_pk, version, connected, channel_name, primary = row
    return Target(
        identity=identity,
        organization_pk=organization_pk,
        ocpp_version=version,
        connected=bool(connected),
        channel_name=channel_name,
        controller=primary if primary not in (None, LOCAL) else None,
    )


def command_create(
    *,
    charger: Charger,
    action: str,
    payload: dict[str, Any],
    deliver_when_offline: bool = False,
    requested_by: Any = None,
    api_token: ApiToken | None = None,
    system: str = "",
    retry_of: Command | None = None,
) -> Command:
    """Create a command and hand it to the consumer that holds the charger's socket.

    Checks that the charger's negotiated OCPP version has the action and that the payload
    matches its schema (``CommandInvalid``), and refuses an offline charger unless the command
    may wait for it (``CommandRefused``), and a charger another CSMS controls
    (``ControlledElsewhere``). Who asked is a user, an API token, or a part of the system named
    by ``system``.
    """
    target = _target(charger.pk)
    if target is None:
        raise CommandRefused("The charger no longer exists.")
    if target.controller is not None:
        raise ControlledElsewhere(target.identity, target.controller)
    version = target.ocpp_version
    if not version:
        raise CommandRefused(
            f"{target.identity} has never connected, so its OCPP version (and with it the "
            "commands it takes) is not known yet."
        )
    _validated(action, payload, version)
    connected = target.connected
    if not connected and not deliver_when_offline:
        raise ChargerOffline(target.identity)
    if isinstance(requested_by, User):
        source, user = Command.Source.USER, requested_by
    else:
        source, user = (Command.Source.API_TOKEN if api_token else Command.Source.SYSTEM), None
    remote_start_id = payload.get("remoteStartId") if action == "RequestStartTransaction" else None
    # One INSERT needs no transaction of its own (a remote start is two statements).
    with transaction.atomic() if action == "RemoteStartTransaction" else nullcontext():
        command = Command.objects.create(
            charger_id=charger.pk,
            action=action,
            payload=payload,
            ocpp_version=version,
            state=CommandState.REQUESTED if connected else CommandState.QUEUED,
            deliver_when_offline=deliver_when_offline,
            source=source,
            requested_by=user,
            api_token=api_token,
            system=system[:64],
            retry_of=retry_of,
            retry_count=retry_of.retry_count + 1 if retry_of else 0,
            remote_start_id=remote_start_id,
        )
        if action == "RemoteStartTransaction":
            # 1.6 has no remote start id: the command's own id is the one its session carries.
            command.remote_start_id = command.pk
            command.save(update_fields=["remote_start_id"])
        holder = Holder(
            pk=charger.pk, identity=target.identity, organization_id=target.organization_pk
        )
        channel = target.channel_name if connected and reachable(target.channel_name) else ""
        _publish(command, holder, deliver_to=channel)
    return command


def command_retry(
    *,
    command: Command,
    requested_by: Any = None,
    api_token: ApiToken | None = None,
    system: str = "",
) -> Command:
    """Send a finished command that did not succeed again, as a new command linked to it."""
    if command.state not in RETRYABLE:
        raise CommandRefused(
            f"Command {command.pk} is {command.state}; only rejected, error, timeout and failed "
            "commands can be retried."
        )
    return command_create(
        charger=command.charger,
        action=command.action,
        payload=command.payload,
        deliver_when_offline=command.deliver_when_offline,
        requested_by=requested_by,
        api_token=api_token,
        system=system,
        retry_of=command,
    )


# --- Delivery: the consumer's side -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """A command claimed for sending: what goes into the CALL."""

    command_pk: int
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Holder:
    """The charger a connection holds, as its command events name it."""

    pk: int
    identity: str
    organization_id: int


def _move(command: Command, target: CommandState, charger: Any, **fields: Any) -> bool:
    """Move a command on from the state it was read in, in one conditional UPDATE (no lock is
    held): False when the machine refuses the move, or when someone moved it first.

    ``charger`` names the command's charger for the event (a Charger or a Holder).
    """
    try:
        state = transition(command.state, target)
    except IllegalTransition as exc:
        logger.info("command %s: %s", command.pk, exc)
        return False
    if target in FINISHED:
        fields.setdefault("finished_at", timezone.now())
    match = {"message_id": command.message_id} if command.state == CommandState.SENT else {}
    moved = Command.objects.filter(pk=command.pk, state=command.state, **match).update(
        state=state, **fields
    )
    if not moved:
        return False
    command.state = state
    for name, value in fields.items():
        setattr(command, name, value)
    _publish(command, charger)
    return True


def _sent(
    command_pk: int, charger: Holder, action: str, payload: dict[str, Any], message_id: str
) -> Command:
    """A sent command as its connection knows it, without reading the row."""
    return Command(
        pk=command_pk,
        charger_id=charger.pk,
        action=action,
        payload=payload,
        state=CommandState.SENT,
        message_id=message_id,
        remote_start_id=payload.get("remoteStartId")
        if action == "RequestStartTransaction"
        else None,
    )


def commands_waiting(*, charger_pk: int) -> list[int]:
    """The charger's commands waiting to be sent, oldest first."""
    return list(
        Command.objects.filter(charger_id=charger_pk, state__in=list(WAITING))
        .order_by("id")
        .values_list("pk", flat=True)
    )


def commands_mark_queued(*, command_pks: list[int], charger: Holder) -> int:
    """Requested commands now wait in their connection's queue behind another CALL; one UPDATE
    for them all. Returns how many moved.

    The rows are locked (in pk order) as they are read, so a claim written meanwhile by the group
    commit either comes first, and the command is not read, or waits: no "queued" event for a
    command already sent."""
    transition(CommandState.REQUESTED, CommandState.QUEUED)
    with transaction.atomic():
        actions = dict(
            Command.objects.select_for_update(no_key=True)
            .filter(pk__in=command_pks, charger_id=charger.pk, state=CommandState.REQUESTED)
            .order_by("pk")
            .values_list("pk", "action")
        )
        moved = Command.objects.filter(pk__in=list(actions)).update(state=CommandState.QUEUED)
        for pk, action in actions.items():
            _publish(Command(pk=pk, action=action, state=CommandState.QUEUED), charger)
    return moved


def command_claim(
    *, command_pk: int, charger: Holder, version: str, message_id: str
) -> Claim | None:
    """Mark a waiting command of this charger sent with ``message_id``; None when it is not
    waiting (any more) or not this charger's."""
    command = (
        Command.objects.filter(pk=command_pk, charger_id=charger.pk, state__in=list(WAITING))
        .only(
            "pk",
            "action",
            "payload",
            "ocpp_version",
            "state",
            "message_id",
            "response_status",
            "error_code",
        )
        .first()
    )
    if command is None:
        return None
    if command.ocpp_version != version:
        _move(
            command,
            CommandState.FAILED,
            charger,
            error_code="VersionChanged",
            error_description=(
                f"The charger now speaks OCPP {version}; the command was made for "
                f"OCPP {command.ocpp_version}."
            ),
        )
        return None
    if not _move(
        command, CommandState.SENT, charger, message_id=message_id, sent_at=timezone.now()
    ):
        return None
    return Claim(command_pk=command.pk, action=command.action, payload=command.payload)


@dataclass(frozen=True, slots=True)
class ClaimIn:
    """A connection's claim of a command, for ``command_claim_many``."""

    command_pk: int
    charger: Holder
    version: str
    message_id: str


def command_claim_many(*, claims: list[ClaimIn]) -> list[Claim | None]:
    """``command_claim`` for many connections' commands in one transaction; each one's Claim (or
    None), in order.

    On PostgreSQL one UPDATE (``_claims_update``) marks sent every command still waiting, of the
    claim's charger and made for its OCPP version. The others go through ``command_claim``, which
    fails a command made for another version and finds the rest not claimable; so does a second
    claim of a command in the batch, after the first, as it would one after the other. Elsewhere
    each claim goes through ``command_claim``.
    """
    postgresql = connections[router.db_for_write(Command)].vendor == "postgresql"
    with transaction.atomic():
        if not postgresql:
            return [_claim(item) for item in claims]
        first: dict[int, int] = {}
        for index, item in enumerate(claims):
            first.setdefault(item.command_pk, index)
        now = timezone.now()
        sent = _claims_update([claims[index] for index in first.values()], now)
        results: list[Claim | None] = []
        for index, item in enumerate(claims):
            row = sent.get(item.command_pk) if first[item.command_pk] == index else None
            if row is None:
                results.append(_claim(item))
                continue
            action, payload, response_status, error_code = row
            command = Command(
                pk=item.command_pk,
                charger_id=item.charger.pk,
                action=action,
                payload=payload,
                ocpp_version=item.version,
                state=CommandState.SENT,
                message_id=item.message_id,
                sent_at=now,
                response_status=response_status,
                error_code=error_code,
            )
            _publish(command, item.charger)
            results.append(Claim(command_pk=command.pk, action=action, payload=payload))
    return results


def _claim(item: ClaimIn) -> Claim | None:
    return command_claim(
        command_pk=item.command_pk,
        charger=item.charger,
        version=item.version,
        message_id=item.message_id,
    )


def _columns(db: Any) -> dict[str, str]:
    """The command table's columns by field name, quoted for ``db``."""
    return {field.name: db.ops.quote_name(field.column) for field in Command._meta.concrete_fields}


def _claims_update(
    claims: list[ClaimIn], now: datetime
) -> dict[int, tuple[str, dict[str, Any], str, str]]:
    """Mark each claimed command sent with its claim's message id, in one statement, if it still
    waits, is the claim's charger's and was made for its OCPP version (give each command once).
    Of those that moved, by pk: action, payload, response status and error code.

    The rows are locked in ascending pk order, as ``bulk.rows_update`` locks them: two batches
    claiming the same commands may wait for each other, never in a circle.
    """
    if not claims:
        return {}
    for state in WAITING:
        transition(state, CommandState.SENT)  # the statement makes these moves
    db = connections[router.db_for_write(Command)]
    claims = sorted(claims, key=lambda item: item.command_pk)
    table = db.ops.quote_name(Command._meta.db_table)
    c = _columns(db)
    pk, key = c["id"], Command._meta.pk.db_type(db)
    waiting = sorted(WAITING)
    with db.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS target"
            f" SET {c['state']} = %s, {c['message_id']} = new.message_id, {c['sent_at']} = %s"
            f" FROM (SELECT {pk} FROM {table} WHERE {pk} = ANY(%s::{key}[])"
            f" AND {c['state']} = ANY(%s::text[]) ORDER BY {pk} FOR NO KEY UPDATE) AS locked,"
            f" unnest(%s::{key}[], %s::{key}[], %s::text[], %s::text[])"
            " AS new(id, charger_id, ocpp_version, message_id)"
            f" WHERE target.{pk} = locked.{pk} AND new.id = locked.{pk}"
            f" AND target.{c['state']} = ANY(%s::text[])"
            f" AND target.{c['charger']} = new.charger_id"
            f" AND target.{c['ocpp_version']} = new.ocpp_version"
            f" RETURNING target.{pk}, target.{c['action']}, target.{c['payload']},"
            f" target.{c['response_status']}, target.{c['error_code']}",
            [
                CommandState.SENT.value,
                now,
                [item.command_pk for item in claims],
                waiting,
                [item.command_pk for item in claims],
                [item.charger.pk for item in claims],
                [item.version for item in claims],
                [item.message_id for item in claims],
                waiting,
            ],
        )
        rows = cursor.fetchall()
    # jsonb comes back as text, as the ORM reads it (django.db.backends.postgresql).
    return {
        pk: (action, json.loads(value) if isinstance(value, str) else value, status, code)
        for pk, action, value, status, code in rows
    }


def _answer_outcome(
    action: str, version: str, message_id: str, answer: protocol.CallResult | protocol.CallError
) -> tuple[CommandState, dict[str, Any]]:
    """What an answer makes of its sent command: the state it moves to and the fields it sets
    (checked against the action's schema; an answer that breaks it is an error)."""
    now = timezone.now()
    if isinstance(answer, protocol.CallError):
        return CommandState.ERROR, {
            "answered_at": now,
            "error_code": answer.code[:50],
            "error_description": answer.description,
            "response": answer.details or None,
        }
    try:
        protocol.validate(protocol.CALLRESULT, action, answer.payload, version, message_id)
    except protocol.FrameError as exc:
        return CommandState.ERROR, {
            "answered_at": now,
            "response": answer.payload,
            "error_code": exc.code,
            "error_description": f"The charger's answer does not match the schema: {exc.description}",
        }
    state, status = outcome(answer.payload)
    return state, {"answered_at": now, "response": answer.payload, "response_status": status}


def _has_effects(action: str, target: CommandState) -> bool:
    """Whether the answer tells us something to keep beside the command (``_EFFECTS``)."""
    return target != CommandState.ERROR and action in _EFFECTS


def _answer_keep(
    command: Command, target: CommandState, fields: dict[str, Any], charger: Holder
) -> str:
    """Move a sent command as its answer says, with what the answer tells us; its new state, or
    "" when it no longer waits for this answer."""
    effects = _has_effects(command.action, target)
    # What the answer tells us is kept with the answer, or not at all.
    with transaction.atomic() if effects else nullcontext():
        if not _move(command, target, charger, **fields):
            return ""
        if effects:
            _EFFECTS[command.action](command)
    return command.state


def command_answer_record(
    *,
    command_pk: int,
    charger: Holder,
    action: str,
    payload: dict[str, Any],
    message_id: str,
    version: str,
    answer: protocol.CallResult | protocol.CallError,
) -> str:
    """Record the charger's answer to a sent command, with what the answer tells us; returns the
    command's new state ("" when the command no longer waits for this answer)."""
    target, fields = _answer_outcome(action, version, message_id, answer)
    return _answer_keep(
        _sent(command_pk, charger, action, payload, message_id), target, fields, charger
    )


@dataclass(frozen=True, slots=True)
class AnswerIn:
    """A charger's answer to its command in flight, for ``command_answer_record_many``."""

    command_pk: int
    charger: Holder
    action: str
    payload: dict[str, Any]
    message_id: str
    version: str
    answer: protocol.CallResult | protocol.CallError


def command_answer_record_many(*, answers: list[AnswerIn]) -> list[str]:
    """``command_answer_record`` for many chargers' answers in one transaction; each one's new
    state ("" when its command no longer waits for it), in order.

    On PostgreSQL the answers with nothing to keep beside the command, and those whose effects
    can be kept for many at once (``_BATCH_EFFECTS``: ChangeConfiguration), move their commands
    in one UPDATE (``_answers_update``); those effects follow in one statement each. Any other
    answer with effects (``_EFFECTS``) is recorded on its own, with them, and so is a second
    answer to a command in the batch, after the first, as it would be one after the other (a
    charger has one CALL in flight, so one batch holds one answer of each charger's). Elsewhere
    each answer is recorded on its own.
    """
    postgresql = connections[router.db_for_write(Command)].vendor == "postgresql"
    with transaction.atomic():
        if not postgresql:
            return [_answer_record(item) for item in answers]
        outcomes = [
            _answer_outcome(item.action, item.version, item.message_id, item.answer)
            for item in answers
        ]
        first: dict[int, int] = {}
        for index, item in enumerate(answers):
            first.setdefault(item.command_pk, index)
        batched: dict[int, Command] = {}
        for index, (item, (target, fields)) in enumerate(zip(answers, outcomes, strict=True)):
            if first[item.command_pk] != index or (
                _has_effects(item.action, target) and item.action not in _BATCH_EFFECTS
            ):
                continue
            try:
                transition(CommandState.SENT, target)
            except IllegalTransition:
                continue  # refused (and logged) by _move on its own
            if target in FINISHED:
                fields.setdefault("finished_at", timezone.now())
            batched[index] = _sent(
                item.command_pk, item.charger, item.action, item.payload, item.message_id
            )
        moved = _answers_update([(batched[index], *outcomes[index]) for index in sorted(batched)])
        results: list[str] = []
        effects: dict[str, list[Command]] = {}
        for index, (item, (target, fields)) in enumerate(zip(answers, outcomes, strict=True)):
            command = batched.get(index)
            if command is None:
                command = _sent(
                    item.command_pk, item.charger, item.action, item.payload, item.message_id
                )
                results.append(_answer_keep(command, target, fields, item.charger))
            elif command.pk in moved:
                # As _move leaves it.
                command.state = target
                for name, value in fields.items():
                    setattr(command, name, value)
                _publish(command, item.charger)
                results.append(command.state)
                if _has_effects(item.action, target):
                    effects.setdefault(item.action, []).append(command)
            else:
                results.append("")
        # What the answers tell us, kept with them (in this transaction).
        for action, commands in effects.items():
            _BATCH_EFFECTS[action](commands)
    return results


# Set by every answer (``_answer_outcome``), and set by some only (kept as they are by others).
_ANSWER_SETS = ("answered_at", "response")
_ANSWER_MAY_SET = ("response_status", "error_code", "error_description", "finished_at")


def _answers_update(rows: list[tuple[Command, CommandState, dict[str, Any]]]) -> set[int]:
    """Move sent commands to the state their answers give, with the fields they set, in one
    statement; the pks of those that moved. A command moves only if it is still sent with the
    answer's message id, as ``_move`` checks (give each command once).

    The rows are locked in ascending pk order, as ``bulk.rows_update`` locks them: two batches
    writing the same commands may wait for each other, never in a circle.
    """
    if not rows:
        return set()
    db = connections[router.db_for_write(Command)]
    rows = sorted(rows, key=lambda row: row[0].pk)
    for _, _, fields in rows:
        assert set(fields) <= {*_ANSWER_SETS, *_ANSWER_MAY_SET}, fields
    table = db.ops.quote_name(Command._meta.db_table)
    c = _columns(db)
    pk, key = c["id"], Command._meta.pk.db_type(db)
    moment = Command._meta.get_field("answered_at").db_type(db)
    kept = ", ".join(
        f"{c[name]} = COALESCE(new.{name}, target.{c[name]})" for name in _ANSWER_MAY_SET
    )
    response = [fields["response"] for _, _, fields in rows]
    with db.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS target SET {c['state']} = new.state,"
            f" {c['answered_at']} = new.answered_at, {c['response']} = new.response::jsonb, {kept}"
            f" FROM (SELECT {pk} FROM {table} WHERE {pk} = ANY(%s::{key}[])"
            f" AND {c['state']} = %s ORDER BY {pk} FOR NO KEY UPDATE) AS locked,"
            f" unnest(%s::{key}[], %s::text[], %s::text[], %s::{moment}[], %s::text[],"
            f" %s::text[], %s::text[], %s::text[], %s::{moment}[])"
            " AS new(id, message_id, state, answered_at, response,"
            " response_status, error_code, error_description, finished_at)"
            f" WHERE target.{pk} = locked.{pk} AND new.id = locked.{pk}"
            f" AND target.{c['state']} = %s AND target.{c['message_id']} = new.message_id"
            f" RETURNING target.{pk}",
            [
                [command.pk for command, _, _ in rows],
                CommandState.SENT.value,
                [command.pk for command, _, _ in rows],
                [command.message_id for command, _, _ in rows],
                [target.value for _, target, _ in rows],
                [fields["answered_at"] for _, _, fields in rows],
                [None if value is None else json.dumps(value) for value in response],
                *([fields.get(name) for _, _, fields in rows] for name in _ANSWER_MAY_SET),
                CommandState.SENT.value,
            ],
        )
        return {row[0] for row in cursor.fetchall()}


def _answer_record(item: AnswerIn) -> str:
    return command_answer_record(
        command_pk=item.command_pk,
        charger=item.charger,
        action=item.action,
        payload=item.payload,
        message_id=item.message_id,
        version=item.version,
        answer=item.answer,
    )


def command_timeout(
    *, command_pk: int, charger: Holder, action: str, message_id: str, seconds: float
) -> bool:
    """The charger did not answer a sent command in time."""
    return _move(
        _sent(command_pk, charger, action, {}, message_id),
        CommandState.TIMEOUT,
        charger,
        error_code="Timeout",
        error_description=f"The charger did not answer within {seconds:g} s.",
    )


def _offline(command: Command, reason: str) -> bool:
    """A waiting command whose charger has gone: it waits on if it may, else it failed."""
    if command.deliver_when_offline:
        if command.state == CommandState.QUEUED:
            return False
        return _move(command, CommandState.QUEUED, command.charger)
    return _move(
        command,
        CommandState.FAILED,
        command.charger,
        error_code="Offline",
        error_description=reason,
    )


def commands_connection_closed(
    *,
    charger: Holder,
    channel_name: str,
    in_flight: tuple[int, str] | None,
) -> None:
    """A charger's connection closed: the CALL in flight (command, message id) failed, as its
    answer can never come, and the commands waiting for the charger stay queued if they may
    wait, else they failed.

    Called before the connection is marked closed. When a newer connection already holds the
    charger, the waiting commands are left to it.
    """
    if in_flight is not None:
        command_pk, message_id = in_flight
        command = Command.objects.filter(
            pk=command_pk, message_id=message_id, state=CommandState.SENT
        ).first()
        if command is not None:
            _move(
                command,
                CommandState.FAILED,
                charger,
                error_code="ConnectionClosed",
                error_description="The connection closed before the charger answered.",
            )
    if not Charger.objects.filter(pk=charger.pk, channel_name=channel_name).exists():
        return
    for command in (
        Command.objects.select_related("charger")
        .filter(charger_id=charger.pk, state__in=list(WAITING))
        .order_by("id")
    ):
        _offline(command, "The charger disconnected before the command was sent.")


def commands_requested_on(*, channels: frozenset[str]) -> list[tuple[int, str]]:
    """Requested commands of chargers whose sockets those consumers hold: (command, channel).

    On the embedded default this is how a command created in another process (which the
    in-memory channel layer cannot reach) gets to the process holding the socket.
    """
    rows = Command.objects.filter(
        state=CommandState.REQUESTED, charger__connected=True
    ).values_list("pk", "charger__channel_name")
    return [(pk, channel) for pk, channel in rows.order_by("id")[:5000] if channel in channels]


# --- The sweep ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepResult:
    timed_out: int = 0
    failed: int = 0
    queued: int = 0
    redelivered: int = 0


def commands_sweep(*, now: datetime | None = None) -> SweepResult:
    """Make the rows true again where a message or a process was lost.

    - sent long ago and never answered (the connection's process died): timeout;
    - requested for a charger that is offline now: queued if it may wait, else failed;
    - waiting too long (``CPMS_COMMAND_QUEUE_TTL``; a requested one: as long as a CALL's
      answer may take, twice): timeout;
    - waiting for a connected charger for a few seconds: sent to its connection again (a lost
      channel-layer message, or a reconnect the connection's own pick-up missed).
    """
    now = now or timezone.now()
    call_timeout = settings.CPMS_CALL_TIMEOUT
    timed_out = failed = queued = redelivered = 0
    stale_sent = now - timedelta(seconds=2 * call_timeout + SWEEP_GRACE_SECONDS)
    stale_requested = now - timedelta(seconds=2 * call_timeout + SWEEP_GRACE_SECONDS)
    stale_queued = now - timedelta(seconds=settings.CPMS_COMMAND_QUEUE_TTL)
    # Each move is one conditional UPDATE: a connection moving the same row first wins.
    for command in _rows(state=CommandState.SENT, sent_at__lt=stale_sent):
        timed_out += _move(
            command,
            CommandState.TIMEOUT,
            command.charger,
            error_code="Timeout",
            error_description="No answer was recorded; the connection that sent it is gone.",
        )
    for command in _rows(state=CommandState.REQUESTED, charger__connected=False):
        if _offline(command, "The charger went offline before the command was sent."):
            queued += command.state == CommandState.QUEUED
            failed += command.state == CommandState.FAILED
    for command in _rows(state=CommandState.REQUESTED, created_at__lt=stale_requested):
        timed_out += _move(
            command,
            CommandState.TIMEOUT,
            command.charger,
            error_code="NotDelivered",
            error_description="The charger's connection never took the command.",
        )
    for command in _rows(state=CommandState.QUEUED, created_at__lt=stale_queued):
        timed_out += _move(
            command,
            CommandState.TIMEOUT,
            command.charger,
            error_code="NotDelivered",
            error_description=(
                f"The charger did not connect within {settings.CPMS_COMMAND_QUEUE_TTL} s."
            ),
        )
    waiting: dict[int, tuple[Charger, list[int]]] = {}
    for command in (
        Command.objects.select_related("charger")
        .filter(
            state__in=list(WAITING),
            charger__connected=True,
            created_at__lt=now - timedelta(seconds=REDELIVER_AFTER_SECONDS),
        )
        .order_by("id")[:5000]
    ):
        waiting.setdefault(command.charger_id, (command.charger, []))[1].append(command.pk)
    for charger, pks in waiting.values():
        if reachable(charger.channel_name):
            _deliver(charger, pks)
            redelivered += len(pks)
    return SweepResult(timed_out=timed_out, failed=failed, queued=queued, redelivered=redelivered)


def _rows(**filters: Any) -> list[Command]:
    return list(Command.objects.select_related("charger").filter(**filters).order_by("id")[:1000])


# --- What an answer tells us -------------------------------------------------------------------------


def _get_configuration(command: Command) -> None:
    answer = command.response or {}
    now = command.answered_at or timezone.now()
    rows = [
        ChargerConfigurationKey(
            charger_id=command.charger_id,
            key=str(item["key"])[:50],
            value=str(item.get("value", ""))[:500],
            has_value="value" in item,
            readonly=bool(item.get("readonly", False)),
            reported_at=now,
            command=command,
        )
        for item in answer.get("configurationKey") or []
    ]
    if rows:
        ChargerConfigurationKey.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["charger", "key"],
            update_fields=["value", "has_value", "readonly", "reported_at", "command"],
        )
    unknown = [str(key) for key in answer.get("unknownKey") or []]
    if unknown:
        # Keys the charger says it does not have are no longer part of what it reports.
        ChargerConfigurationKey.objects.filter(
            charger_id=command.charger_id, key__in=unknown
        ).delete()


def _change_configuration(command: Command) -> None:
    _change_configurations([command])


def _change_configurations(commands: list[Command]) -> None:
    """The values accepted ChangeConfigurations set, in one upsert for any number of chargers
    (a group commit's answers): the last command's value of a key wins, as one by one, and the
    rows are written in key order, so two upserts of the same keys cannot wait in a circle."""
    rows: dict[tuple[int, str], ChargerConfigurationKey] = {}
    for command in commands:
        if command.state != CommandState.ACCEPTED:
            continue
        key = str(command.payload["key"])[:50]
        rows[(command.charger_id, key)] = ChargerConfigurationKey(
            charger_id=command.charger_id,
            key=key,
            value=str(command.payload["value"])[:500],
            has_value=True,
            reported_at=command.answered_at or timezone.now(),
            command=command,
        )
    if not rows:
        return
    ChargerConfigurationKey.objects.bulk_create(
        [row for _, row in sorted(rows.items())],
        update_conflicts=True,
        unique_fields=["charger", "key"],
        update_fields=["value", "has_value", "reported_at", "command"],
    )


def _device_values(
    command: Command, values: list[tuple[devicemodel.VariableRef, str, str]]
) -> None:
    """Set attribute values of the charger's device model, adding variables it did not report yet."""
    if not values:
        return
    refs = {ref.key: ref for ref, _, _ in values}
    existing = dict(
        DeviceVariable.objects.filter(
            charger_id=command.charger_id, key__in=list(refs)
        ).values_list("key", "pk")
    )
    missing = [ref for key, ref in refs.items() if key not in existing]
    if missing:
        DeviceVariable.objects.bulk_create(
            [
                DeviceVariable(charger_id=command.charger_id, key=ref.key, **ref.fields())
                for ref in missing
            ],
            ignore_conflicts=True,
        )
        existing = dict(
            DeviceVariable.objects.filter(
                charger_id=command.charger_id, key__in=list(refs)
            ).values_list("key", "pk")
        )
    DeviceVariableAttribute.objects.bulk_create(
        [
            DeviceVariableAttribute(variable_id=existing[ref.key], type=attribute_type, value=value)
            for ref, attribute_type, value in values
        ],
        update_conflicts=True,
        unique_fields=["variable", "type"],
        update_fields=["value", "has_value"],
    )


def _get_variables(command: Command) -> None:
    values = [
        (
            devicemodel.variable_ref(item["component"], item["variable"]),
            str(item.get("attributeType") or "Actual"),
            str(item["attributeValue"]),
        )
        for item in (command.response or {}).get("getVariableResult") or []
        if item.get("attributeStatus") == "Accepted" and "attributeValue" in item
    ]
    _device_values(command, values)


def _set_variables(command: Command) -> None:
    accepted = {
        (
            devicemodel.variable_ref(item["component"], item["variable"]).key,
            str(item.get("attributeType") or "Actual"),
        )
        for item in (command.response or {}).get("setVariableResult") or []
        if item.get("attributeStatus") in ("Accepted", "RebootRequired")
    }
    values = []
    for item in command.payload.get("setVariableData") or []:
        ref = devicemodel.variable_ref(item["component"], item["variable"])
        attribute_type = str(item.get("attributeType") or "Actual")
        if (ref.key, attribute_type) in accepted:
            values.append((ref, attribute_type, str(item["attributeValue"])))
    _device_values(command, values)


def _data_transfer(command: Command) -> None:
    answer = command.response or {}
    data = command.payload.get("data", "")
    reply = answer.get("data", "")
    DataTransferRecord.objects.create(
        charger_id=command.charger_id,
        direction=Frame.Direction.OUT,
        vendor_id=str(command.payload["vendorId"]),
        message_id=str(command.payload.get("messageId", "")),
        data=data if isinstance(data, str) else protocol.dumps(data),
        response_status=str(answer.get("status", "")),
        response_data=reply if isinstance(reply, str) else protocol.dumps(reply),
    )


def _request_start(command: Command) -> None:
    """A 2.x charger that started the transaction already names it in its answer."""
    transaction_id = (command.response or {}).get("transactionId")
    if command.session_id is not None or not transaction_id:
        return
    session = Session.objects.filter(
        charger_id=command.charger_id, transaction_id=str(transaction_id)
    ).first()
    if session is not None:
        _link(command, session)


_EFFECTS = {
    "GetConfiguration": _get_configuration,
    "ChangeConfiguration": _change_configuration,
    "GetVariables": _get_variables,
    "SetVariables": _set_variables,
    "DataTransfer": _data_transfer,
    "RequestStartTransaction": _request_start,
}
# Effects a group commit's answers can keep together: each command's own, for a batch of them.
_BATCH_EFFECTS = {"ChangeConfiguration": _change_configurations}


# --- Remote starts and their sessions -----------------------------------------------------------------


def _link(command: Command, session: Session) -> None:
    command.session = session
    command.save(update_fields=["session"])
    if session.remote_start_id is None and command.remote_start_id is not None:
        session.remote_start_id = command.remote_start_id
        Session.objects.filter(pk=session.pk).update(remote_start_id=command.remote_start_id)


def remote_start_link(*, session: Session) -> Command | None:
    """Link a new session to the remote start that asked for it.

    1.6 names no request in StartTransaction: the session belongs to the latest remote start of
    its charger, sent (or accepted) in the last minutes, for its id tag and (if the request named
    one) its connector. 2.x sessions carry the remoteStartId of their request.
    """
    version = session.ocpp_version or "1.6"
    action = REMOTE_START.get(version)
    if action is None:
        return None
    candidates = Command.objects.filter(
        charger_id=session.charger_id, action=action, session__isnull=True
    )
    if version == "1.6":
        if not session.id_tag:
            return None
        candidates = candidates.filter(
            state__in=[CommandState.SENT, CommandState.ACCEPTED],
            created_at__gte=timezone.now() - REMOTE_START_WINDOW,
            payload__idTag=session.id_tag,
        )
        command = next(
            (
                c
                for c in candidates.order_by("-id")[:20]
                if c.payload.get("connectorId") in (None, session.connector_number)
            ),
            None,
        )
    else:
        if session.remote_start_id is None:
            return None
        command = candidates.filter(remote_start_id=session.remote_start_id).order_by("-id").first()
    if command is not None:
        _link(command, session)
    return command
