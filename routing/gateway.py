"""The live path: a charger's stream to its upstreams, from the gateway process holding its socket.

A ``Router`` serves one charger connection whose route is more than ``local`` alone. Each remote
upstream is an ``UpstreamLeg``, an asyncio task holding a WebSocket client connection (the
``websockets`` library) with its own message ids; ``local`` as an observer is a ``LocalObserver``
that feeds copies to the built-in handlers.

- A charger CALL goes to the primary with a fresh id; its answer returns under the charger's id.
  A primary that does not answer in time gets the charger a CALLERROR, never a made-up answer.
- Copies go to every observer through a durable, ordered outbox: an entry leaves it only once the
  observer answered, and is taken before it is sent, so two senders never both send it. An
  observer's refusal (CALLERROR) is counted on its leg and passed over; a 1.6 copy whose
  transaction has no id at the observer (its start refused, or sent before the observer was
  added) is dropped, counted with the reason, at once or after CPMS_ROUTING_HOLD_TIMEOUT.
  Observers' answers are journaled and otherwise dropped.
- The primary's CALLs (and an observer's, for the actions its policy allows) reach the charger
  with a fresh id, one CALL in flight at a time shared with local commands; the answer is mapped
  back. Protected configuration keys are refused to everyone.
- An observer that is down or slow never delays the charger: reconnects back off with jitter,
  pings find dead sockets, and on reconnect the cached BootNotification and latest statuses go
  first, then the backlog in order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import random
import ssl
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any

import websockets
from django.conf import settings

from chargers import protocol, services
from chargers.batching import FrameRow
from chargers.dbpool import database_sync_to_async
from chargers.models import Frame
from chargers.normalize import utc_now

from . import remap
from . import services as routing_services
from .models import LOCAL
from .selectors import (
    ResolvedLeg,
    ResolvedRoute,
    charger_replay_frames,
    route_for_charger_pk,
)

logger = logging.getLogger(__name__)

# The charger's socket is closed with this code when its primary stays unreachable.
CLOSE_PRIMARY_DOWN = 4001

# Charger CALLs that carry no state worth replaying: sent to a connected, idle observer only.
LIVE_ONLY_ACTIONS = frozenset({"Heartbeat"})
# Dropped first when an outbox reaches its bound (outside transactions only).
DROP_FIRST_ACTIONS = frozenset({"MeterValues", "Heartbeat"})
# How long ``local`` as an observer may take to record the copies it still holds when its leg
# closes (the charger left, or a route change): within daphne's application close timeout (10 s).
LOCAL_DRAIN_SECONDS = 5.0


def status_key(payload: dict[str, Any]) -> tuple[Any, Any]:
    """Which connector (per EVSE in 2.x) a StatusNotification is about."""
    return (payload.get("evseId"), payload.get("connectorId"))


class PrimaryUnavailable(Exception):
    """The primary could not take a CALL: it is unreachable or did not answer in time."""


def reconnect_delay(attempt: int, *, base: float, cap: float, rand: float) -> float:
    """Exponential backoff with jitter: between half and all of ``base * 2**attempt``, at most
    ``cap``; ``rand`` is a uniform draw in [0, 1)."""
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    return ceiling * (0.5 + rand / 2)


# --- Handshake --------------------------------------------------------------------------------


def login(*, identity: str, password: str | None, version: str) -> tuple[Any, ResolvedRoute]:
    """Authenticate the charger and resolve its route, on one database thread hop; a primary
    that does not speak the charger's OCPP version refuses the handshake."""
    credentials = services.charger_authenticate(identity=identity, password=password)
    route = route_for_charger_pk(
        charger_pk=credentials.charger_pk,
        organization_pk=credentials.organization_pk,
        identity=credentials.identity,
    )
    if not route.primary.accepts(version):
        raise services.Refused(
            f"the primary upstream {route.primary.upstream} of {identity} does not accept OCPP "
            f"{version}"
        )
    return credentials, route


def resolve(consumer: Any) -> ResolvedRoute:
    connection = consumer.connection
    return route_for_charger_pk(
        charger_pk=connection.charger_pk,
        organization_pk=connection.organization_pk,
        identity=connection.identity,
    )


async def reroute(consumer: Any) -> None:
    """Routes changed: follow this charger's new route, re-dialling only the legs that changed
    and keeping the charger's socket."""
    route = await database_sync_to_async(resolve)(consumer)
    router: Router | None = consumer.router
    if router is None:
        if route.is_local_only:
            return
        logger.info("%s now routes to %s", consumer.charger_identity, route)
        router = Router(consumer, route, password=consumer.charger_password)
        # The charger booted before it had upstreams: what it sent then is in the journal.
        frames = await database_sync_to_async(charger_replay_frames)(
            identity=consumer.charger_identity
        )
        for text in frames:
            with contextlib.suppress(protocol.FrameError):
                message = protocol.parse(text)
                if isinstance(message, protocol.Call):
                    router._remember(message)
        consumer.router = router
        await router.start()
        return
    if route.is_local_only:
        logger.info("%s now routes to local only", consumer.charger_identity)
        consumer.router = None
        await router.close()
        return
    await router.follow(route)


# --- Journal ----------------------------------------------------------------------------------


def _journal(
    consumer: Any,
    *,
    leg: str,
    direction: str,
    kind: int,
    message_id: str,
    action: str,
    raw: str,
    original: str = "",
) -> None:
    consumer.writer.add_frame(
        FrameRow(
            charger_pk=consumer.connection.charger_pk,
            charger_identity=consumer.charger_identity,
            direction=direction,
            kind=kind,
            message_id=message_id,
            action=action,
            raw=raw,
            timestamp=utc_now(),
            leg=leg,
            original_message_id=original,
        )
    )


def _answer_frame(message_id: str, answer: protocol.CallResult | protocol.CallError) -> str:
    if isinstance(answer, protocol.CallResult):
        return protocol.call_result(message_id, answer.payload)
    return protocol.call_error(message_id, answer.code, answer.description, answer.details)


@dataclass(slots=True)
class Relay:
    """An upstream's CALL sent on to the charger: whose it is and under which id it came."""

    leg: UpstreamLeg
    upstream_message_id: str
    action: str
    answered: asyncio.Future[None]


