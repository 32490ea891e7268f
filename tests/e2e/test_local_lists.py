"""Local authorization lists against the real server with simulated chargers that keep a real
list: the first connection sends the full list, id token changes go as differentials, a version
mismatch brings a full resync, a list longer than a message is split, one longer than the charger
holds is not sent, and an offline charger catches up when it connects; in OCPP 1.6 and 2.0.1."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.utils import timezone

from chargers import services
from chargers.locallist_models import LocalListSync
from chargers.models import Charger, Command, Connector, IdToken
from chargers.simulator import FleetConfig, SimulatedCharger, SimulatedCharger201, Stats
from cpms.models import Organization
from tests.conftest import CHARGER_PASSWORD, ServerProcess
from tests.cpms.test_celery import celery_process, wait_for
from tests.e2e.commanding import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TIMEOUT = 60.0


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture(scope="module", autouse=True)
def celery_worker(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """With Redis, lists follow id tokens and answers in a real Celery worker, as in production
    (the embedded default runs the same tasks in the process that committed)."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        yield
        return
    with celery_process(
        "worker",
        "--pool",
        "solo",
        "--queues",
        "default",
        "--loglevel",
        "info",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
    ) as worker_log:
        wait_for(lambda: "ready." in worker_log(), lambda: f"worker never ready:\n{worker_log()}")
        yield


def simulator(
    server: ServerProcess,
    charger: Charger,
    protocol: str = "ocpp1.6",
    per_message: int = 20,
    max_entries: int = 100,
) -> SimulatedCharger:
    config = FleetConfig(
        url=server.ocpp_url,
        password=CHARGER_PASSWORD,
        connectors=1,
        sessions_per_hour=0,
        reconnect=False,
        call_timeout=15,
        protocol=protocol,
        local_list_per_message=per_message,
        local_list_max=max_entries,
    )
    cls = SimulatedCharger if protocol == "ocpp1.6" else SimulatedCharger201
    return cls(charger.identity, config, Stats(), random.Random(1))


@asynccontextmanager
async def connected(sim: SimulatedCharger, charger: Charger) -> AsyncIterator[SimulatedCharger]:
    """The simulated charger connected, booted and reporting, until the block ends."""
    await sync_to_async(Connector.objects.filter(charger=charger).update)(status="Unknown")
    task = asyncio.create_task(sim.run_once())
    try:
        await eventually(
            lambda: Connector.objects.filter(
                charger=charger, connector_id=1, status="Available"
            ).exists(),
            timeout=TIMEOUT,
            what=f"{charger.identity} booted and reported",
        )
        yield sim
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await eventually(
            lambda: not Charger.objects.filter(pk=charger.pk, connected=True).exists(),
            timeout=TIMEOUT,
            what=f"{charger.identity} disconnected",
        )


def add_token(organization: Organization, token: str, **fields: Any) -> IdToken:
    return services.id_token_create(organization=organization, token=token, **fields)


def sync_of(charger: Charger) -> LocalListSync | None:
    return LocalListSync.objects.filter(charger=charger).first()


def sends(charger: Charger) -> list[tuple[str, int, int]]:
    """The list updates sent to the charger: (updateType, version, entries), oldest first."""
    rows = Command.objects.filter(charger=charger, action="SendLocalList").order_by("id")
    return [
        (
            row.payload["updateType"],
            row.payload.get("listVersion", row.payload.get("versionNumber")),
            len(row.payload.get("localAuthorizationList") or []),
        )
        for row in rows
    ]


async def in_sync(charger: Charger, version: int) -> LocalListSync:
    def check() -> LocalListSync | None:
        return LocalListSync.objects.filter(
            charger=charger, state="in_sync", version=version, command__isnull=True
        ).first()

    def shown() -> str:
        row = LocalListSync.objects.filter(charger=charger).values().first()
        commands = list(
            Command.objects.filter(charger=charger)
            .order_by("id")
            .values_list("pk", "action", "state", "response_status")
        )
        return f"{row} {commands}"

    try:
        return await eventually(check, timeout=TIMEOUT)
    except AssertionError:
        raise AssertionError(
            f"list of {charger.identity} not in sync v{version}: {await sync_to_async(shown)()}"
        ) from None


