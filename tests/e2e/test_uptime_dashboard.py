"""The uptime page in a real browser: an operator reads a connector's uptime for a day, plans
maintenance over its fault and sees the fault left out, and downloads the CSV."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from chargers.models import ChargerEvent, Connector, ConnectorStatusChange
from cpms.models import Role
from tests.e2e.test_dashboard import (  # noqa: F401 - the browser fixtures of the dashboard tests
    _orm_beside_playwright,
    browser,
    browser_context_args,
    make_user,
    playwright,
    sign_in,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DAY = datetime(2026, 4, 1, tzinfo=UTC)


def test_an_operator_reads_uptime_and_plans_maintenance(server, page: Page, charger):
    ChargerEvent.objects.create(
        charger=charger,
        kind=ChargerEvent.Kind.CONNECTION,
        status="Connected",
        timestamp=DAY - timedelta(hours=1),
    )
    connector = Connector.objects.create(charger=charger, connector_id=1, status="Available")
    for hours, status in [(-1, "Available"), (6, "Faulted"), (12, "Available")]:
        ConnectorStatusChange.objects.create(
            connector=connector, status=status, timestamp=DAY + timedelta(hours=hours)
        )
    make_user("olga", charger.organization, Role.OPERATOR)
    sign_in(page, "olga")

    page.goto("/uptime/?start=2026-04-01&end=2026-04-02")
    row = page.locator(f"tr[data-row='{charger.identity}#1']")
    expect(row).to_contain_text("75.00 %")
    expect(row).to_contain_text("6.00")

    page.get_by_label("Reason").fill("Board replaced")
    page.get_by_label("Starts (UTC)").fill("2026-04-01T06:00")
    page.get_by_label("Ends (UTC)").fill("2026-04-01T12:00")
    page.get_by_role("button", name="Plan maintenance").click()
    expect(page.locator(".messages")).to_contain_text("Maintenance window planned.")
    expect(row).to_contain_text("100.00 %")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    text = Path(download.value.path()).read_text()
    assert charger.identity in text and "100.0" in text
