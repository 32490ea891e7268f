"""Routes a charger's frames to the ``@on`` handlers of its OCPP version and builds the answers.

The dispatcher is transport free: ``handle_text`` takes one text frame and returns the frames to
send back. The consumer owns the socket and the journal.
"""

from __future__ import annotations

import functools
import inspect
import logging
from dataclasses import dataclass
from typing import Any

from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.routing import create_route_map

from . import protocol
from .normalize import NormalizationError

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Outcome:
    """What one incoming frame produced: the reply (if any) and what the journal should say."""

    reply: str | None
    kind: int
    message_id: str
    action: str
    reply_kind: int = 0
    # The answer to one of our own CALLs (its id was in ``pending``); None for any other frame.
    answer: protocol.CallResult | protocol.CallError | None = None


class Dispatcher:
    """Feeds frames to a handler object whose methods carry ``@on(Action.x)``."""

    # Actions a charger may send before its registration is Accepted.
    pre_acceptance_actions = frozenset({"BootNotification"})

    def __init__(self, handlers: Any, *, version: str, known_actions: frozenset[str]):
        self.handlers = handlers
        self.version = version
        self.known_actions = known_actions
        # The handlers' methods by action, found once per handler class and shared by every
        # connection; they are called with the connection's handler object.
        self.route_map = class_route_map(type(handlers))  # type: ignore[arg-type]
        # Our own CALLs awaiting an answer: message id -> action.
        self.pending: dict[str, str] = {}

    def error(self, exc: protocol.FrameError) -> str:
        return protocol.call_error(
            exc.message_id,
            protocol.error_code(exc.code, self.version),
            exc.description,
            exc.details,
        )

    async def handle_text(self, text: str) -> Outcome:
        try:
            message = protocol.parse(text)
        except protocol.FrameError as exc:
            return Outcome(self.error(exc), 0, exc.message_id, "", protocol.CALLERROR)
        if isinstance(message, protocol.Call):
            try:
                if "\\u0000" in text and _has_nul(message.payload):
                    # No database stores NUL in text alike; refuse it the same way everywhere.
                    raise protocol.FrameError(
                        "PropertyConstraintViolation",
                        "strings must not contain NUL characters",
                        message.message_id,
                    )
                reply, reply_kind = await self._run_handler(message), protocol.CALLRESULT
            except protocol.FrameError as exc:
                reply, reply_kind = self.error(exc), protocol.CALLERROR
            return Outcome(reply, protocol.CALL, message.message_id, message.action, reply_kind)
        kind = (
            protocol.CALLRESULT if isinstance(message, protocol.CallResult) else protocol.CALLERROR
        )
        action = self.pending.pop(message.message_id, "")
        if not action:
            logger.info("answer to an unknown message id %s ignored", message.message_id)
        return Outcome(None, kind, message.message_id, action, answer=message if action else None)

    async def _run_handler(self, call: protocol.Call) -> str:
        handlers = self.route_map.get(call.action)
        if handlers is None or "_on_action" not in handlers:
            if call.action in self.known_actions:
                raise protocol.FrameError(
                    "NotSupported",
                    f"{call.action} is not sent by a charger in OCPP {self.version}",
                    call.message_id,
                )
            raise protocol.FrameError(
                "NotImplemented", f"unknown action {call.action!r}", call.message_id
            )
        if call.action not in self.pre_acceptance_actions and not self.handlers.accepts_requests():
            raise protocol.FrameError(
                "SecurityError",
                "the charger's registration is not Accepted; send BootNotification first",
                call.message_id,
            )
        # Handlers may look at (or, for a known vendor quirk, repair) the frame before it is
        # validated; the journal keeps what the charger sent.
        prepare = getattr(self.handlers, "prepare_call", None)
        if prepare is not None:
            call = prepare(call)
        protocol.validate(protocol.CALL, call.action, call.payload, self.version, call.message_id)
        kwargs = snake_keys(call.payload)
        handler = handlers["_on_action"]
        try:
            result = handler(self.handlers, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except NormalizationError as exc:
            raise protocol.FrameError(
                "PropertyConstraintViolation", str(exc)[:250], call.message_id
            ) from None
        except protocol.FrameError as exc:
            exc.message_id = call.message_id
            raise
        except Exception:
            logger.exception("handler for %s failed", call.action)
            raise protocol.FrameError(
                "InternalError", f"{call.action} could not be processed", call.message_id
            ) from None
        payload = camel_keys(remove_nones(serialize_as_dict(result)))
        try:
            protocol.validate(
                protocol.CALLRESULT, call.action, payload, self.version, call.message_id
            )
        except protocol.FrameError:
            logger.exception("our answer to %s is not schema-valid: %s", call.action, payload)
            raise protocol.FrameError(
                "InternalError", f"{call.action} could not be answered", call.message_id
            ) from None
        return protocol.call_result(call.message_id, payload)


@functools.cache
def class_route_map(handler_class: type) -> dict[str, dict[str, Any]]:
    """``ocpp``'s ``create_route_map`` of a handler class: its ``@on`` functions by action."""
    return create_route_map(handler_class)


def snake_keys(data: Any) -> Any:
    """``ocpp``'s ``camel_to_snake_case``, with each key's spelling worked out once."""
    if isinstance(data, dict):
        return {_snake_key(key): snake_keys(value) for key, value in data.items()}
    if isinstance(data, list):
        return [snake_keys(value) for value in data]
    return data


def camel_keys(data: Any) -> Any:
    """``ocpp``'s ``snake_to_camel_case``, with each key's spelling worked out once."""
    if isinstance(data, dict):
        return {_camel_key(key): camel_keys(value) for key, value in data.items()}
    if isinstance(data, list):
        return [camel_keys(value) for value in data]
    return data


# Bounded: a charger chooses the keys it sends.
@functools.lru_cache(maxsize=4096)
def _snake_key(key: str) -> str:
    return next(iter(camel_to_snake_case({key: None})))


@functools.lru_cache(maxsize=4096)
def _camel_key(key: str) -> str:
    return next(iter(snake_to_camel_case({key: None})))


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False
