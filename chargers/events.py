"""Domain events, published after commit to the channel layer for dashboards and other nodes.

Groups: ``org.<pk>`` for an organization's dashboards and ``charger.<identity>`` for one charger's
pages. Messages carry primitives only; delivery is at most once, so the database stays the truth.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import re
import threading
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.dispatch import Signal

from . import dbpool, watching

logger = logging.getLogger(__name__)

# Every domain event, once its transaction has committed, for the parts of the system that act on
# them (billing, load management, alerts, campaigns). Receivers get ``sender=kind`` and the keyword
# arguments ``organization_pk``, ``charger`` (the charger's identity) and ``data``. Connect with no
# ``sender`` and compare the kind: Django matches senders by identity, and two equal strings need not
# be the same object. Receivers run in the thread that committed (in a server process, those of a
# group commit's events run a moment later on the database pool's receivers thread, in commit
# order: chargers.dbpool.receivers_after_commit), so they must be cheap: record a row or enqueue a
# Celery task, never talk to a charger or wait on the network. A receiver that raises is
# logged and never breaks the write.
#
# Kinds: charger.connected, charger.disconnected, charger.booted, charger.event (firmware,
# diagnostics, log, security event notifications: ``data`` has kind, status, request_id),
# connector.status, session.started, session.meter, session.ended, command.updated (data: command,
# action, state, response_status, error_code), reservation.updated (data: reservation,
# reservation_id, state, connector, reason, session), local_list.updated (data: state, version,
# entries).
domain_event = Signal()

# The same events a transaction at a time: receivers get ``sender=None`` and ``events``, a list of
# ``DomainEvent`` in the order they were published. A group commit publishes hundreds of events in
# one transaction; a receiver that checks the database for each can check once for all of them.
domain_events = Signal()


@dataclass(frozen=True, slots=True)
class DomainEvent:
    kind: str
    organization_pk: int
    charger: str
    data: dict[str, Any]


_GROUP_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


# The server's event loop, once it runs. Events raised in worker threads (the ORM side of a
# consumer) are handed to it without waiting: a worker thread that blocked on the loop could never
# finish while the loop shuts down, and the process would hang on SIGTERM. ``SENDERS`` sender
# tasks per loop drain them, each its own queue: a charger's events all go through the same one
# (chosen by its identity), so they reach every group in the order they were raised, while
# different chargers' events go out side by side. A burst never opens more channel-layer
# connections than there are senders, and a full queue drops (and counts) rather than grows.
_server_loop: asyncio.AbstractEventLoop | None = None
_outboxes: list[asyncio.Queue[Callable[[Any], Awaitable[None]]]] = []
SENDERS = 8
OUTBOX_LIMIT = 20_000
dropped = 0


def bind_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Route publications through sender tasks on ``loop`` (called from inside the loop)."""
    global _server_loop, _outboxes
    _server_loop = loop
    _outboxes = [asyncio.Queue(maxsize=OUTBOX_LIMIT // SENDERS) for _ in range(SENDERS)]
    for number, outbox in enumerate(_outboxes):
        loop.create_task(_sender(outbox), name=f"cpms-event-sender-{number}")
    watching.start(loop)


async def _sender(outbox: asyncio.Queue[Callable[[Any], Awaitable[None]]]) -> None:
    while True:
        send = await outbox.get()
        try:
            layer = get_channel_layer()
            if layer is not None:
                await send(layer)
        except Exception:
            # Live updates are best effort; the database already holds the change.
            logger.exception("could not publish an event")
        finally:
            outbox.task_done()


def _enqueue(send: Callable[[Any], Awaitable[None]], key: str = "") -> None:
    global dropped
    if not _outboxes:
        return
    outbox = _outboxes[zlib.crc32(key.encode("utf-8", "surrogatepass")) % len(_outboxes)]
    try:
        outbox.put_nowait(send)
    except asyncio.QueueFull:
        dropped += 1
        if dropped % 1000 == 1:
            logger.warning("event outbox full; %d live events dropped so far", dropped)


# A process that is no server (a management command, a Celery worker, the benchmark's command
# sender) sends through one loop of its own that lives as long as the process: the Redis layer
# keeps its connections per loop, and a new loop per message would open new ones every time. Its
# sends are handed to one sender task on that loop, in order, without waiting for Redis: a caller
# that creates a command or finishes a task goes on at once. That loop also follows the listened
# groups (chargers.watching), as a server's does, so such a process too sends events only to
# groups somebody listens to. At exit, what is still queued is sent (for at most
# ``PUBLISH_TIMEOUT`` seconds).
_publisher: tuple[int, asyncio.AbstractEventLoop, asyncio.Queue[Any]] | None = None
_publisher_lock = threading.Lock()
PUBLISH_TIMEOUT = 10.0


def _publisher_queue() -> tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]:
    global _publisher
    with _publisher_lock:
        # A forked worker does not inherit the thread that ran its parent's loop.
        if _publisher is None or _publisher[0] != os.getpid() or _publisher[1].is_closed():
            loop = asyncio.new_event_loop()
            sends: asyncio.Queue[Any] = asyncio.Queue()
            threading.Thread(
                target=loop.run_forever, name="cpms-event-publisher", daemon=True
            ).start()
            loop.call_soon_threadsafe(
                lambda: loop.create_task(_sender(sends), name="cpms-event-sender")
            )
            loop.call_soon_threadsafe(watching.start, loop)
            _publisher = (os.getpid(), loop, sends)
            atexit.register(_publisher_drain)
        return _publisher[1], _publisher[2]


def _publisher_drain() -> None:
    """Send what is still queued before the process exits."""
    if _publisher is None or _publisher[0] != os.getpid() or _publisher[1].is_closed():
        return
    loop, sends = _publisher[1], _publisher[2]

    async def drained() -> None:
        await sends.join()

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(drained(), loop).result(PUBLISH_TIMEOUT)


def _dispatch(send: Callable[[Any], Awaitable[None]], key: str = "") -> None:
    """Hand ``send(layer)`` to the server's sender task when there is one, else to this process's
    publisher (the in-memory layer, which lives in this process's loops, sends it now)."""
    loop = _server_loop
    if loop is not None and loop.is_running() and not loop.is_closed():
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            _enqueue(send, key)
        else:
            loop.call_soon_threadsafe(_enqueue, send, key)
        return
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        if isinstance(layer, InMemoryChannelLayer):
            # Its queues belong to this process's loops; async_to_sync runs on the caller's.
            async_to_sync(send)(layer)
        else:
            loop, sends = _publisher_queue()
            loop.call_soon_threadsafe(sends.put_nowait, send)
    except Exception:
        logger.exception("could not publish an event")


def organization_group(organization_pk: int) -> str:
    return f"org.{organization_pk}"


def charger_group(identity: str) -> str:
    # Group names allow only ASCII letters, digits, hyphens, underscores and periods.
    return "charger." + _GROUP_UNSAFE.sub("_", identity)[:80]


def listened_groups(organization_pk: int, charger: str) -> list[str]:
    """The organization's and the charger's groups, those of them somebody may listen to."""
    groups = (organization_group(organization_pk), charger_group(charger))
    return [group for group in groups if watching.listened(group)]


def publish(kind: str, *, organization_pk: int, charger: str, data: dict[str, Any]) -> None:
    """Send an event to the organization's and the charger's groups once the transaction commits
    (to those somebody listens to: chargers.watching)."""
    message = {"type": "cpms.event", "kind": kind, "charger": charger, "data": data}

    def committed() -> None:
        groups = listened_groups(organization_pk, charger)
        if groups:

            async def send(layer: Any) -> None:
                for group in groups:
                    await layer.group_send(group, message)

            _dispatch(send, charger)

    transaction.on_commit(committed)
    notify_after_commit(DomainEvent(kind, organization_pk, charger, data))


@dataclass(eq=False, slots=True)
class _Batch:
    """The domain events of one transaction (of one savepoint level of it), told together once it
    commits."""

    connection: BaseDatabaseWrapper
    hooks: list[Any]
    savepoints: set[str]
    events: list[DomainEvent] = field(default_factory=list)
    open: bool = True

    def committed(self) -> None:
        self.open = False
        _deliver(self.events)


def _deliver(batch: list[DomainEvent]) -> None:
    if not dbpool.receivers_after_commit(notify_many, batch):
        notify_many(batch)


_batches = threading.local()


def notify_after_commit(event: DomainEvent) -> None:
    """Tell the receivers once the transaction commits, with the transaction's other events."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:  # autocommit: it has committed
        _deliver([event])
        return
    batch: _Batch | None = getattr(_batches, "current", None)
    savepoints = set(connection.savepoint_ids)
    # The batch still waits for this transaction's commit, at this savepoint level, and no later
    # batch began (a rollback, to a savepoint or of everything, gives the connection a new list
    # of commit hooks; a savepoint of its own begins one).
    if (
        batch is not None
        and batch.open
        and batch.connection is connection
        and batch.hooks is connection.run_on_commit
        and batch.savepoints == savepoints
    ):
        batch.events.append(event)
        return
    batch = _Batch(connection, connection.run_on_commit, savepoints, [event])
    _batches.current = batch
    transaction.on_commit(batch.committed)


def notify(kind: str, *, organization_pk: int, charger: str, data: dict[str, Any]) -> None:
    """Tell the domain-event receivers now (``publish`` tells them after commit)."""
    notify_many([DomainEvent(kind, organization_pk, charger, data)])


def notify_many(batch: list[DomainEvent]) -> None:
    """Tell the receivers of batches, then those of single events, each event in order."""
    if domain_events.receivers:
        for receiver, result in domain_events.send_robust(sender=None, events=batch):
            if isinstance(result, Exception):
                logger.error("a receiver of events failed: %r", receiver, exc_info=result)
    if not domain_event.receivers:
        return
    for event in batch:
        for receiver, result in domain_event.send_robust(
            sender=event.kind,
            organization_pk=event.organization_pk,
            charger=event.charger,
            data=event.data,
        ):
            if isinstance(result, Exception):
                logger.error("a receiver of %s failed: %r", event.kind, receiver, exc_info=result)


def handle_each(batch: list[DomainEvent], handle: Callable[[DomainEvent], None]) -> None:
    """For a receiver of batches: ``handle`` each event in order; one that fails is logged and
    the others are still handled, as they are by receivers of single events."""
    for event in batch:
        try:
            handle(event)
        except Exception:
            logger.exception("a receiver of %s failed", event.kind)


def tell(receivers: Mapping[str, Callable[..., None]], event: DomainEvent) -> None:
    """The receiver of single events of the event's kind, if any, called as ``domain_event``
    calls it."""
    receiver = receivers.get(event.kind)
    if receiver is not None:
        receiver(
            event.kind,
            organization_pk=event.organization_pk,
            charger=event.charger,
            data=event.data,
        )


def handle_boots(
    batch: list[DomainEvent],
    *,
    among: Callable[[set[str]], Mapping[str, Any]],
    booted: Callable[[Any], object],
    receivers: Mapping[str, Callable[..., None]],
) -> None:
    """For a receiver of batches that acts on boots: ``among`` looks the booted chargers up
    together (identity to what a boot needs, only for those it concerns), then each event in
    order goes to ``booted`` (a boot found there, with what was found) or to its receiver of
    single events in ``receivers``. Boots come in storms: a server's group commit marks hundreds
    of chargers booted at once."""
    found = among({event.charger for event in batch if event.kind == "charger.booted"})

    def handle(event: DomainEvent) -> None:
        if event.kind != "charger.booted":
            tell(receivers, event)
        elif (value := found.get(event.charger)) is not None:
            booted(value)

    handle_each(batch, handle)


def send_soon(send: Callable[[Any], Awaitable[None]], *, charger: str = "") -> None:
    """Hand ``send(layer)`` to the sender task now, with no transaction to wait for: for a
    consumer's best-effort messages, which a burst of reconnects must not send all at once, and
    for callers already past their commit. Given the charger, it goes out in order with that
    charger's events."""
    _dispatch(send, charger)


def send_after_commit(send: Callable[[Any], Awaitable[None]], *, charger: str = "") -> None:
    """Run ``send(layer)`` once the transaction commits, the way events are sent: for messages
    beside the events, such as a command for the consumer holding a charger's socket. Given the
    charger, it goes out in order with that charger's events."""
    transaction.on_commit(lambda: _dispatch(send, charger))


def publish_to_chargers(kind: str, *, items: list[tuple[str, dict[str, Any]]]) -> None:
    """Send one event per charger to the charger groups only, after commit, in one hop.

    For chatty events such as journal frames, which only a charger's own page shows: the
    organization's pages never receive them.
    """
    items = [
        (charger, data) for charger, data in items if watching.listened(charger_group(charger))
    ]
    if not items:
        return

    async def send_all(layer: Any) -> None:
        for charger, data in items:
            message = {"type": "cpms.event", "kind": kind, "charger": charger, "data": data}
            await layer.group_send(charger_group(charger), message)

    transaction.on_commit(lambda: _dispatch(send_all))
