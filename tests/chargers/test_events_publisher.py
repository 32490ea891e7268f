"""A process that is no server (Celery worker, management command) publishes through one sender
task of its own: the caller never waits on the channel layer, and messages keep their order."""

from __future__ import annotations

import asyncio
import threading
import zlib
from typing import Any

import pytest

from chargers import events


class GatedLayer:
    """A channel layer whose sends wait until the test opens the gate, recording their order."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.sent: list[str] = []
        self.all_sent = threading.Event()
        self.expected = 0

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        while not self.gate.is_set():
            await asyncio.sleep(0.005)
        self.sent.append(message["n"])
        if len(self.sent) == self.expected:
            self.all_sent.set()


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> GatedLayer:
    layer = GatedLayer()
    monkeypatch.setattr(events, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(events, "_server_loop", None)
    return layer


def test_publishing_outside_a_server_does_not_wait_for_the_layer(gated: GatedLayer) -> None:
    gated.expected = 50

    def send_for(n: int) -> Any:
        async def send(layer: Any) -> None:
            await layer.send("somewhere", {"n": n})

        return send

    # Every dispatch returns while the layer is still closed: a caller that waited for its
    # message to go out would never get past the first one.
    for n in range(50):
        events._dispatch(send_for(n))
    assert gated.sent == []
    gated.gate.set()
    assert gated.all_sent.wait(timeout=30)
    assert gated.sent == list(range(50))


def test_a_failing_send_does_not_stop_the_ones_after_it(gated: GatedLayer) -> None:
    gated.expected = 2
    gated.gate.set()

    async def broken(layer: Any) -> None:
        raise ConnectionError("layer down")

    async def first(layer: Any) -> None:
        await layer.send("somewhere", {"n": 1})

    async def second(layer: Any) -> None:
        await layer.send("somewhere", {"n": 2})

    events._dispatch(first)
    events._dispatch(broken)
    events._dispatch(second)
    assert gated.all_sent.wait(timeout=30)
    assert gated.sent == [1, 2]


def _identities_on_different_senders() -> tuple[str, str]:
    first = "CP-A"
    shard = zlib.crc32(first.encode()) % events.SENDERS
    for n in range(1000):
        other = f"CP-B{n}"
        if zlib.crc32(other.encode()) % events.SENDERS != shard:
            return first, other
    raise AssertionError("no identity on another sender")


def test_a_server_sends_each_chargers_events_in_order_and_chargers_side_by_side(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow, quick = _identities_on_different_senders()
    delivered: list[tuple[str, int]] = []

    class Layer:
        def __init__(self) -> None:
            self.slow_gate = asyncio.Event()

        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            if message["charger"] == slow:
                await self.slow_gate.wait()
            delivered.append((message["charger"], message["data"]["n"]))

    async def scenario() -> None:
        layer = Layer()
        monkeypatch.setattr(events, "get_channel_layer", lambda: layer)
        events.bind_loop(asyncio.get_running_loop())
        try:
            for n in range(3):
                events._dispatch(_event(slow, n), slow)
            for n in range(3):
                events._dispatch(_event(quick, n), quick)
            # The quick charger's events go out while the slow one's first is still held.
            while [c for c, _ in delivered].count(quick) < 3:
                await asyncio.sleep(0.01)
            assert all(charger == quick for charger, _ in delivered)
            layer.slow_gate.set()
            while len(delivered) < 6:
                await asyncio.sleep(0.01)
        finally:
            monkeypatch.setattr(events, "_server_loop", None)
            monkeypatch.setattr(events, "_outboxes", [])

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert [n for charger, n in delivered if charger == slow] == [0, 1, 2]
    assert [n for charger, n in delivered if charger == quick] == [0, 1, 2]


def _event(charger: str, n: int) -> Any:
    message = {"type": "cpms.event", "kind": "test", "charger": charger, "data": {"n": n}}

    async def send(layer: Any) -> None:
        await layer.group_send(events.charger_group(charger), message)

    return send
