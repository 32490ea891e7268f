"""Batched writes for the hot path: journal frames, last-seen times, connector statuses and meter
samples outside sessions.

Consumers append to an in-memory buffer and return at once; one task per event loop flushes the
buffer every ``CPMS_FLUSH_INTERVAL`` seconds (or sooner when it fills) in one database transaction,
with one thread hop. A failed flush keeps its rows and retries, so nothing is lost while the
database is briefly away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import DataError, IntegrityError

from . import normalize
from .dbpool import background_sync_to_async

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class FrameRow:
    charger_pk: int | None
    charger_identity: str
    direction: str
    kind: int
    message_id: str
    action: str
    raw: str
    timestamp: datetime
    leg: str = "charger"
    original_message_id: str = ""


@dataclass(slots=True)
class StatusRow:
    charger_pk: int
    organization_pk: int
    charger_identity: str
    connector_id: int
    evse_id: int | None
    status: str
    raw_status: str
    error_code: str
    info: str
    vendor_id: str
    vendor_error_code: str
    timestamp: datetime
    evse_connector_id: int | None = None  # 2.x: the connector's id within its EVSE
    corrections: tuple[str, ...] = ()


@dataclass(slots=True)
class SampleRow:
    charger_pk: int
    connector_id: int
    sample: normalize.Sample


@dataclass(slots=True)
class Batch:
    frames: list[FrameRow] = field(default_factory=list)
    seen: dict[int, datetime] = field(default_factory=dict)
    statuses: list[StatusRow] = field(default_factory=list)
    samples: list[SampleRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames) + len(self.seen) + len(self.statuses) + len(self.samples)

    def split(self) -> list[Batch]:
        """One batch per row, in order, to single out a row the database refuses."""
        return (
            [Batch(frames=[row]) for row in self.frames]
            + [Batch(seen={pk: moment}) for pk, moment in self.seen.items()]
            + [Batch(statuses=[row]) for row in self.statuses]
            + [Batch(samples=[row]) for row in self.samples]
        )

    def merge_front(self, older: Batch) -> None:
        """Put the rows of a failed flush back ahead of what arrived since."""
        self.frames[:0] = older.frames
        self.statuses[:0] = older.statuses
        self.samples[:0] = older.samples
        for pk, moment in older.seen.items():
            if pk not in self.seen or self.seen[pk] < moment:
                self.seen[pk] = moment


class BatchWriter:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.batch = Batch()
        self.interval = settings.CPMS_FLUSH_INTERVAL
        self.max_rows = settings.CPMS_FLUSH_MAX_ROWS
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task = loop.create_task(self._run(), name="cpms-batch-writer")
        self.flushes = 0
        self.failures = 0
        self.dropped = 0

    def add_frame(self, row: FrameRow) -> None:
        self.batch.frames.append(row)
        self._check_size()

    def add_seen(self, charger_pk: int, moment: datetime) -> None:
        self.batch.seen[charger_pk] = moment

    def add_status(self, row: StatusRow) -> None:
        self.batch.statuses.append(row)
        self._check_size()

    def add_samples(self, rows: list[SampleRow]) -> None:
        self.batch.samples.extend(rows)
        self._check_size()

    def _check_size(self) -> None:
        if len(self.batch) >= self.max_rows:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                logger.exception("batched write failed; keeping the rows for the next flush")
                await asyncio.sleep(min(5.0, self.interval * 4))

    async def flush(self) -> None:
        async with self._lock:
            if not len(self.batch):
                return
            batch, self.batch = self.batch, Batch()
            try:
                await background_sync_to_async(write_batch)(batch)
            except _REFUSED:
                # Retrying cannot help a row the database refuses, and it would hold back every
                # row behind it: write the rows one at a time and drop only the refused ones.
                logger.exception(
                    "batched write refused; writing its %d rows one by one", len(batch)
                )
                await self._write_by_row(batch)
            except BaseException:
                self.failures += 1
                self.batch.merge_front(batch)
                raise
            self.flushes += 1

    async def _write_by_row(self, batch: Batch) -> None:
        singles = batch.split()
        for index, single in enumerate(singles):
            try:
                await background_sync_to_async(write_batch)(single)
            except _REFUSED:
                self.dropped += 1
                logger.exception("dropped a row the database refuses: %r", single)
            except BaseException:
                self.failures += 1
                for rest in reversed(singles[index:]):
                    self.batch.merge_front(rest)
                raise


# Errors about the rows themselves (constraints, out-of-range values), not the database's health.
_REFUSED = (DataError, IntegrityError, OverflowError)


def write_batch(batch: Batch) -> None:
    from . import services

    services.batch_write(
        frames=batch.frames, seen=batch.seen, statuses=batch.statuses, samples=batch.samples
    )


_writers: dict[asyncio.AbstractEventLoop, BatchWriter] = {}


def get_writer() -> BatchWriter:
    """The writer of the running event loop, started on first use."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        for old_loop in [old for old in _writers if old.is_closed()]:
            del _writers[old_loop]
        writer = _writers[loop] = BatchWriter(loop)
    return writer


async def flush_now() -> None:
    """Write whatever is buffered on this loop (used at disconnect and by tests)."""
    await get_writer().flush()
