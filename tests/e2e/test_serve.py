"""``python -m cpms.serve``: daphne processes sharing one port, supervised.

With ``REDIS_URL`` it runs two processes: the kernel spreads chargers over both, a command
through the API reaches a charger whichever process holds it, ``/metrics`` of either process
counts the chargers of both, and a process that dies is started again while the other serves
on. On the embedded default (in-memory channel layer) it runs one process, and refuses to run
two.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import psutil
import pytest
import requests
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from ocpp.v16 import call_result

from chargers.models import Charger
from cpms.models import Role
from cpms.services import api_token_create
from tests.conftest import ROOT, ServerProcess, database_url_for_test_db, free_port
from tests.e2e.commanding import answering_charger, boot, eventually
from tests.e2e.test_ocpp16 import basic_auth

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SPANS_PROCESSES = bool(settings.REDIS_URL)
PROCESSES = 2 if SPANS_PROCESSES else 1
FLEET = 16
ANSWERS = {"Reset": call_result.Reset(status="Accepted")}


@pytest.fixture
def served(django_db_setup: Any, django_db_blocker: Any) -> Iterator[ServerProcess]:
    # No --processes: one per core with Redis (this machine may have more than two), one without.
    server = ServerProcess(serve=["--processes", str(PROCESSES)] if SPANS_PROCESSES else [])
    try:
        yield server
    finally:
        # Captured: pytest shows it with a failing test's report, and only then.
        print(f"--- the server's log (last 20,000 characters) ---\n{server.log()[-20_000:]}")
        server.stop()


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


def daphnes(server: ServerProcess) -> list[psutil.Process]:
    return [p for p in psutil.Process(server.process.pid).children() if p.is_running()]


def connected_on_metrics(server: ServerProcess) -> float:
    text = requests.get(server.http_url + "/metrics", timeout=10).text
    match = re.search(r"^cpms_ocpp_connected_chargers (\S+)$", text, re.MULTILINE)
    assert match, text[:2000]
    return float(match.group(1))


async def until(check: Any, timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout}s: {what}")
        await asyncio.sleep(0.1)


async def test_chargers_spread_over_the_processes_and_commands_reach_each_of_them(
    served, make_charger, organization
):
    assert len(daphnes(served)) == PROCESSES
    assert f"with {PROCESSES} daphne process(es)" in served.log()
    _, key = await sync_to_async(api_token_create)(
        organization=organization, name="ops", role=Role.OPERATOR
    )
    chargers = [await sync_to_async(make_charger)(f"CP-SERVE-{n:02d}") for n in range(FLEET)]
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                answering_charger(served.ocpp_url, charger.identity, ANSWERS)
            )
            for charger in chargers
        ]
        await asyncio.gather(*(boot(client) for client in clients))
        holders = await sync_to_async(
            lambda: {
                name.split("!")[0]
                for name in Charger.objects.filter(connected=True).values_list(
                    "channel_name", flat=True
                )
            }
        )()
        # Each process has its own channel-layer client, so the channel names tell them apart.
        assert len(holders) == PROCESSES, holders
        assert await asyncio.to_thread(connected_on_metrics, served) == FLEET

        for charger, client in zip(chargers, clients, strict=True):
            response = await asyncio.to_thread(
                requests.post,
                f"{served.http_url}/api/v1/chargers/{charger.identity}/commands/",
                json={"action": "Reset", "payload": {"type": "Soft"}},
                headers={"Authorization": f"Token {key}"},
                timeout=30,
            )
            assert response.status_code == 202, response.text
            assert await client.next_call() == ("Reset", {"type": "Soft"})


async def test_a_process_that_dies_is_started_again(served, make_charger):
    charger = await sync_to_async(make_charger)("CP-SERVE-AGAIN")
    victim = daphnes(served)[0]
    victim.kill()
    await until(
        lambda: "exited with -9" in served.log() and len(daphnes(served)) == PROCESSES,
        what="the killed process started again",
    )
    assert victim.pid not in {p.pid for p in daphnes(served)}
    # Every process serves again: chargers get in, however the kernel places them.
    for _ in range(2 * PROCESSES):
        async with answering_charger(served.ocpp_url, charger.identity, ANSWERS) as client:
            await boot(client)
    await eventually(lambda: Charger.objects.filter(pk=charger.pk, connected=False).exists())


def test_each_process_is_daphne_sweeping_its_connections_at_the_set_interval(served):
    for child in daphnes(served):
        command = child.cmdline()
        assert command[1:3] == ["-m", "cpms.daphneserver"]
        assert command[-1] == "cpms.asgi:application"


def test_sigterm_stops_every_process_and_removes_the_shared_metrics(served):
    children = daphnes(served)
    shared = {child.environ().get("PROMETHEUS_MULTIPROC_DIR") for child in children}
    # Several processes share one directory of metrics; one keeps them in memory.
    assert len(shared) == 1
    (metrics_dir,) = shared
    assert (metrics_dir is not None) == SPANS_PROCESSES
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=20) == 0
    assert not any(child.is_running() for child in children)
    if metrics_dir:
        assert not os.path.exists(metrics_dir)


def test_several_processes_without_redis_are_refused(django_db_setup):
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_test_db(),
        "REDIS_URL": "",
    }
    completed = subprocess.run(
        [sys.executable, "-m", "cpms.serve", "--port", str(free_port()), "--processes", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert "2 server processes need the Redis channel layer" in completed.stderr


async def first_frame_opcode(server: ServerProcess, identity: str, within: float) -> int | None:
    """Open a charger's socket by hand, send nothing, and return the opcode of the first frame
    the server sends (None if none comes ``within`` seconds): a ping is 0x9."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        auth = basic_auth(identity)["Authorization"]
        writer.write(
            (
                f"GET /ocpp/{identity} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: ocpp1.6\r\nAuthorization: {auth}\r\n\r\n"
            ).encode()
        )
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert response.startswith(b"HTTP/1.1 101"), response
        try:
            header = await asyncio.wait_for(reader.readexactly(2), timeout=within)
        except TimeoutError:
            return None
        return header[0] & 0x0F
    finally:
        writer.close()


async def test_an_idle_charger_is_pinged_after_the_set_interval(
    django_db_setup, django_db_blocker, make_charger
):
    with django_db_blocker.unblock():
        await sync_to_async(make_charger)("PINGED")
    server = ServerProcess(
        serve=["--processes", "1"],
        extra_env={"CPMS_WS_PING_INTERVAL": "1", "CPMS_WS_PING_TIMEOUT": "30"},
    )
    try:
        # daphne looks for idle sockets every 2 s: the ping comes within about 3 s.
        assert await first_frame_opcode(server, "PINGED", within=6) == 0x9
    finally:
        server.stop()


def test_the_default_keepalive_pings_an_idle_socket_every_five_minutes():
    from cpms.serve import keepalive_arguments

    assert settings.CPMS_WS_PING_INTERVAL == 300
    assert keepalive_arguments() == ["--ping-interval", "300", "--ping-timeout", "30"]
