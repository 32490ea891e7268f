"""OCPP-J framing, sans I/O: parse a text frame, validate payloads, and build CALLRESULT and
CALLERROR frames with the error codes of each OCPP version.

Schema validators come from the ``ocpp`` package and are cached, with a compiled fast path for
valid payloads; validation runs inline, with no thread per frame.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastjsonschema
from jsonschema.exceptions import ValidationError as SchemaError
from ocpp.messages import get_validator

CALL, CALLRESULT, CALLERROR = 2, 3, 4

SUBPROTOCOLS = {"ocpp1.6": "1.6", "ocpp2.0.1": "2.0.1", "ocpp2.1": "2.1"}


def negotiate(offered: list[str], supported: list[str]) -> str | None:
    """The newest subprotocol both sides speak, in our order of preference."""
    for name in supported:
        if name in offered:
            return name
    return None


class FrameError(Exception):
    """A frame we answer with a CALLERROR; ``code`` is version neutral, spelled at send time."""

    def __init__(self, code: str, description: str, message_id: str = "-1", **details: Any):
        super().__init__(description)
        self.code = code
        self.description = description
        self.message_id = message_id
        self.details = details


# Codes whose spelling differs between 1.6 and 2.x.
_SPELLING = {
    "1.6": {
        "FormatViolation": "FormationViolation",
        "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
        "MessageTypeNotSupported": "ProtocolError",
        "RpcFrameworkError": "ProtocolError",
    },
}


def error_code(code: str, version: str) -> str:
    return _SPELLING.get(version, {}).get(code, code)


@dataclass(frozen=True, slots=True)
class Call:
    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResult:
    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallError:
    message_id: str
    code: str
    description: str
    details: dict[str, Any]


Message = Call | CallResult | CallError


def parse(text: str) -> Message:
    """Parse one OCPP-J frame; raises FrameError with the message id when one can be read."""
    try:
        frame = json.loads(text)
    except ValueError as exc:
        raise FrameError("FormatViolation", f"frame is not valid JSON: {exc}") from None
    if not isinstance(frame, list) or not frame:
        raise FrameError("FormatViolation", "frame is not a JSON array")
    type_id = frame[0]
    raw_id = frame[1] if len(frame) > 1 else None
    message_id = raw_id if isinstance(raw_id, str) else "-1" if raw_id is None else str(raw_id)
    if not isinstance(type_id, int) or isinstance(type_id, bool):
        raise FrameError("FormatViolation", "MessageTypeId is not an integer", message_id)
    if type_id not in (CALL, CALLRESULT, CALLERROR):
        raise FrameError(
            "MessageTypeNotSupported", f"MessageTypeId {type_id} is unknown", message_id
        )
    if not isinstance(raw_id, str):
        raise FrameError("FormatViolation", "MessageId must be a string", message_id)
    if not raw_id or len(raw_id) > 36:
        raise FrameError("FormatViolation", "MessageId must be 1 to 36 characters", message_id)
    if type_id == CALL:
        if len(frame) != 4:
            raise FrameError("FormatViolation", "a CALL has 4 elements", message_id)
        action, payload = frame[2], frame[3]
        if not isinstance(action, str) or not action:
            raise FrameError("FormatViolation", "Action must be a non-empty string", message_id)
        if not isinstance(payload, dict):
            raise FrameError("FormatViolation", "payload must be a JSON object", message_id)
        return Call(message_id, action, payload)
    if type_id == CALLRESULT:
        if len(frame) != 3 or not isinstance(frame[2], dict):
            raise FrameError("FormatViolation", "a CALLRESULT has 3 elements", message_id)
        return CallResult(message_id, frame[2])
    if len(frame) != 5:
        raise FrameError("FormatViolation", "a CALLERROR has 5 elements", message_id)
    _, _, code, description, details = frame
    return CallError(
        message_id,
        str(code),
        str(description),
        details if isinstance(details, dict) else {},
    )


# Which schema keyword failed -> which OCPP error code.
_SCHEMA_CODES = {
    "type": "TypeConstraintViolation",
    "required": "OccurrenceConstraintViolation",
    "minItems": "OccurrenceConstraintViolation",
    "maxItems": "OccurrenceConstraintViolation",
    "additionalProperties": "FormatViolation",
    "enum": "PropertyConstraintViolation",
    "maxLength": "PropertyConstraintViolation",
    "minLength": "PropertyConstraintViolation",
    "minimum": "PropertyConstraintViolation",
    "maximum": "PropertyConstraintViolation",
    "pattern": "PropertyConstraintViolation",
    "format": "PropertyConstraintViolation",
    "multipleOf": "PropertyConstraintViolation",
}


def validate(
    kind: int, action: str, payload: dict[str, Any], version: str, message_id: str
) -> None:
    """Check a payload against the OCA JSON schema; raises FrameError with the matching code.

    A compiled check passes a valid payload in a few microseconds; one it refuses goes to the
    ``ocpp`` package's validator, which stays the judge and names the keyword that failed.
    """
    if _compiled(kind, action, version)(payload):
        return
    validator = get_validator(kind, action, version)
    error = _first_error(validator, payload)
    if error is None:
        return
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    raise FrameError(
        _SCHEMA_CODES.get(str(error.validator), "FormatViolation"),
        f"{where}: {error.message}"[:250],
        message_id,
    )


@functools.cache
def _compiled(kind: int, action: str, version: str) -> Callable[[Any], bool]:
    """The schema compiled to Python code (fastjsonschema), judging as the ``ocpp`` package's
    Draft 4 validator does: Draft 4 rules whatever draft the schema names, no format checks, no
    defaults written into the payload. ``multipleOf`` on floats is judged differently (1.9 is a
    multiple of 0.1 to one, not to the other), so schemas with it always go to the validator."""
    schema = {**get_validator(kind, action, version).schema, "$schema": _DRAFT_4}
    if '"multipleOf"' in json.dumps(schema):
        return _never
    check = fastjsonschema.compile(schema, use_formats=False, use_default=False)

    def passes(payload: Any) -> bool:
        try:
            check(payload)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return passes


_DRAFT_4 = "http://json-schema.org/draft-04/schema#"


def _never(payload: Any) -> bool:
    return False


def _first_error(validator: Any, payload: dict[str, Any]) -> SchemaError | None:
    try:
        validator.validate(payload)
    except SchemaError as exc:
        return exc
    return None


def has_schema(kind: int, action: str, version: str) -> bool:
    try:
        get_validator(kind, action, version)
    except OSError:
        return False
    return True


def dumps(frame: list[Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def call_result(message_id: str, payload: dict[str, Any]) -> str:
    return dumps([CALLRESULT, message_id, payload])


def call_error(
    message_id: str, code: str, description: str, details: dict[str, Any] | None = None
) -> str:
    return dumps([CALLERROR, message_id, code, description, details or {}])


def call(message_id: str, action: str, payload: dict[str, Any]) -> str:
    return dumps([CALL, message_id, action, payload])
