"""The gateway's database threads: a bounded pool, one connection per thread, one charger per thread.

Channels' ``database_sync_to_async`` runs every call of every consumer on one shared thread, so a
busy gateway queues all its database work behind one connection. Here each charger's calls go to
one of ``CPMS_DB_THREADS`` threads (lanes), chosen by its identity: calls of one charger
run one after the other in the order they were made (the consumer, its command sender and its
handlers alike), while different chargers' calls run side by side on their own connections. Work
that belongs to no charger, such as the batch writer's flushes, runs on a thread of its own, and
group commits of many chargers' writes (chargers.groupcommit) on another.

Each call keeps Channels' connection hygiene (``close_old_connections`` before and after, so a
broken or expired connection is replaced), except that the ``CONN_HEALTH_CHECKS`` round trip is
made at most once per ``HEALTH_CHECK_INTERVAL`` per thread rather than before every call.

The pool is started by the OCPP consumer, that is only in a server process; until then, and with
``CPMS_DB_THREADS=0``, calls fall back to Channels' shared thread. SQLite (the embedded default)
gets one thread for everything: it serializes writes anyway.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from channels.db import database_sync_to_async as shared_thread_sync_to_async
from django.conf import settings
from django.db import connections

P = ParamSpec("P")
R = TypeVar("R")

# Receivers of group-commit events waiting for their thread, past which the commit thread runs
# them itself (``receivers_after_commit``).
RECEIVERS_BACKLOG = 5000

# Seconds between two health checks of one thread's connection (when CONN_HEALTH_CHECKS is on).
HEALTH_CHECK_INTERVAL = 1.0

# The charger whose calls the current task makes; set by the consumer that holds its socket.
_charger: ContextVar[str | None] = ContextVar("cpms_db_charger", default=None)


logger = logging.getLogger(__name__)

# The lane the current thread runs, if it is one.
_running = threading.local()


class Late(Exception):
    """A call with a deadline was dropped: the lane came to it after the deadline."""


class Lane:
    """One thread that runs the calls handed to it one at a time, in the order they came.

    Lighter than an executor behind ``sync_to_async``: a call costs a queue put, and its
    answer one ``call_soon_threadsafe``. A call runs to its end even if its caller stops
    waiting (its socket closed), unless it was given a deadline: such a call (a handshake's
    login) is dropped, and fails with ``Late``, if its caller stopped waiting or its deadline
    passed before the lane came to it. Its caller's charger is gone or about to be, and the
    lane's time goes to the callers still waiting.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        # Calls dropped past their deadline (for tests and the curious).
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call(self, function: Callable[..., R], *args: Any, **kwargs: Any) -> asyncio.Future[R]:
        """Run ``function(*args, **kwargs)`` on this lane; its result, to await."""
        return self.call_before(None, function, *args, **kwargs)

    def call_before(
        self, deadline: float | None, function: Callable[..., R], *args: Any, **kwargs: Any
    ) -> asyncio.Future[R]:
        """``call``, dropped if the lane comes to it after ``deadline`` (``time.monotonic()``)
        or after its caller stopped waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._calls.put((loop, future, deadline, function, args, kwargs))
        return future

    def post(self, function: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Run ``function(*args, **kwargs)`` on this lane, with nobody waiting for it (an
        error is logged)."""
        self._calls.put((None, None, None, function, args, kwargs))

    def backlog(self) -> int:
        """Calls waiting for this lane (approximate)."""
        return self._calls.qsize()

    def call_and_wait(self, function: Callable[[], R]) -> R:
        """Run ``function()`` on this lane from any thread, and wait for it."""
        done: concurrent.futures.Future[R] = concurrent.futures.Future()
        self._calls.put((None, done, None, function, (), {}))
        return done.result()

    def stop(self) -> None:
        self._calls.put(None)
        self._thread.join()

    def _run(self) -> None:
        _running.lane = self
        while (item := self._calls.get()) is not None:
            loop, future, deadline, function, args, kwargs = item
            if future is None:  # posted: nobody waits
                try:
                    function(*args, **kwargs)
                except Exception:
                    logger.exception("%s: a posted call failed", self.name)
                continue
            # Read across threads: at worst a call whose caller just left runs anyway.
            if deadline is not None and (future.cancelled() or time.monotonic() > deadline):
                self.dropped += 1
                _answer(
                    loop, future, None, Late("it waited past its deadline for a database thread")
                )
                continue
            try:
                result = function(*args, **kwargs)
            except BaseException as exc:  # handed to the caller, as an executor does
                _answer(loop, future, None, exc)
            else:
                _answer(loop, future, result, None)


