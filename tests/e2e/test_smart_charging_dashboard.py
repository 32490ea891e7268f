"""The site load page in a real browser (Debian's Chromium via Playwright) against the real
server: sessions starting show up with their limits without a reload, and a demand-response event
created on the page caps the site."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from chargers.models import Site
from cpms.models import Organization, Role
from smartcharging import services
from smartcharging.models import SiteCapacity
from tests.chargers.test_services import start
from tests.conftest import ServerProcess
from tests.e2e.test_dashboard import (  # noqa: F401  (fixtures)
    _orm_beside_playwright,
    assert_not_reloaded,
    browser,
    make_user,
    mark_page,
    playwright,
    sign_in,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(browser: Browser, server: ServerProcess) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context(base_url=server.http_url, viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def row(page: Page, identity: str) -> Any:
    return page.locator("#load-sessions tbody tr", has_text=identity)


def test_the_site_load_page_follows_the_allocation_live(
    page: Page, organization: Organization, site: Site, make_charger: Any, id_token: Any
) -> None:
    SiteCapacity.objects.create(site=site, limit=Decimal("63"))
    first, second = make_charger("CP-L1"), make_charger("CP-L2")
    make_user("operator", organization, Role.OPERATOR)
    sign_in(page, "operator")
    page.goto(f"/sites/{site.pk}/load/")
    mark_page(page)
    expect(page.locator('[data-load="limit"]')).to_have_text("63.0 A")
    expect(page.locator("#load-sessions")).to_contain_text("No session is charging.")

    start(first, connector_id=1)
    services.site_rebalance(site_pk=site.pk)
    expect(row(page, "CP-L1")).to_contain_text("32.0")
    expect(page.locator('[data-load="sessions"]')).to_have_text("1")
    # The chart is drawn.
    expect(page.locator("#load-chart canvas").first).to_be_visible()

    start(second, connector_id=1, id_tag="TAG-OK", meter_start=5)
    services.site_rebalance(site_pk=site.pk)
    expect(row(page, "CP-L1")).to_contain_text("31.5")
    expect(row(page, "CP-L2")).to_contain_text("31.5")
    expect(page.locator('[data-load="allocated"]')).to_have_text("63.0 A")
    assert_not_reloaded(page)

    # A demand-response event, typed in the site's local time.
    local = timezone.now().astimezone(ZoneInfo(site.time_zone))
    page.get_by_label("From").fill((local - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Until").fill((local + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Site limit (A per phase)").last.fill("20")
    page.get_by_label("Reason").fill("Grid operator peak")
    page.get_by_role("button", name="Create event").click()
    expect(page.locator(".message")).to_contain_text("Demand-response event created.")
    expect(page.locator("#limit-events")).to_contain_text("Grid operator peak")
    services.site_rebalance(site_pk=site.pk)
    expect(page.locator('[data-load="source"]')).to_have_text("event")
    expect(page.locator('[data-load="limit"]')).to_have_text("20.0 A")
    expect(row(page, "CP-L1")).to_contain_text("10.0")
    expect(row(page, "CP-L2")).to_contain_text("10.0")


def test_the_page_shows_form_errors(page: Page, organization: Organization, site: Site) -> None:
    make_user("operator", organization, Role.OPERATOR)
    sign_in(page, "operator")
    page.goto(f"/sites/{site.pk}/load/")
    page.get_by_label("Grid connection limit").fill("-5")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#capacity-title ~ form .error")).to_be_visible()
    assert not SiteCapacity.objects.exists()
