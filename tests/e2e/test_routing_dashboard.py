"""The routing page in a real browser against the real server: a cut-over reviewed, refused until
confirmed, applied and recorded; errors shown in the form; leg health followed with no reload."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from chargers.models import Charger
from cpms.models import Organization, Role
from routing.models import LegStatus, Route, RouteLeg, RoutingChange, Upstream
from routing.selectors import route_for_charger
from tests.conftest import ServerProcess
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
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LEGACY = "ws://127.0.0.1:9/legacy"


def cutover_policy() -> str:
    return json.dumps(
        {
            "charger_id": "CP-1",
            "upstreams": [
                {"url": LEGACY, "role": "primary"},
                {"url": "local", "role": "observer"},
            ],
        }
    )


def test_a_cutover_is_reviewed_confirmed_and_recorded(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger
) -> None:
    make_user("rita", organization, Role.OPERATOR)
    sign_in(page, "rita")
    nav(page, "Routing").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Routing")
    row = page.locator("tr[data-charger='CP-1']")
    expect(row.locator(".primary-leg [data-upstream='local']")).to_be_visible()

    # A policy with mistakes: the review names them and nothing changes.
    editor = page.get_by_label("Policy (JSON)")
    editor.fill(
        json.dumps({"charger_id": "CP-1", "upstreams": [{"upstream": "ghost", "role": "observer"}]})
    )
    page.get_by_role("button", name="Review changes").click()
    errors = page.locator("#policy-errors")
    expect(errors).to_contain_text("routes[0].upstreams[0].upstream: unknown upstream 'ghost'")
    expect(errors).to_contain_text("routes[0].upstreams: no primary")

    # Corrected in place and reviewed again: a cut-over, which needs the box ticked.
    page.get_by_label("Policy (JSON)").fill(cutover_policy())
    page.get_by_role("button", name="Review again").click()
    expect(page.locator("#cutover-warning")).to_contain_text(
        "charger CP-1 from local to 127.0.0.1-9"
    )
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("alert").filter(has_text="Tick this box")).to_be_visible()
    assert route_for_charger(charger=charger).primary.is_local

    page.get_by_label("I confirm the cut-over").check()
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(f"{server.http_url}/routing/")
    expect(page.get_by_text("Routing changed: charger CP-1: primary 127.0.0.1-9")).to_be_visible()
    expect(row).to_contain_text("controlled by 127.0.0.1-9")
    expect(page.locator("#routing-changes")).to_contain_text("rita")
    record = RoutingChange.objects.get(organization=organization)
    assert record.source == "dashboard" and record.changed_by is not None
    assert route_for_charger(charger=charger).primary.upstream == "127.0.0.1-9"


def test_leg_health_follows_without_reload(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger
) -> None:
    legacy = Upstream.objects.create(name="legacy", url=LEGACY)
    route = Route.objects.create(scope="charger", charger=charger)
    RouteLeg.objects.create(route=route, upstream=legacy, role="observer")
    RouteLeg.objects.create(
        route=route, upstream=Upstream.objects.get_or_create(name="local")[0], role="primary"
    )
    make_user("ravi", organization, Role.OPERATOR)
    sign_in(page, "ravi")
    page.goto("/routing/")
    mark_page(page)
    leg = page.locator("tr[data-charger='CP-1'] .observer-legs [data-upstream='legacy']")
    expect(leg).to_have_attribute("data-state", "not dialled")

    # What a gateway writes of the leg shows on the page as it happens.
    # Seen just now, or the server's stale-connection sweep would mark it offline.
    Charger.objects.filter(pk=charger.pk).update(connected=True, last_seen=timezone.now())
    status = LegStatus.objects.create(
        charger=charger, upstream=legacy, role="observer", connected=True, latency_ms=42.0
    )
    expect(leg).to_have_attribute("data-state", "up")
    expect(leg).to_contain_text("42 ms")
    LegStatus.objects.filter(pk=status.pk).update(
        connected=False, reconnects=3, last_error="refused"
    )
    expect(leg).to_have_attribute("data-state", "down")
    expect(leg).to_contain_text("reconnects 3")
    assert_not_reloaded(page)
