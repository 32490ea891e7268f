"""Process-level background work of the ASGI server.

daphne sends no lifespan events, so the first connection starts what the process runs beside its
consumers: the batch writer, and on the embedded default (no Redis, eager Celery) the periodic jobs
of ``CELERY_BEAT_SCHEDULE`` on the server's own event loop. It also makes HTTP requests close their
database connections when they finish.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import pprint
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.signals import request_finished
from django.db import connections

from cpms import metrics

logger = logging.getLogger(__name__)

_started_loops: set[asyncio.AbstractEventLoop] = set()
_collector_tuned = False


def _seconds(schedule: Any) -> float:
    if isinstance(schedule, timedelta):
        return schedule.total_seconds()
    if isinstance(schedule, int | float):
        return float(schedule)
    run_every = getattr(schedule, "run_every", None)
    if isinstance(run_every, timedelta):
        return run_every.total_seconds()
    raise ValueError(f"embedded scheduler needs an interval schedule, not {schedule!r}")


async def _run_periodic(name: str, task_name: str, every: float) -> None:
    from cpms.celery import app

    while True:
        await asyncio.sleep(every)
        try:
            task = app.tasks[task_name]
            await database_sync_to_async(task.apply)()
        except Exception:
            logger.exception("periodic job %s failed", name)


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the process's soft open-file limit to its hard limit (each charger socket is an open
    file, and the usual soft default of 1024 stops a gateway near a thousand chargers). Returns the
    limits before and after; the hard limit itself is the operator's (README: the open-file limit).
    """
    try:
        import resource
    except ImportError:  # not on this platform
        return (0, 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return (soft, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        logger.warning("could not raise the open-file limit from %d to %d", soft, target)
        return (soft, soft)
    if soft < 4096:
        logger.info("open-file limit raised from %d to %d", soft, target)
    return (soft, target)


class _FormattedOnDemand:
    """Text for a log line, made only if the line is ever written."""

    __slots__ = ("args", "kwargs", "make")

    def __init__(self, make: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.make, self.args, self.kwargs = make, args, kwargs

    def __str__(self) -> str:
        return str(self.make(*self.args, **self.kwargs))

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _on_demand(make: Callable[..., Any]) -> Callable[..., _FormattedOnDemand]:
    def deferred(*args: Any, **kwargs: Any) -> _FormattedOnDemand:
        return _FormattedOnDemand(make, *args, **kwargs)

    deferred.__wrapped__ = make  # type: ignore[attr-defined]
    return deferred


def defer_websocket_debug_formatting() -> None:
    """Spare every WebSocket connection and frame autobahn's formatting of debug lines that are off.

    autobahn (under daphne) formats the arguments of its debug lines whether debug logging is on
    or not: it pretty-prints a connection's twenty-odd settings as the connection is made (a
    seventh of the event loop's time in a storm of chargers connecting), and colours the method
    and peer names of every frame sent and received (``hltype``, ``hlval``: about a twelfth of the
    loop under a steady load). Profiles in bench/RESULTS.md. In its two modules that do it, those
    helpers become wrappers that format only when the line is written, so the lines read the same
    with debug logging on. Every use there is an argument of a log line.
    """
    try:
        from autobahn import util
        from autobahn.twisted import websocket as twisted_websocket
        from autobahn.websocket import protocol
    except ImportError:  # another server than daphne
        return
    if getattr(protocol, "pformat", None) is pprint.pformat:
        protocol.pformat = _on_demand(pprint.pformat)  # type: ignore[assignment]
        # The module's one other use of it must still give a string.
        protocol.Timings.__str__ = lambda self: pprint.pformat(self._timings)  # type: ignore[method-assign]
    for module in (protocol, twisted_websocket):
        for name in ("hltype", "hlval"):
            if getattr(module, name, None) is getattr(util, name):
                setattr(module, name, _on_demand(getattr(util, name)))


def close_request_connections(**kwargs: Any) -> None:
    """Close the database connections of a finished HTTP request.

    Under ASGI each request does its database work in a thread that ends with the request, so a
    connection kept for reuse (CONN_MAX_AGE) would stay open, unused, until garbage collection:
    a busy server piles them up past the database's connection limit. Consumers' database calls
    run on one long-lived thread and keep their connection.
    """
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


def tune_garbage_collector() -> None:
    """Collect less often (``CPMS_GC_THRESHOLDS``), and leave what start-up made out of every
    collection from now on.

    A server holding thousands of sockets keeps millions of objects alive, and a full collection
    walks every one with the event loop stopped. With CPython's thresholds, the short-lived objects
    of a busy loop that happen to survive two young collections make full collections frequent:
    at 10,000 chargers connecting, each server process ran one every five seconds or so, each
    stopping it for 0.5 to 2 s, and handshakes timed out meanwhile (bench/RESULTS.md, finding
    22). Fewer young collections promote fewer such objects; the frozen start-up objects (the
    modules, Django's and the apps' state) are not walked again. Once per process: the garbage
    of start-up is collected first, so that none of it is kept for good.
    """
    global _collector_tuned
    if _collector_tuned:
        return
    _collector_tuned = True
    thresholds = settings.CPMS_GC_THRESHOLDS
    if thresholds:
        gc.set_threshold(*thresholds)
    gc.collect()
    gc.freeze()
    gc.callbacks.append(_timed_collection)


_collection_started = 0.0


def _timed_collection(phase: str, info: dict[str, int]) -> None:
    """Every collection into ``cpms_gc_pause_seconds``; one longer than ``CPMS_GC_WARN_SECONDS``
    also into the log (it stopped the event loop as long)."""
    global _collection_started
    if phase == "start":
        _collection_started = time.perf_counter()
        return
    seconds = time.perf_counter() - _collection_started
    generation = info["generation"]
    metrics.gc_paused(generation, seconds)
    if seconds > settings.CPMS_GC_WARN_SECONDS:
        logger.warning(
            "a garbage collection of generation %d stopped the process for %.0f ms "
            "(%d objects collected)",
            generation,
            seconds * 1000,
            info["collected"],
        )


def start_background(loop: asyncio.AbstractEventLoop) -> None:
    if loop in _started_loops:
        return
    _started_loops.add(loop)
    tune_garbage_collector()
    request_finished.connect(close_request_connections, dispatch_uid="cpms.runtime.close_request")
    from chargers import events

    events.bind_loop(loop)
    from chargers.batching import get_writer

    get_writer()

    from routing.watch import watch_start

    watch_start(loop)
    if settings.CELERY_TASK_ALWAYS_EAGER:
        from cpms.celery import app

        # A worker imports the apps' task modules at start-up; the server has to do it itself, or
        # the scheduled task names are not registered.
        app.loader.import_default_modules()
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
            loop.create_task(
                _run_periodic(name, str(entry["task"]), _seconds(entry["schedule"])),
                name=f"periodic:{name}",
            )


class LifecycleMiddleware:
    """Starts the background work on the first scope, and flushes on lifespan shutdown."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        loop = asyncio.get_running_loop()
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send, loop)
            return
        start_background(loop)
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any, loop: asyncio.AbstractEventLoop) -> None:
        from chargers.batching import flush_now

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                start_background(loop)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await flush_now()
                await send({"type": "lifespan.shutdown.complete"})
                return
