"""Publishing only to groups somebody listens to (``chargers.watching``).

The registry lives in Redis; a following process learns of a new listener from its announcement,
long before its next read of the whole set; an event for a group nobody registered is not sent,
one for a registered group is. The registry's own tests use the Redis server of ``REDIS_URL``
(on the embedded default run, the machine's local one); on the embedded default itself, with no
``REDIS_URL``, a live socket registers nothing and every event is sent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections

from chargers import events, watching
from chargers.events import charger_group, organization_group
from cpms.models import Organization, Role
from tests.cpms.test_views import make_user
from tests.cpms.test_views_live import live_socket, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

REDIS = bool(settings.REDIS_URL)
REGISTRY_URL = settings.REDIS_URL or "redis://127.0.0.1:6379/15"


def _publisher_follower(publisher: Any, start: bool) -> None:
    """Stop (or start again) the following task of this process's publishing loop, which the
    suite's earlier publications may have started (on the Redis channel layer)."""
    if publisher is None or publisher[1].is_closed():
        return
    loop = publisher[1]
    if start:
        loop.call_soon_threadsafe(watching.start, loop)
        return

    async def stop() -> None:
        tasks = [task for task in asyncio.all_tasks() if task.get_name() == "cpms-live-watched"]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)


@pytest.fixture(autouse=True)
def unknown_again() -> Iterator[None]:
    """Every test starts and ends as a process that has not read the registry, and no other
    task of the process follows it meanwhile."""
    publisher = events._publisher
    _publisher_follower(publisher, start=False)
    watching._watched = None
    yield
    _publisher_follower(events._publisher, start=False)
    events._publisher = publisher
    watching._watched = None
    _publisher_follower(publisher, start=True)


@pytest.fixture
async def following(monkeypatch: pytest.MonkeyPatch, settings: Any) -> AsyncIterator[None]:
    """This process following the registry, as a server process does."""
    settings.REDIS_URL = REGISTRY_URL
    monkeypatch.setattr(watching, "POLL", 0.3)
    task = asyncio.create_task(watching.follow())
    try:
        await until(lambda: watching._watched is not None, "the registry read")
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sync_to_async(connections.close_all)()


async def until(check: Any, what: str, timeout: float = 5.0) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not after {timeout} s: {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def a_group() -> str:
    return charger_group(f"CP-WATCH-{uuid.uuid4().hex[:12]}")


async def test_until_the_registry_is_read_every_group_counts_as_listened():
    assert watching._watched is None
    assert watching.listened(a_group())
    assert events.listened_groups(1, "CP-1") == [organization_group(1), charger_group("CP-1")]


async def test_another_process_registering_a_group_is_heard_at_once(following, monkeypatch):
    # No read of the whole set within the test: only the announcement can tell.
    monkeypatch.setattr(watching, "POLL", 30.0)
    await asyncio.sleep(0.4)
    group = a_group()
    assert not watching.listened(group)
    # As another server process's live socket does it.
    other = redis.asyncio.Redis.from_url(REGISTRY_URL)
    try:
        await other.zadd(watching.KEY, {group: time.time() + watching.TTL})
        await other.publish(watching.CHANNEL, group)
    finally:
        await other.aclose()
    await until(lambda: watching.listened(group), "the announced group", timeout=3.0)


def test_a_process_without_sockets_follows_the_registry_from_its_first_publication(settings):
    # A Celery worker or a management command: no server loop; it publishes through a loop of
    # its own, which starts following as it is made.
    settings.REDIS_URL = REGISTRY_URL
    events._publisher = None
    group = a_group()
    events._publisher_queue()
    deadline = time.monotonic() + 5
    while watching._watched is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watching._watched is not None, "the registry was not read"
    assert not watching.listened(group)
    assert events.listened_groups(10**9, "CP-NOBODY") == []
    # Another process's live socket registers the group: heard from its announcement.
    other = redis.Redis.from_url(REGISTRY_URL)
    try:
        other.zadd(watching.KEY, {group: time.time() + watching.TTL})
        other.publish(watching.CHANNEL, group)
    finally:
        other.close()
    deadline = time.monotonic() + 3
    while not watching.listened(group) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watching.listened(group)


async def test_a_registration_lapses_unless_it_is_renewed(following, monkeypatch):
    monkeypatch.setattr(watching, "TTL", 0.5)
    group, renewed = a_group(), a_group()
    await watching.watch(group)
    await watching.watch(renewed)
    assert watching.listened(group) and watching.listened(renewed)
    for _ in range(5):
        await asyncio.sleep(0.25)
        await watching.watch(renewed)
    await until(lambda: not watching.listened(group), "the lapsed registration gone")
    assert watching.listened(renewed)


async def test_an_event_goes_only_to_a_group_somebody_registered(following):
    layer = get_channel_layer()
    identity = f"CP-WATCH-{uuid.uuid4().hex[:8]}"
    channel = await layer.new_channel()
    # Joined, but not registered: as a group nobody's socket listens to.
    await layer.group_add(charger_group(identity), channel)
    await sync_to_async(publish_meter)(identity, 1)
    await watching.watch(charger_group(identity))
    await sync_to_async(publish_meter)(identity, 2)
    message = await asyncio.wait_for(layer.receive(channel), 5)
    # The first message that arrives is the second event: the first was never sent.
    assert message["data"] == {"sample": 2}


def publish_meter(identity: str, sample: int) -> None:
    from django.db import transaction

    with transaction.atomic():
        events.publish(
            "session.meter", organization_pk=10**9, charger=identity, data={"sample": sample}
        )


async def test_a_live_socket_registers_its_group_before_it_is_accepted():
    organization = await sync_to_async(Organization.objects.create)(
        name="Watchers", slug="watchers"
    )
    user = await sync_to_async(make_user)("watcher", organization, Role.OPERATOR)
    cookie = await sync_to_async(session_cookie)(user)
    group = organization_group(organization.pk)
    if REDIS:
        watching._watched = frozenset()  # as a following process that knows of nobody
    async with live_socket(cookie) as (_, accepted, _code):
        assert accepted
        if REDIS:
            assert watching.listened(group)
            client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
            try:
                expires = await client.zscore(watching.KEY, group)
            finally:
                await client.aclose()
            assert expires is not None and expires > time.time() + watching.TTL - 5
        else:
            # Nothing to register on the embedded default: every event is sent.
            assert not watching.enabled()
            assert watching._watched is None
