"""Prometheus metrics of the OCPP gateway, served at ``/metrics`` with django-prometheus's HTTP and
database metrics.

The values live in the memory of the process that holds the sockets. The daphne processes that
``python -m cpms.serve`` runs on one node share a ``PROMETHEUS_MULTIPROC_DIR``, so any of them
answers for the node; with several nodes behind a load balancer, scrape every node and add them up
in the query, e.g. ``sum(cpms_ocpp_connected_chargers)``.
Celery workers hold no sockets and export none of these.

On the hot path a frame costs one dictionary lookup and one counter increment; label values are
bounded (unknown actions and error codes are counted under ``unknown``), so a misbehaving charger
cannot grow the series without limit.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django_prometheus.exports import ExportToDjangoView
from ocpp.v16.enums import Action as Action16
from ocpp.v21.enums import Action as Action21
from ocpp.v201.enums import Action as Action201
from prometheus_client import Counter, Gauge, Histogram

KNOWN_ACTIONS = frozenset(
    action.value for enum in (Action16, Action201, Action21) for action in enum
)
# The CALLERROR codes of OCPP-J 1.6 and 2.x (1.6 spells two of them differently).
KNOWN_ERROR_CODES = frozenset(
    {
        "FormatViolation",
        "FormationViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "OccurenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    }
)
MESSAGE_TYPES = {0: "unparsed", 2: "call", 3: "result", 4: "error", 5: "result_error", 6: "send"}

connected_chargers = Gauge(
    "cpms_ocpp_connected_chargers",
    "Chargers with an open OCPP WebSocket to this process (to all of them, summed, when "
    "python -m cpms.serve runs several)",
    multiprocess_mode="livesum",
)
frames = Counter(
    "cpms_ocpp_frames",
    "OCPP frames received from (in) and sent to (out) chargers, by action and message type",
    ["direction", "action", "message_type"],
)
call_errors_sent = Counter(
    "cpms_ocpp_call_errors_sent",
    "CALLERROR frames sent to chargers, by error code",
    ["code"],
)

handshakes_shed = Counter(
    "cpms_ocpp_handshakes_shed",
    "OCPP handshakes refused unchecked because the process was busy (too many logins pending, "
    "or its event loop running late) or dropped because their login could not start before "
    "their deadline (late)",
    ["reason"],
)

gc_pauses = Histogram(
    "cpms_gc_pause_seconds",
    "Garbage collections of this process, by generation (2: full), and how long each stopped it "
    "(its event loop too)",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
_gc_children = [gc_pauses.labels(str(generation)) for generation in range(3)]

# Bound counter children by label values: one lookup per frame instead of labels() each time.
_frame_children: dict[tuple[str, str, int], Any] = {}


def charger_connected() -> None:
    connected_chargers.inc()


def charger_disconnected() -> None:
    connected_chargers.dec()


def handshake_shed(reason: str) -> None:
    handshakes_shed.labels(reason).inc()


def frame_counted(direction: str, kind: int, action: str, raw: str = "") -> None:
    """Count one frame in or out; a CALLERROR sent also counts under its error code."""
    key = (direction, action, kind)
    child = _frame_children.get(key)
    if child is None:
        label = action if action in KNOWN_ACTIONS else ("none" if not action else "unknown")
        child = frames.labels(direction, label, MESSAGE_TYPES.get(kind, "unknown"))
        if len(_frame_children) < 10_000:
            _frame_children[key] = child
    child.inc()
    if kind == 4 and direction == "out":
        call_errors_sent.labels(_error_code(raw)).inc()


def gc_paused(generation: int, seconds: float) -> None:
    _gc_children[generation].observe(seconds)


def _error_code(raw: str) -> str:
    # CALLERRORs are rare and cheap to parse again; the code is the third element.
    try:
        code = json.loads(raw)[2]
    except (ValueError, IndexError, KeyError, TypeError):
        return "unknown"
    return code if isinstance(code, str) and code in KNOWN_ERROR_CODES else "unknown"


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus exposition; with ``CPMS_METRICS_TOKEN`` set it needs that bearer token."""
    expected = settings.CPMS_METRICS_TOKEN
    if expected:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), expected):
            response = HttpResponse(
                "metrics need the bearer token\n", status=401, content_type="text/plain"
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return ExportToDjangoView(request)
