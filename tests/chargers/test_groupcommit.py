"""Group commit: writes of many consumers gathered into few transactions, each answered with its
own result, a refused one failing alone; and MeterValues of many sessions in one batch, their
sessions locked in pk order."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from chargers import dbpool, groupcommit, services
from chargers.models import MeterSample, Session
from tests.chargers.rowlocks import OtherConnection, locked_rows
from tests.chargers.test_session_energy import meter_values, recomputed, register, session_start

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)


def run_together(commit: groupcommit.GroupCommit[int, int], items: list[int]) -> list[object]:
    """Submit every item from its own task at once, as many consumers would."""

    async def go() -> list[object]:
        return await asyncio.gather(
            *(commit.submit(item) for item in items), return_exceptions=True
        )

    return async_to_sync(go)()


def test_writes_submitted_together_are_gathered_and_each_gets_its_own_result():
    written: list[list[int]] = []

    def write_many(items: list[int]) -> list[int]:
        written.append(list(items))
        return [item * 10 for item in items]

    commit = groupcommit.GroupCommit(write_many, limit=20)
    results = run_together(commit, list(range(50)))
    assert results == [item * 10 for item in range(50)]
    # The first writes alone; the rest gathered while it was written, 20 at most per batch.
    assert [item for batch in written for item in batch] == list(range(50))
    assert len(written) < 50
    assert max(len(batch) for batch in written) == 20 == commit.largest


def test_a_write_the_batch_cannot_take_fails_alone():
    def write_many(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("13 is refused")
        return [item + 1 for item in items]

    commit = groupcommit.GroupCommit(write_many)
    results = run_together(commit, list(range(30)))
    assert [r for i, r in enumerate(results) if i != 13] == [i + 1 for i in range(30) if i != 13]
    assert isinstance(results[13], ValueError)
    assert commit.retried >= 1


def test_each_loop_has_its_own_committer_per_write():
    async def both() -> tuple[object, object, object]:
        return (
            groupcommit.meter_values(),
            groupcommit.meter_values(),
            groupcommit.committer(lambda items: items),
        )

    first, again, other = async_to_sync(both)()
    assert first is again
    assert other is not first
    assert async_to_sync(both)()[0] is not first  # another loop


def test_meter_values_of_many_sessions_in_one_batch(make_charger, id_token):
    chargers = [make_charger(f"CP-{n}") for n in range(4)]
    memories: list[services.OpenSessions] = [{} for _ in chargers]
    transactions = []
    for charger, memory in zip(chargers, memories, strict=True):
        tx = session_start(charger, meter_start=1000, moment=T0)
        meter_values(charger, tx, [register(1100, T0 + timedelta(minutes=1))], memory)
        transactions.append(tx)
    # CP-2's session was written since by another connection; CP-3 sends a late reading.
    meter_values(chargers[2], transactions[2], [register(1900, T0 + timedelta(minutes=3))], {})

    def message(
        index: int, value: int, minute: int, transaction_id: str | None = None
    ) -> services.MeterValuesIn:
        charger = chargers[index]
        return services.MeterValuesIn(
            charger_pk=charger.pk,
            organization_pk=charger.organization_id,
            connector_id=1,
            transaction_id=transaction_id or transactions[index],
            samples=[register(value, T0 + timedelta(minutes=minute))],
            open_sessions=memories[index],
        )

    batch = [
        message(0, 1500, 2),
        message(1, 1600, 2),
        message(2, 1500, 4),  # below CP-2's 1900 it has not seen: a glitch, ignored
        message(3, 1050, 0),  # earlier than its 1100: the session is recomputed
        message(0, 99, 5, transaction_id="404"),  # no such transaction: kept without a session
    ]
    with CaptureQueriesContext(connection) as queries:
        known = services.session_meter_values_many(messages=batch)
    assert known == [True, True, True, True, False]
    energies = [
        Session.objects.get(transaction_id=tx, charger=c).energy_wh
        for c, tx in zip(chargers, transactions, strict=True)
    ]
    assert energies == [Decimal(500), Decimal(600), Decimal(900), Decimal(100)]
    for charger, tx in zip(chargers, transactions, strict=True):
        session = Session.objects.get(transaction_id=tx, charger=charger)
        assert (session.energy_wh, session.corrections) == recomputed(tx, False, charger)
    assert MeterSample.objects.filter(session=None, charger=chargers[0]).count() == 1
    inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    # One INSERT for the four running sessions, one for the unknown transaction's sample.
    assert len(inserts) == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("remembered", ["every session", "no session", "the highest only"])
def test_meter_values_of_many_sessions_lock_them_in_pk_order(make_charger, id_token, remembered):
    """Whether the batch's one UPDATE writes its sessions or some are read and written one by
    one (those the connection does not remember), the sessions' rows are locked in pk order,
    whatever order the messages come in."""
    chargers = [make_charger(f"CP-{n}") for n in (1, 2, 3)]
    transactions = [session_start(charger, meter_start=1000, moment=T0) for charger in chargers]
    memories: list[services.OpenSessions] = [{} for _ in chargers]
    # Primed high first: each write moves its session's row to the table's end, so the table
    # now holds the rows high first, as a plan that scans it would meet them.
    for charger, tx, memory in reversed(list(zip(chargers, transactions, memories, strict=True))):
        meter_values(charger, tx, [register(1100, T0 + timedelta(minutes=1))], memory)
    low, middle, high = Session.objects.order_by("pk")
    if remembered == "no session":
        memories = [{} for _ in chargers]
    elif remembered == "the highest only":
        memories[:2] = [{}, {}]
    batch = [
        services.MeterValuesIn(
            charger_pk=chargers[index].pk,
            organization_pk=chargers[index].organization_id,
            connector_id=1,
            transaction_id=transactions[index],
            samples=[register(1500, T0 + timedelta(minutes=2))],
            open_sessions=memories[index],
        )
        for index in (2, 1, 0)
    ]

    def write() -> list[bool]:
        return services.session_meter_values_many(messages=batch)

    if connection.vendor == "postgresql":
        with transaction.atomic():
            # Another batch holds the middle session: this one waits for it holding the session
            # below, and none above (which that batch may go on to want).
            Session.objects.select_for_update(no_key=True).get(pk=middle.pk)
            writing = OtherConnection(write)
            writing.wait_until_blocked()
            assert locked_rows(Session._meta.db_table, [low.pk, high.pk]) == {low.pk}
        assert writing.outcome() == [True, True, True]
    else:
        # One lock for the whole database: what is left to see is the sessions taken in pk
        # order, by the UPDATE that writes them all, or else by a statement before any write.
        with CaptureQueriesContext(connection) as queries:
            assert write() == [True, True, True]
        done = [q["sql"] for q in queries.captured_queries]
        updates = [sql for sql in done if sql.startswith('UPDATE "chargers_session"')]
        if remembered == "every session":
            named = [re.findall(r'"chargers_session"\."id" = (\d+)', sql) for sql in updates]
            assert [int(pk) for [pk] in named] == [low.pk, middle.pk, high.pk]
        else:
            [lock] = [s for s in done if s.startswith('SELECT "chargers_session"."id" AS "pk"')]
            assert lock.endswith(" ORDER BY 1 ASC")  # by its one column, the pk
            assert done.index(lock) < done.index(updates[0])
    assert (
        list(Session.objects.order_by("pk").values_list("energy_wh", flat=True))
        == [Decimal(500)] * 3
    )


def test_a_batch_sample_the_database_already_has_sends_the_batch_to_recompute(charger, id_token):
    memory: services.OpenSessions = {}
    tx = session_start(charger, meter_start=1000, moment=T0)
    meter_values(charger, tx, [register(1200, T0 + timedelta(minutes=1))], memory)
    # A re-send of that message, with one new reading beside the old one.
    again = [register(1200, T0 + timedelta(minutes=1)), register(1400, T0 + timedelta(minutes=2))]
    assert meter_values(charger, tx, again, memory)
    assert Session.objects.get(transaction_id=tx).energy_wh == Decimal(400)
    assert MeterSample.objects.filter(session__transaction_id=tx).count() == 2
    # The memory is primed again from the database's truth: the next in-order message adds on.
    assert meter_values(charger, tx, [register(1500, T0 + timedelta(minutes=3))], memory)
    assert Session.objects.get(transaction_id=tx).energy_wh == Decimal(500)


def test_an_item_past_its_deadline_or_whose_caller_left_is_not_written():
    """An arrival whose handshake is gone is not marked connected: an item whose batch starts
    after its deadline, or whose caller stopped waiting, is dropped with ``Late``."""
    written: list[int] = []
    release = threading.Event()

    def write_many(items: list[int]) -> list[int]:
        written.extend(items)
        if items == [0]:
            release.wait(10)
        return items

    commit = groupcommit.GroupCommit(write_many)

    async def go() -> list[object]:
        now = time.monotonic()
        blocker = asyncio.ensure_future(commit.submit(0))
        await asyncio.sleep(0.05)  # the first batch, [0], is being written
        late = asyncio.ensure_future(commit.submit(1, deadline=now + 0.01))
        left = asyncio.ensure_future(commit.submit(2, deadline=now + 60))
        kept = asyncio.ensure_future(commit.submit(3, deadline=now + 60))
        plain = asyncio.ensure_future(commit.submit(4))
        await asyncio.sleep(0.05)
        left.cancel()
        release.set()
        return await asyncio.gather(blocker, late, left, kept, plain, return_exceptions=True)

    blocker, late, left, kept, plain = async_to_sync(go)()
    assert (blocker, kept, plain) == (0, 3, 4)
    assert isinstance(late, dbpool.Late)
    assert isinstance(left, asyncio.CancelledError)
    assert written == [0, 3, 4]
    assert commit.dropped == 2