async def sim_has(sim: SimulatedCharger, tokens: set[str], version: int) -> None:
    async def wait() -> None:
        while not (set(sim.state.local_list) == tokens and sim.state.local_list_version == version):
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(wait(), TIMEOUT)
    except TimeoutError:
        raise AssertionError(
            f"the charger holds {sorted(sim.state.local_list)} at version "
            f"{sim.state.local_list_version}, not {sorted(tokens)} at {version}"
        ) from None


async def test_first_connect_sends_the_full_list_and_token_changes_go_as_differentials(
    server, make_charger, organization
):
    charger = await sync_to_async(make_charger)("LL-16")
    past = timezone.now() - timedelta(days=1)
    await sync_to_async(add_token)(organization, "CARD-A", local_list=True)
    await sync_to_async(add_token)(
        organization, "CARD-B", local_list=True, group_token="FLEET-1", expires_at=past
    )
    await sync_to_async(add_token)(organization, "NOT-LISTED")
    sim = simulator(server, charger)
    async with connected(sim, charger):
        await sim_has(sim, {"CARD-A", "CARD-B"}, 1)
        await in_sync(charger, 1)
        assert sim.state.local_list["CARD-A"] == {"status": "Accepted"}
        # A token whose expiry has passed goes as Expired, with its group.
        assert sim.state.local_list["CARD-B"]["status"] == "Expired"
        assert sim.state.local_list["CARD-B"]["parentIdTag"] == "FLEET-1"

        await sync_to_async(add_token)(organization, "CARD-C", local_list=True)
        await sim_has(sim, {"CARD-A", "CARD-B", "CARD-C"}, 2)
        card_a = await sync_to_async(IdToken.objects.get)(token="CARD-A")
        await sync_to_async(services.id_token_update)(id_token=card_a, data={"status": "Blocked"})
        await sim_has(sim, {"CARD-A", "CARD-B", "CARD-C"}, 3)
        assert sim.state.local_list["CARD-A"] == {"status": "Blocked"}
        card_c = await sync_to_async(IdToken.objects.get)(token="CARD-C")
        await sync_to_async(services.id_token_delete)(id_token=card_c)
        await sim_has(sim, {"CARD-A", "CARD-B"}, 4)
        state = await in_sync(charger, 4)
    assert set(state.entries) == {"CARD-A", "CARD-B"}
    assert await sync_to_async(sends)(charger) == [
        ("Full", 1, 2),
        ("Differential", 2, 1),
        ("Differential", 3, 1),
        ("Differential", 4, 1),
    ]


async def test_a_version_mismatch_leads_to_a_full_resync(server, make_charger, organization):
    charger = await sync_to_async(make_charger)("LL-MISMATCH")
    await sync_to_async(add_token)(organization, "CARD-A", local_list=True)
    sim = simulator(server, charger)
    async with connected(sim, charger):
        await in_sync(charger, 1)
        # Another system set the charger's list meanwhile: our next differential is too old.
        sim.state.local_list = {"STRANGER": {"status": "Accepted"}}
        sim.state.local_list_version = 9
        await sync_to_async(add_token)(organization, "CARD-B", local_list=True)
        await sim_has(sim, {"CARD-A", "CARD-B"}, 3)
        state = await in_sync(charger, 3)
        answers = await sync_to_async(
            lambda: list(
                Command.objects.filter(charger=charger, action="SendLocalList")
                .order_by("id")
                .values_list("response_status", flat=True)
            )
        )()
    assert await sync_to_async(sends)(charger) == [
        ("Full", 1, 1),
        ("Differential", 2, 1),
        ("Full", 3, 2),
    ]
    assert answers == ["Accepted", "VersionMismatch", "Accepted"]
    # The stranger is gone: the full list replaced the charger's.
    assert set(state.entries) == {"CARD-A", "CARD-B"}


async def test_a_list_longer_than_a_message_is_split(server, make_charger, organization):
    charger = await sync_to_async(make_charger)("LL-SPLIT")
    for number in range(1, 6):
        await sync_to_async(add_token)(organization, f"CARD-{number}", local_list=True)
    sim = simulator(server, charger, per_message=2)
    async with connected(sim, charger):
        await sim_has(sim, {f"CARD-{n}" for n in range(1, 6)}, 3)
        await in_sync(charger, 3)
    assert await sync_to_async(sends)(charger) == [
        ("Full", 1, 2),
        ("Differential", 2, 2),
        ("Differential", 3, 1),
    ]


