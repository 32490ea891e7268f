"""Load management end to end: a site with a 63 A grid connection and ten simulated chargers (1.6
and 2.0.1) over the real server. The chargers hold a fail-safe default before any session starts;
arriving cars reshare the capacity, a leaving car releases it, a demand-response event lowers every
session, the measured current never goes over 63 A on any phase, and the chargers fall back to a
safe share when the central system is gone.

With ``REDIS_URL`` set, the balancer's tasks run in a real ``celery -A cpms worker``; on the
embedded default they run in the server process.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.utils import timezone

from chargers import services as charger_services
from chargers.models import Charger, MeterSample, Session, Site
from chargers.simulator import FleetConfig, SimulatedCharger, SimulatedCharger201, Stats
from smartcharging import services
from smartcharging.models import SiteCapacity
from tests.conftest import CHARGER_PASSWORD, ROOT, ServerProcess, database_url_for_test_db
from tests.e2e.commanding import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

GRID_A = 63.0
FALLBACK_AFTER = 20
CHARGERS = 10
SHARE = 6.2  # 63 A between ten single-connector chargers, as the 1.6 schema takes it
SERVER_ENV = {
    "CPMS_SMART_CHARGING_MIN_INTERVAL": "0",
    "CPMS_SMART_CHARGING_THRESHOLD_A": "0.5",
    "CPMS_SMART_CHARGING_INTERVAL": "2",
    "CPMS_SMART_CHARGING_FAILSAFE_AFTER": str(FALLBACK_AFTER),
}


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


@contextmanager
def celery(*args: str) -> Iterator[None]:
    """``celery -A cpms <args>`` on the test database, with the server's settings, until ready."""
    log_path = ROOT / "var" / f"celery-smart-{uuid.uuid4().hex[:8]}.log"
    env = {
        **os.environ,
        **SERVER_ENV,
        "DATABASE_URL": database_url_for_test_db(),
        "PYTHONUNBUFFERED": "1",
    }
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "cpms", *args],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            ready = "ready." if args[0] == "worker" else "beat: Starting"
            while ready not in log_path.read_text(errors="replace"):
                assert time.monotonic() < deadline, log_path.read_text(errors="replace")
                assert process.poll() is None, log_path.read_text(errors="replace")
                time.sleep(0.2)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log_path.unlink(missing_ok=True)


