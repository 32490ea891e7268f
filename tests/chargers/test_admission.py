"""Admission at the handshake: the loop's lag as the process sees it, and the refusals it makes.
The refusals against the real server: tests/e2e/test_handshake_admission.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from chargers import admission


@pytest.fixture
def limits(settings):
    settings.CPMS_MAX_PENDING_HANDSHAKES = 2
    settings.CPMS_MAX_LOOP_LAG = 0.3


async def test_a_loop_that_runs_late_refuses_until_it_catches_up(limits):
    assert admission.refusal() is None  # starts watching this loop
    await asyncio.sleep(0.35)
    time.sleep(0.6)  # one hiccup: the loop held up once
    await asyncio.sleep(0.05)
    assert admission.refusal() is None
    for _ in range(8):  # a loop that stays behind, as under a storm of work
        time.sleep(0.5)
        await asyncio.sleep(0.01)
    reason = admission.refusal()
    assert reason is not None and reason.startswith("the event loop runs 0.")
    assert reason.endswith(" s late")
    for _ in range(50):
        await asyncio.sleep(0.1)
        if admission.refusal() is None:
            break
    assert admission.refusal() is None


async def test_past_the_pending_limit_it_refuses_until_a_login_ends(limits):
    with admission.pending():
        assert admission.refusal() is None
        with admission.pending():
            assert admission.refusal() == "2 handshakes pending"
        assert admission.refusal() is None
    assert admission.refusal() is None


async def test_a_burst_of_refusals_is_logged_once_then_summed_up(limits, caplog, monkeypatch):
    monkeypatch.setattr(admission, "SHED_LOG_PERIOD", 0.2)
    caplog.set_level("INFO", logger="chargers.admission")
    admission.shed("CP-1", "the event loop runs 0.70 s late")
    for number in range(2, 6):
        admission.shed(f"CP-{number}", "2 handshakes pending")
    assert [r.getMessage() for r in caplog.records] == [
        "refused CP-1: the event loop runs 0.70 s late"
    ]
    await asyncio.sleep(0.3)
    assert caplog.records[-1].getMessage() == (
        "refused 4 more handshakes in the last 0 s (the last: 2 handshakes pending)"
    )
    # The burst is over: the next refusal is logged with its charger again.
    admission.shed("CP-6", "2 handshakes pending")
    assert caplog.records[-1].getMessage() == "refused CP-6: 2 handshakes pending"
    await asyncio.sleep(0.3)
    assert len(caplog.records) == 3
