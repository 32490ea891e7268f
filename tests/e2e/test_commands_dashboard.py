"""Commands from the dashboard in a real browser against the real server: an operator sends a
command from a charger's page and watches its answer arrive live; forms show their errors;
bulk commands go out from the chargers list. The chargers are simulated ones (chargers.simulator)
that answer like real ones."""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from chargers.models import Charger, Command, Connector, Frame, Session
from chargers.simulator import FleetConfig, SimulatedCharger, SimulatedCharger201, Stats
from cpms.models import Organization, Role
from tests.conftest import CHARGER_PASSWORD, ServerProcess
from tests.e2e.test_dashboard import (  # noqa: F401 - the browser fixtures of the dashboard tests
    LIVE,
    _orm_beside_playwright,
    assert_not_reloaded,
    browser,
    browser_context_args,
    make_user,
    mark_page,
    playwright,
    sign_in,
    wait_for_held,
    wait_live,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def until(check: Any, timeout: float = LIVE / 1000) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout}s")
        time.sleep(0.05)
    return result


@contextmanager
def simulated(server: ServerProcess, charger: Charger, protocol: str = "ocpp1.6") -> Iterator[Any]:
    """A simulated charger on a loop of its own, booted and reporting; it starts no session itself."""
    config = FleetConfig(
        url=server.ocpp_url,
        password=CHARGER_PASSWORD,
        connectors=2,
        sessions_per_hour=0,
        meter_interval=1,
        session_minutes=30,
        id_tags=["TAG-OK"],
        reconnect=False,
        protocol=protocol,
    )
    cls = SimulatedCharger if protocol == "ocpp1.6" else SimulatedCharger201
    sim = cls(charger.identity, config, Stats(), random.Random(2))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stop = asyncio.Event()

    async def run() -> None:
        task = asyncio.create_task(sim.run_once())
        await stop.wait()
        task.cancel()  # closes its socket on the way out
        await asyncio.gather(task, return_exceptions=True)

    running = asyncio.run_coroutine_threadsafe(run(), loop)
    try:
        until(
            lambda: Connector.objects.filter(
                charger=charger, connector_id=2, status="Available"
            ).exists()
        )
        yield sim
    finally:
        loop.call_soon_threadsafe(stop.set)
        running.result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def open_charger(page: Page, charger: Charger) -> None:
    page.goto(f"/chargers/{charger.pk}/")
    wait_live(page)
    mark_page(page)


def command_form(page: Page, title: str) -> Any:
    return page.get_by_role("form", name=title)


@contextmanager
def explained(charger: Charger) -> Iterator[None]:
    """A failed expectation says what the database holds: the charger's commands and its last
    frames (the page shows what its live events made it fetch, the database what happened)."""
    try:
        yield
    except AssertionError as failure:
        commands = Command.objects.filter(charger=charger).order_by("pk")
        frames = Frame.objects.filter(charger_identity=charger.identity).order_by("-pk")[:40]
        held = "\n".join(
            [f"command {c.pk} {c.action} {c.state} {c.message_id}" for c in commands]
            + [
                f"frame {f.timestamp:%H:%M:%S.%f} {f.direction} {f.kind} {f.action} {f.message_id}"
                for f in reversed(frames)
            ]
        )
        raise AssertionError(f"{failure}\n--- in the database ---\n{held}") from failure


def sent_row(page: Page, action: str) -> Any:
    return page.locator(f"#charger-command-list tr[data-action='{action}']").first


def test_an_operator_resets_a_charger_and_sees_its_answer_live(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger
) -> None:
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    with simulated(server, charger), explained(charger):
        open_charger(page, charger)
        reset = command_form(page, "Reset")
        reset.get_by_label("Type").select_option("Hard")
        reset.get_by_role("button", name="Reset").click()
        expect(page.get_by_role("status").filter(has_text="Reset sent to CP-1.")).to_be_visible()
        expect(sent_row(page, "Reset").locator("[data-command-state]")).to_have_text(
            "accepted", timeout=LIVE
        )
        expect(sent_row(page, "Reset")).to_contain_text("olga")
        until(
            lambda: Command.objects.filter(
                action="Reset", payload={"type": "Hard"}, state="accepted"
            ).exists()
        )

        get = command_form(page, "Get configuration")
        get.get_by_label("Keys").fill("HeartbeatInterval, NumberOfConnectors")
        get.get_by_role("button", name="Get").click()
        configuration = page.locator("table.configuration")
        expect(configuration).to_contain_text("HeartbeatInterval", timeout=LIVE)
        expect(configuration).to_contain_text("NumberOfConnectors")
    assert_not_reloaded(page)