@pytest.fixture
def worker(transactional_db: Any) -> Iterator[None]:
    """With Redis, the balancer runs as in production: a Celery worker, and one beat for the
    periodic rebalance that refreshes every limit before its fallback time."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        yield
        return
    with (
        celery("worker", "--pool", "solo", "--queues", "default", "--loglevel", "info",
               "--without-mingle", "--without-gossip", "--without-heartbeat"),
        celery("beat", "--loglevel", "info"),
    ):  # fmt: skip
        yield


@pytest.fixture
def smart_server(transactional_db: Any, worker: None) -> Iterator[ServerProcess]:
    """A server of its own, with short load-management intervals; the test may stop it."""
    server = ServerProcess(extra_env=SERVER_ENV)
    try:
        yield server
    finally:
        server.stop()
        Charger.objects.update(connected=False)


def simulators(server: ServerProcess, chargers: list[Charger]) -> list[SimulatedCharger]:
    sims: list[SimulatedCharger] = []
    for index, charger in enumerate(chargers):
        protocol = "ocpp1.6" if index % 2 == 0 else "ocpp2.0.1"
        config = FleetConfig(
            url=server.ocpp_url,
            password=CHARGER_PASSWORD,
            connectors=1,
            sessions_per_hour=0,
            meter_interval=1.0,
            session_minutes=60,
            # 32 A on three phases: every EV takes the charger's maximum.
            power_kw=22.08,
            id_tags=["TAG-OK"],
            # A charger whose boot is slow on a busy machine tries again, as a real one does.
            reconnect=True,
            call_timeout=30,
            protocol=protocol,
        )
        cls = SimulatedCharger if protocol == "ocpp1.6" else SimulatedCharger201
        sim = cls(charger.identity, config, Stats(), random.Random(index))
        sim.rng.uniform = lambda a, b: 1.0  # type: ignore[method-assign]  # full power, fixed length
        sims.append(sim)
    return sims


async def limits_become(
    sims: list[SimulatedCharger], expected: float, what: str, timeout: float = 60.0
) -> None:
    """Every one of ``sims`` lets its session draw ``expected`` A, within a tenth."""
    deadline = time.monotonic() + timeout
    while True:
        current = [sim.limit_a(1) for sim in sims]
        if all(limit is not None and abs(limit - expected) < 0.11 for limit in current):
            return
        if time.monotonic() > deadline:
            sent = await sync_to_async(profile_commands)(sims)
            raise AssertionError(f"{what}: limits {current}, expected {expected}; sent {sent}")
        await asyncio.sleep(0.1)


def profile_commands(sims: list[SimulatedCharger]) -> list[tuple[str, str, Any, str]]:
    """The profiles sent to the chargers, to say what happened when a limit never arrives."""
    from chargers.models import Command

    return [
        (c.charger.identity, c.state, c.payload, c.created_at.isoformat())
        for c in Command.objects.filter(
            charger__identity__in=[sim.identity for sim in sims], action="SetChargingProfile"
        )
        .select_related("charger")
        .order_by("pk")
    ][-12:]


def peak_measured() -> tuple[float, Any]:
    """The highest total current measured on L1 at any moment: at each sample, the latest
    reading of every session running then, summed."""
    sessions = {s.pk: s for s in Session.objects.all()}
    samples = sorted(
        MeterSample.objects.filter(measurand="Current.Import", phase__startswith="L1")
        .exclude(session=None)
        .values_list("timestamp", "session_id", "value"),
        key=lambda row: row[0],
    )
    latest: dict[int, float] = {}
    peak = 0.0
    where: Any = None
    for moment, session_pk, value in samples:
        latest[session_pk] = float(value)
        running = [
            amps
            for pk, amps in latest.items()
            if sessions[pk].started_at <= moment
            and (sessions[pk].stopped_at is None or moment < sessions[pk].stopped_at)
        ]
        if sum(running) > peak:
            peak = sum(running)
            where = (
                moment.isoformat(),
                dict(latest),
                {
                    pk: (s.charger_id, str(s.started_at), str(s.stopped_at))
                    for pk, s in sessions.items()
                },
            )
    return peak, where


async def test_a_63_a_site_with_ten_chargers_stays_under_its_limit(
    smart_server: ServerProcess, organization: Any, site: Site, make_charger: Any
) -> None:
    await sync_to_async(SiteCapacity.objects.create)(site=site, limit=Decimal("63"))
    for index in range(CHARGERS):
        await sync_to_async(charger_services.id_token_create)(
            organization=organization, token=f"TAG-{index:02d}"
        )
    chargers = [await sync_to_async(make_charger)(f"SC-{n:02d}") for n in range(1, CHARGERS + 1)]
    sims = simulators(smart_server, chargers)
    stop = asyncio.Event()
    runs = [asyncio.create_task(sim.run(stop)) for sim in sims]
    sessions: dict[int, asyncio.Task[None]] = {}

    def arrive(index: int) -> None:
        # One driver per car: a token already charging elsewhere is refused.
        sessions[index] = asyncio.create_task(sims[index].session(1, f"TAG-{index:02d}"))

    def failed_sessions() -> dict[str, Any]:
        return {
            sims[i].identity: (t.exception() if t.done() and not t.cancelled() else "running")
            for i, t in sessions.items()
        }

    async def leave(index: int) -> None:
        sims[index]._stop(1, "Local")
        await asyncio.wait_for(sessions.pop(index), 30)

    try:
        # The fail-safe default is in place before any session starts: new sessions wait at
        # 0 A for their own limit, and fall back to a safe share if no one refreshes it.
        def defaults_in_place() -> bool:
            for sim in sims:
                defaults = [
                    p for p in sim.state.profiles.values() if p.purpose == "TxDefaultProfile"
                ]
                if not defaults or defaults[0].periods != [(0, 0.0), (FALLBACK_AFTER, SHARE)]:
                    return False
            return True

        try:
            await eventually(defaults_in_place, timeout=90, what="every default profile")
        except AssertionError:
            raise AssertionError(
                {sim.identity: list(sim.state.profiles.values()) for sim in sims}
            ) from None
        assert all(sim.limit_a(1) == 0.0 for sim in sims)

        arrive(0)
        arrive(1)
        await limits_become(sims[:2], 31.5, "two cars share 63 A")
        # A third car on a full site reshares the capacity.
        arrive(2)
        try:
            await limits_become(sims[:3], 21.0, "three cars share 63 A")
        except AssertionError as exc:
            raise AssertionError(f"{failed_sessions()} {str(exc)[:300]}") from None
        arrive(3)
        arrive(4)
        await limits_become(sims[:5], 12.5, "five cars share 63 A")

        # A demand-response event lowers every session in time.
        now = timezone.now()
        event = await sync_to_async(services.limit_event_create)(
            site=site,
            data={
                "starts_at": now,
                "ends_at": now + timedelta(hours=1),
                "limit_a": Decimal("30"),
                "reason": "Grid operator peak",
            },
        )
        await limits_become(sims[:5], 6.0, "the event caps the site at 30 A", timeout=20)
        await sync_to_async(services.limit_event_cancel)(event=event)
        await limits_become(sims[:5], 12.5, "the event is over")

        # A car leaving releases its share to the others.
        await leave(0)
        await limits_become(sims[1:5], 15.6, "four cars share 63 A")
        await asyncio.sleep(2)  # a few more readings at the new limits
        peak, where = await sync_to_async(peak_measured)()
        assert 40 < peak <= GRID_A + 0.2, f"measured peak {peak} A at {where}"

        # The central system stops: after the fallback time every charger holds its safe share.
        await sync_to_async(smart_server.stop)()
        await asyncio.sleep(FALLBACK_AFTER + 1)
        held = [sim.limit_a(1) for sim in sims]
        assert all(limit is not None and limit <= SHARE for limit in held), held
        assert sum(limit or 0 for limit in held) <= GRID_A
    finally:
        stop.set()
        for task in [*sessions.values(), *runs]:
            task.cancel()
        await asyncio.gather(*sessions.values(), *runs, return_exceptions=True)
