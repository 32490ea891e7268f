"""The reconciliation page in a real browser: an operator finds an open case, is told a reason is
needed, closes the session with one and sees it in the audit trail."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from chargers.models import Connector, Session, SessionState
from cpms.models import Role
from operations import reconciliation
from operations.models import ReconciliationCase
from tests.e2e.test_dashboard import (  # noqa: F401 - the browser fixtures of the dashboard tests
    _orm_beside_playwright,
    browser,
    browser_context_args,
    make_user,
    playwright,
    sign_in,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_operator_closes_a_zombie_session_from_the_dashboard(server, page: Page, charger):
    now = timezone.now()
    connector = Connector.objects.create(
        charger=charger, connector_id=1, status="Available", status_at=now - timedelta(hours=1)
    )
    session = Session.objects.create(
        charger=charger,
        connector=connector,
        connector_number=1,
        transaction_id="4711",
        start_key="s-4711",
        started_at=now - timedelta(hours=2),
        meter_start_wh=Decimal("100"),
        ocpp_version="1.6",
    )
    [case] = reconciliation.reconciliation_detect()
    make_user("olga", charger.organization, Role.OPERATOR)
    sign_in(page, "olga")

    page.get_by_role("link", name="Reconciliation").click()
    row = page.locator(f"tr[data-case='{case.pk}']")
    expect(row).to_contain_text(charger.identity)
    expect(row).to_contain_text("Session open on an Available connector")
    row.get_by_role("link", name=f"#{case.pk}").click()

    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    page.get_by_role("button", name="Close the session").click()
    # The browser's own check holds the empty reason back; the server's stands behind it.
    expect(page.locator("#close-reason:invalid")).to_have_count(1)
    page.locator("#close-reason").fill("Cable found unplugged on site")
    page.get_by_role("button", name="Close the session").click()

    expect(page.locator(".messages")).to_contain_text("Session closed.")
    expect(page.locator("[data-case-state]")).to_have_text("Resolved")
    expect(page.get_by_role("table")).to_contain_text("Cable found unplugged on site")
    expect(page.get_by_role("table")).to_contain_text("olga")
    session.refresh_from_db()
    assert (session.state, session.stop_reason) == (SessionState.COMPLETED, "Reconciled")
    case.refresh_from_db()
    assert case.resolved_by.username == "olga"
    assert ReconciliationCase.objects.filter(state="resolved").count() == 1
