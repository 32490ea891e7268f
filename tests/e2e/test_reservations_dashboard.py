"""Reservations from the dashboard in a real browser against the real server and a simulated
charger: an operator reserves a connector from the charger's page and sees it become active
live, the connector shows Reserved, a bad id token is a form error, the Reservations page lists
it, and Cancel frees the connector."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from chargers.models import Charger, Connector, IdToken, Reservation
from cpms.models import Organization, Role
from tests.conftest import ServerProcess
from tests.e2e.test_commands_dashboard import open_charger, simulated, until
from tests.e2e.test_dashboard import (  # noqa: F401 - the browser fixtures of the dashboard tests
    LIVE,
    _orm_beside_playwright,
    assert_not_reloaded,
    browser,
    browser_context_args,
    make_user,
    playwright,
    sign_in,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_operator_reserves_a_connector_and_cancels_it(
    server: ServerProcess,
    page: Page,
    organization: Organization,
    charger: Charger,
    id_token: IdToken,
) -> None:
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    with simulated(server, charger):
        open_charger(page, charger)
        form = page.get_by_role("form", name="Reserve")
        form.get_by_label("Connector").select_option(label="Connector 2")
        form.get_by_label("Id token").fill("NOBODY")
        form.get_by_role("button", name="Reserve").click()
        form = page.get_by_role("form", name="Reserve")
        expect(form.get_by_role("alert")).to_contain_text("not an id token of this organization")
        assert not Reservation.objects.exists()

        form.get_by_label("Id token").fill("TAG-OK")
        form.get_by_label("Hold for (minutes)").fill("20")
        form.get_by_role("button", name="Reserve").click()
        expect(
            page.get_by_role("status").filter(has_text="Reservation 1 sent to CP-1.")
        ).to_be_visible()
        row = page.locator("#charger-reservation-list tr[id^='reservation-']").first
        expect(row.locator("[data-reservation-state]")).to_have_text("active", timeout=LIVE)
        expect(row).to_contain_text("TAG-OK")
        until(
            lambda: Connector.objects.filter(
                charger=charger, connector_id=2, status="Reserved"
            ).exists()
        )
        expect(page.locator("#charger-connectors")).to_contain_text("Reserved", timeout=LIVE)

        page.get_by_role("link", name="Reservations", exact=True).click()
        listed = page.locator("#reservation-list tr[id^='reservation-']").first
        expect(listed).to_contain_text("CP-1")
        expect(listed.locator("[data-reservation-state]")).to_have_text("active")

        open_charger(page, charger)
        page.get_by_role("button", name="Cancel reservation 1").click()
        expect(page.locator("#charger-reservation-list")).to_contain_text(
            "No active reservation", timeout=LIVE
        )
        until(lambda: Reservation.objects.filter(state="cancelled").exists())
        until(
            lambda: Connector.objects.filter(
                charger=charger, connector_id=2, status="Available"
            ).exists()
        )
    assert_not_reloaded(page)
