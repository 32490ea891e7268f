"""The connection's side of commands: one sender task per charger socket keeps one CALL in
flight and the others queued in order; the charger's answers come back through the consumer's
``receive()``, which never waits for them.

Commands reach a connection as ``chargers.command`` channel-layer messages carrying a command
id, and from the database: a connection picks up its charger's waiting commands when it opens.
On the embedded default the in-memory channel layer reaches only its own process, so each server
process also polls for requested commands of the chargers it holds: a command created in another
process (a second server, a management command, the benchmark) is found within
``CPMS_COMMAND_POLL_INTERVAL`` seconds.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from . import command_services, dbpool, groupcommit, protocol
from .dbpool import background_sync_to_async, database_sync_to_async
from .models import Frame

logger = logging.getLogger(__name__)

# Senders of this process, by the channel name of their consumer.
_senders: dict[str, CommandSender] = {}
# The poll task of each server loop (embedded default only).
_pollers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


@dataclass(slots=True)
class Flight:
    """The one CALL in flight: its command, message id, and the answer's arrival."""

    command_pk: int
    message_id: str
    action: str
    payload: dict[str, Any]
    answered: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class CommandSender:
    """Sends one charger's commands over its consumer's socket, one CALL at a time."""

    def __init__(self, consumer: Any, *, charger_pk: int, version: str):
        self.consumer = consumer
        self.charger_pk = charger_pk
        self.charger = command_services.Holder(
            pk=charger_pk,
            identity=consumer.connection.identity,
            organization_id=consumer.connection.organization_pk,
        )
        self.version = version
        self.channel_name: str = consumer.channel_name
        self._waiting: list[int] = []  # a heap: oldest command first
        self._known: set[int] = set()
        self._wake = asyncio.Event()
        # The command being claimed (its id and the message id it will go out with), and the
        # claim's write, which close() lets end before it fails what the connection leaves.
        self.claiming: tuple[int, str] | None = None
        self._claim: asyncio.Task[command_services.Claim | None] | None = None
        self.flight: Flight | None = None
        self._task: asyncio.Task[None] | None = None
        # One CALL in flight to the charger, shared with upstreams' CALLs (routing.gateway).
        self.gate = asyncio.Lock()

    @property
    def busy(self) -> bool:
        return self.flight is not None or self.claiming is not None or bool(self._waiting)

    async def start(self, waiting: tuple[int, ...] | None = None) -> None:
        """Take the charger's waiting commands: ``waiting`` as read when it connected, or
        read now."""
        _senders[self.channel_name] = self
        command_services.LOCAL_CHANNELS.add(self.channel_name)
        _ensure_poller()
        if waiting is None:
            waiting = tuple(
                await database_sync_to_async(command_services.commands_waiting)(
                    charger_pk=self.charger_pk
                )
            )
        for pk in waiting:
            self._submit(pk)

    def _submit(self, command_pk: int) -> bool:
        if command_pk in self._known:
            return False
        self._known.add(command_pk)
        heapq.heappush(self._waiting, command_pk)
        self._wake.set()
        if self._task is None:
            # Started with the first command: most connections never get one, and an idle
            # task per socket is memory for nothing.
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"commands:{self.consumer.charger_identity}"
            )
        return True

    async def received(self, *command_pks: int) -> None:
        """Command ids from the channel layer (or the poll): queue them, and say so on the rows
        of those that have to wait behind another CALL (in one database call)."""
        behind: list[int] = []
        for command_pk in command_pks:
            busy = self.busy
            if self._submit(command_pk) and busy:
                behind.append(command_pk)
        if behind:
            # The poll calls this from a task of no charger: the rows are this charger's.
            with dbpool.charger_calls(self.consumer.charger_identity):
                mark = database_sync_to_async(command_services.commands_mark_queued)
            await mark(command_pks=behind, charger=self.charger)

    async def _run(self) -> None:
        while True:
            while not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            command_pk = heapq.heappop(self._waiting)
            try:
                await self._deliver(command_pk)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "command %s to %s failed", command_pk, self.consumer.charger_identity
                )
            finally:
                self._known.discard(command_pk)

    async def _deliver(self, command_pk: int) -> None:
        message_id = str(uuid.uuid4())
        self.claiming = (command_pk, message_id)
        # Claimed with other connections' claims (chargers.groupcommit), in a task of its own: a
        # claim is written even when the close cancels this one.
        self._claim = asyncio.get_running_loop().create_task(
            groupcommit.command_claims().submit(
                command_services.ClaimIn(
                    command_pk=command_pk,
                    charger=self.charger,
                    version=self.version,
                    message_id=message_id,
                )
            ),
            name=f"claim:{self.consumer.charger_identity}",
        )
        try:
            claim = await asyncio.shield(self._claim)
        finally:
            self.claiming = None
        if claim is None:
            return
        async with self.gate:
            await self._fly(command_pk, message_id, claim)

    async def _fly(self, command_pk: int, message_id: str, claim: command_services.Claim) -> None:
        dispatcher = self.consumer.dispatcher
        flight = Flight(command_pk, message_id, claim.action, claim.payload)
        self.flight = flight
        try:
            dispatcher.pending[message_id] = claim.action
            payload = claim.payload
            router = getattr(self.consumer, "router", None)
            if router is not None:
                # Routed: a transaction may run at the charger under another upstream's id.
                payload = router.local_command_payload(claim.action, payload)
            text = protocol.call(message_id, claim.action, payload)
            await self.consumer.send(text_data=text)
            self.consumer._journal(
                Frame.Direction.OUT, protocol.CALL, message_id, claim.action, text
            )
            timeout = settings.CPMS_CALL_TIMEOUT
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(flight.answered)
            except TimeoutError:
                if dispatcher.pending.pop(message_id, None) is not None:
                    await database_sync_to_async(command_services.command_timeout)(
                        command_pk=command_pk,
                        charger=self.charger,
                        action=claim.action,
                        message_id=message_id,
                        seconds=timeout,
                    )
                else:
                    # The answer arrived just now; receive() is recording it.
                    await flight.answered
        finally:
            self.flight = None

    async def answered(
        self, message_id: str, answer: protocol.CallResult | protocol.CallError
    ) -> None:
        """The charger answered the CALL in flight: record it (receive() awaits this, so frames
        that follow the answer are handled after it is on the row)."""
        flight = self.flight
        if flight is None or flight.message_id != message_id:
            return
        try:
            await groupcommit.command_answers().submit(
                command_services.AnswerIn(
                    command_pk=flight.command_pk,
                    charger=self.charger,
                    action=flight.action,
                    payload=flight.payload,
                    message_id=message_id,
                    version=self.version,
                    answer=answer,
                )
            )
        finally:
            if not flight.answered.done():
                flight.answered.set_result(None)

    async def close(self) -> None:
        """The socket closed: stop sending, fail the CALL in flight, and leave the waiting
        commands queued (if they may wait) or failed."""
        _senders.pop(self.channel_name, None)
        command_services.LOCAL_CHANNELS.discard(self.channel_name)
        flight = self.flight
        # A claim still on its way to the database may mark its command sent after all.
        in_flight = (flight.command_pk, flight.message_id) if flight else self.claiming
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:
                logger.exception("command sender of %s failed", self.consumer.charger_identity)
        claim = self._claim
        if claim is not None and not claim.done():
            # The claim goes on to the database: what follows must find the command as it
            # leaves it (sent with the message id of ``in_flight``).
            await asyncio.wait([claim])
        if in_flight is not None:
            self.consumer.dispatcher.pending.pop(in_flight[1], None)
        try:
            await database_sync_to_async(command_services.commands_connection_closed)(
                charger=self.charger,
                channel_name=self.channel_name,
                in_flight=in_flight,
            )
        except Exception:
            # The sweep puts the rows right later; the disconnect itself must go on.
            logger.exception("commands of %s after the disconnect", self.consumer.charger_identity)


# --- The embedded default's poll -------------------------------------------------------------------


def _ensure_poller() -> None:
    if command_services.layer_spans_processes():
        return
    loop = asyncio.get_running_loop()
    if loop not in _pollers:
        _pollers[loop] = loop.create_task(_poll(), name="cpms-command-poll")


async def _poll() -> None:
    while True:
        await asyncio.sleep(settings.CPMS_COMMAND_POLL_INTERVAL)
        if not _senders:
            continue
        try:
            found = await background_sync_to_async(command_services.commands_requested_on)(
                channels=frozenset(_senders)
            )
            by_channel: dict[str, list[int]] = {}
            for command_pk, channel in found:
                by_channel.setdefault(channel, []).append(command_pk)
            for channel, pks in by_channel.items():
                sender = _senders.get(channel)
                if sender is not None:
                    await sender.received(*pks)
        except Exception:
            logger.exception("polling for commands failed")
