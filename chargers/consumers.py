"""The OCPP-J WebSocket endpoint, ``/ocpp/<charger_id>``.

The consumer owns the socket: it negotiates the subprotocol, authenticates the charger with HTTP
Basic at the handshake, hands each text frame to the dispatcher of the negotiated version, sends
the answer and journals every frame in and out.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import ChannelFull
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from cpms import metrics
from routing import gateway as routing_gateway

from . import admission, dbpool, events, groupcommit, ocpp16, ocpp21, ocpp201, protocol, services
from .batching import FrameRow, get_writer
from .command_sender import CommandSender
from .dbpool import database_sync_to_async
from .dispatch import Dispatcher, Outcome
from .models import Frame
from .normalize import utc_now

logger = logging.getLogger(__name__)

# Subprotocol -> (OCPP version, handler class, actions the version knows). Newest first.
VERSIONS: dict[str, tuple[str, type, frozenset[str]]] = {
    "ocpp2.1": ("2.1", ocpp21.ChargePoint21, ocpp21.KNOWN_ACTIONS),
    "ocpp2.0.1": ("2.0.1", ocpp201.ChargePoint201, ocpp201.KNOWN_ACTIONS),
    "ocpp1.6": ("1.6", ocpp16.ChargePoint16, ocpp16.KNOWN_ACTIONS),
}

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_REPLACED = 4000  # a newer connection of the same charger took over


def _let_daphne_send_protocol_close_codes() -> None:
    """daphne closes a socket through autobahn's ``sendClose``, which takes only 1000 and
    3000-4999 from an application, and turns any other code into 1011. 1003 and 1009 are the
    protocol's own codes for the frames this consumer refuses, so they go out as the close frame."""
    from daphne.ws_protocol import WebSocketProtocol

    server_close = WebSocketProtocol.serverClose

    def serverClose(self: Any, code: int | None = None) -> None:
        if code in (CLOSE_UNSUPPORTED_DATA, CLOSE_MESSAGE_TOO_BIG):
            self.sendCloseFrame(code=code, isReply=False)
        else:
            server_close(self, code)

    WebSocketProtocol.serverClose = serverClose  # type: ignore[method-assign]


_let_daphne_send_protocol_close_codes()


