"""Two server processes sharing one database: a command sent through node A reaches a charger
whose socket node B holds, and dashboards on either node follow chargers on both.

With ``REDIS_URL`` the channel layer spans the nodes: node A's message reaches node B's consumer
at once, and every live socket gets the events of every charger. On the embedded default the
in-memory channel layer lives inside each process, so:

- a command still reaches the charger, through the database: each server process polls for
  requested commands of the chargers it holds (``CPMS_COMMAND_POLL_INTERVAL``);
- live dashboard events stay in the process that raised them: a dashboard on node A does not
  hear of a charger on node B (the page shows it on its next load). Running several nodes needs
  ``REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import requests
import websockets
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client
from ocpp.v16 import call, call_result

from chargers.models import Charger, Command, Connector
from cpms.models import Membership, Role
from cpms.services import api_token_create
from tests.conftest import ServerProcess
from tests.e2e.commanding import answering_charger, boot, eventually, finished

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SPANS_NODES = bool(settings.REDIS_URL)


@pytest.fixture(scope="module")
def nodes(
    django_db_setup: Any, django_db_blocker: Any
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    node_a = ServerProcess()
    try:
        node_b = ServerProcess()
    except Exception:
        node_a.stop()
        raise
    try:
        yield node_a, node_b
    finally:
        node_a.stop()
        node_b.stop()


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def operator_key(organization: Any) -> str:
    _, key = api_token_create(organization=organization, name="ops", role=Role.OPERATOR)
    return key


@pytest.fixture
def session_cookie(organization: Any) -> str:
    user = User.objects.create_user("olga", password="x")
    Membership.objects.create(user=user, organization=organization, role=Role.OPERATOR)
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@asynccontextmanager
async def live_socket(node: ServerProcess, cookie: str, query: str = "") -> AsyncIterator[Any]:
    async with websockets.connect(
        f"ws://127.0.0.1:{node.port}/ws/live/{query}",
        additional_headers={"Cookie": f"sessionid={cookie}", "Origin": node.http_url},
        open_timeout=15,
    ) as ws:
        yield ws


async def next_event(
    ws: Any, wanted: Any, timeout: float = 20.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The first event ``wanted(event)`` accepts, and every event received before it."""
    before: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            if wanted(event):
                return event, before
            before.append(event)


def api(
    node: ServerProcess, key: str, method: str, path: str, body: Any = None
) -> requests.Response:
    return requests.request(
        method,
        node.http_url + path,
        json=body,
        headers={"Authorization": f"Token {key}"},
        timeout=30,
    )


async def status(client: Any, connector: int, state: str) -> None:
    await client.call(
        call.StatusNotification(connector_id=connector, error_code="NoError", status=state),
        suppress=False,
    )


ANSWERS = {
    "Reset": call_result.Reset(status="Accepted"),
    "UnlockConnector": call_result.UnlockConnector(status="Unlocked"),
}


async def test_a_command_through_node_a_reaches_a_charger_on_node_b(
    nodes, make_charger, operator_key
):
    node_a, node_b = nodes
    on_b = await sync_to_async(make_charger)("CP-ON-B")
    async with answering_charger(node_b.ocpp_url, on_b.identity, ANSWERS) as client:
        await boot(client)
        response = await asyncio.to_thread(
            api,
            node_a,
            operator_key,
            "POST",
            f"/api/v1/chargers/{on_b.identity}/commands/",
            {"action": "Reset", "payload": {"type": "Soft"}},
        )
        assert response.status_code == 202, response.text
        assert await client.next_call() == ("Reset", {"type": "Soft"})
        row = await finished(await sync_to_async(Command.objects.get)(pk=response.json()["id"]))
    assert row.state == "accepted"
    followed = await asyncio.to_thread(
        api, node_a, operator_key, "GET", f"/api/v1/commands/{row.pk}/"
    )
    assert (followed.json()["state"], followed.json()["response"]) == (
        "accepted",
        {"status": "Accepted"},
    )


