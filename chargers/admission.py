"""Admission of charger handshakes: let a storm of arrivals in as fast as the process can take
them, and refuse the rest cheaply, before they cost anything.

A handshake is refused at once (HTTP 403; the charger retries after its back-off) when
``CPMS_MAX_PENDING_HANDSHAKES`` logins are already under way in this process, or when the event
loop has run more than ``CPMS_MAX_LOOP_LAG`` seconds late for a while. The loop's lag is what
every charger's reply waits for; a loop that is behind would take a new handshake only to see
daphne drop it at its connect timeout, after its login, its arrival and its departure had all
been paid for.

``guard`` refuses in front of the consumer, so a refused handshake builds no consumer and opens no
channel-layer receive; the consumer checks again and counts its login as pending (``pending``).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings

from cpms import metrics

logger = logging.getLogger(__name__)

# Seconds between two looks at the loop's lag, and how many in a row must find it late.
LAG_PROBE_INTERVAL = 0.1
LAG_PROBES = 3
# Seconds over which refusals after the first of a burst are summed up in one log line.
SHED_LOG_PERIOD = 10.0


class _State:
    def __init__(self) -> None:
        self.pending = 0
        self.lag = 0.0
        self.watcher: asyncio.Task[None] | None = None
        # Refusals not logged one by one since the last line (None: no burst under way).
        self.unlogged: int | None = None
        self.last_reason = ""


_states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _State] = weakref.WeakKeyDictionary()


def _state() -> _State:
    loop = asyncio.get_running_loop()
    state = _states.get(loop)
    if state is None:
        state = _states[loop] = _State()
        state.watcher = loop.create_task(_watch_lag(state), name="cpms-loop-lag")
    return state


async def _watch_lag(state: _State) -> None:
    """How late the loop runs a timer: a sleep that oversleeps by X means every callback waits
    about X. The least of the last ``LAG_PROBES`` probes counts, so that one hiccup (the process
    not scheduled for a moment) refuses nobody, while a loop that stays behind does."""
    loop = asyncio.get_running_loop()
    recent: deque[float] = deque(maxlen=LAG_PROBES)
    while True:
        started = loop.time()
        await asyncio.sleep(LAG_PROBE_INTERVAL)
        recent.append(max(0.0, loop.time() - started - LAG_PROBE_INTERVAL))
        state.lag = min(recent) if len(recent) == LAG_PROBES else 0.0


def refusal() -> str | None:
    """Why a new handshake would be refused now, or None."""
    state = _state()
    if state.pending >= settings.CPMS_MAX_PENDING_HANDSHAKES:
        return f"{state.pending} handshakes pending"
    if state.lag > settings.CPMS_MAX_LOOP_LAG:
        return f"the event loop runs {state.lag:.2f} s late"
    return None


@contextmanager
def pending() -> Iterator[None]:
    """Count a handshake's login as pending while the block runs."""
    state = _state()
    state.pending += 1
    try:
        yield
    finally:
        state.pending -= 1


def shed(identity: str, reason: str) -> None:
    """Count a refused handshake. The first of a burst is logged with its charger and reason, the
    rest as one line per ``SHED_LOG_PERIOD``: a storm refuses thousands, and a line each would
    cost the loop what the refusal saves."""
    metrics.handshake_shed("busy")
    state = _state()
    state.last_reason = reason
    if state.unlogged is not None:
        state.unlogged += 1
        return
    logger.info("refused %s: %s", identity, reason)
    state.unlogged = 0
    asyncio.get_running_loop().call_later(SHED_LOG_PERIOD, _log_shed, state)


def _log_shed(state: _State) -> None:
    if state.unlogged:
        logger.info(
            "refused %d more handshakes in the last %.0f s (the last: %s)",
            state.unlogged,
            SHED_LOG_PERIOD,
            state.last_reason,
        )
    state.unlogged = None


class guard:
    """ASGI middleware for the charger endpoint: refuses a handshake that admission would
    refuse, without building the consumer behind it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        reason = refusal()
        if reason is None:
            await self.app(scope, receive, send)
            return
        identity = scope.get("url_route", {}).get("kwargs", {}).get("charger_id", "")
        message = await receive()
        if message["type"] == "websocket.connect":
            shed(identity, reason)
            await send({"type": "websocket.close"})