def _answer(loop: Any, future: Any, result: Any, error: BaseException | None) -> None:
    if loop is None:  # a caller waiting in a thread (call_and_wait)
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
        return
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
        loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller stopped waiting
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class DatabasePool:
    """``threads`` lanes for chargers, one for work of no charger and one for group commits."""

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError("a database pool needs at least one thread")
        self.shards = [Lane(f"cpms-db-{index}") for index in range(threads)]
        # With one thread (SQLite), everything shares it.
        self.background = self.shards[0] if threads == 1 else Lane("cpms-db-background")
        # Group commits of every charger's writes (chargers.groupcommit).
        self.commits = self.shards[0] if threads == 1 else Lane("cpms-db-commit")
        # Domain-event receivers of the group commits' events (``receivers_after_commit``).
        self.receivers = self.shards[0] if threads == 1 else Lane("cpms-db-receivers")
        self._health = threading.local()

    def lane_for(self, charger: str | None) -> Lane:
        if charger is None:
            return self.background
        # crc32, not hash(): the same charger maps to the same thread in every process.
        return self.shards[zlib.crc32(charger.encode("utf-8", "surrogatepass")) % len(self.shards)]

    def wrap(
        self,
        function: Callable[P, R],
        charger: str | None,
        lane: Lane | None = None,
        deadline: float | None = None,
    ) -> Callable[P, Awaitable[R]]:
        """``function`` as an awaitable that runs on the charger's thread (or on ``lane``);
        dropped with ``Late`` if the thread comes to it after ``deadline``."""
        target = lane or self.lane_for(charger)
        call = self._call

        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            return await target.call_before(deadline, call, function, *args, **kwargs)

        return run

    def _call(self, function: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        self._connections_prepare()
        try:
            return function(*args, **kwargs)
        finally:
            self._connections_release()

    def _connections_prepare(self) -> None:
        """Channels' ``close_old_connections``, with the health check rate-limited per thread."""
        now = time.monotonic()
        checked: dict[str, float] = self._health.__dict__.setdefault("checked", {})
        for connection in connections.all(initialized_only=True):
            # Closes a connection that errored and no longer answers, or that outlived
            # CONN_MAX_AGE; and asks for a health check before the next query.
            connection.close_if_unusable_or_obsolete()
            if connection.connection is None or not connection.settings_dict.get(
                "CONN_HEALTH_CHECKS"
            ):
                continue
            if now - checked.get(connection.alias, float("-inf")) < HEALTH_CHECK_INTERVAL:
                connection.health_check_done = True  # type: ignore[attr-defined]
            else:
                checked[connection.alias] = now

    def _connections_release(self) -> None:
        for connection in connections.all(initialized_only=True):
            connection.close_if_unusable_or_obsolete()

    def close(self) -> None:
        """Close every thread's connections and stop the threads."""
        for lane in dict.fromkeys([*self.shards, self.background, self.commits, self.receivers]):
            lane.call_and_wait(connections.close_all)
            lane.stop()


_pool: DatabasePool | None = None
_pool_lock = threading.Lock()


def default_threads() -> int:
    threads: int = settings.CPMS_DB_THREADS
    if threads and settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        return 1
    return threads


def start(threads: int | None = None) -> DatabasePool | None:
    """Start the process's pool (once); None when it is turned off (``CPMS_DB_THREADS=0``)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            count = default_threads() if threads is None else threads
            if count > 0:
                _pool = DatabasePool(count)
        return _pool


def stop() -> None:
    """Close the pool's connections and threads; calls use Channels' shared thread again."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.close()


def current() -> DatabasePool | None:
    return _pool


def charger_scope(identity: str) -> None:
    """Database calls made from now on in this task (and tasks it starts) belong to ``identity``."""
    _charger.set(identity)


@contextmanager
def charger_calls(identity: str | None) -> Iterator[None]:
    """Database calls inside the block belong to ``identity`` (None: to no charger)."""
    token = _charger.set(identity)
    try:
        yield
    finally:
        _charger.reset(token)


def database_sync_to_async(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Like Channels' ``database_sync_to_async``, on the current charger's thread of the pool."""
    pool = _pool
    if pool is None:
        return shared_thread_sync_to_async(function)  # type: ignore[no-any-return]
    return pool.wrap(function, _charger.get())


def deadline_sync_to_async(function: Callable[P, R], deadline: float) -> Callable[P, Awaitable[R]]:
    """``database_sync_to_async`` for a call worth making only until ``deadline``
    (``time.monotonic()``) and only while its caller waits: otherwise it is dropped and fails
    with ``Late``. Without the pool (SQLite, tests), a late call fails before it is handed over."""
    pool = _pool
    if pool is None:
        shared = shared_thread_sync_to_async(function)

        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            if time.monotonic() > deadline:
                raise Late("it waited past its deadline for a database thread")
            return await shared(*args, **kwargs)  # type: ignore[no-any-return]

        return run
    return pool.wrap(function, _charger.get(), deadline=deadline)


def receivers_after_commit(function: Callable[..., object], *args: Any, **kwargs: Any) -> bool:
    """Hand the domain-event receivers of a group commit's events to the pool's receivers
    thread, when called on the commit thread: run there, they would hold up every charger
    waiting for the next batch (two arrivals' alert checks are four queries, one after the
    other, for each of hundreds of chargers). Receivers handed over run in the order their
    events committed, a moment later. False (run them now) on any other thread, and with one
    thread for everything."""
    pool = _pool
    if pool is None or pool.receivers is pool.commits:
        return False
    if getattr(_running, "lane", None) is not pool.commits:
        return False
    if pool.receivers.backlog() >= RECEIVERS_BACKLOG:
        # The receivers fall behind: the commit thread runs its own again, which slows the
        # writes they follow rather than letting the backlog grow without end.
        return False
    pool.receivers.post(pool._call, function, *args, **kwargs)
    return True


def background_sync_to_async(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Like ``database_sync_to_async``, for work of no charger (on the pool's own thread for it)."""
    pool = _pool
    if pool is None:
        return shared_thread_sync_to_async(function)  # type: ignore[no-any-return]
    return pool.wrap(function, None)


def commit_sync_to_async(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Like ``database_sync_to_async``, for group commits of many chargers' writes (on the pool's
    commit thread)."""
    pool = _pool
    if pool is None:
        return shared_thread_sync_to_async(function)  # type: ignore[no-any-return]
    return pool.wrap(function, None, lane=pool.commits)