async def test_commands_to_chargers_on_both_nodes_through_either_node(
    nodes, make_charger, operator_key
):
    node_a, node_b = nodes
    on_a, on_b = (
        await sync_to_async(make_charger)("CP-A"),
        await sync_to_async(make_charger)("CP-B"),
    )
    async with (
        answering_charger(node_a.ocpp_url, on_a.identity, ANSWERS) as client_a,
        answering_charger(node_b.ocpp_url, on_b.identity, ANSWERS) as client_b,
    ):
        await boot(client_a)
        await boot(client_b)
        sent = []
        for node in (node_a, node_b):
            for charger in (on_a, on_b):
                response = await asyncio.to_thread(
                    api,
                    node,
                    operator_key,
                    "POST",
                    f"/api/v1/chargers/{charger.identity}/commands/",
                    {"action": "UnlockConnector", "payload": {"connectorId": 1}},
                )
                assert response.status_code == 202, response.text
                sent.append(response.json()["id"])
        rows = [await finished(await sync_to_async(Command.objects.get)(pk=pk)) for pk in sent]
    assert [r.state for r in rows] == ["accepted"] * 4
    assert len(client_a.calls) == len(client_b.calls) == 2


async def test_dashboards_follow_chargers_as_far_as_the_channel_layer_reaches(
    nodes, make_charger, operator_key, session_cookie
):
    node_a, node_b = nodes
    on_a, on_b = (
        await sync_to_async(make_charger)("CP-A"),
        await sync_to_async(make_charger)("CP-B"),
    )
    async with (
        live_socket(node_a, session_cookie) as dashboard_a,
        live_socket(node_b, session_cookie) as dashboard_b,
        live_socket(node_a, session_cookie, f"?charger={on_b.identity}") as page_of_b_on_a,
        live_socket(node_b, session_cookie, f"?charger={on_b.identity}") as page_of_b_on_b,
        answering_charger(node_a.ocpp_url, on_a.identity, ANSWERS) as client_a,
        answering_charger(node_b.ocpp_url, on_b.identity, ANSWERS) as client_b,
    ):
        await boot(client_b)
        await status(client_b, 1, "Faulted")
        # Node B has published its charger's status once the row shows it; then node A's speaks.
        await eventually(
            lambda: Connector.objects.filter(
                charger=on_b, connector_id=1, status="Faulted"
            ).exists()
        )
        await boot(client_a)
        await status(client_a, 1, "Charging")
        heard_a, before = await next_event(dashboard_a, status_of(on_a))
        assert heard_a["data"]["status"] == "Charging"
        heard_b, _ = await next_event(dashboard_b, status_of(on_b))
        assert heard_b["data"]["status"] == "Faulted"
        if SPANS_NODES:
            # Every node hears every charger.
            heard = [e for e in before if status_of(on_b)(e)]
            if not heard:
                heard = [(await next_event(dashboard_a, status_of(on_b)))[0]]
            assert heard[0]["data"]["status"] == "Faulted"
            heard_there, _ = await next_event(dashboard_b, status_of(on_a))
            assert heard_there["data"]["status"] == "Charging"
        else:
            # Node A never heard of the charger on node B, although B spoke first.
            assert all(e["charger"] == on_a.identity for e in before)

        # A command sent through node A to the charger on node B, followed on both nodes' pages.
        response = await asyncio.to_thread(
            api,
            node_a,
            operator_key,
            "POST",
            f"/api/v1/chargers/{on_b.identity}/commands/",
            {"action": "Reset", "payload": {"type": "Hard"}},
        )
        assert response.status_code == 202, response.text
        pages = [page_of_b_on_a, page_of_b_on_b] if SPANS_NODES else [page_of_b_on_b]
        for page in pages:
            states: list[str] = []
            while "accepted" not in states:
                event, _ = await next_event(page, lambda e: e["kind"] == "command.updated")
                assert event["data"]["command"] == response.json()["id"]
                states.append(event["data"]["state"])
            # On the embedded default node B learns of the command from the database, not from
            # node A's "requested" event.
            assert states == (
                ["requested", "sent", "accepted"] if SPANS_NODES else ["sent", "accepted"]
            )


def status_of(charger: Charger) -> Any:
    return lambda e: e["kind"] == "connector.status" and e["charger"] == charger.identity