def basic_credentials(headers: list[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    """The (username, password) of an ``Authorization: Basic`` header, if there is one."""
    for name, value in headers:
        if name.lower() != b"authorization":
            continue
        scheme, _, encoded = value.decode("latin-1").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, sep, password = decoded.partition(":")
        return (username, password) if sep else None
    return None


def _replaced_notice(channel: str, by: str) -> Callable[[Any], Awaitable[None]]:
    """Tells the consumer on ``channel`` (if it still exists, on any node) to close its socket."""

    async def send(layer: Any) -> None:
        try:
            await layer.send(channel, {"type": "chargers.replaced", "by": by})
        except ChannelFull:
            # The inbox of a node that died fills with these until they expire; nobody reads it.
            logger.info("could not tell %s that %s replaced it: its inbox is full", channel, by)

    return send


class OcppConsumer(AsyncWebsocketConsumer):
    charger_identity: str = ""
    connection: services.Connection | None = None
    dispatcher: Dispatcher | None = None
    # Sends this charger's commands, one CALL in flight at a time.
    commands: CommandSender | None = None
    # Whether this socket is counted in the connected-chargers gauge.
    counted_connected: bool = False
    # The charger's upstreams when its route is more than ``local`` alone (routing.gateway).
    router: routing_gateway.Router | None = None
    subprotocol_name: str = ""
    charger_password: str | None = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels hops to its shared database thread before every message to close old
        # connections. Our database calls do that on their own threads (chargers.dbpool), so a
        # frame that needs no database (Heartbeat, StatusNotification) makes no thread hop.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.charger_identity = self.scope["url_route"]["kwargs"]["charger_id"]
        # This socket's database calls run on its charger's thread of the pool, in order.
        dbpool.start()
        dbpool.charger_scope(self.charger_identity)
        subprotocol = protocol.negotiate(self.scope.get("subprotocols") or [], list(VERSIONS))
        if subprotocol is None:
            logger.info(
                "refused %s: no common subprotocol in %s",
                self.charger_identity,
                self.scope.get("subprotocols"),
            )
            await self.close()
            return
        version, handler_class, known_actions = VERSIONS[subprotocol]
        credentials = basic_credentials(self.scope.get("headers", []))
        password: str | None = None
        if credentials is not None:
            username, password = credentials
            if username != self.charger_identity:
                logger.info(
                    "refused %s: Basic username %r differs", self.charger_identity, username
                )
                await self.close()
                return
        # Admission (chargers.admission): a storm of arrivals (a fleet's first day, a gateway's
        # restart) is let in as fast as this process can take it, and the rest refused at once;
        # the charger retries after its back-off. A login the database thread comes to only
        # after CPMS_HANDSHAKE_DEADLINE is dropped, as daphne will soon drop its handshake, so
        # no work is spent on sockets that are gone.
        reason = admission.refusal()
        if reason is not None:
            admission.shed(self.charger_identity, reason)
            await self.close()
            return
        deadline = time.monotonic() + settings.CPMS_HANDSHAKE_DEADLINE
        with admission.pending():
            route = await self._login(version, password, deadline)
        if route is None or self.connection is None:
            await self.close()
            return
        self.writer = get_writer()
        dispatcher_class = getattr(handler_class, "dispatcher_class", Dispatcher)
        self.dispatcher = dispatcher_class(
            handler_class(self.connection, self.writer),
            version=version,
            known_actions=known_actions,
        )
        await self.accept(subprotocol)
        self.counted_connected = True
        metrics.charger_connected()
        self.commands = CommandSender(self, charger_pk=self.connection.charger_pk, version=version)
        await self.commands.start(self.connection.waiting_commands)
        self.subprotocol_name, self.charger_password = subprotocol, password
        if not route.is_local_only:
            self.router = routing_gateway.Router(self, route, password=password)
            await self.router.start()
        if self.connection.previous_channel:
            # Through the event sender: after a node died, every charger that reconnects has a
            # channel there to tell, and awaiting each here held one Redis connection apiece.
            events.send_soon(_replaced_notice(self.connection.previous_channel, self.channel_name))

    async def _login(
        self, version: str, password: str | None, deadline: float
    ) -> routing_gateway.ResolvedRoute | None:
        """Check the charger's password and resolve its route on its database thread, then
        mark it connected in a group commit with the other chargers arriving meanwhile
        (``self.connection``); its route, or None if the handshake is refused."""
        try:
            login, route = await dbpool.deadline_sync_to_async(routing_gateway.login, deadline)(
                identity=self.charger_identity, password=password, version=version
            )
            self.connection = await groupcommit.arrivals().submit(
                services.Arrival(login=login, ocpp_version=version, channel_name=self.channel_name),
                deadline=deadline,
            )
        except services.Refused as exc:
            logger.info("refused %s: %s", self.charger_identity, exc)
            return None
        except dbpool.Late as exc:
            metrics.handshake_shed("late")
            logger.info("refused %s: %s", self.charger_identity, exc)
            return None
        return route

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.dispatcher is None or self.connection is None:
            return
        if text_data is None:
            logger.info("%s sent a binary frame; closing", self.charger_identity)
            await self.close(code=CLOSE_UNSUPPORTED_DATA)
            return
        limit = settings.CPMS_MAX_FRAME_BYTES
        if len(text_data) > limit or (
            len(text_data) * 4 > limit and len(text_data.encode()) > limit
        ):
            logger.info("%s sent a frame over %d bytes; closing", self.charger_identity, limit)
            self._journal(Frame.Direction.IN, 0, "", "", text_data[:2000])
            await self.close(code=CLOSE_MESSAGE_TOO_BIG)
            return
        received_at = utc_now()
        self.writer.add_seen(self.connection.charger_pk, received_at)
        if self.router is not None:
            await self.router.from_charger(text_data, received_at)
            return
        await self.handle_locally(text_data, received_at)

    async def handle_locally(
        self, text_data: str, received_at: Any, *, handled_text: str | None = None
    ) -> Outcome:
        """The built-in CSMS handles a charger frame and answers it; ``handled_text`` is the
        frame as the handlers must see it, when routing rewrote it (the journal keeps the
        charger's own)."""
        assert self.dispatcher is not None
        outcome = await self.dispatcher.handle_text(handled_text or text_data)
        self._journal(
            Frame.Direction.IN,
            outcome.kind,
            outcome.message_id,
            outcome.action,
            text_data,
            received_at,
        )
        if outcome.reply is not None:
            await self.send(text_data=outcome.reply)
            self._journal(
                Frame.Direction.OUT,
                outcome.reply_kind,
                outcome.message_id,
                outcome.action,
                outcome.reply,
            )
        if outcome.answer is not None and self.commands is not None:
            await self.commands.answered(outcome.message_id, outcome.answer)
        return outcome

    def _journal(
        self, direction: str, kind: int, message_id: str, action: str, raw: str, at: Any = None
    ) -> None:
        metrics.frame_counted(direction, kind, action, raw)
        self.writer.add_frame(
            FrameRow(
                charger_pk=self.connection.charger_pk if self.connection else None,
                charger_identity=self.charger_identity,
                direction=direction,
                kind=kind,
                message_id=message_id,
                action=action,
                raw=raw,
                timestamp=at or utc_now(),
            )
        )

    async def chargers_command(self, message: dict[str, Any]) -> None:
        """A command for this charger (by id); the sender task sends it when its turn comes."""
        if self.commands is not None and isinstance(message.get("command"), int):
            await self.commands.received(message["command"])

    async def routing_changed(self, message: dict[str, Any]) -> None:
        """Routes changed (``routing.redial``): follow this charger's new route."""
        if self.connection is not None:
            await routing_gateway.reroute(self)

    async def chargers_replaced(self, message: dict[str, Any]) -> None:
        logger.info("%s reconnected elsewhere; closing the old socket", self.charger_identity)
        await self.close(code=CLOSE_REPLACED)

    async def disconnect(self, code: int) -> None:
        if self.counted_connected:
            self.counted_connected = False
            metrics.charger_disconnected()
        if self.connection is None:
            return
        if self.router is not None:
            router, self.router = self.router, None
            await router.close()
        if self.commands is not None:
            await self.commands.close()
        await database_sync_to_async(services.charger_disconnect)(
            charger_pk=self.connection.charger_pk, channel_name=self.channel_name, close_code=code
        )
