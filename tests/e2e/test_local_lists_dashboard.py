"""A charger's local list on its dashboard page, in a real browser against the real server with
a simulated charger: the list's state shows and follows the charger live, "Check version" finds
a charger that lost its list and sends it the full list again, "Sync now (full)" resends it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from playwright.sync_api import Page, expect

from chargers import services
from chargers.locallist_models import LocalListSync
from chargers.models import Charger, Command
from cpms.models import Organization, Role
from tests.conftest import ServerProcess
from tests.cpms.test_celery import celery_process, wait_for
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


@pytest.fixture(scope="module", autouse=True)
def celery_worker(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """With Redis, the lists follow the charger's answers in a real Celery worker."""
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


def in_sync(charger: Charger, version: int) -> LocalListSync:
    return until(
        lambda: LocalListSync.objects.filter(
            charger=charger, state="in_sync", version=version, command__isnull=True
        ).first()
    )


def test_an_operator_checks_and_resends_a_chargers_list_from_its_page(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger
) -> None:
    services.id_token_create(organization=organization, token="CARD-A", local_list=True)
    services.id_token_create(organization=organization, token="CARD-B", local_list=True)
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    with simulated(server, charger) as sim:
        in_sync(charger, 1)
        open_charger(page, charger)
        panel = page.locator("#charger-local-list")
        expect(panel.locator("[data-local-list-badge]")).to_have_text("In sync")
        expect(panel.locator("[data-local-list-version]")).to_have_text("1")
        expect(panel.locator("[data-local-list-entries]")).to_have_text("2")

        # The charger lost its list (a reset to factory settings, say).
        sim.state.local_list = {}
        sim.state.local_list_version = 0
        panel.get_by_role("button", name="Check version").click()
        expect(panel.get_by_role("status")).to_contain_text("asked for its list version")
        expect(panel.locator("[data-local-list-version]")).to_have_text("2", timeout=LIVE)
        expect(panel.locator("[data-local-list-badge]")).to_have_text("In sync")
        assert set(sim.state.local_list) == {"CARD-A", "CARD-B"}

        panel.get_by_role("button", name="Sync now (full)").click()
        expect(panel.get_by_role("status")).to_contain_text("full list is on its way")
        expect(panel.locator("[data-local-list-version]")).to_have_text("3", timeout=LIVE)
        in_sync(charger, 3)
        assert sim.state.local_list_version == 3
        assert set(sim.state.local_list) == {"CARD-A", "CARD-B"}
    updates = list(
        Command.objects.filter(charger=charger, action="SendLocalList")
        .order_by("id")
        .values_list("payload__updateType", "payload__listVersion")
    )
    assert updates == [("Full", 1), ("Full", 2), ("Full", 3)]
    assert_not_reloaded(page)
