"""Tariffs in a real browser against the real server: a site host sets a time-of-use tariff with
an idle fee, follows the live price example while typing, publishes it and assigns it to the site;
a mistake is shown beside the element it concerns; the simulator compares the draft with what the
site's sessions cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from billing import services
from billing.models import Tariff, TariffAssignment
from chargers.models import Charger, Session, SessionState, Site
from cpms.models import Organization, Role
from tests.conftest import ServerProcess
from tests.e2e.test_dashboard import (  # noqa: F401 - the browser fixtures of the dashboard tests
    _orm_beside_playwright,
    browser,
    browser_context_args,
    make_user,
    nav,
    playwright,
    sign_in,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def element(page: Page, index: int) -> object:
    return page.get_by_test_id(f"element-{index}")


def test_a_site_host_sets_a_time_of_use_tariff_with_an_idle_fee(
    server: ServerProcess, page: Page, organization: Organization, site: Site
) -> None:
    make_user("sam", organization, Role.SITE_HOST, (site,))
    sign_in(page, "sam")
    nav(page, "Tariffs").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Tariffs")
    page.get_by_role("link", name="New tariff").click()

    page.get_by_label("Name").fill("Depot peak and idle")
    peak = page.get_by_test_id("element-0")
    peak.get_by_label("Energy, per kWh").fill("0.40")
    peak.get_by_label("VAT %").fill("19")
    peak.get_by_label("From (local time)").fill("17:00")
    peak.get_by_label("Until (local time)").fill("21:00")
    # The live example, with the default session (22 kWh, 2 h, Tuesday 18:00): all in the peak,
    # 22 x 0.40 = 8.80, VAT 19 % = 1.67, 10.47 in all.
    sentence = page.get_by_test_id("example-sentence")
    expect(sentence).to_contain_text("A 22 kWh, 2 h session on Tuesday")
    expect(sentence).to_contain_text("costs 10.47 EUR including VAT (8.80 EUR excluding VAT)")

    rest = page.get_by_test_id("element-1")
    rest.get_by_label("Energy, per kWh").fill("0.25")
    rest.get_by_label("Idle fee, per hour").fill("6.00")
    rest.get_by_label("VAT %").fill("19")
    page.get_by_label("Idle minutes free of charge").fill("30")
    # One idle hour after the charge (20:00-21:00), the first 30 minutes free: 0.5 h x 6.00 =
    # 3.00 more. 11.80 excluding VAT, VAT 2.242 -> 2.24, 14.04 in all.
    page.get_by_label("Idle minutes after").fill("60")
    expect(sentence).to_contain_text("plus 60 min idle")
    expect(sentence).to_contain_text("costs 14.04 EUR including VAT (11.80 EUR excluding VAT)")
    expect(page.locator("#tariff-example-result")).to_contain_text("PARKING_TIME")

    # A mistake: the off-peak window overlaps the peak. Shown beside the element, nothing saved.
    rest.get_by_label("From (local time)").fill("20:00")
    rest.get_by_label("Until (local time)").fill("23:00")
    page.get_by_role("button", name="Create tariff").click()
    expect(page.get_by_test_id("element-1").get_by_role("alert")).to_contain_text(
        "Overlaps element 0 for ENERGY"
    )
    assert not Tariff.objects.exists()

    page.get_by_test_id("element-1").get_by_label("From (local time)").fill("")
    page.get_by_test_id("element-1").get_by_label("Until (local time)").fill("")
    page.get_by_role("button", name="Create tariff").click()
    expect(page.get_by_text("Tariff Depot peak and idle created as a draft")).to_be_visible()
    expect(page.get_by_role("heading", name="Draft: version 1")).to_be_visible()

    page.get_by_role("button", name="Publish version 1").click()
    expect(page.get_by_text("Version 1 published")).to_be_visible()
    expect(page.get_by_role("heading", name="In force now: version 1")).to_be_visible()
    expect(page.locator("#current-title + p + ol")).to_contain_text("0.40 EUR per kWh (VAT 19 %)")

    page.get_by_label("Where", exact=True).select_option(label=f"Site {site.name}")
    page.get_by_role("button", name="Assign").click()
    expect(page.get_by_text("Tariff Depot peak and idle assigned.")).to_be_visible()
    expect(page.get_by_role("table").first).to_contain_text(f"Site {site.name}")

    tariff = Tariff.objects.get()
    version = tariff.versions.get()
    assert version.state == "published" and version.parking_grace_seconds == 1800
    assert TariffAssignment.objects.get().site == site


def test_the_simulator_compares_the_draft_with_the_sites_last_sessions(
    server: ServerProcess, page: Page, organization: Organization, site: Site, charger: Charger
) -> None:
    tariff = services.tariff_create(
        organization=organization,
        name="Depot",
        currency="EUR",
        site=site,
        elements=[{"price_components": [{"type": "ENERGY", "price": "0.30", "vat": "19"}]}],
    )
    version = services.tariff_publish(version=tariff.versions.get())
    start = datetime(2026, 6, 16, 8, 0, tzinfo=UTC)
    type(version).objects.filter(pk=version.pk).update(effective_from=start - timedelta(days=1))
    TariffAssignment.objects.create(
        organization=organization, tariff=tariff, site=site, valid_from=start - timedelta(days=1)
    )
    for index, kwh in enumerate((10, 20)):
        Session.objects.create(
            charger=charger,
            transaction_id=str(index),
            start_key=str(index),
            started_at=start + timedelta(hours=index),
            stopped_at=start + timedelta(hours=index, minutes=50),
            meter_start_wh=Decimal(0),
            meter_stop_wh=Decimal(kwh * 1000),
            energy_wh=Decimal(kwh * 1000),
            state=SessionState.COMPLETED,
        )
    services.tariff_draft_update(
        version=services.tariff_draft(tariff=tariff),
        data={
            "elements": [{"price_components": [{"type": "ENERGY", "price": "0.35", "vat": "19"}]}]
        },
    )
    make_user("sam", organization, Role.SITE_HOST, (site,))
    sign_in(page, "sam")
    page.goto(f"/tariffs/{tariff.pk}/")
    page.get_by_role("link", name="Simulator").click()
    # Now 30 kWh x 0.30 = 9.00; with the draft 30 x 0.35 = 10.50.
    expect(page.get_by_test_id("revenue-now")).to_have_text("9.00")
    expect(page.get_by_test_id("revenue-draft")).to_have_text("10.50")
    expect(page.get_by_test_id("revenue-difference")).to_have_text("+1.50")
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Depot v1")
    expect(rows.first).to_contain_text("+1.00")  # 20 kWh x 0.05
