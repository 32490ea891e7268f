"""Group commit for writes that must be persisted before the charger gets its answer.

Every consumer of a server's event loop hands such a write (MeterValues inside a transaction, a
charger marked connected, a BootNotification, a command claimed for sending or its answer) to the
loop's committer and waits for it. The committer writes whatever has gathered in one thread
hop and one transaction, then answers each waiting consumer. Nothing waits on purpose: while one
batch is written the next gathers, so a quiet gateway writes each message on its own and a busy
one writes hundreds together, with a handful of statements. When a batch fails, its messages are
written again one by one, so that a message the database refuses fails alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from . import command_services, services
from .dbpool import Late, commit_sync_to_async

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

# Most messages written in one transaction.
BATCH_LIMIT = 500


class GroupCommit(Generic[Item, Result]):
    """Gathers items from many tasks and writes them with ``write_many`` (items in, results in
    the same order out; synchronous, run on the database pool's commit thread)."""

    def __init__(
        self, write_many: Callable[[list[Item]], list[Result]], *, limit: int = BATCH_LIMIT
    ):
        self.write_many = write_many
        self.limit = limit
        self._pending: list[tuple[Item, asyncio.Future[Result], float | None]] = []
        self._writing: asyncio.Task[None] | None = None
        # Counters, for tests and the curious.
        self.batches = 0
        self.largest = 0
        self.retried = 0
        self.dropped = 0

    async def submit(self, item: Item, *, deadline: float | None = None) -> Result:
        """Write ``item`` with the next batch; its result once the batch has committed. With a
        ``deadline`` (``time.monotonic()``), an item whose batch starts later, or whose caller
        stopped waiting before, is not written and fails with ``dbpool.Late``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future, deadline))
        if self._writing is None or self._writing.done():
            self._writing = loop.create_task(self._write_all(), name="cpms-group-commit")
        return await future

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        """The next batch, without the items that are no longer worth writing."""
        now = time.monotonic()
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        taken = 0
        for item, future, deadline in self._pending:
            if len(batch) == self.limit:
                break
            taken += 1
            if deadline is not None and (future.done() or now > deadline):
                self.dropped += 1
                _fail(future, Late("its deadline passed before its batch was written"))
            else:
                batch.append((item, future))
        del self._pending[:taken]
        return batch

    async def _write_all(self) -> None:
        while self._pending:
            batch = self._take()
            if not batch:
                continue
            self.batches += 1
            self.largest = max(self.largest, len(batch))
            try:
                results = await commit_sync_to_async(self.write_many)([item for item, _ in batch])
            except Exception as exc:
                if len(batch) == 1:
                    _fail(batch[0][1], exc)
                    continue
                logger.warning(
                    "a batch of %d writes failed; writing them one by one",
                    len(batch),
                    exc_info=True,
                )
                self.retried += 1
                await self._write_one_by_one(batch)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():  # else its socket closed and nobody waits
                    future.set_result(result)

    async def _write_one_by_one(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        for item, future in batch:
            try:
                [result] = await commit_sync_to_async(self.write_many)([item])
            except Exception as exc:
                _fail(future, exc)
            else:
                if not future.done():
                    future.set_result(result)


def _fail(future: asyncio.Future[Result], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)


# Each event loop's committers, by write function.
_committers: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[Callable[..., object], GroupCommit[object, object]]
] = weakref.WeakKeyDictionary()


def committer(write_many: Callable[[list[Item]], list[Result]]) -> GroupCommit[Item, Result]:
    """The running loop's committer for ``write_many``."""
    by_function = _committers.setdefault(asyncio.get_running_loop(), {})
    found = by_function.get(write_many)
    if found is None:
        found = by_function[write_many] = GroupCommit(write_many)  # type: ignore[assignment,arg-type]
    return found  # type: ignore[return-value]


def meter_values() -> GroupCommit[services.MeterValuesIn, bool]:
    """The running loop's committer of MeterValues inside transactions."""
    return committer(_meter_values_many)


def _meter_values_many(messages: list[services.MeterValuesIn]) -> list[bool]:
    return services.session_meter_values_many(messages=messages)


def arrivals() -> GroupCommit[services.Arrival, services.Connection]:
    """The running loop's committer of accepted handshakes (chargers marked connected)."""
    return committer(_arrivals_many)


def _arrivals_many(arrivals: list[services.Arrival]) -> list[services.Connection]:
    return services.chargers_connected_many(arrivals=arrivals)


def boots() -> GroupCommit[services.Boot, services.BootResult]:
    """The running loop's committer of BootNotifications."""
    return committer(_boots_many)


def _boots_many(boots: list[services.Boot]) -> list[services.BootResult]:
    return services.chargers_boot_many(boots=boots)


def command_claims() -> GroupCommit[command_services.ClaimIn, command_services.Claim | None]:
    """The running loop's committer of commands claimed for sending."""
    return committer(_command_claims_many)


def _command_claims_many(
    claims: list[command_services.ClaimIn],
) -> list[command_services.Claim | None]:
    return command_services.command_claim_many(claims=claims)


def command_answers() -> GroupCommit[command_services.AnswerIn, str]:
    """The running loop's committer of chargers' answers to their commands."""
    return committer(_command_answers_many)


def _command_answers_many(answers: list[command_services.AnswerIn]) -> list[str]:
    return command_services.command_answer_record_many(answers=answers)
