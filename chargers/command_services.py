"""Commands to a charger: create and retry them, and record each step of their delivery.

API, dashboard and Celery create a ``Command`` row and send a small channel-layer message with its
id to the consumer holding the charger's socket, on whichever node it is. That consumer claims the
row, sends the CALL and records the answer here; every change is published as a
``command.updated`` event. The channel layer delivers at most once, so the row is the truth:
``commands_sweep`` times out what was never answered and sends waiting commands again.

Every function is synchronous; the consumer calls them through one ``database_sync_to_async`` hop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from cpms.models import ApiToken
from routing.selectors import controlling_upstream

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
    transaction.on_commit(
        lambda: events.notify(
            EVENT_KIND, organization_pk=organization_pk, charger=identity, data=data
        )
    )


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
    may wait for it (``CommandRefused``). Who asked is a user, an API token, or a part of the
    system named by ``system``.
    """
    # The caller's copy may be old: connection state changes all the time.
    current = (
        Charger.objects.filter(pk=charger.pk)
        .values("ocpp_version", "connected", "channel_name", "identity", "organization_id")
        .first()
    )
    if current is None:
        raise CommandRefused("The charger no longer exists.")
    controller = controlling_upstream(
        charger_pk=charger.pk, organization_pk=current["organization_id"]
    )
    if controller is not None:
        raise ControlledElsewhere(current["identity"], controller)
    version = current["ocpp_version"]
    if not version:
        raise CommandRefused(
            f"{current['identity']} has never connected, so its OCPP version (and with it the "
            "commands it takes) is not known yet."
        )
    _validated(action, payload, version)
    connected = current["connected"]
    if not connected and not deliver_when_offline:
        raise ChargerOffline(current["identity"])
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
        holder = Charger(
            pk=charger.pk,
            identity=current["identity"],
            organization_id=current["organization_id"],
            channel_name=current["channel_name"],
        )
        channel = (
            current["channel_name"] if connected and reachable(current["channel_name"]) else ""
        )
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
    for them all. Returns how many moved."""
    transition(CommandState.REQUESTED, CommandState.QUEUED)
    waiting = Command.objects.filter(
        pk__in=command_pks, charger_id=charger.pk, state=CommandState.REQUESTED
    )
    actions = dict(waiting.values_list("pk", "action"))
    moved = waiting.filter(pk__in=list(actions)).update(state=CommandState.QUEUED)
    if moved:
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
    command = _sent(command_pk, charger, action, payload, message_id)
    now = timezone.now()
    if isinstance(answer, protocol.CallError):
        target, fields = (
            CommandState.ERROR,
            {
                "answered_at": now,
                "error_code": answer.code[:50],
                "error_description": answer.description,
                "response": answer.details or None,
            },
        )
    else:
        try:
            protocol.validate(protocol.CALLRESULT, action, answer.payload, version, message_id)
        except protocol.FrameError as exc:
            target, fields = (
                CommandState.ERROR,
                {
                    "answered_at": now,
                    "response": answer.payload,
                    "error_code": exc.code,
                    "error_description": f"The charger's answer does not match the schema: {exc.description}",
                },
            )
        else:
            state, status = outcome(answer.payload)
            target, fields = (
                state,
                {"answered_at": now, "response": answer.payload, "response_status": status},
            )
    effects = target != CommandState.ERROR and action in _EFFECTS
    # What the answer tells us is kept with the answer, or not at all.
    with transaction.atomic() if effects else nullcontext():
        if not _move(command, target, charger, **fields):
            return ""
        if effects:
            _EFFECTS[action](command)
    return command.state


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


def _answer_effects(command: Command) -> None:
    """Keep what an answer reports: configuration keys, device model values, data transfers,
    the session a remote start began."""
    handler = _EFFECTS.get(command.action)
    if handler is not None:
        handler(command)


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
    if command.state != CommandState.ACCEPTED:
        return
    ChargerConfigurationKey.objects.bulk_create(
        [
            ChargerConfigurationKey(
                charger_id=command.charger_id,
                key=str(command.payload["key"])[:50],
                value=str(command.payload["value"])[:500],
                has_value=True,
                reported_at=command.answered_at or timezone.now(),
                command=command,
            )
        ],
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
