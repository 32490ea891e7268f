"""The dashboard in a real browser (Debian's Chromium via Playwright) against the real server.

Chargers are driven over real OCPP 1.6 WebSockets; the pages must follow them live, with no
reload. Each wait is bounded by Playwright's ``expect`` timeout.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from chargers.models import Charger, Connector, Site
from cpms.models import Membership, Organization, Role
from tests.conftest import CHARGER_PASSWORD, ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USER_PASSWORD = "dashboard-e2e-password"
# Generous bound for a live change to show; it normally shows within a fraction of a second, but a
# CI machine running two server processes, a browser and the suite at once can take many seconds.
LIVE = 30_000


# --- Browser: one per module, closed with it ------------------------------------------------------
#
# Playwright's sync API keeps an event loop running on this thread while it is open. Django then
# refuses ORM calls from this thread as "async unsafe", although none runs concurrently with the
# loop; the check is relaxed for this module only, and the browser is closed with the module so
# that the loop never outlives it (later tests, sync or asyncio, find the thread clean).


@pytest.fixture(scope="module")
def _orm_beside_playwright() -> Iterator[None]:
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def playwright(_orm_beside_playwright: None) -> Iterator[Playwright]:
    with sync_playwright() as instance:
        # Every wait of this module has the same bound, so a busy machine does not fail a test.
        expect.set_options(timeout=LIVE)
        yield instance
        expect.set_options(timeout=5_000)


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # Debian's Chromium; Playwright never downloads a browser.
    instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def browser_context_args(server_process: ServerProcess) -> dict[str, Any]:
    return {"base_url": server_process.http_url, "viewport": {"width": 1280, "height": 900}}


# --- Helpers -------------------------------------------------------------------------------------


def make_user(
    username: str, organization: Organization, role: str, sites: tuple[Site, ...] = ()
) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", USER_PASSWORD)
    membership = Membership.objects.create(user=user, organization=organization, role=role)
    membership.sites.set(sites)
    return user


def sign_in(page: Page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(USER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()


def wait_live(page: Page) -> None:
    """The page's live socket is open, so events from now on reach it."""
    expect(page.locator("[data-live-state]")).to_have_attribute(
        "data-live-state", "open", timeout=LIVE
    )


def wait_for_held(page: Page, held: list[Any], what: str, timeout: float = 10.0) -> None:
    """Wait until a route handler has held a request. Playwright runs handlers only while it is
    called, so this waits through Playwright rather than sleeping."""
    for _ in range(int(timeout / 0.05)):
        if held:
            return
        page.wait_for_timeout(50)
    raise AssertionError(what)


