"""Admission at the handshake, against the real server: while logins wait, new handshakes past
``CPMS_MAX_PENDING_HANDSHAKES`` are refused at once; a login its database thread comes to only
after ``CPMS_HANDSHAKE_DEADLINE`` is dropped unchecked, as daphne will soon drop its handshake;
and a charger refused either way gets in when it tries again.

A charger with a password hashed at a very high PBKDF2 cost stands in for a storm: its login
holds the server for a couple of seconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connections

from chargers.models import Charger
from tests.conftest import CHARGER_PASSWORD, ServerProcess, wait_until_quiet
from tests.e2e.test_ocpp16 import basic_auth

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# About two seconds of hashing on a 2-core machine.
SLOW_ITERATIONS = 6_000_000


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


def slow_charger(make_charger: Any, identity: str) -> Charger:
    charger: Charger = make_charger(identity)
    hasher = PBKDF2PasswordHasher()
    charger.password_hash = hasher.encode(CHARGER_PASSWORD, hasher.salt(), SLOW_ITERATIONS)
    charger.save(update_fields=["password_hash"])
    return charger


async def handshake(server: ServerProcess, identity: str) -> int:
    """The HTTP status the server answers a charger's handshake with (101: accepted); an
    accepted socket is closed again at once."""
    try:
        async with websockets.connect(
            server.ocpp_url + identity,
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=basic_auth(identity),
            open_timeout=30,
        ):
            return 101
    except websockets.exceptions.InvalidStatus as exc:
        return exc.response.status_code


async def refused_while_slow_logs_in(
    server: ServerProcess, slow: list[str], fast: str
) -> tuple[str, int]:
    """Start a slow charger's handshake, and try the fast charger's meanwhile until one is
    refused; with another slow charger if the first finished before (its handshake may have
    come after a try of the fast one). The slow charger used, and its own status."""
    for identity in slow:
        slow_attempt = asyncio.create_task(handshake(server, identity))
        # A head start, so that its login is under way before the fast charger's first try.
        for _ in range(100):
            if f"WSCONNECTING /ocpp/{identity}" in server.log():
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        while not slow_attempt.done():
            if await handshake(server, fast) == 403:
                return identity, await slow_attempt
            await asyncio.sleep(0.1)
    raise AssertionError(f"{fast} was never refused while a slow login ran:\n{server.log()}")


def server_with(env: dict[str, str]) -> Iterator[ServerProcess]:
    # daphne's own handshake timeout (5 s) far out of the way: on a busy machine the slow login
    # can take longer than that, and these tests are about the server's deadline, not daphne's.
    process = ServerProcess(extra_env=env, daphne_args=["--websocket_connect_timeout", "120"])
    try:
        yield process
    finally:
        wait_until_quiet()
        process.stop()


@pytest.fixture
def one_pending(transactional_db: Any) -> Iterator[ServerProcess]:
    yield from server_with({"CPMS_MAX_PENDING_HANDSHAKES": "1", "CPMS_HANDSHAKE_DEADLINE": "60"})


@pytest.fixture
def short_deadline(transactional_db: Any) -> Iterator[ServerProcess]:
    # One database thread, so the fast charger's login queues behind the slow one's.
    yield from server_with({"CPMS_DB_THREADS": "1", "CPMS_HANDSHAKE_DEADLINE": "0.5"})


async def test_past_the_pending_limit_a_handshake_is_refused_at_once(one_pending, make_charger):
    for identity in ("SLOW-1", "SLOW-2"):
        await sync_to_async(slow_charger)(make_charger, identity)
    await sync_to_async(make_charger)("FAST")
    # Its credential checked once, so that its own logins are short.
    assert await handshake(one_pending, "FAST") == 101

    slow, _ = await refused_while_slow_logs_in(one_pending, ["SLOW-1", "SLOW-2"], "FAST")
    assert "refused FAST: 1 handshakes pending" in one_pending.log()

    # Once the slow login is over, both get in (the slow one's credential is remembered now).
    assert await handshake(one_pending, "FAST") == 101
    assert await handshake(one_pending, slow) == 101


async def test_a_login_that_waits_past_its_deadline_is_dropped_and_the_retry_gets_in(
    short_deadline, make_charger
):
    for identity in ("SLOW-1", "SLOW-2"):
        await sync_to_async(slow_charger)(make_charger, identity)
    await sync_to_async(make_charger)("FAST")

    slow, slow_status = await refused_while_slow_logs_in(
        short_deadline, ["SLOW-1", "SLOW-2"], "FAST"
    )
    log = short_deadline.log()
    # The fast charger's login waited behind the slow one and was dropped unchecked; the slow
    # one was checked, but finished past its own deadline, so it was not marked connected.
    assert "refused FAST: it waited past its deadline for a database thread" in log
    assert slow_status == 403
    assert f"refused {slow}: its deadline passed before its batch was written" in log or (
        f"refused {slow}: it waited past its deadline" in log
    )
    assert not await Charger.objects.filter(connected=True).aexists()

    # Tried again, both get in: the slow charger's credential was remembered by its first try.
    assert await handshake(short_deadline, "FAST") == 101
    assert await handshake(short_deadline, slow) == 101
