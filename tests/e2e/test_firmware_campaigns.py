"""Firmware campaigns against the real server with simulated chargers: a canary wave then the
rest, chargers that install (and boot with the new version), chargers that fail, and a campaign
that halts when failures pass its ratio, then resumes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from chargers import firmware_services
from chargers.models import Charger, Command, Connector, FirmwareCampaign, FirmwareTarget
from chargers.simulator import FleetConfig, SimulatedCharger, SimulatedCharger201, Stats
from tests.conftest import CHARGER_PASSWORD, ServerProcess
from tests.cpms.test_celery import celery_process, wait_for
from tests.e2e.commanding import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LOCATION = "https://firmware.example.com/images/2.0.0.bin"
TIMEOUT = 90.0


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture(scope="module", autouse=True)
def celery_worker(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """With Redis, campaigns follow their chargers in a real Celery worker, as in production
    (the embedded default runs the same tasks inside the server process)."""
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


@asynccontextmanager
async def fleet(
    server: ServerProcess, chargers: list[tuple[Charger, str]], protocol: str = "ocpp1.6"
) -> AsyncIterator[dict[str, SimulatedCharger]]:
    """Simulated chargers, booted and reporting, each told how its firmware update goes."""
    sims: dict[str, SimulatedCharger] = {}
    tasks = []
    for charger, outcome in chargers:
        config = FleetConfig(
            url=server.ocpp_url,
            password=CHARGER_PASSWORD,
            connectors=1,
            sessions_per_hour=0,
            reconnect=False,
            call_timeout=30,
            protocol=protocol,
            firmware_update=outcome,
        )
        cls = SimulatedCharger if protocol == "ocpp1.6" else SimulatedCharger201
        sim = cls(charger.identity, config, Stats(), random.Random(1))
        sims[charger.identity] = sim
        tasks.append(asyncio.create_task(sim.run_once()))
    try:
        for charger, _ in chargers:
            await eventually(
                lambda charger=charger: Connector.objects.filter(
                    charger=charger, connector_id=1, status="Available"
                ).exists(),
                timeout=2 * TIMEOUT,
                what=f"{charger.identity} booted and reported",
            )
        yield sims
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def campaign_in(pk: int, state: str) -> Callable[[], FirmwareCampaign | None]:
    def check() -> FirmwareCampaign | None:
        return FirmwareCampaign.objects.filter(pk=pk, state=state).first()

    check.__doc__ = f"campaign {pk} {state}"
    return check


def targets(campaign: FirmwareCampaign) -> dict[str, tuple[int, str]]:
    return {
        identity: (wave, state)
        for identity, wave, state in FirmwareTarget.objects.filter(campaign=campaign).values_list(
            "charger__identity", "wave", "state"
        )
    }


def create(organization_id: int, **fields: Any) -> FirmwareCampaign:
    return firmware_services.firmware_campaign_create(
        organization_id=organization_id, location=LOCATION, **fields
    )


async def test_a_campaign_installs_in_waves_and_counts_the_new_firmware_at_boot(
    server, make_charger, organization
):
    chargers = [await sync_to_async(make_charger)(f"FW-OK-{i}") for i in range(1, 4)]
    async with fleet(server, [(c, "install") for c in chargers]):
        campaign = await sync_to_async(create)(
            organization.pk,
            name="2.0.0 everywhere",
            firmware_version="2.0.0",
            vendor="Simulated",
            canary_count=1,
            wave_size=2,
        )
        await sync_to_async(firmware_services.firmware_campaign_start)(campaign_pk=campaign.pk)
        done = await eventually(
            campaign_in(campaign.pk, "completed"), timeout=TIMEOUT, what="campaign completed"
        )
        rows = await sync_to_async(
            lambda: list(
                FirmwareTarget.objects.filter(campaign=campaign)
                .select_related("charger", "command")
                .order_by("wave", "charger__identity")
            )
        )()
        # Installed comes before the reboot: each charger then boots with the new version.
        await eventually(
            lambda: (
                set(
                    Charger.objects.filter(identity__startswith="FW-OK-").values_list(
                        "firmware_version", flat=True
                    )
                )
                == {"2.0.0"}
            ),
            timeout=TIMEOUT,
            what="every charger booted with 2.0.0",
        )
    assert done.finished_at is not None
    assert [(t.charger.identity, t.wave, t.state) for t in rows] == [
        ("FW-OK-1", 0, "succeeded"),
        ("FW-OK-2", 1, "succeeded"),
        ("FW-OK-3", 1, "succeeded"),
    ]
    # The canary finished before the next wave was sent.
    canary, rest = rows[0], rows[1:]
    assert canary.finished_at is not None
    assert all(t.dispatched_at is not None and t.dispatched_at >= canary.finished_at for t in rest)
    for target in rows:
        assert target.firmware_before == "1.0.0"
        assert target.command is not None
        assert target.command.action == "UpdateFirmware"
        assert target.command.payload["location"] == LOCATION


async def test_a_campaign_halts_when_failures_pass_its_ratio_and_resumes(
    server, make_charger, organization
):
    outcomes = {
        "FW-A": "",  # canary: installs
        "FW-B": "download-failed",
        "FW-C": "install-failed",
        "FW-D": "",
        "FW-E": "",
    }
    chargers = [
        (await sync_to_async(make_charger)(identity), outcome)
        for identity, outcome in outcomes.items()
    ]
    async with fleet(server, chargers):
        campaign = await sync_to_async(create)(
            organization.pk,
            name="halts",
            canary_count=1,
            wave_size=2,
            max_failure_ratio="0.5",
        )
        await sync_to_async(firmware_services.firmware_campaign_start)(campaign_pk=campaign.pk)
        halted = await eventually(
            campaign_in(campaign.pk, "halted"), timeout=TIMEOUT, what="campaign halted"
        )
        at_halt = await sync_to_async(targets)(campaign)
        unsent = await sync_to_async(
            lambda: Command.objects.filter(charger__identity__in=["FW-D", "FW-E"]).count()
        )()
        assert at_halt == {
            "FW-A": (0, "succeeded"),
            "FW-B": (1, "failed"),
            "FW-C": (1, "failed"),
            "FW-D": (2, "pending"),
            "FW-E": (2, "pending"),
        }
        assert halted.halt_reason == "2 of 3 targets failed (67%), above the allowed 50%"
        assert unsent == 0  # nothing new is sent once halted

        statuses = await sync_to_async(
            lambda: dict(
                FirmwareTarget.objects.filter(campaign=campaign).values_list(
                    "charger__identity", "status"
                )
            )
        )()
        assert statuses["FW-B"] == "DownloadFailed"
        assert statuses["FW-C"] == "InstallationFailed"

        await sync_to_async(firmware_services.firmware_campaign_resume)(campaign_pk=campaign.pk)
        await eventually(
            campaign_in(campaign.pk, "completed"), timeout=TIMEOUT, what="campaign completed"
        )
        finished = await sync_to_async(targets)(campaign)
    assert finished["FW-D"] == (2, "succeeded")
    assert finished["FW-E"] == (2, "succeeded")


async def test_a_failed_canary_halts_before_the_rest_is_sent(server, make_charger, organization):
    chargers = [
        (await sync_to_async(make_charger)("FW-CANARY"), "install-failed"),
        (await sync_to_async(make_charger)("FW-REST-1"), "install"),
        (await sync_to_async(make_charger)("FW-REST-2"), "install"),
    ]
    async with fleet(server, chargers):
        campaign = await sync_to_async(create)(
            organization.pk, name="canary fails", canary_count=1, wave_size=5
        )
        await sync_to_async(firmware_services.firmware_campaign_start)(campaign_pk=campaign.pk)
        await eventually(campaign_in(campaign.pk, "halted"), timeout=TIMEOUT, what="halted")
        rows = await sync_to_async(targets)(campaign)
        sent = await sync_to_async(
            lambda: set(
                Command.objects.filter(action="UpdateFirmware").values_list(
                    "charger__identity", flat=True
                )
            )
        )()
        await sync_to_async(firmware_services.firmware_campaign_cancel)(campaign_pk=campaign.pk)
        cancelled = await sync_to_async(targets)(campaign)
    assert rows == {
        "FW-CANARY": (0, "failed"),
        "FW-REST-1": (1, "pending"),
        "FW-REST-2": (1, "pending"),
    }
    assert sent == {"FW-CANARY"}
    assert cancelled["FW-REST-1"] == (1, "skipped")


async def test_a_201_campaign_matches_request_ids_and_succeeds_on_the_boot(
    server, make_charger, organization
):
    chargers = [
        (await sync_to_async(make_charger)("FW2-1"), "install"),
        (await sync_to_async(make_charger)("FW2-2"), "install-failed"),
    ]
    async with fleet(server, chargers, protocol="ocpp2.0.1"):
        campaign = await sync_to_async(create)(
            organization.pk,
            name="2.x",
            firmware_version="2.0.0",
            canary_count=2,
            max_failure_ratio="0.5",
        )
        await sync_to_async(firmware_services.firmware_campaign_start)(campaign_pk=campaign.pk)
        await eventually(campaign_in(campaign.pk, "completed"), timeout=TIMEOUT, what="done")
        rows = await sync_to_async(
            lambda: {
                t.charger.identity: t
                for t in FirmwareTarget.objects.filter(campaign=campaign).select_related(
                    "charger", "command"
                )
            }
        )()
    ok, failed = rows["FW2-1"], rows["FW2-2"]
    assert (ok.state, failed.state) == ("succeeded", "failed")
    assert ok.command is not None
    assert ok.command.payload["requestId"] == ok.request_id == ok.pk
    assert ok.command.payload["firmware"]["location"] == LOCATION
    # Success came with the boot on the new version; Installed followed it.
    assert ok.reason == "Booted with firmware 2.0.0."
    assert failed.status == "InstallationFailed"