def test_an_answer_whose_live_event_was_lost_still_shows(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger
) -> None:
    """Live events are sent at most once: a list showing a command in flight is fetched again
    now and then, so its answer shows even if its event never reached the page."""
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    command = Command.objects.create(
        charger=charger, action="Reset", payload={"type": "Soft"}, ocpp_version="1.6", state="sent"
    )
    # Once its socket is open, the page fetches each live part once: the list too.
    with page.expect_response(
        lambda response: response.request.headers.get("hx-target") == "charger-command-list"
    ):
        open_charger(page, charger)
    state = sent_row(page, "Reset").locator("[data-command-state]")
    expect(state).to_have_text("sent")
    # Answered without an event (an UPDATE publishes none).
    Command.objects.filter(pk=command.pk).update(state="accepted", response_status="Accepted")
    expect(state).to_have_text("accepted", timeout=LIVE)
    # Nothing in flight any more: the list is no longer fetched on a timer.
    expect(page.locator("#charger-command-list")).not_to_have_attribute(
        "data-live-every", re.compile(".*")
    )
    assert_not_reloaded(page)


def test_an_answer_that_lands_while_the_form_is_posting_still_shows(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger
) -> None:
    """The charger answers while the form's own response is still on its way: that response was
    rendered before the answer, and must not land over the part the answer refreshed."""
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    with simulated(server, charger) as sim:
        answer = sim._answer

        async def slow_answer(message_id: str, action: str, payload: dict[str, Any]) -> None:
            if action == "GetConfiguration":
                await asyncio.sleep(1)
            await answer(message_id, action, payload)

        sim._answer = slow_answer
        open_charger(page, charger)

        def hold_until_answered(route: Any) -> None:
            response = route.fetch()  # rendered now, a second before the charger answers
            until(
                lambda: Command.objects.filter(action="GetConfiguration", state="answered").exists()
            )
            time.sleep(2)  # the answer's event has reached the page by now
            route.fulfill(response=response)

        page.route(f"**/chargers/{charger.pk}/commands/", hold_until_answered)
        get = command_form(page, "Get configuration")
        get.get_by_label("Keys").fill("HeartbeatInterval")
        get.get_by_role("button", name="Get").click()
        expect(page.get_by_role("status").filter(has_text="GetConfiguration sent")).to_be_visible()
        expect(sent_row(page, "GetConfiguration").locator("[data-command-state]")).to_have_text(
            "answered"
        )
        expect(page.locator("table.configuration")).to_contain_text("HeartbeatInterval")
    assert_not_reloaded(page)


def test_a_part_whose_refresh_a_form_overtook_still_follows_its_events(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger
) -> None:
    """The command list's refresh is on its way when a form's answer replaces the section around
    it: the refresh then lands in a part no longer on the page, and the list must not wait for
    it forever; the next answers still show."""
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    with simulated(server, charger):
        open_charger(page, charger)
        held: list[Any] = []

        def hold_the_list(route: Any) -> None:
            if route.request.headers.get("hx-target") == "charger-command-list" and not held:
                held.append(route)
            else:
                route.continue_()

        page.route(f"**/chargers/{charger.pk}/", hold_the_list)
        page.evaluate("htmx.trigger('#charger-command-list', 'live')")
        wait_for_held(page, held, "the command list was not refreshed")

        get = command_form(page, "Get configuration")
        get.get_by_label("Keys").fill("HeartbeatInterval")
        get.get_by_role("button", name="Get").click()
        expect(page.get_by_role("status").filter(has_text="GetConfiguration sent")).to_be_visible()
        held[0].continue_()  # the overtaken refresh lands after the form's answer

        expect(sent_row(page, "GetConfiguration").locator("[data-command-state]")).to_have_text(
            "answered", timeout=LIVE
        )
        reset = command_form(page, "Reset")
        reset.get_by_role("button", name="Reset").click()
        expect(sent_row(page, "Reset").locator("[data-command-state]")).to_have_text(
            "accepted", timeout=LIVE
        )
    assert_not_reloaded(page)


