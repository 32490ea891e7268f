"""Firmware campaigns and diagnostics files on the dashboard, in a real browser against the real
server with simulated chargers: an operator creates a campaign with a filter and its preview,
starts it, sees it halt live when the canary fails, resumes it and watches the progress bars fill
to completion; and asks a charger for its diagnostics, sees the upload arrive and downloads it."""

from __future__ import annotations

import asyncio
import random
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from chargers.models import Charger, Command, Connector, DiagnosticsFile, FirmwareCampaign
from chargers.simulator import FleetConfig, SimulatedCharger, Stats
from cpms.models import Organization, Role
from tests.conftest import CHARGER_PASSWORD, ServerProcess
from tests.e2e.test_commands_dashboard import until
from tests.e2e.test_dashboard import (  # noqa: F401 - the browser fixtures of the dashboard tests
    _orm_beside_playwright,
    assert_not_reloaded,
    browser,
    browser_context_args,
    make_user,
    mark_page,
    nav,
    playwright,
    sign_in,
    wait_live,
)
from tests.e2e.test_firmware_campaigns import celery_worker  # noqa: F401 - a worker with Redis

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Waits on what simulated chargers do (download, install, reboot, upload), in milliseconds.
PROGRESS = 90_000


@contextmanager
def fleet(
    server: ServerProcess, chargers: list[tuple[Charger, str]], upload_files: bool = False
) -> Iterator[None]:
    """Simulated chargers on a loop of their own, each told how its firmware update goes."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stop = asyncio.Event()

    async def run() -> None:
        tasks = []
        for index, (charger, outcome) in enumerate(chargers):
            config = FleetConfig(
                url=server.ocpp_url,
                password=CHARGER_PASSWORD,
                connectors=1,
                sessions_per_hour=0,
                reconnect=False,
                firmware_update=outcome,
                upload_files=upload_files,
            )
            sim = SimulatedCharger(charger.identity, config, Stats(), random.Random(index))
            tasks.append(asyncio.create_task(sim.run_once()))
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    running = asyncio.run_coroutine_threadsafe(run(), loop)
    try:
        for charger, _ in chargers:
            until(
                lambda charger=charger: Connector.objects.filter(
                    charger=charger, connector_id=1, status="Available"
                ).exists(),
                timeout=120,
            )
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        running.result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def row(page: Page, identity: str) -> Any:
    return page.locator(f"#target-{identity}")


def test_an_operator_rolls_out_firmware_halts_on_a_failed_canary_resumes_and_completes(
    server: ServerProcess, page: Page, organization: Organization, make_charger: Any
) -> None:
    canary = make_charger("FWD-1")
    rest = [make_charger("FWD-2"), make_charger("FWD-3")]
    other = make_charger("OTHER-VENDOR")
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    fleet_plan = [(canary, "install-failed"), *[(c, "install") for c in rest], (other, "")]
    with fleet(server, fleet_plan):
        Charger.objects.filter(pk=other.pk).update(vendor="Someone else")
        nav(page, "Firmware").click()
        expect(page.get_by_role("heading", name="Firmware campaigns")).to_be_visible()
        page.get_by_role("link", name="New campaign").click()

        page.get_by_label("Name").fill("Depot to 2.0.0")
        page.get_by_label("Firmware location").fill("https://fw.example.com/2.0.0.bin")
        page.get_by_label("New firmware version").fill("2.0.0")
        page.get_by_label("Vendor").fill("Simulated")
        # The preview follows the filter as it is typed.
        expect(page.locator("[data-preview-count]")).to_have_text("3")
        expect(page.locator("[data-preview-chargers]")).not_to_contain_text("OTHER-VENDOR")
        page.get_by_label("Halt above failures (%)").fill("10")
        page.get_by_label("Wave size").fill("5")
        page.get_by_label("Firmware location").fill("not a url")
        page.get_by_role("button", name="Create draft").click()
        expect(page.get_by_text("Enter a valid URL.")).to_be_visible()
        assert not FirmwareCampaign.objects.exists()
        page.get_by_label("Firmware location").fill("https://fw.example.com/2.0.0.bin")
        page.get_by_role("button", name="Create draft").click()

        expect(page.get_by_role("heading", name="Depot to 2.0.0")).to_be_visible()
        expect(page.locator("[data-campaign-state-badge]")).to_have_text("Draft")
        page.get_by_role("button", name="Start").click()
        wait_live(page)
        mark_page(page)

        # The canary fails: the campaign halts, live, and the rest is never sent.
        expect(page.locator("[data-campaign-state-badge]")).to_have_text("Halted", timeout=PROGRESS)
        expect(page.locator("[data-halt-reason]")).to_contain_text(
            "1 of 1 targets failed (100%), above the allowed 10%"
        )
        expect(row(page, "FWD-1")).to_have_attribute("data-state", "failed")
        expect(row(page, "FWD-1")).to_contain_text("InstallationFailed")
        expect(row(page, "FWD-2")).to_have_attribute("data-state", "pending")
        assert_not_reloaded(page)
        assert not Command.objects.filter(charger__in=rest).exists()

        page.get_by_role("button", name="Resume").click()
        wait_live(page)
        mark_page(page)
        expect(page.locator("[data-campaign-state-badge]")).to_have_text(
            "Completed", timeout=PROGRESS
        )
        expect(page.locator("[data-progress-summary]")).to_have_text(
            "3 of 3 chargers finished (100%)."
        )
        expect(row(page, "FWD-2")).to_have_attribute("data-state", "succeeded")
        expect(row(page, "FWD-3")).to_have_attribute("data-state", "succeeded")
        expect(page.locator("#campaign-progress .fw-legend").first).to_contain_text(
            re.compile(r"Succeeded\s*2.*Failed\s*1", re.S)
        )
        assert_not_reloaded(page)

        nav(page, "Firmware").click()
        campaign = FirmwareCampaign.objects.get()
        listed = page.locator(f"#campaign-{campaign.pk}")
        expect(listed.locator("[data-campaign-state]")).to_have_text("Completed", timeout=PROGRESS)
        expect(listed.locator("[data-finished]")).to_have_text("3 / 3 finished")
    assert set(
        Charger.objects.filter(pk__in=[c.pk for c in rest]).values_list(
            "firmware_version", flat=True
        )
    ) == {"2.0.0"}


def test_the_campaign_list_fills_its_progress_bar_live(
    server: ServerProcess, page: Page, organization: Organization, make_charger: Any
) -> None:
    from chargers import firmware_services

    chargers = [make_charger("FWL-1"), make_charger("FWL-2")]
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    with fleet(server, [(c, "install") for c in chargers]):
        campaign = firmware_services.firmware_campaign_create(
            organization_id=organization.pk,
            name="Live list",
            location="https://fw.example.com/3.0.bin",
            firmware_version="3.0",
            canary_count=1,
        )
        page.goto("/firmware/")
        wait_live(page)
        mark_page(page)
        listed = page.locator(f"#campaign-{campaign.pk}")
        expect(listed.locator("[data-campaign-state]")).to_have_text("Draft")
        firmware_services.firmware_campaign_start(campaign_pk=campaign.pk)
        expect(listed.locator("[data-campaign-state]")).to_have_text("Completed")
        expect(listed.locator("[data-finished]")).to_have_text("2 / 2 finished")
        expect(listed.locator(".fw-seg.fw-succeeded")).to_have_attribute("style", "width: 100.0%")
        assert_not_reloaded(page)


def test_an_operator_asks_for_diagnostics_and_downloads_them(
    server: ServerProcess, page: Page, organization: Organization, make_charger: Any
) -> None:
    charger = make_charger("DIAG-UI")
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    try:
        with fleet(server, [(charger, "")], upload_files=True):
            page.goto(f"/chargers/{charger.pk}/")
            wait_live(page)
            mark_page(page)
            panel = page.locator("#charger-diagnostics")
            panel.get_by_label("File").select_option("diagnostics")
            panel.get_by_role("button", name="Ask for the file").click()
            uploaded = panel.locator("tr[data-state='uploaded']")
            expect(uploaded).to_contain_text("diagnostics-DIAG-UI.log", timeout=PROGRESS)
            expect(uploaded).to_contain_text("Uploaded")
            with page.expect_download() as download:
                uploaded.get_by_role("link", name="Download").click()
            content = open(download.value.path(), "rb").read()  # noqa: SIM115
            assert content.startswith(b"Simulated diagnostics-DIAG-UI.log of DIAG-UI")
            assert download.value.suggested_filename == "diagnostics-DIAG-UI.log"
            assert_not_reloaded(page)
    finally:
        for record in DiagnosticsFile.objects.exclude(file=""):
            record.file.delete(save=False)
