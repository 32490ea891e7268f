"""A simulated charger's CALL and the end of its run.

When a fleet run ends, each charger's tasks are cancelled. A cancel that comes in the same
loop iteration as the CALL's answer must still end the task: on Python 3.11 ``asyncio.wait_for``
returned the answer instead and swallowed the cancel, so the session went on to its next CALL
with its reader gone, and that CALL counted as a timeout 30 s later.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from chargers.simulator import FleetConfig, SimulatedCharger, Stats


class Loopback:
    """The other end of the socket: it keeps what is sent, and answers when told to (at once,
    with ``eager``)."""

    def __init__(self, charger: SimulatedCharger, *, eager: bool) -> None:
        self.charger = charger
        self.eager = eager
        self.sent: list[list[object]] = []

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))
        if self.eager:
            self.answer()

    def answer(self) -> None:
        """What the reader does with the answer to the last CALL sent."""
        message_id = self.sent[-1][1]
        self.charger._pending[message_id].set_result([3, message_id, {"currentTime": "now"}])


def charger(*, eager: bool = True, call_timeout: float = 30.0) -> SimulatedCharger:
    config = FleetConfig(connectors=1, call_timeout=call_timeout)
    sim = SimulatedCharger("SIM-1", config, Stats(), random.Random(1))
    sim.ws = Loopback(sim, eager=eager)
    return sim


def test_a_call_answered_returns_its_payload():
    sim = charger()
    assert asyncio.run(sim.call("Heartbeat", {})) == {"currentTime": "now"}
    assert (sim.stats.calls, sim.stats.results, sim.stats.timeouts) == (1, 1, 0)


def test_a_cancel_that_comes_with_the_answer_ends_the_task():
    async def scenario() -> None:
        sim = charger(eager=False)

        async def session() -> None:
            await sim.call("Heartbeat", {})
            await sim.call("StatusNotification", {})  # must never be sent

        task = asyncio.create_task(session())
        await asyncio.sleep(0)  # the first CALL is sent; the task waits for its answer
        assert len(sim.ws.sent) == 1
        sim.ws.answer()
        task.cancel()  # before the task has resumed with the answer
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        assert len(sim.ws.sent) == 1
        assert sim.stats.timeouts == 0

    asyncio.run(scenario())


def test_a_call_nobody_answers_times_out():
    async def scenario() -> None:
        sim = charger(eager=False, call_timeout=0.05)
        with pytest.raises(TimeoutError):
            await sim.call("Heartbeat", {})
        assert sim.stats.timeouts == 1
        assert sim._pending == {}

    asyncio.run(scenario())
