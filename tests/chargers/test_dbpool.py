"""The gateway's database threads: a charger's calls in order on one thread and connection, other
chargers beside it, connection hygiene per call, and the fallback to Channels' shared thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, connections

from chargers import dbpool, events
from chargers.models import Charger

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[dbpool.DatabasePool]:
    # Connections kept between calls, as on PostgreSQL (SQLite's default closes them each time).
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    pool = dbpool.DatabasePool(4)
    try:
        yield pool
    finally:
        pool.close()


def on_different_threads(pool: dbpool.DatabasePool, count: int) -> list[str]:
    """``count`` charger identities that the pool puts on different threads."""
    found: dict[int, str] = {}
    for number in range(1000):
        identity = f"CP-{number}"
        found.setdefault(id(pool.lane_for(identity)), identity)
        if len(found) == count:
            return list(found.values())
    raise AssertionError("the pool does not spread chargers over its threads")


def test_a_chargers_calls_run_in_the_order_they_were_made_on_one_thread(pool):
    ran: list[tuple[int, str]] = []

    def record(number: int) -> None:
        ran.append((number, threading.current_thread().name))

    async def go() -> None:
        # All started at once, none awaited before the next starts: only the pool keeps order.
        calls = [pool.wrap(record, "CP-1")(number) for number in range(200)]
        await asyncio.gather(*calls)

    async_to_sync(go)()
    assert [number for number, _ in ran] == list(range(200))
    assert len({thread for _, thread in ran}) == 1


def test_other_chargers_calls_run_on_other_threads_and_connections(pool):
    first, second = on_different_threads(pool, 2)

    def where() -> tuple[str, Any]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return threading.current_thread().name, connection.connection

    async def go() -> list[tuple[str, Any]]:
        return [
            await pool.wrap(where, first)(),
            await pool.wrap(where, first)(),
            await pool.wrap(where, second)(),
        ]

    one, again, other = async_to_sync(go)()
    # Each thread keeps its connection from call to call; another thread has its own.
    assert one[0] == again[0] and one[1] is again[1]
    assert one[0] != other[0] and one[1] is not other[1]


def test_work_of_no_charger_has_a_thread_of_its_own(pool):
    assert pool.background not in pool.shards
    single = dbpool.DatabasePool(1)
    try:
        assert single.background is single.shards[0]
    finally:
        single.close()


def test_the_orm_works_on_the_pool_and_an_error_reaches_the_caller(pool, charger):
    def rename(pk: int, vendor: str) -> None:
        Charger.objects.filter(pk=pk).update(vendor=vendor)

    def fail() -> None:
        raise LookupError("no such thing")

    async def go() -> None:
        await pool.wrap(rename, charger.identity)(charger.pk, "Acme")
        with pytest.raises(LookupError, match="no such thing"):
            await pool.wrap(fail, charger.identity)()

    async_to_sync(go)()
    charger.refresh_from_db()
    assert charger.vendor == "Acme"


def test_the_health_check_is_made_at_most_once_per_interval(pool, monkeypatch):
    # Reused connections are checked (a SELECT 1) before their first query, but a thread whose
    # connection was checked less than HEALTH_CHECK_INTERVAL ago skips it.
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", True)

    def check_pending() -> bool:
        pending = not connections["default"].health_check_done
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        return pending

    def run() -> bool:
        result: bool = async_to_sync(pool.wrap(check_pending, "CP-1"))()
        return result

    monkeypatch.setattr(dbpool, "HEALTH_CHECK_INTERVAL", 3600.0)
    run()  # opens the thread's connection
    assert run() is True  # the first reuse is checked
    assert run() is False  # checked a moment ago: not again
    monkeypatch.setattr(dbpool, "HEALTH_CHECK_INTERVAL", 0.0)
    assert run() is True


def test_an_expired_connection_is_replaced_before_the_next_call(pool, monkeypatch):
    def connection_id() -> Any:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        return connections["default"].connection

    def expire() -> None:
        connections["default"].close_at = 0.0  # as if CONN_MAX_AGE had passed

    async def go() -> tuple[Any, Any, Any]:
        call = pool.wrap(connection_id, "CP-1")
        first = await call()
        same = await call()
        await pool.wrap(expire, "CP-1")()
        return first, same, await call()

    first, same, renewed = async_to_sync(go)()
    assert first is same
    assert renewed is not first


def test_calls_use_channels_shared_thread_until_the_pool_starts(monkeypatch, settings):
    monkeypatch.setattr(dbpool, "_pool", None)
    names: list[str] = []

    def record() -> None:
        names.append(threading.current_thread().name)

    async_to_sync(dbpool.database_sync_to_async(record))()
    settings.CPMS_DB_THREADS = 0
    assert dbpool.start() is None
    async_to_sync(dbpool.database_sync_to_async(record))()
    assert not any(name.startswith("cpms-db") for name in names)

    settings.CPMS_DB_THREADS = 3
    started = dbpool.start()
    try:
        assert started is not None and dbpool.current() is started
        expected = 1 if connection.vendor == "sqlite" else 3
        assert len(started.shards) == expected  # SQLite writes one at a time anyway

        async def as_charger() -> None:
            dbpool.charger_scope("CP-7")
            await dbpool.database_sync_to_async(record)()
            await dbpool.background_sync_to_async(record)()

        async_to_sync(as_charger)()
        charger_thread, background_thread = names[-2:]
        assert charger_thread.startswith("cpms-db-")
        assert background_thread.startswith("cpms-db-")
        if expected > 1:
            assert background_thread.startswith("cpms-db-background")
    finally:
        dbpool.stop()
    assert dbpool.current() is None


def test_a_calls_charger_is_the_one_of_the_task_that_made_it(pool, monkeypatch):
    monkeypatch.setattr(dbpool, "_pool", pool)
    first, second = on_different_threads(pool, 2)
    seen: dict[str, str] = {}

    def record(identity: str) -> None:
        seen[identity] = threading.current_thread().name

    async def consumer(identity: str) -> None:
        dbpool.charger_scope(identity)
        await asyncio.sleep(0)
        await dbpool.database_sync_to_async(record)(identity)

    async def go() -> None:
        await asyncio.gather(consumer(first), consumer(second))

    async_to_sync(go)()
    assert seen[first] != seen[second]
    assert all(seen[identity] == pool.lane_for(identity).name for identity in seen)


def test_a_call_runs_to_its_end_when_its_caller_stops_waiting(pool):
    release = threading.Event()
    finished: list[str] = []

    def slow() -> str:
        release.wait(10)
        finished.append("slow")
        return "slow"

    def after() -> str:
        finished.append("after")
        return "after"

    async def go() -> str:
        waiting = asyncio.ensure_future(pool.wrap(slow, "CP-1")())
        await asyncio.sleep(0)
        waiting.cancel()  # the socket closed while its write was running
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return await pool.wrap(after, "CP-1")()

    assert async_to_sync(go)() == "after"
    assert finished == ["slow", "after"]


def test_a_call_with_a_deadline_is_dropped_if_its_lane_comes_to_it_late_or_its_caller_left(pool):
    """A handshake's login is worth making only while the handshake lasts: queued behind slow
    work past its deadline, or given up by its caller, it never runs; a call without a
    deadline, queued the same way, still does."""
    release = threading.Event()
    ran: list[str] = []

    def slow() -> None:
        release.wait(10)
        ran.append("slow")

    def record(name: str) -> str:
        ran.append(name)
        return name

    async def go() -> list[object]:
        lane = pool.lane_for("CP-1")
        blocking = asyncio.ensure_future(pool.wrap(slow, "CP-1")())
        late = pool.wrap(record, "CP-1", deadline=time.monotonic() + 0.05)("late")
        left = asyncio.ensure_future(
            pool.wrap(record, "CP-1", deadline=time.monotonic() + 60)("left")
        )
        in_time = pool.wrap(record, "CP-1", deadline=time.monotonic() + 60)("in time")
        plain = pool.wrap(record, "CP-1")("plain")
        await asyncio.sleep(0.1)  # past the first deadline, with the lane still busy
        left.cancel()
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(late, left, in_time, plain, return_exceptions=True)
        await blocking
        assert lane.dropped == 2
        return results

    late, left, in_time, plain = async_to_sync(go)()
    assert isinstance(late, dbpool.Late)
    assert str(late) == "it waited past its deadline for a database thread"
    assert isinstance(left, asyncio.CancelledError)
    assert (in_time, plain) == ("in time", "plain")
    assert ran == ["slow", "in time", "plain"]


def test_receivers_of_a_group_commits_events_run_on_the_receivers_thread(pool, monkeypatch):
    """An event a group commit publishes reaches the domain-event receivers on the pool's
    receivers thread, in commit order, so the commit thread goes on to the next batch; one
    published on a charger's thread reaches them on that thread, before the call returns."""
    monkeypatch.setattr(dbpool, "_pool", pool)
    heard: list[tuple[str, str]] = []
    done = threading.Event()

    def receiver(sender: str, *, charger: str, **_: Any) -> None:
        heard.append((charger, threading.current_thread().name))
        if charger == "CP-3":
            done.set()

    def publish(*chargers: str) -> None:
        for charger in chargers:
            events.publish("charger.connected", organization_pk=1, charger=charger, data={})

    events.domain_event.connect(receiver, dispatch_uid="test-receivers-thread")
    try:

        async def go() -> None:
            await pool.wrap(publish, None, lane=pool.commits)("CP-1", "CP-2", "CP-3")
            await pool.wrap(publish, "CP-4")("CP-4")

        async_to_sync(go)()
        assert ("CP-4", pool.lane_for("CP-4").name) in heard
        assert done.wait(10)
    finally:
        events.domain_event.disconnect(dispatch_uid="test-receivers-thread")
    assert [h for h in heard if h[0] != "CP-4"] == [
        (f"CP-{n}", "cpms-db-receivers") for n in (1, 2, 3)
    ]


def test_receivers_that_fall_behind_run_on_the_commit_thread_again(pool, monkeypatch):
    """Past ``RECEIVERS_BACKLOG`` waiting, the commit thread runs its receivers itself: the
    backlog does not grow without end, and the writes slow down instead."""
    monkeypatch.setattr(dbpool, "_pool", pool)
    monkeypatch.setattr(dbpool, "RECEIVERS_BACKLOG", 1)
    release = threading.Event()
    pool.receivers.post(release.wait, 10)  # the receivers thread is busy
    pool.receivers.post(lambda: None)  # and one more waits
    heard: list[str] = []

    def receiver(sender: str, *, charger: str, **_: Any) -> None:
        heard.append(threading.current_thread().name)

    events.domain_event.connect(receiver, dispatch_uid="test-receivers-backlog")
    try:

        def publish() -> None:
            events.publish("charger.connected", organization_pk=1, charger="CP-1", data={})

        async_to_sync(pool.wrap(publish, None, lane=pool.commits))()
    finally:
        release.set()
        events.domain_event.disconnect(dispatch_uid="test-receivers-backlog")
    assert heard == ["cpms-db-commit"]