async def test_a_list_longer_than_the_charger_holds_is_not_sent(server, make_charger, organization):
    charger = await sync_to_async(make_charger)("LL-LONG")
    for number in range(1, 6):
        await sync_to_async(add_token)(organization, f"CARD-{number}", local_list=True)
    sim = simulator(server, charger, max_entries=3)
    async with connected(sim, charger):
        state = await eventually(
            lambda: LocalListSync.objects.filter(charger=charger, state="too_long").first(),
            timeout=TIMEOUT,
            what="the list is too long",
        )
    assert "5 entries" in state.last_error and "at most 3" in state.last_error
    assert await sync_to_async(sends)(charger) == []
    assert sim.state.local_list == {} and sim.state.local_list_version == 0


async def test_an_offline_charger_catches_up_when_it_connects(server, make_charger, organization):
    charger = await sync_to_async(make_charger)("LL-OFFLINE")
    await sync_to_async(add_token)(organization, "CARD-A", local_list=True)
    sim = simulator(server, charger)
    async with connected(sim, charger):
        await in_sync(charger, 1)
    # Changes while the charger is away wait for it.
    await sync_to_async(add_token)(organization, "CARD-B", local_list=True)
    card_a = await sync_to_async(IdToken.objects.get)(token="CARD-A")
    await sync_to_async(services.id_token_update)(id_token=card_a, data={"local_list": False})
    assert await sync_to_async(sends)(charger) == [("Full", 1, 1)]
    async with connected(sim, charger):
        await eventually(
            lambda: LocalListSync.objects.filter(
                charger=charger, state="in_sync", command__isnull=True, entries__has_key="CARD-B"
            ).exists(),
            timeout=TIMEOUT,
            what="the list caught up",
        )
        state = await sync_to_async(sync_of)(charger)
        assert state is not None
        await sim_has(sim, {"CARD-B"}, state.version)
        checks = await sync_to_async(
            lambda: Command.objects.filter(charger=charger, action="GetLocalListVersion").count()
        )()
    assert set(state.entries) == {"CARD-B"}
    # The charger kept version 1, as we knew: what changed went as a differential (the change's
    # own task may run before or after the connection's version check).
    assert await sync_to_async(sends)(charger) == [("Full", 1, 1), ("Differential", 2, 2)]
    assert checks == 2


async def test_a_2_0_1_charger_gets_its_list_the_same_way(server, make_charger, organization):
    charger = await sync_to_async(make_charger)("LL-201")
    await sync_to_async(add_token)(
        organization, "CARD-A", local_list=True, type="ISO14443", group_token="FLEET-1"
    )
    for number in range(1, 4):
        await sync_to_async(add_token)(
            organization, f"KEY-{number}", local_list=True, type="KeyCode"
        )
    sim = simulator(server, charger, "ocpp2.0.1", per_message=3)
    async with connected(sim, charger):
        await sim_has(sim, {"CARD-A", "KEY-1", "KEY-2", "KEY-3"}, 2)
        await in_sync(charger, 2)
        assert sim.state.local_list["CARD-A"] == {
            "status": "Accepted",
            "groupIdToken": {"idToken": "FLEET-1", "type": "Central"},
        }
        key = await sync_to_async(IdToken.objects.get)(token="KEY-2")
        await sync_to_async(services.id_token_update)(id_token=key, data={"status": "Blocked"})
        await sim_has(sim, {"CARD-A", "KEY-1", "KEY-2", "KEY-3"}, 3)
        assert sim.state.local_list["KEY-2"] == {"status": "Blocked"}
        await sync_to_async(services.id_token_delete)(id_token=key)
        await sim_has(sim, {"CARD-A", "KEY-1", "KEY-3"}, 4)
        await in_sync(charger, 4)
    assert await sync_to_async(sends)(charger) == [
        ("Full", 1, 3),
        ("Differential", 2, 1),
        ("Differential", 3, 1),
        ("Differential", 4, 1),
    ]