# Legs of this process by (charger, upstream): a newer connection's leg supersedes an older one.
_legs: dict[tuple[str, str], UpstreamLeg] = {}


def _sender_ended(task: asyncio.Task[None], *, ws: Any) -> None:
    """A leg's sender stopped on an error while its socket stays open: close the socket, so the
    leg reconnects and sends again from the outbox, instead of sitting idle."""
    if task.cancelled() or isinstance(
        task.exception(), ConnectionError | PrimaryUnavailable | type(None)
    ):
        return
    logger.error("a leg's sender failed; re-dialling", exc_info=task.exception())
    asyncio.get_running_loop().create_task(ws.close(1011, "sender failed"))


# --- The router -------------------------------------------------------------------------------


class Router:
    """One charger connection's upstreams."""

    def __init__(self, consumer: Any, route: ResolvedRoute, *, password: str | None):
        self.consumer = consumer
        self.route = route
        self.identity: str = consumer.charger_identity
        self.charger_pk: int = consumer.connection.charger_pk
        self.version: str = consumer.dispatcher.version
        self.subprotocol: str = consumer.subprotocol_name
        self.password = password
        self.primary: UpstreamLeg | None = None
        self.observers: dict[str, UpstreamLeg | LocalObserver] = {}
        # Cached for observers that (re)connect: the BootNotification and the latest
        # StatusNotification per connector (per EVSE and connector in 2.x).
        self.boot: protocol.Call | None = None
        self.statuses: dict[tuple[Any, Any], protocol.Call] = {}
        self.to_charger: dict[str, Relay] = {}
        # Charger CALLs on their way to the primary (not to be replayed to it as well).
        self.forwarding: set[str] = set()
        # Charger CALLs reach the primary in the order they came.
        self.primary_order = asyncio.Lock()
        self.watchdog: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closing = False
        # 1.6 transaction ids per upstream pk: each observer's, and the primary's own.
        self.maps: dict[int, remap.TransactionIds] = {}
        self.local_pk = 0

    # Starting and following route changes.

    async def start(self) -> None:
        self.local_pk, rows = await database_sync_to_async(routing_services.router_state)(
            charger_pk=self.charger_pk
        )
        for upstream_pk, start_id, charger_tx, upstream_tx in rows:
            ids = self.maps.setdefault(upstream_pk, remap.TransactionIds())
            if charger_tx is not None:
                ids.charger_assigned(start_id, charger_tx)
            if upstream_tx is not None:
                ids.upstream_assigned(start_id, upstream_tx)
        await self._open_legs(self.route.legs)

    async def _open_legs(self, legs: Iterable[ResolvedLeg]) -> None:
        for spec in legs:
            if spec.is_local:
                if not spec.is_primary:
                    self.observers[LOCAL] = LocalObserver(self, spec, self._ids(spec))
                continue
            if not spec.accepts(self.version):
                logger.warning(
                    "%s: %s %s does not accept OCPP %s; not dialled",
                    self.identity,
                    spec.role,
                    spec.upstream,
                    self.version,
                )
                if spec.is_primary:
                    # Nobody could answer the charger: its own offline queue takes over.
                    await self.consumer.close(code=CLOSE_PRIMARY_DOWN)
                    return
                continue
            leg = UpstreamLeg(self, spec, self._ids(spec))
            if spec.is_primary:
                self.primary = leg
                self._watch_primary()
                leg.start([])
            else:
                self.observers[spec.upstream] = leg
                pending = await database_sync_to_async(routing_services.outbox_pending)(
                    charger_pk=self.charger_pk, upstream_pk=leg.upstream_pk
                )
                leg.start(pending)

    def _ids(self, spec: ResolvedLeg) -> remap.TransactionIds:
        return self.maps.setdefault(spec.upstream_pk or 0, remap.TransactionIds())

    async def follow(self, route: ResolvedRoute) -> None:
        """Move to a new route: legs whose settings are unchanged stay as they are."""
        if route == self.route:
            return
        logger.info("%s now routes to %s", self.identity, route)
        keep = set(route.legs) & set(self.route.legs)
        closing: list[UpstreamLeg | LocalObserver] = []
        if self.primary is not None and self.primary.spec not in keep:
            closing.append(self.primary)
            self.primary = None
            if self.watchdog is not None:
                self.watchdog.cancel()
                self.watchdog = None
        for name, observer in list(self.observers.items()):
            if observer.spec not in keep:
                closing.append(self.observers.pop(name))
        self.route = route
        for leg in closing:
            await leg.close()
        await self._open_legs(spec for spec in route.legs if spec not in keep)

    async def close(self) -> None:
        self.closing = True
        if self.watchdog is not None:
            self.watchdog.cancel()
        for task in list(self.tasks):
            task.cancel()
        legs: list[UpstreamLeg | LocalObserver] = list(self.observers.values())
        if self.primary is not None:
            legs.append(self.primary)
        for leg in legs:
            await leg.close()
        for relay in self.to_charger.values():
            if not relay.answered.done():
                relay.answered.set_result(None)
        self.to_charger.clear()

    def _spawn(self, work: Awaitable[Any], name: str) -> None:
        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s: %s failed", self.identity, name)

        task = asyncio.get_running_loop().create_task(run(), name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # The primary's reachability.

    def _watch_primary(self) -> None:
        if self.watchdog is None or self.watchdog.done():
            self.watchdog = asyncio.get_running_loop().create_task(
                self._primary_watchdog(), name=f"primary-watch:{self.identity}"
            )

    async def _primary_watchdog(self) -> None:
        primary = self.primary
        if primary is None:
            return
        grace = self.route.policy.primary_grace_seconds
        try:
            async with asyncio.timeout(grace):
                await primary.up.wait()
            return
        except TimeoutError:
            pass
        if self.closing or self.primary is not primary:
            return
        if self.route.policy.primary_down == "close":
            logger.warning(
                "%s: primary %s unreachable for %ss; closing the charger's connection",
                self.identity,
                primary.name,
                grace,
            )
            await self.consumer.close(code=CLOSE_PRIMARY_DOWN)
        else:
            logger.warning(
                "%s: primary %s unreachable for %ss; the charger stays connected",
                self.identity,
                primary.name,
                grace,
            )

    def leg_down(self, leg: UpstreamLeg, error: str) -> None:
        if self.closing:
            return
        if leg is self.primary:
            self._watch_primary()
        self._spawn(
            database_sync_to_async(routing_services.leg_alert_raise)(
                charger_pk=self.charger_pk, upstream=leg.name, role=leg.spec.role, error=error
            ),
            f"alert:{leg.name}",
        )

    def leg_up(self, leg: UpstreamLeg) -> None:
        """A leg connected: when every remote leg is up, an upstream_down alert clears."""
        legs = [o for o in self.observers.values() if isinstance(o, UpstreamLeg)]
        if self.primary is not None:
            legs.append(self.primary)
        if all(other.ws is not None for other in legs):
            self._spawn(
                database_sync_to_async(routing_services.leg_alert_clear)(
                    charger_pk=self.charger_pk
                ),
                "alert-clear",
            )

    # Frames from the charger.

    async def from_charger(self, text: str, received_at: Any) -> None:
        try:
            message: protocol.Message | None = protocol.parse(text)
        except protocol.FrameError:
            message = None
        if isinstance(message, protocol.CallResult | protocol.CallError):
            relay = self.to_charger.pop(message.message_id, None)
            if relay is not None:
                self.consumer._journal(
                    Frame.Direction.IN,
                    protocol.CALLRESULT
                    if isinstance(message, protocol.CallResult)
                    else protocol.CALLERROR,
                    message.message_id,
                    relay.action,
                    text,
                    received_at,
                )
                await relay.leg.answer(relay.upstream_message_id, relay.action, message)
                if not relay.answered.done():
                    relay.answered.set_result(None)
                return
        if self.primary is None and self.route.primary.is_local:
            outcome = await self.consumer.handle_locally(
                text, received_at, handled_text=self._as_local_sees(message, text)
            )
            if isinstance(message, protocol.Call):
                if message.action == "StartTransaction" and outcome.reply is not None:
                    self._started(message, outcome.reply)
                elif (
                    message.action == "StopTransaction"
                    and outcome.reply_kind == protocol.CALLRESULT
                ):
                    self._primary_stopped(message, self.local_pk)
                await self._copy(message)
            return
        # A remote primary answers; framing errors are answered here, as no upstream could.
        if message is None or not isinstance(message, protocol.Call):
            outcome = await self.consumer.dispatcher.handle_text(text)
            self.consumer._journal(
                Frame.Direction.IN,
                outcome.kind,
                outcome.message_id,
                outcome.action,
                text,
                received_at,
            )
            if outcome.reply is not None:
                await self.consumer.send(text_data=outcome.reply)
                self.consumer._journal(
                    Frame.Direction.OUT,
                    outcome.reply_kind,
                    outcome.message_id,
                    outcome.action,
                    outcome.reply,
                )
            return
        self.consumer._journal(
            Frame.Direction.IN, protocol.CALL, message.message_id, message.action, text, received_at
        )
        self.forwarding.add(message.message_id)
        self._spawn(self._to_primary(message), f"primary-call:{self.identity}")
        await self._copy(message)

    def _as_local_sees(self, message: protocol.Message | None, text: str) -> str:
        """The charger's frame as ``local``, the primary, must handle it: a transaction local
        observed under its own id while another upstream was primary (a cut-over in the middle
        of it) goes on under that upstream's id at the charger, and local gets its own back."""
        if not isinstance(message, protocol.Call) or self.version != "1.6":
            return text
        ids = self.maps.get(self.local_pk)
        if ids is None:
            return text
        payload = remap.to_upstream(message.action, message.payload, self.version, ids)
        if isinstance(payload, remap.Held) or payload is message.payload:
            # A transaction local issued, or one it never saw: the charger's id as it is.
            return text
        return protocol.call(message.message_id, message.action, payload)

    def local_command_payload(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A command of ``local`` (the primary) as the charger must get it: a transaction local
        knows under the id it issued while observing runs at the charger under the former
        primary's id (a cut-over in the middle of it)."""
        ids = self.maps.get(self.local_pk)
        if ids is None:
            return payload
        mapped = remap.to_charger(action, payload, self.version, ids)
        return payload if isinstance(mapped, remap.Unknown) else mapped

    def _primary_stopped(self, call: protocol.Call, primary_pk: int) -> None:
        """The primary answered a 1.6 StopTransaction: its map of the transaction is closed."""
        charger_id = call.payload.get("transactionId")
        if self.version != "1.6" or not primary_pk or not isinstance(charger_id, int):
            return
        ids = self.maps.get(primary_pk)
        upstream_id = ids.to_upstream(charger_id) if ids is not None else None
        if upstream_id is None:
            return
        self._spawn(
            database_sync_to_async(routing_services.transaction_map_stopped)(
                charger_pk=self.charger_pk,
                upstream_pk=primary_pk,
                upstream_transaction_id=upstream_id,
            ),
            f"txmap-stop:{self.identity}",
        )

    def _remember(self, call: protocol.Call) -> None:
        if call.action == "BootNotification":
            self.boot = call
            self.statuses.clear()
        elif call.action == "StatusNotification":
            self.statuses[status_key(call.payload)] = call

    def replay(self) -> list[protocol.Call]:
        """What an observer that (re)connects gets first: the boot, then the latest statuses."""
        return ([self.boot] if self.boot else []) + list(self.statuses.values())

    async def _copy(self, call: protocol.Call) -> None:
        """Copies of a charger CALL to every observer."""
        self._remember(call)
        if not self.observers:
            return
        remote = [leg for leg in self.observers.values() if isinstance(leg, UpstreamLeg)]
        for observer in self.observers.values():
            if isinstance(observer, LocalObserver):
                observer.copy(call)
        if not remote:
            return
        if call.action in LIVE_ONLY_ACTIONS:
            for leg in remote:
                leg.live(call)
            return
        transactional = remap.is_transactional(call.action, call.payload, self.version)
        pks = await database_sync_to_async(routing_services.outbox_append)(
            charger_pk=self.charger_pk,
            upstream_pks=[leg.upstream_pk for leg in remote],
            message_id=call.message_id,
            action=call.action,
            payload=call.payload,
            transactional=transactional,
        )
        for leg, pk in zip(remote, pks, strict=True):
            await leg.queued(
                routing_services.Queued(
                    pk, call.message_id, call.action, call.payload, transactional
                )
            )

    def _started(self, call: protocol.Call, reply: str) -> None:
        """The primary answered a 1.6 StartTransaction: the id the charger will use, for every
        observer's map (in memory at once, in the database soon after)."""
        if self.version != "1.6":
            return
        try:
            answer = protocol.parse(reply)
        except protocol.FrameError:
            return
        if not isinstance(answer, protocol.CallResult):
            return
        transaction_id = remap.start_transaction_id(answer.payload)
        if transaction_id is None:
            return
        # The primary issued this id: should it become an observer before the transaction ends
        # (a cut-over), its copies keep the id it knows instead of waiting for one it never sends.
        # Kept in the database too, so that a restart in the middle of the transaction keeps it.
        primary_pk = (
            self.local_pk if self.route.primary.is_local else self.route.primary.upstream_pk
        )
        if primary_pk:
            own = self.maps.setdefault(primary_pk, remap.TransactionIds())
            own.charger_assigned(call.message_id, transaction_id)
            own.upstream_assigned(call.message_id, transaction_id)
        observers = [leg for leg in self.observers.values() if leg.upstream_pk]
        for leg in observers:
            leg.tx.charger_assigned(call.message_id, transaction_id)
            leg.tx_changed()
        connector = call.payload.get("connectorId")
        self._spawn(
            database_sync_to_async(routing_services.transaction_map_charger_assigned)(
                charger_pk=self.charger_pk,
                upstream_pks=[leg.upstream_pk for leg in observers],
                start_message_id=call.message_id,
                connector_id=connector if isinstance(connector, int) else 0,
                transaction_id=transaction_id,
                issued_by=primary_pk or None,
            ),
            f"txmap:{self.identity}",
        )

    async def _to_primary(self, call: protocol.Call) -> None:
        primary = self.primary
        timeout = settings.CPMS_ROUTING_ANSWER_TIMEOUT
        try:
            if primary is None:
                raise PrimaryUnavailable("no primary upstream")
            await primary.wait_up(timeout)
            async with self.primary_order:
                waiter = await primary.send_call(call, wait_up=timeout)
                self.forwarding.discard(call.message_id)
            answer = await primary.answer_of(waiter, timeout)
            reply = _answer_frame(call.message_id, answer)
            kind = (
                protocol.CALLRESULT
                if isinstance(answer, protocol.CallResult)
                else protocol.CALLERROR
            )
            original = waiter[0]
        except PrimaryUnavailable as exc:
            self.forwarding.discard(call.message_id)
            name = primary.name if primary else "-"
            logger.info("%s: %s to primary %s: %s", self.identity, call.action, name, exc)
            reply = protocol.call_error(
                call.message_id,
                protocol.error_code("InternalError", self.version),
                f"the primary CSMS did not answer: {exc}"[:250],
            )
            kind, original = protocol.CALLERROR, ""
        if self.closing:
            return
        if call.action == "StartTransaction" and kind == protocol.CALLRESULT:
            self._started(call, reply)
        elif call.action == "StopTransaction" and kind == protocol.CALLRESULT and primary:
            self._primary_stopped(call, primary.upstream_pk)
        await self.consumer.send(text_data=reply)
        _journal(
            self.consumer,
            leg="charger",
            direction=Frame.Direction.OUT,
            kind=kind,
            message_id=call.message_id,
            action=call.action,
            raw=reply,
            original=original,
        )

    # CALLs from upstreams to the charger.

    async def from_upstream(self, leg: UpstreamLeg, call: protocol.Call) -> None:
        refusal = self._refusal(leg, call)
        payload: dict[str, Any] | remap.Unknown = call.payload
        if refusal is None and not leg.is_primary:
            payload = remap.to_charger(call.action, call.payload, self.version, leg.tx)
            if isinstance(payload, remap.Unknown):
                refusal = (
                    "PropertyConstraintViolation",
                    f"transaction {payload.transaction_id} is not one of this charger's",
                )
        if refusal is not None or isinstance(payload, remap.Unknown):
            code, description = refusal or ("GenericError", "")
            await leg.answer(
                call.message_id,
                call.action,
                protocol.CallError(
                    call.message_id, protocol.error_code(code, self.version), description, {}
                ),
            )
            return
        gate: asyncio.Lock = self.consumer.commands.gate
        async with gate:
            if self.closing or leg.closing:
                return
            message_id = str(uuid.uuid4())
            answered = asyncio.get_running_loop().create_future()
            self.to_charger[message_id] = Relay(leg, call.message_id, call.action, answered)
            # The dispatcher knows the id is ours, so the answer is not taken for a stray one.
            text = protocol.call(message_id, call.action, payload)
            await self.consumer.send(text_data=text)
            _journal(
                self.consumer,
                leg="charger",
                direction=Frame.Direction.OUT,
                kind=protocol.CALL,
                message_id=message_id,
                action=call.action,
                raw=text,
                original=call.message_id,
            )
            try:
                async with asyncio.timeout(settings.CPMS_CALL_TIMEOUT):
                    await asyncio.shield(answered)
            except TimeoutError:
                self.to_charger.pop(message_id, None)
                logger.info(
                    "%s did not answer %s from %s in time", self.identity, call.action, leg.name
                )

    def _refusal(self, leg: UpstreamLeg, call: protocol.Call) -> tuple[str, str] | None:
        if not leg.is_primary and call.action not in leg.spec.allowed_actions:
            return (
                "SecurityError",
                f"{leg.name} observes this charger and may not send {call.action}; "
                f"{self.route.primary.upstream} controls it",
            )
        key = remap.protected_key(call.action, call.payload, self.route.policy.protected_keys)
        if key is not None:
            return ("SecurityError", f"{key} is protected by the routing policy")
        return None


# --- Legs -------------------------------------------------------------------------------------


class UpstreamLeg:
    """One remote upstream of one charger connection: a WebSocket client with its own ids."""

    def __init__(self, router: Router, spec: ResolvedLeg, tx: remap.TransactionIds):
        self.router = router
        self.spec = spec
        self.name = spec.upstream
        self.upstream_pk: int = spec.upstream_pk or 0
        self.tx = tx
        self.ids = remap.MessageIds()
        self.up = asyncio.Event()
        self.ws: Any = None
        # Our CALLs awaiting this upstream's answer: its message id -> (action, the charger's
        # message id, the answer's arrival).
        self.pending: dict[
            str, tuple[str, str, asyncio.Future[protocol.CallResult | protocol.CallError]]
        ]
        self.pending = {}
        self.backlog: deque[routing_services.Queued] = deque()
        self._wake = asyncio.Event()
        self._tx_changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        self.connects = 0
        self.latency_ms: float | None = None
        self._latency_written = 0.0
        self.dropped = 0
        # 1.6: the charger's StartTransaction message ids this observer refused, the reasons
        # transactions have no id here (their copies are dropped), and since when the head of
        # the backlog waits for its transaction's id (its message id, monotonic time).
        self.refused_starts: set[str] = set()
        self.unmapped: dict[int, str] = {}
        self._held_since: tuple[str, float] | None = None

    @property
    def is_primary(self) -> bool:
        return self.spec.is_primary

    @property
    def key(self) -> tuple[str, str]:
        return (self.router.identity, self.name)

    def start(self, pending: list[routing_services.Queued]) -> None:
        self.backlog.extend(pending)
        previous = _legs.get(self.key)
        _legs[self.key] = self
        if previous is not None and previous is not self:
            # The charger reconnected: the old connection's leg stops; this one takes over.
            previous.router._spawn(previous.close(), f"superseded:{self.name}")
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"leg:{self.router.identity}:{self.name}"
        )

    async def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if _legs.get(self.key) is self:
            del _legs[self.key]
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await ws.close()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            except Exception:
                logger.exception("leg %s of %s failed", self.name, self.router.identity)
        if not self.is_primary:
            # What it was sending is free at once for the leg that takes over (no lease wait).
            try:
                await database_sync_to_async(routing_services.outbox_release)(
                    charger_pk=self.router.charger_pk,
                    upstream_pk=self.upstream_pk,
                    owner=self.owner,
                )
            except Exception:
                logger.exception("outbox of leg %s of %s", self.name, self.router.identity)
        await self._report_down("charger disconnected")

    # The connection.

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.spec.url.startswith("wss://"):
            return None
        context = ssl.create_default_context(cadata=self.spec.ca_bundle or None)
        if not self.spec.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _headers(self) -> dict[str, str]:
        spec = self.spec
        if spec.forwards_charger_password:
            username, password = spec.username, self.router.password
        else:
            username, password = spec.username, spec.password
        if not password or spec.credentials == "none":
            return {}
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    async def _run(self) -> None:
        attempt = 0
        while not self.closing:
            error = ""
            try:
                async with websockets.connect(
                    self.spec.url,
                    subprotocols=[self.router.subprotocol],  # type: ignore[list-item]
                    additional_headers=self._headers(),
                    ssl=self._ssl(),
                    open_timeout=settings.CPMS_ROUTING_CONNECT_TIMEOUT,
                    ping_interval=settings.CPMS_ROUTING_PING_INTERVAL,
                    ping_timeout=settings.CPMS_ROUTING_PING_INTERVAL,
                    max_size=settings.CPMS_MAX_FRAME_BYTES * 4,
                    user_agent_header=None,
                ) as ws:
                    if ws.subprotocol != self.router.subprotocol:
                        raise ConnectionError(
                            f"{self.name} did not accept {self.router.subprotocol}"
                        )
                    attempt = 0
                    self.connects += 1
                    self.ws = ws
                    await database_sync_to_async(routing_services.leg_status_connected)(
                        charger_pk=self.router.charger_pk,
                        upstream_pk=self.upstream_pk,
                        role=self.spec.role,
                        channel_name=self.router.consumer.channel_name,
                        reconnect=self.connects > 1,
                    )
                    logger.info("%s: leg %s connected", self.router.identity, self.name)
                    self.router.leg_up(self)
                    # Answers are read below, so what needs them runs beside the reader.
                    helper = asyncio.get_running_loop().create_task(
                        self._catch_up() if self.is_primary else self._drain(),
                        name=f"leg-sender:{self.router.identity}:{self.name}",
                    )
                    helper.add_done_callback(functools.partial(_sender_ended, ws=ws))
                    try:
                        async for text in ws:
                            if isinstance(text, str):
                                await self._received(text)
                    finally:
                        helper.cancel()
                        try:
                            await helper
                        except asyncio.CancelledError:
                            pass
                        except (ConnectionError, PrimaryUnavailable):
                            pass  # the socket went while it sent
                        except Exception:
                            logger.exception("leg %s of %s", self.name, self.router.identity)
                    error = f"closed by the upstream ({ws.close_code})"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            finally:
                self.ws = None
                self.up.clear()
                for _, _, future in self.pending.values():
                    if not future.done():
                        future.set_exception(ConnectionError(f"{self.name} disconnected"))
                self.pending.clear()
            if self.closing:
                return
            logger.info("%s: leg %s down: %s", self.router.identity, self.name, error)
            await self._report_down(error)
            self.router.leg_down(self, error)
            delay = reconnect_delay(
                attempt,
                base=settings.CPMS_ROUTING_BACKOFF_MIN,
                cap=settings.CPMS_ROUTING_BACKOFF_MAX,
                rand=random.random(),
            )
            attempt += 1
            await asyncio.sleep(delay)

    async def _catch_up(self) -> None:
        """A primary dialled after the charger booted (a re-dial, a cut-over) gets the cached
        BootNotification and latest statuses first, ahead of the charger's next CALL; its
        answers stay here, as the charger had its own."""
        async with self.router.primary_order:
            for call in self.router.replay():
                if call.message_id in self.router.forwarding:
                    continue
                waiter = await self._send(call)
                try:
                    await self.answer_of(waiter, settings.CPMS_ROUTING_ANSWER_TIMEOUT)
                except PrimaryUnavailable as exc:
                    logger.info("%s: replay to %s: %s", self.router.identity, self.name, exc)
            self.up.set()

    async def _report_down(self, error: str) -> None:
        try:
            await database_sync_to_async(routing_services.leg_status_disconnected)(
                charger_pk=self.router.charger_pk,
                upstream_pk=self.upstream_pk,
                channel_name=self.router.consumer.channel_name,
                error=error,
                latency_ms=self.latency_ms,
            )
        except Exception:
            logger.exception("status of leg %s of %s", self.name, self.router.identity)

    async def _received(self, text: str) -> None:
        try:
            message = protocol.parse(text)
        except protocol.FrameError as exc:
            self._journal(Frame.Direction.IN, 0, exc.message_id, "", text)
            return
        if isinstance(message, protocol.Call):
            self._journal(
                Frame.Direction.IN, protocol.CALL, message.message_id, message.action, text
            )
            self.router._spawn(
                self.router.from_upstream(self, message), f"upstream-call:{self.name}"
            )
            return
        kind = (
            protocol.CALLRESULT if isinstance(message, protocol.CallResult) else protocol.CALLERROR
        )
        waiting = self.pending.pop(message.message_id, None)
        action, original = (waiting[0], waiting[1]) if waiting is not None else ("", "")
        self._journal(Frame.Direction.IN, kind, message.message_id, action, text, original)
        if waiting is not None and not waiting[2].done():
            waiting[2].set_result(message)

    def _journal(
        self,
        direction: str,
        kind: int,
        message_id: str,
        action: str,
        raw: str,
        original: str = "",
    ) -> None:
        _journal(
            self.router.consumer,
            leg=self.name,
            direction=direction,
            kind=kind,
            message_id=message_id,
            action=action,
            raw=raw,
            original=original,
        )

    # CALLs to the upstream.

    async def wait_up(self, timeout: float) -> None:
        if not self.up.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await self.up.wait()
            except TimeoutError:
                raise PrimaryUnavailable(f"{self.name} is unreachable") from None

    async def send_call(
        self, call: protocol.Call, *, wait_up: float, payload: dict[str, Any] | None = None
    ) -> tuple[str, asyncio.Future[protocol.CallResult | protocol.CallError], float]:
        """Send a charger CALL with a fresh id; what to wait on for its answer."""
        await self.wait_up(wait_up)
        return await self._send(call, payload)

    async def _send(
        self, call: protocol.Call, payload: dict[str, Any] | None = None
    ) -> tuple[str, asyncio.Future[protocol.CallResult | protocol.CallError], float]:
        ws = self.ws
        if ws is None:
            raise PrimaryUnavailable(f"{self.name} is unreachable")
        message_id = self.ids.fresh()
        future: asyncio.Future[protocol.CallResult | protocol.CallError]
        future = asyncio.get_running_loop().create_future()
        self.pending[message_id] = (call.action, call.message_id, future)
        text = protocol.call(message_id, call.action, call.payload if payload is None else payload)
        try:
            await ws.send(text)
        except Exception as exc:
            self.pending.pop(message_id, None)
            raise PrimaryUnavailable(f"{self.name}: {exc}") from None
        self._journal(
            Frame.Direction.OUT, protocol.CALL, message_id, call.action, text, call.message_id
        )
        return message_id, future, time.monotonic()

    async def answer_of(
        self,
        waiter: tuple[str, asyncio.Future[protocol.CallResult | protocol.CallError], float],
        timeout: float,
    ) -> protocol.CallResult | protocol.CallError:
        message_id, future, sent_at = waiter
        try:
            async with asyncio.timeout(timeout):
                answer = await future
        except TimeoutError:
            self.pending.pop(message_id, None)
            raise PrimaryUnavailable(f"{self.name} did not answer within {timeout:g}s") from None
        except ConnectionError as exc:
            raise PrimaryUnavailable(str(exc)) from None
        self._latency((time.monotonic() - sent_at) * 1000)
        return answer

    def _latency(self, milliseconds: float) -> None:
        self.latency_ms = milliseconds
        now = time.monotonic()
        if now - self._latency_written >= 10:
            self._latency_written = now
            self.router._spawn(
                database_sync_to_async(routing_services.leg_status_latency)(
                    charger_pk=self.router.charger_pk,
                    upstream_pk=self.upstream_pk,
                    channel_name=self.router.consumer.channel_name,
                    latency_ms=milliseconds,
                ),
                f"latency:{self.name}",
            )

    async def answer(
        self, message_id: str, action: str, answer: protocol.CallResult | protocol.CallError
    ) -> None:
        """The charger's answer (or the router's refusal) to this upstream's CALL."""
        text = _answer_frame(message_id, answer)
        ws = self.ws
        if ws is None:
            return
        try:
            await ws.send(text)
        except Exception:
            logger.info(
                "%s: could not answer %s on leg %s", self.router.identity, action, self.name
            )
            return
        kind = (
            protocol.CALLRESULT if isinstance(answer, protocol.CallResult) else protocol.CALLERROR
        )
        self._journal(Frame.Direction.OUT, kind, message_id, action, text, answer.message_id)

    # The observer's outbox.

    def tx_changed(self) -> None:
        self._tx_changed.set()

    def live(self, call: protocol.Call) -> None:
        """A CALL with nothing to replay (Heartbeat): sent only to a connected, idle observer."""
        if self.up.is_set() and not self.backlog:
            self.backlog.append(
                routing_services.Queued(0, call.message_id, call.action, call.payload, False)
            )
            self._wake.set()

    async def queued(self, entry: routing_services.Queued) -> None:
        self.backlog.append(entry)
        self._wake.set()
        limit = settings.CPMS_ROUTING_OUTBOX_LIMIT
        if len(self.backlog) > limit:
            await self._drop(len(self.backlog) - limit)

    async def _drop(self, excess: int) -> None:
        """At the bound: meter samples outside transactions go first, then other copies outside
        transactions; transaction messages never go. The head (perhaps in flight) stays."""
        candidates = list(self.backlog)[1:]
        victims = [e for e in candidates if not e.transactional and e.action in DROP_FIRST_ACTIONS]
        victims += [
            e
            for e in candidates
            if not e.transactional
            and e.action not in DROP_FIRST_ACTIONS
            and e.action != "BootNotification"
        ]
        victims = victims[:excess]
        if not victims:
            return
        gone = {e.pk for e in victims}
        self.backlog = deque(e for e in self.backlog if e.pk not in gone)
        self.dropped += len(gone)
        await database_sync_to_async(routing_services.outbox_drop)(
            charger_pk=self.router.charger_pk,
            upstream_pk=self.upstream_pk,
            pks=[pk for pk in gone if pk],
        )

    async def _request(
        self, action: str, payload: dict[str, Any], original: str
    ) -> protocol.CallResult | protocol.CallError | None:
        """One CALL to this observer and its answer; None when it did not answer in time."""
        waiter = await self.send_call(
            protocol.Call(original, action, payload), wait_up=0, payload=payload
        )
        try:
            return await self.answer_of(waiter, settings.CPMS_ROUTING_ANSWER_TIMEOUT)
        except PrimaryUnavailable:
            if self.ws is None:
                raise
            return None

    async def _drain(self) -> None:
        """Send the cached boot and statuses, then the backlog in order, one CALL at a time."""
        self.up.set()
        replayed: set[str] = set()
        calls = self.router.replay()
        # Statuses waiting in the backlog are older than the latest one replayed for their
        # connector: sent after it, they would leave the observer with a stale state.
        latest = {status_key(c.payload) for c in calls if c.action == "StatusNotification"}
        replayed.update(
            entry.message_id
            for entry in self.backlog
            if entry.action == "StatusNotification" and status_key(entry.payload) in latest
        )
        for call in calls:
            await self._request(call.action, call.payload, call.message_id)
            replayed.add(call.message_id)
        retry = 0
        while True:
            if not self.backlog:
                self._wake.clear()
                await self._wake.wait()
                continue
            entry = self.backlog[0]
            if entry.message_id in replayed:
                await self._done(entry)
                continue
            payload = remap.to_upstream(entry.action, entry.payload, self.router.version, self.tx)
            if isinstance(payload, remap.Held):
                if await self._drop_unmapped(entry, payload.transaction_id):
                    continue
                self._tx_changed.clear()
                try:
                    async with asyncio.timeout(
                        min(
                            settings.CPMS_ROUTING_ANSWER_TIMEOUT, settings.CPMS_ROUTING_HOLD_TIMEOUT
                        )
                    ):
                        await self._tx_changed.wait()
                except TimeoutError:
                    logger.info(
                        "%s: %s for transaction %s held for %s: no id there yet",
                        self.router.identity,
                        entry.action,
                        payload.transaction_id,
                        self.name,
                    )
                continue
            if entry.pk:
                claimed = await database_sync_to_async(routing_services.outbox_claim)(
                    pk=entry.pk, owner=self.owner, lease_seconds=self.lease
                )
                if claimed is None:
                    # Another sender delivered it meanwhile.
                    if self.backlog and self.backlog[0] is entry:
                        self.backlog.popleft()
                    continue
                if not claimed:
                    logger.info(
                        "%s: %s's outbox head is being sent by another node; waiting",
                        self.router.identity,
                        self.name,
                    )
                    await asyncio.sleep(self.lease / 2)
                    continue
            answer = await self._request(entry.action, payload, entry.message_id)
            if answer is None:
                await asyncio.sleep(
                    reconnect_delay(
                        retry,
                        base=settings.CPMS_ROUTING_BACKOFF_MIN,
                        cap=settings.CPMS_ROUTING_BACKOFF_MAX,
                        rand=random.random(),
                    )
                )
                retry += 1
                continue
            retry = 0
            if isinstance(answer, protocol.CallError):
                await self._refused(entry, answer)
            elif self.router.version == "1.6":
                await self._transaction_answer(entry, answer)
            await self._done(entry)

    @property
    def owner(self) -> str:
        """Who this leg is when it takes outbox entries to send."""
        return f"{self.router.consumer.channel_name}:{self.name}"

    @property
    def lease(self) -> float:
        """How long a taken entry stays this leg's without an answer: two answer timeouts."""
        return 2 * settings.CPMS_ROUTING_ANSWER_TIMEOUT

    async def _refused(self, entry: routing_services.Queued, answer: protocol.CallError) -> None:
        """The observer refused a copy: recorded on the leg, and the outbox moves on. A refused
        1.6 StartTransaction leaves the transaction without an id there: its copies go too."""
        problem = f"{entry.action} {entry.message_id} refused: {answer.code} {answer.description}"
        logger.info("%s: %s %s", self.router.identity, self.name, problem)
        if entry.action == "StartTransaction" and self.router.version == "1.6":
            self.refused_starts.add(entry.message_id)
        await database_sync_to_async(routing_services.leg_copy_refused)(
            charger_pk=self.router.charger_pk, upstream_pk=self.upstream_pk, problem=problem
        )

    async def _drop_unmapped(self, entry: routing_services.Queued, transaction_id: int) -> bool:
        """Whether a held copy goes instead of waiting on: its transaction's start was refused
        here, or it waited for the transaction's id here longer than CPMS_ROUTING_HOLD_TIMEOUT
        (an observer added in the middle of a transaction never gets one). Dropped, counted
        and shown with the reason; the transaction's later copies go at once."""
        reason = self.unmapped.get(transaction_id)
        if reason is None:
            start = self.tx.start_of(transaction_id)
            now = time.monotonic()
            if start is not None and start in self.refused_starts:
                reason = f"transaction {transaction_id}: {self.name} refused its start"
            else:
                if self._held_since is None or self._held_since[0] != entry.message_id:
                    self._held_since = (entry.message_id, now)
                if now - self._held_since[1] < settings.CPMS_ROUTING_HOLD_TIMEOUT:
                    return False
                reason = (
                    f"transaction {transaction_id} has no id at {self.name}: it started before "
                    "the observer was added"
                )
            self.unmapped[transaction_id] = reason
        logger.warning(
            "%s: %s %s not sent to %s: %s",
            self.router.identity,
            entry.action,
            entry.message_id,
            self.name,
            reason,
        )
        self._held_since = None
        if self.backlog and self.backlog[0] is entry:
            self.backlog.popleft()
        self.dropped += 1
        await database_sync_to_async(routing_services.outbox_drop)(
            charger_pk=self.router.charger_pk,
            upstream_pk=self.upstream_pk,
            pks=[entry.pk] if entry.pk else [],
            reason=f"{entry.action} dropped: {reason}",
        )
        return True

    async def _transaction_answer(
        self, entry: routing_services.Queued, answer: protocol.CallResult
    ) -> None:
        if entry.action == "StartTransaction":
            transaction_id = remap.start_transaction_id(answer.payload)
            if transaction_id is None:
                return
            self.tx.upstream_assigned(entry.message_id, transaction_id)
            self._tx_changed.set()
            await database_sync_to_async(routing_services.transaction_map_upstream_assigned)(
                charger_pk=self.router.charger_pk,
                upstream_pk=self.upstream_pk,
                start_message_id=entry.message_id,
                transaction_id=transaction_id,
            )
        elif entry.action == "StopTransaction":
            charger_id = entry.payload.get("transactionId")
            upstream_id = self.tx.to_upstream(charger_id) if isinstance(charger_id, int) else None
            if upstream_id is not None:
                await database_sync_to_async(routing_services.transaction_map_stopped)(
                    charger_pk=self.router.charger_pk,
                    upstream_pk=self.upstream_pk,
                    upstream_transaction_id=upstream_id,
                )

    async def _done(self, entry: routing_services.Queued) -> None:
        if self.backlog and self.backlog[0] is entry:
            self.backlog.popleft()
        if entry.pk:
            await database_sync_to_async(routing_services.outbox_remove)(pk=entry.pk)


class LocalObserver:
    """``local`` as an observer: the built-in handlers record copies of the charger's CALLs, in
    order, under their own message ids and (1.6) their own transaction ids."""

    name = LOCAL

    def __init__(self, router: Router, spec: ResolvedLeg, tx: remap.TransactionIds):
        self.router = router
        self.spec = spec
        self.upstream_pk: int = spec.upstream_pk or 0
        self.tx = tx
        self.ids = remap.MessageIds()
        # Copies to record, in order; None ends the queue.
        self.queue: asyncio.Queue[protocol.Call | None] = asyncio.Queue()
        self._tx_changed = asyncio.Event()
        self.closing = False
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"local-observer:{router.identity}"
        )

    def copy(self, call: protocol.Call) -> None:
        self.queue.put_nowait(call)

    def tx_changed(self) -> None:
        self._tx_changed.set()

    async def close(self) -> None:
        """Stop once the copies already queued are recorded. The charger had the primary's
        answers to them, so they are local's only record: the charger leaving (or a cut-over
        that makes local primary) right after a stop must not lose it. Bounded: what is left
        after ``LOCAL_DRAIN_SECONDS`` is logged and given up."""
        if self.closing:
            return
        self.closing = True
        self.queue.put_nowait(None)
        self._tx_changed.set()
        done, _ = await asyncio.wait({self.task}, timeout=LOCAL_DRAIN_SECONDS)
        if not done:
            logger.warning(
                "local observer of %s closed with %d copies not recorded",
                self.router.identity,
                self.queue.qsize(),
            )
            self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("local observer of %s failed", self.router.identity)

    async def _run(self) -> None:
        consumer = self.router.consumer
        while True:
            call = await self.queue.get()
            if call is None:
                return
            payload = remap.to_upstream(call.action, call.payload, self.router.version, self.tx)
            while isinstance(payload, remap.Held) and not self.closing:
                self._tx_changed.clear()
                try:
                    async with asyncio.timeout(settings.CPMS_ROUTING_ANSWER_TIMEOUT):
                        await self._tx_changed.wait()
                except TimeoutError:
                    logger.info("%s: %s held for local", self.router.identity, call.action)
                payload = remap.to_upstream(call.action, call.payload, self.router.version, self.tx)
            if isinstance(payload, remap.Held):
                # Closing, and nothing can tell local its id for this transaction any more.
                logger.warning(
                    "%s: %s for transaction %s not recorded by local: it has no id there",
                    self.router.identity,
                    call.action,
                    payload.transaction_id,
                )
                continue
            message_id = self.ids.fresh()
            text = protocol.call(message_id, call.action, payload)
            try:
                outcome = await consumer.dispatcher.handle_text(text)
            except Exception:
                logger.exception("local could not record %s", call.action)
                continue
            _journal(
                consumer,
                leg=LOCAL,
                direction=Frame.Direction.OUT,
                kind=protocol.CALL,
                message_id=message_id,
                action=call.action,
                raw=text,
                original=call.message_id,
            )
            if outcome.reply is None:
                continue
            _journal(
                consumer,
                leg=LOCAL,
                direction=Frame.Direction.IN,
                kind=outcome.reply_kind,
                message_id=message_id,
                action=call.action,
                raw=outcome.reply,
                original=call.message_id,
            )
            if (
                call.action == "StopTransaction"
                and self.router.version == "1.6"
                and outcome.reply_kind == protocol.CALLRESULT
                and isinstance(payload.get("transactionId"), int)
            ):
                await database_sync_to_async(routing_services.transaction_map_stopped)(
                    charger_pk=self.router.charger_pk,
                    upstream_pk=self.upstream_pk,
                    upstream_transaction_id=payload["transactionId"],
                )
            if call.action == "StartTransaction" and self.router.version == "1.6":
                answer = protocol.parse(outcome.reply)
                if isinstance(answer, protocol.CallResult):
                    transaction_id = remap.start_transaction_id(answer.payload)
                    if transaction_id is not None:
                        self.tx.upstream_assigned(call.message_id, transaction_id)
                        await database_sync_to_async(
                            routing_services.transaction_map_upstream_assigned
                        )(
                            charger_pk=self.router.charger_pk,
                            upstream_pk=self.upstream_pk,
                            start_message_id=call.message_id,
                            transaction_id=transaction_id,
                        )
