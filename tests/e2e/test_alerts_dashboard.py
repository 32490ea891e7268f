"""The alerts page in a real browser (Debian's Chromium via Playwright) against a real server:
a charger's fault shows up live, an operator acknowledges it, and the charger's recovery resolves
it on the page with no reload."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from chargers.models import Alert, Charger
from cpms.models import Organization, Role
from tests.conftest import ServerProcess, wait_until_quiet
from tests.e2e.test_dashboard import (  # noqa: F401 - the module's browser fixtures
    LIVE,
    _orm_beside_playwright,
    assert_not_reloaded,
    browser,
    make_user,
    mark_page,
    ocpp_charger,
    playwright,
    sign_in,
    wait_live,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Faults become alerts at once here, so that the page has something to show straight away.
ALERT_ENV = {"CPMS_ALERT_DEBOUNCE": "0"}


@pytest.fixture(scope="module")
def alert_server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[ServerProcess]:
    process = ServerProcess(extra_env=ALERT_ENV)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def server(transactional_db: Any, alert_server: ServerProcess) -> Iterator[ServerProcess]:
    yield alert_server
    wait_until_quiet()


@pytest.fixture(scope="module")
def browser_context_args(alert_server: ServerProcess) -> dict[str, Any]:
    return {"base_url": alert_server.http_url, "viewport": {"width": 1280, "height": 900}}


def row(page: Page, alert: Alert) -> Any:
    return page.locator(f"#alert-{alert.pk}")


def test_alerts_follow_a_charger_live_and_an_operator_acknowledges(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger
) -> None:
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Alerts")
    expect(page.get_by_text("No alert matches.")).to_be_visible()
    expect(page.locator("[data-tile='alerts-active'] .tile-value")).to_have_text("0")
    wait_live(page)
    mark_page(page)

    with ocpp_charger(server, charger.identity) as cp:
        cp.boot()
        cp.status(1, "Available")
        cp.status(2, "Faulted", error_code="GroundFailure")

        rows = page.locator("table.alerts tbody tr")
        expect(rows).to_have_count(2, timeout=LIVE)  # the fault and its error code
        faulted = Alert.objects.get(kind="connector_faulted")
        expect(row(page, faulted)).to_contain_text("Connector faulted · connector 2")
        expect(row(page, faulted)).to_contain_text("Connector 2 is faulted (GroundFailure)")
        expect(row(page, faulted)).to_have_attribute("data-alert-state", "open")
        expect(page.locator("[data-tile='alerts-active'] .tile-value")).to_have_text(
            "2", timeout=LIVE
        )

        row(page, faulted).get_by_role("button", name="Acknowledge").click()
        expect(row(page, faulted)).to_have_attribute("data-alert-state", "acknowledged")
        expect(row(page, faulted)).to_contain_text("by olga")
        faulted.refresh_from_db()
        assert faulted.state == "acknowledged"

        # Repaired on site: the charger says so, and the page follows.
        cp.status(2, "Available")
        expect(rows).to_have_count(0, timeout=LIVE)
        expect(page.get_by_text("No alert matches.")).to_be_visible()
        expect(page.locator("[data-tile='alerts-active'] .tile-value")).to_have_text(
            "0", timeout=LIVE
        )
    assert_not_reloaded(page)

    page.get_by_label("State").select_option("resolved")
    expect(rows).to_have_count(2)
    expect(row(page, faulted)).to_have_attribute("data-alert-state", "resolved")
    faulted.refresh_from_db()
    assert faulted.mttr_seconds is not None
    expect(row(page, faulted)).to_contain_text("cleared")


def test_a_resolve_by_hand_and_the_webhook_form(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger
) -> None:
    make_user("ada", organization, Role.OPERATOR_ADMIN)
    with ocpp_charger(server, charger.identity) as cp:
        cp.boot()
        cp.status(1, "Charging", error_code="HighTemperature")
    sign_in(page, "ada")
    page.goto("/alerts/")
    error = Alert.objects.get(kind="charger_error")
    expect(row(page, error)).to_contain_text("Connector 1 reports HighTemperature")
    row(page, error).get_by_role("button", name="Resolve").click()
    expect(row(page, error)).to_have_attribute("data-alert-state", "resolved")
    expect(row(page, error)).to_contain_text("resolved by hand")

    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("Name").fill("pager")
    page.get_by_label("URL").fill("ftp://pager.example.com/")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_role("alert").first).to_contain_text("Please correct the fields")
    page.get_by_label("URL").fill("https://pager.example.com/cpms")
    page.get_by_label("alert.raised").check()
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("[id^='endpoint-']")).to_contain_text("pager")
    expect(page.get_by_text("https://pager.example.com/cpms")).to_be_visible()
    expect(page.locator("[data-secret]")).to_contain_text("whsec_")
