"""Which live groups somebody listens to, so that a server process publishes only those events.

Dashboards' live sockets (``cpms.live.LiveConsumer``) are the only members of the event groups:
each joins its organization's group or one charger's. On the Redis channel layer, sending to a
group that nobody joined still costs several round trips to Redis on the server's event loop, and
under load almost every event has nobody listening: a quarter of the loop's time in S6, and most
of the event publishing of S4 (bench/RESULTS.md). So:

- a live socket, as it joins its group, registers it here: in a Redis sorted set scored by when
  the registration lapses (``TTL``, renewed every ``RENEW`` seconds while the socket lives), and
  announced on a Redis pub/sub channel;
- every server process keeps the registered groups in memory (``follow``): it reads the set as it
  starts and every ``POLL`` seconds, and adds an announced group as the announcement arrives; a
  socket of its own is added before the socket is accepted;
- ``listened(group)`` tells a publisher whether to send.

A process that serves no sockets (Celery, management commands) follows the set on the loop it
publishes from (``chargers.events``), from its first publication on. A process that has not read
the set yet, or cannot read it, publishes everything, as does the embedded default (in-memory
channel layer, one process): there, a send to an empty group costs nothing worth saving. So a
listener must register its group (``watch``) before it can count on events: joining the group
on the channel layer alone is not enough once the set has been read. Delivery of live
events was at most once before and stays so; the database is the truth.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

KEY = "cpms:live:watched"
CHANNEL = "cpms:live:watch"
# A registration lapses after TTL seconds unless its socket renews it (every RENEW seconds).
TTL = 120.0
RENEW = 40.0
# Seconds between two reads of the whole set by a following process.
POLL = 5.0

# None: not known (publish everything). Replaced, never changed in place: threads read it.
_watched: frozenset[str] | None = None
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


def enabled() -> bool:
    """Whether groups are registered at all: only on the Redis channel layer."""
    return bool(settings.REDIS_URL)


def listened(group: str) -> bool:
    """Whether an event for ``group`` may have a listener (True when not known)."""
    watched = _watched
    return watched is None or group in watched


def _client() -> Any:
    """A Redis client of the running loop (redis-py's asyncio connections belong to one loop)."""
    import redis.asyncio

    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, socket_timeout=10
        )
    return client


def _add(group: str) -> None:
    global _watched
    watched = _watched
    if watched is not None and group not in watched:
        _watched = watched | {group}


async def watch(group: str) -> None:
    """Register ``group`` as listened to, for ``TTL`` seconds (call again to renew)."""
    if not enabled():
        return
    _add(group)
    client = _client()
    now = time.time()
    async with client.pipeline(transaction=False) as pipe:
        pipe.zadd(KEY, {group: now + TTL})
        pipe.zremrangebyscore(KEY, "-inf", now)
        pipe.publish(CHANNEL, group)
        await pipe.execute()


async def _read() -> frozenset[str]:
    members = await _client().zrangebyscore(KEY, time.time(), "+inf")
    return frozenset(m.decode() if isinstance(m, bytes) else str(m) for m in members)


async def follow() -> None:
    """Keep this process's view of the registered groups (runs as long as the server)."""
    global _watched
    failures = 0
    while True:
        pubsub = _client().pubsub()
        try:
            await pubsub.subscribe(CHANNEL)
            _watched = await _read()
            failures = 0
            read_at = time.monotonic()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL)
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    _add(data.decode() if isinstance(data, bytes) else str(data))
                if time.monotonic() - read_at >= POLL:
                    _watched = await _read()
                    read_at = time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Not known: publish everything until Redis answers again.
            _watched = None
            failures += 1
            if failures == 1:
                logger.warning(
                    "cannot follow the listened groups (%r); publishing every event", exc
                )
            await asyncio.sleep(min(10.0, 0.5 * failures))
        finally:
            try:
                await pubsub.aclose()
            except Exception:
                logger.debug("closing the pub/sub connection failed", exc_info=True)


def start(loop: asyncio.AbstractEventLoop) -> None:
    """Follow the registered groups on the server's loop, or a publishing process's (called from
    inside it)."""
    if enabled():
        loop.create_task(follow(), name="cpms-live-watched")
