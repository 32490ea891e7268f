"""Configuration baselines in a real browser: an operator writes a baseline (a bad line is named),
sees a charger's drift on its page, and is told why an offline charger cannot be applied to."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from chargers.models import ChargerConfigurationKey
from cpms.models import Role
from operations.models import ConfigurationBaseline
from tests.e2e.test_dashboard import (  # noqa: F401 - the browser fixtures of the dashboard tests
    _orm_beside_playwright,
    browser,
    browser_context_args,
    make_user,
    playwright,
    sign_in,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_operator_writes_a_baseline_and_reads_a_chargers_drift(server, page: Page, make_charger):
    charger = make_charger("CP-WB", vendor="ACME", model="Wallbox", ocpp_version="1.6")
    ChargerConfigurationKey.objects.create(charger=charger, key="HeartbeatInterval", value="300")
    ChargerConfigurationKey.objects.create(
        charger=charger, key="MeterValueSampleInterval", value="900"
    )
    make_user("olga", charger.organization, Role.OPERATOR)
    sign_in(page, "olga")

    page.get_by_role("link", name="Baselines").click()
    page.get_by_label("Name").fill("Wallbox fleet")
    page.get_by_label("Vendor").fill("acme")
    page.get_by_label("Model").fill("wallbox")
    page.get_by_label("Protocol").select_option("1.6")
    page.get_by_label("Settings").fill("HeartbeatInterval = 300\nMeterValueSampleInterval 60")
    page.get_by_role("button", name="Create baseline").click()
    expect(page.get_by_role("alert").filter(has_text="line 2")).to_be_visible()
    assert not ConfigurationBaseline.objects.exists()

    page.get_by_label("Settings").fill(
        "HeartbeatInterval = 300\nMeterValueSampleInterval = 60\nLocalAuthListEnabled = true"
    )
    page.get_by_role("button", name="Create baseline").click()
    expect(page.locator(".messages")).to_contain_text("Baseline Wallbox fleet created.")
    row = page.locator("tr[data-charger='CP-WB']")
    expect(row).to_be_visible()

    row.get_by_role("link", name="CP-WB").click()
    panel = page.locator("#configuration-drift")
    expect(panel.locator("[data-drift-summary]")).to_contain_text(
        "1 matching · 1 differing · 1 missing · 0 unknown"
    )
    expect(panel.locator("tr[data-drift='MeterValueSampleInterval']")).to_contain_text("900")
    expect(panel.locator("tr[data-drift='MeterValueSampleInterval']")).to_contain_text("differing")
    panel.get_by_role("button", name="Apply baseline").click()
    expect(page.locator(".messages")).to_contain_text("offline")
