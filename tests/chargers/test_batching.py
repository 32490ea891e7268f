"""The batch writer of the hot path: buffered rows reach the database in one flush."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from chargers import normalize
from chargers.batching import Batch, BatchWriter, FrameRow, SampleRow, StatusRow
from chargers.models import Charger, Connector, Frame, MeterSample

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
async def writer(settings: Any) -> AsyncIterator[BatchWriter]:
    settings.CPMS_FLUSH_INTERVAL = 3600
    writer = BatchWriter(asyncio.get_running_loop())
    yield writer
    writer._task.cancel()
    await asyncio.gather(writer._task, return_exceptions=True)
    await sync_to_async(connections.close_all)()


def frame(charger: Charger, message_id: str) -> FrameRow:
    return FrameRow(
        charger_pk=charger.pk,
        charger_identity=charger.identity,
        direction="in",
        kind=2,
        message_id=message_id,
        action="Heartbeat",
        raw=f'[2,"{message_id}","Heartbeat",{{}}]',
        timestamp=T0,
    )


def status(charger: Charger, connector_id: int) -> StatusRow:
    return StatusRow(
        charger_pk=charger.pk,
        organization_pk=charger.organization_id,
        charger_identity=charger.identity,
        connector_id=connector_id,
        evse_id=None,
        status="Available",
        raw_status="Available",
        error_code="NoError",
        info="",
        vendor_id="",
        vendor_error_code="",
        timestamp=T0,
    )


def sample(value: str) -> normalize.Sample:
    return normalize.Sample(
        T0, normalize.ENERGY_REGISTER, "", "", "Sample.Periodic", Decimal(value), "Wh", value, "Wh"
    )


async def test_a_flush_writes_everything_buffered(writer, charger):
    writer.add_frame(frame(charger, "a"))
    writer.add_seen(charger.pk, T0)
    writer.add_status(status(charger, 1))
    writer.add_samples([SampleRow(charger.pk, 1, sample("10"))])
    assert len(writer.batch) == 4
    await writer.flush()
    assert len(writer.batch) == 0
    assert (await Frame.objects.aget()).message_id == "a"
    assert (await Connector.objects.aget()).status == "Available"
    assert (await MeterSample.objects.aget()).value == Decimal(10)
    assert (await Charger.objects.aget(pk=charger.pk)).last_seen == T0
    assert (writer.flushes, writer.failures, writer.dropped) == (1, 0, 0)


async def test_a_row_the_database_refuses_does_not_hold_back_the_others(writer, charger):
    writer.add_frame(frame(charger, "before"))
    writer.add_status(status(charger, 1))
    writer.add_status(status(charger, -1))  # no connector has a negative number
    writer.add_samples([SampleRow(charger.pk, 2, sample("10"))])
    writer.add_frame(frame(charger, "after"))
    await writer.flush()
    assert len(writer.batch) == 0
    assert writer.dropped == 1
    assert sorted([m async for m in Frame.objects.values_list("message_id", flat=True)]) == [
        "after",
        "before",
    ]
    assert [c async for c in Connector.objects.values_list("connector_id", flat=True)] == [1]
    assert await MeterSample.objects.acount() == 1
    # The writer keeps going.
    writer.add_frame(frame(charger, "later"))
    await writer.flush()
    assert await Frame.objects.filter(message_id="later").aexists()


def test_split_keeps_the_order_of_rows():
    charger = Charger(pk=1, identity="CP", organization_id=1)
    batch = Batch(
        frames=[frame(charger, "a"), frame(charger, "b")],
        seen={1: T0},
        statuses=[status(charger, 1)],
        samples=[SampleRow(1, 1, sample("1"))],
    )
    singles = batch.split()
    assert [len(s) for s in singles] == [1] * 5
    assert [s.frames[0].message_id for s in singles[:2]] == ["a", "b"]
    assert singles[2].seen == {1: T0}


def test_merge_front_puts_older_rows_first_and_keeps_the_latest_seen():
    charger = Charger(pk=1, identity="CP", organization_id=1)
    newer = Batch(frames=[frame(charger, "new")], seen={1: T0.replace(hour=13)})
    newer.merge_front(Batch(frames=[frame(charger, "old")], seen={1: T0, 2: T0}))
    assert [f.message_id for f in newer.frames] == ["old", "new"]
    assert newer.seen == {1: T0.replace(hour=13), 2: T0}