def mark_page(page: Page) -> None:
    page.evaluate("window.__sameDocument = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"


class OcppCharger:
    """A minimal OCPP 1.6J charger over a real WebSocket: sends CALLs, checks each CALLRESULT."""

    def __init__(self, ws: ClientConnection, identity: str):
        self.ws = ws
        self.identity = identity
        self.ids = itertools.count(1)

    def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        message_id = f"{self.identity}-{next(self.ids)}"
        self.ws.send(json.dumps([2, message_id, action, payload]))
        reply = json.loads(self.ws.recv(timeout=10))
        assert reply[0] == 3 and reply[1] == message_id, reply
        return reply[2]

    def boot(self) -> None:
        result = self.call(
            "BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "AC-22"}
        )
        assert result["status"] == "Accepted"

    def status(self, connector: int, status: str, error_code: str = "NoError") -> None:
        self.call(
            "StatusNotification",
            {
                "connectorId": connector,
                "errorCode": error_code,
                "status": status,
                "timestamp": now(),
            },
        )


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@contextmanager
def ocpp_charger(server: ServerProcess, identity: str) -> Iterator[OcppCharger]:
    token = base64.b64encode(f"{identity}:{CHARGER_PASSWORD}".encode()).decode()
    with connect(
        server.ocpp_url + identity,
        subprotocols=[Subprotocol("ocpp1.6")],
        additional_headers={"Authorization": f"Basic {token}"},
    ) as ws:
        yield OcppCharger(ws, identity)


def nav(page: Page, name: str) -> Any:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def tile(page: Page, name: str) -> Any:
    return page.locator(f"[data-tile='{name}'] .tile-value")


# --- Tests ---------------------------------------------------------------------------------------


def test_sign_in_and_out(server: ServerProcess, page: Page, organization: Organization) -> None:
    make_user("olga", organization, Role.OPERATOR)

    page.goto("/")
    expect(page).to_have_url(f"{server.http_url}/login/?next=/")
    page.get_by_label("Username").fill("olga")
    page.get_by_label("Password").fill("not-her-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("enter a correct username and password")

    page.get_by_label("Password").fill(USER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.http_url}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Charging")
    expect(nav(page, "Id tokens")).to_be_visible()
    expect(nav(page, "API tokens")).to_have_count(0)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{server.http_url}/login/")
    page.goto("/chargers/")
    expect(page).to_have_url(f"{server.http_url}/login/?next=/chargers/")


def test_overview_follows_a_charger_live(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger
) -> None:
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    expect(tile(page, "online")).to_have_text("0")
    expect(tile(page, "offline")).to_have_text("1")
    expect(tile(page, "faulted")).to_have_text("0")
    wait_live(page)
    mark_page(page)

    with ocpp_charger(server, charger.identity) as cp:
        cp.boot()
        cp.status(1, "Available")
        expect(tile(page, "online")).to_have_text("1", timeout=LIVE)
        expect(tile(page, "offline")).to_have_text("0")
        expect(page.locator("[data-connector-count='Available']")).to_have_text("1", timeout=LIVE)

        cp.status(1, "Faulted", error_code="GroundFailure")
        expect(tile(page, "faulted")).to_have_text("1", timeout=LIVE)
        expect(page.locator("[data-connector-count='Faulted']")).to_have_text("1", timeout=LIVE)
        expect(page.get_by_role("region", name="Needs attention")).to_contain_text(charger.identity)

    expect(tile(page, "online")).to_have_text("0", timeout=LIVE)
    expect(tile(page, "offline")).to_have_text("1")
    assert_not_reloaded(page)


def test_chargers_list_filters_sorts_and_follows_status(
    server: ServerProcess, page: Page, organization: Organization, site: Site, make_charger: Any
) -> None:
    harbour = Site.objects.create(organization=organization, name="Harbour")
    make_charger("ALFEN-1", vendor="Alfen", ocpp_version="1.6")
    make_charger("ALFEN-2", vendor="Alfen", ocpp_version="1.6", site=harbour)
    make_charger("ABB-1", vendor="ABB", ocpp_version="2.0.1")
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")

    nav(page, "Chargers").click()
    rows = page.locator("table.chargers tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("ABB-1")

    page.get_by_label("Vendor").select_option("Alfen")
    expect(rows).to_have_count(2)
    expect(page).to_have_url(
        f"{server.http_url}/chargers/?q=&site=&status=&ocpp_version=&vendor=Alfen"
    )
    page.get_by_label("Site").select_option(label="Harbour")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ALFEN-2")

    page.get_by_role("link", name="Reset").click()
    expect(rows).to_have_count(3)
    page.get_by_label("Search").fill("alfen-1")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ALFEN-1")
    page.get_by_label("Search").fill("")
    expect(rows).to_have_count(3)

    by_identity = page.locator("table.chargers thead th").first
    by_identity.get_by_role("link").click()
    expect(by_identity).to_have_attribute("aria-sort", "ascending")
    expect(rows.first).to_contain_text("ABB-1")
    by_identity.get_by_role("link").click()
    expect(by_identity).to_have_attribute("aria-sort", "descending")
    expect(rows.first).to_contain_text("ALFEN-2")

    page.get_by_label("Status").select_option("Offline")
    expect(rows).to_have_count(3)
    page.get_by_label("Status").select_option("Faulted")
    expect(page.get_by_text("No charger matches these filters.")).to_be_visible()
    page.get_by_label("Status").select_option("")
    expect(rows).to_have_count(3)
    wait_live(page)
    mark_page(page)

    row = page.locator("tr[data-charger='ALFEN-1']")
    with ocpp_charger(server, "ALFEN-1") as cp:
        cp.boot()
        cp.status(1, "Charging")
        expect(row.locator("[data-state]")).to_have_text("Charging", timeout=LIVE)
        cp.status(1, "Faulted", error_code="OverCurrentFailure")
        expect(row.locator("[data-state]")).to_have_text("Faulted", timeout=LIVE)
    expect(row.locator("[data-state]")).to_have_text("Offline", timeout=LIVE)
    assert_not_reloaded(page)

    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    assert exported.splitlines()[0].startswith("identity,state,site,vendor")
    assert {line.split(",")[0] for line in exported.splitlines()[1:]} == {
        "ABB-1",
        "ALFEN-1",
        "ALFEN-2",
    }


def test_what_changed_before_the_live_socket_opened_shows_once_it_opens(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger
) -> None:
    """What changes between a page's render and its live subscription is never sent to it:
    once the socket opens, the page fetches its live parts (a table of rows in one request)."""
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")

    def changed_after_render(path: str, status: str) -> None:
        # The page's live script is held back: the page is rendered, and not yet listening.
        held: list[Any] = []
        page.route(re.compile(r"/static/js/live[^/]*\.js"), lambda route: held.append(route))
        page.goto(path, wait_until="commit")
        wait_for_held(page, held, "the live script was never requested")
        expect(page.locator("[data-live-state]")).to_have_attribute("data-live-state", "connecting")
        # Seen just now: the server's stale-connection sweep leaves it be.
        Charger.objects.filter(pk=charger.pk).update(connected=True, last_seen=timezone.now())
        Connector.objects.update_or_create(
            charger=charger, connector_id=1, defaults={"status": status}
        )
        held[0].continue_()
        page.unroute(re.compile(r"/static/js/live[^/]*\.js"))
        wait_live(page)

    row = page.locator(f"tr[data-charger='{charger.identity}'] [data-state]")
    changed_after_render("/chargers/", "Available")
    expect(row).to_have_text("Available", timeout=LIVE)

    detail = f"/chargers/{charger.pk}/"
    changed_after_render(detail, "Faulted")
    expect(page.locator("[data-charger-state]")).to_have_text("Faulted", timeout=LIVE)
    expect(
        page.locator("#charger-connectors [data-connector='1'] [data-connector-status]")
    ).to_have_text("Faulted", timeout=LIVE)


def test_charger_detail_follows_frames_and_sessions_live(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger, id_token: Any
) -> None:
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    page.goto(f"/chargers/{charger.pk}/")
    log = page.locator("#frame-log")
    expect(log).to_contain_text("No frame matches.")
    wait_live(page)
    mark_page(page)

    with ocpp_charger(server, charger.identity) as cp:
        cp.boot()
        expect(log.locator("tr[data-frame-action='BootNotification']")).to_have_count(
            2, timeout=LIVE
        )
        cp.status(1, "Available")
        expect(
            page.locator("#charger-connectors [data-connector='1'] [data-connector-status]")
        ).to_have_text("Available", timeout=LIVE)
        expect(page.locator("[data-charger-state]")).to_have_text("Available", timeout=LIVE)
        cp.call("Heartbeat", {})
        expect(log.locator("tr[data-frame-action='Heartbeat']")).to_have_count(2, timeout=LIVE)

        # Filters: only what was sent to the charger, then only one action.
        page.get_by_label("Direction").select_option("out")
        expect(log.locator("tr.frame-in")).to_have_count(0)
        expect(log.locator("tr.frame-out")).to_have_count(3)
        page.get_by_label("Action").fill("Heartbeat")
        expect(log.locator("tbody tr")).to_have_count(1)
        cp.call("Heartbeat", {})
        expect(log.locator("tbody tr")).to_have_count(2, timeout=LIVE)
        expect(log.locator("tr.frame-in")).to_have_count(0)
        page.get_by_label("Direction").select_option("")
        page.get_by_label("Action").fill("")
        expect(log.locator("tbody tr")).to_have_count(8)

        # A session starts and meters: the panel, the chart and the session list follow.
        start = cp.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": id_token.token, "meterStart": 1000, "timestamp": now()},
        )
        assert start["idTagInfo"]["status"] == "Accepted"
        cp.status(1, "Charging")
        active = page.locator("#charger-active")
        expect(active).to_contain_text(f"Session {start['transactionId']}", timeout=LIVE)
        expect(active.locator(".chart-empty")).to_be_visible()
        cp.call(
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": start["transactionId"],
                "meterValue": [
                    {
                        "timestamp": now(),
                        "sampledValue": [
                            {
                                "value": "3500",
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "Wh",
                            },
                            {"value": "7.2", "measurand": "Power.Active.Import", "unit": "kW"},
                        ],
                    }
                ],
            },
        )
        expect(active.locator(".chart-empty")).to_be_hidden(timeout=LIVE)
        expect(page.locator("#charger-sessions tbody tr").first).to_contain_text(
            "2.50", timeout=LIVE
        )
        expect(page.locator("[data-charger-state]")).to_have_text("Charging")
    assert_not_reloaded(page)


def test_a_site_host_sees_only_their_sites(
    server: ServerProcess, page: Page, organization: Organization, site: Site, make_charger: Any
) -> None:
    harbour = Site.objects.create(organization=organization, name="Harbour")
    mine = make_charger("DEPOT-1")
    theirs = make_charger("HARBOUR-1", site=harbour)
    make_user("hana", organization, Role.SITE_HOST, (site,))
    sign_in(page, "hana")
    expect(nav(page, "Id tokens")).to_have_count(0)
    expect(tile(page, "offline")).to_have_text("1")
    wait_live(page)

    with ocpp_charger(server, theirs.identity) as other, ocpp_charger(server, mine.identity) as own:
        other.boot()
        other.status(1, "Faulted", error_code="GroundFailure")
        own.boot()
        own.status(1, "Available")
        expect(tile(page, "online")).to_have_text("1", timeout=LIVE)
        expect(tile(page, "faulted")).to_have_text("0")
        expect(tile(page, "offline")).to_have_text("0")

    nav(page, "Chargers").click()
    expect(page.locator("table.chargers tbody tr")).to_have_count(1)
    expect(page.locator("table.chargers")).to_contain_text("DEPOT-1")
    nav(page, "Sites").click()
    expect(page.get_by_role("link", name="Depot")).to_be_visible()
    expect(page.get_by_role("link", name="Harbour")).to_have_count(0)
    response = page.goto(f"/chargers/{theirs.pk}/")
    assert response is not None and response.status == 404
    response = page.goto(f"/sites/{harbour.pk}/")
    assert response is not None and response.status == 404


def test_an_operator_cannot_open_another_organizations_charger(
    server: ServerProcess, page: Page, organization: Organization
) -> None:
    globex = Organization.objects.create(name="Globex", slug="globex")
    foreign = Charger.objects.create(identity="GLOBEX-1", organization=globex)
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    response = page.goto(f"/chargers/{foreign.pk}/")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("GLOBEX-1")
    response = page.goto(f"/chargers/{foreign.pk}/frames/")
    assert response is not None and response.status == 404
