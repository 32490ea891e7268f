"""Domain events, published after commit to the channel layer for dashboards and other nodes.

Groups: ``org.<pk>`` for an organization's dashboards and ``charger.<identity>`` for one charger's
pages. Messages carry primitives only; delivery is at most once, so the database stays the truth.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

_GROUP_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


# The server's event loop, once it runs. Events raised in worker threads (the ORM side of a
# consumer) are handed to it without waiting: a worker thread that blocked on the loop could never
# finish while the loop shuts down, and the process would hang on SIGTERM. One sender task per
# loop drains them in order, so a burst never opens more channel-layer connections than one.
_server_loop: asyncio.AbstractEventLoop | None = None
_outbox: asyncio.Queue[Callable[[Any], Awaitable[None]]] | None = None
OUTBOX_LIMIT = 20_000
dropped = 0


def bind_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Route publications through a sender task on ``loop`` (called from inside the loop)."""
    global _server_loop, _outbox
    _server_loop = loop
    _outbox = asyncio.Queue(maxsize=OUTBOX_LIMIT)
    loop.create_task(_sender(_outbox), name="cpms-event-sender")


async def _sender(outbox: asyncio.Queue[Callable[[Any], Awaitable[None]]]) -> None:
    while True:
        send = await outbox.get()
        layer = get_channel_layer()
        if layer is None:
            continue
        try:
            await send(layer)
        except Exception:
            # Live updates are best effort; the database already holds the change.
            logger.exception("could not publish an event")


def _enqueue(send: Callable[[Any], Awaitable[None]]) -> None:
    global dropped
    if _outbox is None:
        return
    try:
        _outbox.put_nowait(send)
    except asyncio.QueueFull:
        dropped += 1
        if dropped % 1000 == 1:
            logger.warning("event outbox full; %d live events dropped so far", dropped)


# A process that is no server (a management command, a Celery worker, the benchmark's command
# sender) sends through one loop of its own that lives as long as the process: the Redis layer
# keeps its connections per loop, and a new loop per message would open new ones every time.
_publisher: tuple[int, asyncio.AbstractEventLoop] | None = None
_publisher_lock = threading.Lock()
PUBLISH_TIMEOUT = 10.0


def _publisher_loop() -> asyncio.AbstractEventLoop:
    global _publisher
    with _publisher_lock:
        # A forked worker does not inherit the thread that ran its parent's loop.
        if _publisher is None or _publisher[0] != os.getpid() or _publisher[1].is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="cpms-event-publisher", daemon=True
            ).start()
            _publisher = (os.getpid(), loop)
        return _publisher[1]


def _dispatch(send: Callable[[Any], Awaitable[None]]) -> None:
    """Hand ``send(layer)`` to the server's sender task when there is one, else send it now."""
    loop = _server_loop
    if loop is not None and loop.is_running() and not loop.is_closed():
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            _enqueue(send)
        else:
            loop.call_soon_threadsafe(_enqueue, send)
        return
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        if isinstance(layer, InMemoryChannelLayer):
            # Its queues belong to this process's loops; async_to_sync runs on the caller's.
            async_to_sync(send)(layer)
        else:

            async def publish() -> None:
                await send(layer)

            asyncio.run_coroutine_threadsafe(publish(), _publisher_loop()).result(PUBLISH_TIMEOUT)
    except Exception:
        logger.exception("could not publish an event")


def organization_group(organization_pk: int) -> str:
    return f"org.{organization_pk}"


def charger_group(identity: str) -> str:
    # Group names allow only ASCII letters, digits, hyphens, underscores and periods.
    return "charger." + _GROUP_UNSAFE.sub("_", identity)[:80]


def publish(kind: str, *, organization_pk: int, charger: str, data: dict[str, Any]) -> None:
    """Send an event to the organization's and the charger's groups once the transaction commits."""
    message = {"type": "cpms.event", "kind": kind, "charger": charger, "data": data}

    async def send(layer: Any) -> None:
        await layer.group_send(organization_group(organization_pk), message)
        await layer.group_send(charger_group(charger), message)

    transaction.on_commit(lambda: _dispatch(send))


def send_soon(send: Callable[[Any], Awaitable[None]]) -> None:
    """Hand ``send(layer)`` to the sender task now, with no transaction to wait for: for a
    consumer's best-effort messages, which a burst of reconnects must not send all at once."""
    _dispatch(send)


def send_after_commit(send: Callable[[Any], Awaitable[None]]) -> None:
    """Run ``send(layer)`` once the transaction commits, the way events are sent: for messages
    beside the events, such as a command for the consumer holding a charger's socket."""
    transaction.on_commit(lambda: _dispatch(send))


def publish_to_chargers(kind: str, *, items: list[tuple[str, dict[str, Any]]]) -> None:
    """Send one event per charger to the charger groups only, after commit, in one hop.

    For chatty events such as journal frames, which only a charger's own page shows: the
    organization's pages never receive them.
    """
    if not items:
        return

    async def send_all(layer: Any) -> None:
        for charger, data in items:
            message = {"type": "cpms.event", "kind": kind, "charger": charger, "data": data}
            await layer.group_send(charger_group(charger), message)

    transaction.on_commit(lambda: _dispatch(send_all))