def test_a_remote_start_from_the_page_starts_a_session_that_shows_live(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger, id_token: Any
) -> None:
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    with simulated(server, charger):
        open_charger(page, charger)
        start = command_form(page, "Remote start")
        start.get_by_label("Id tag").fill("TAG-OK")
        start.get_by_label("Connector").fill("2")
        start.get_by_role("button", name="Start").click()
        expect(
            sent_row(page, "RemoteStartTransaction").locator("[data-command-state]")
        ).to_have_text("accepted", timeout=LIVE)
        session = until(lambda: Session.objects.filter(charger=charger, state="Active").first())
        expect(page.locator("#charger-active")).to_contain_text(
            session.transaction_id, timeout=LIVE
        )

        # The running session is offered for a remote stop once the page is loaded again.
        open_charger(page, charger)
        stop = command_form(page, "Remote stop")
        stop.get_by_label("Session").select_option(session.transaction_id)
        stop.get_by_role("button", name="Stop").click()
        expect(
            sent_row(page, "RemoteStopTransaction").locator("[data-command-state]")
        ).to_have_text("accepted", timeout=LIVE)
        ended = until(lambda: Session.objects.filter(pk=session.pk, state="Completed").first())
    assert ended.stop_reason == "Remote"
    assert Command.objects.get(action="RemoteStartTransaction").session_id == session.pk


def test_forms_show_their_errors_and_send_nothing(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger
) -> None:
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    with simulated(server, charger):
        open_charger(page, charger)
        change = command_form(page, "Change configuration")
        change.get_by_label("Value").fill("60")
        change.get_by_role("button", name="Change").click()
        expect(command_form(page, "Change configuration").get_by_role("alert")).to_have_text(
            "This field is required."
        )
        unlock = command_form(page, "Unlock connector")
        unlock.get_by_label("Connector").fill("0")
        unlock.get_by_role("button", name="Unlock").click()
        expect(command_form(page, "Unlock connector").get_by_role("alert")).to_contain_text(
            "greater than or equal to 1"
        )
    # Once the charger is gone, a command that may not wait is refused and says why.
    until(lambda: not Charger.objects.get(pk=charger.pk).connected)
    open_charger(page, charger)
    command_form(page, "Clear the authorization cache").get_by_role(
        "button", name="Clear cache"
    ).click()
    expect(command_form(page, "Clear the authorization cache").get_by_role("alert")).to_have_text(
        "CP-1 is offline, so the command was not sent. Tick “If offline, send when it connects” to queue it."
    )
    assert not Command.objects.exists()


def test_variables_of_a_201_charger_are_set_and_read_from_the_page(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger
) -> None:
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    with simulated(server, charger, "ocpp2.0.1"):
        open_charger(page, charger)
        expect(command_form(page, "Get configuration")).to_have_count(0)
        set_ = command_form(page, "Set a variable")
        set_.get_by_label("Component").fill("OCPPCommCtrlr")
        set_.get_by_label("Variable").fill("HeartbeatInterval")
        set_.get_by_label("Value").fill("45")
        set_.get_by_role("button", name="Set").click()
        expect(sent_row(page, "SetVariables").locator("[data-command-state]")).to_have_text(
            "answered", timeout=LIVE
        )
        get = command_form(page, "Get a variable")
        get.get_by_label("Component").fill("OCPPCommCtrlr")
        get.get_by_label("Variable").fill("HeartbeatInterval")
        get.get_by_role("button", name="Get").click()
        row = sent_row(page, "GetVariables")
        expect(row.locator("[data-command-state]")).to_have_text("answered", timeout=LIVE)
        row.get_by_text("Answer", exact=True).click()
        expect(row.locator("[data-command-answer] pre")).to_contain_text('"attributeValue": "45"')


def test_a_bulk_command_goes_to_the_selected_chargers(
    server: ServerProcess, page: Page, organization: Organization, make_charger: Any
) -> None:
    first, second, third = make_charger("CP-1"), make_charger("CP-2"), make_charger("CP-3")
    make_user("olga", organization, Role.OPERATOR)
    sign_in(page, "olga")
    with simulated(server, first), simulated(server, second, "ocpp2.0.1"):
        page.goto("/chargers/")
        page.get_by_label("Select CP-1").check()
        page.get_by_label("Select CP-2").check()
        page.get_by_label("Command to the selected chargers").select_option(
            label="Trigger StatusNotification"
        )
        page.get_by_role("button", name="Send").click()
        expect(
            page.get_by_role("status").filter(
                has_text="Trigger StatusNotification sent to 2 chargers: CP-1, CP-2."
            )
        ).to_be_visible()
        until(lambda: Command.objects.filter(state="accepted").count() == 2)
    assert not Command.objects.filter(charger=third).exists()
