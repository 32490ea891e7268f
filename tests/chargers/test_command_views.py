"""The dashboard's commands: the panel on a charger's page (its forms for the charger's OCPP
version, errors, the list of commands), retries, bulk commands from the chargers list, and who
may use them. The browser tests (tests/e2e/test_commands_dashboard.py) watch them go live."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chargers.models import Charger, Command, Session, Site
from cpms.models import Membership, Organization, Role

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def member(
    name: str, organization: Organization, role: str, sites: tuple[Site, ...] = ()
) -> Client:
    user = User.objects.create_user(name)
    Membership.objects.create(user=user, organization=organization, role=role).sites.set(sites)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def cp16(make_charger: Any) -> Charger:
    return make_charger("CP-16", connected=True, ocpp_version="1.6", channel_name="specific.x!1")


@pytest.fixture
def cp201(make_charger: Any) -> Charger:
    return make_charger("CP-201", connected=True, ocpp_version="2.0.1", channel_name="specific.x!2")


@pytest.fixture
def operator(organization: Organization) -> Client:
    return member("olga", organization, Role.OPERATOR)


def detail(client: Client, charger: Charger) -> str:
    response = client.get(f"/chargers/{charger.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def post(
    client: Client, charger: Charger, form: str, data: dict[str, Any], htmx: bool = True
) -> Any:
    headers = {"HX-Request": "true", "HX-Target": "charger-commands"} if htmx else {}
    return client.post(
        f"/chargers/{charger.pk}/commands/",
        {"form": form, **{f"{form}-{key}": value for key, value in data.items()}},
        headers=headers,
    )


# --- The panel -------------------------------------------------------------------------------------


def test_a_16_charger_gets_the_16_operations(operator, cp16):
    page = detail(operator, cp16)
    for title in (
        "Reset",
        "Unlock connector",
        "Remote start",
        "Remote stop",
        "Change availability",
        "Trigger a message",
        "Get configuration",
        "Change configuration",
        "Clear the authorization cache",
    ):
        assert f">{title}</h3>" in page
    assert "Get a variable" not in page
    assert '<option value="Soft">' in page and '<option value="Hard">' in page


def test_a_2x_charger_gets_variables_instead_of_configuration(operator, cp201):
    page = detail(operator, cp201)
    assert ">Get a variable</h3>" in page and ">Set a variable</h3>" in page
    assert "Get configuration" not in page
    assert '<option value="Immediate">' in page


def test_site_hosts_see_no_commands_and_may_not_send_any(organization, site, cp16):
    host = member("hannah", organization, Role.SITE_HOST, (site,))
    assert "Commands</h2>" not in detail(host, cp16)
    assert post(host, cp16, "reset", {"type": "Soft"}).status_code == 403
    assert (
        host.post(
            "/chargers/commands/", {"operation": "reset_soft", "chargers": [cp16.pk]}
        ).status_code
        == 403
    )
    assert not Command.objects.exists()


def test_another_organizations_charger_is_a_404(cp16):
    other = Organization.objects.create(name="Other", slug="other")
    outsider = member("otto", other, Role.OPERATOR_ADMIN)
    assert post(outsider, cp16, "reset", {"type": "Soft"}).status_code == 404
    assert not Command.objects.exists()


# --- Sending ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charger_name", "form", "data", "action", "payload"),
    [
        ("cp16", "reset", {"type": "Hard"}, "Reset", {"type": "Hard"}),
        ("cp201", "reset", {"type": "OnIdle"}, "Reset", {"type": "OnIdle"}),
        ("cp16", "unlock", {"connector": "2"}, "UnlockConnector", {"connectorId": 2}),
        (
            "cp201",
            "unlock",
            {"evse": "2", "connector": "1"},
            "UnlockConnector",
            {"evseId": 2, "connectorId": 1},
        ),
        (
            "cp16",
            "remote_start",
            {"id_tag": "TAG-1", "connector": "1"},
            "RemoteStartTransaction",
            {"idTag": "TAG-1", "connectorId": 1},
        ),
        ("cp16", "remote_start", {"id_tag": "TAG-1"}, "RemoteStartTransaction", {"idTag": "TAG-1"}),
        (
            "cp16",
            "availability",
            {"connector": "0", "type": "Inoperative"},
            "ChangeAvailability",
            {"connectorId": 0, "type": "Inoperative"},
        ),
        (
            "cp201",
            "availability",
            {"connector": "1", "type": "Operative"},
            "ChangeAvailability",
            {"operationalStatus": "Operative", "evse": {"id": 1}},
        ),
        (
            "cp201",
            "availability",
            {"connector": "0", "type": "Inoperative"},
            "ChangeAvailability",
            {"operationalStatus": "Inoperative"},
        ),
        (
            "cp16",
            "trigger",
            {"message": "StatusNotification", "connector": "1"},
            "TriggerMessage",
            {"requestedMessage": "StatusNotification", "connectorId": 1},
        ),
        (
            "cp201",
            "trigger",
            {"message": "Heartbeat"},
            "TriggerMessage",
            {"requestedMessage": "Heartbeat"},
        ),
        (
            "cp16",
            "get_configuration",
            {"keys": "HeartbeatInterval, MeterValueSampleInterval"},
            "GetConfiguration",
            {"key": ["HeartbeatInterval", "MeterValueSampleInterval"]},
        ),
        ("cp16", "get_configuration", {"keys": ""}, "GetConfiguration", {}),
        (
            "cp16",
            "change_configuration",
            {"config_key": "HeartbeatInterval", "value": "120"},
            "ChangeConfiguration",
            {"key": "HeartbeatInterval", "value": "120"},
        ),
        (
            "cp201",
            "get_variables",
            {"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval"},
            "GetVariables",
            {
                "getVariableData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                    }
                ]
            },
        ),
        (
            "cp201",
            "set_variables",
            {"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval", "value": "60"},
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "attributeValue": "60",
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                    }
                ]
            },
        ),
        ("cp16", "clear_cache", {}, "ClearCache", {}),
        ("cp201", "clear_cache", {}, "ClearCache", {}),
    ],
)
def test_each_form_sends_the_request_of_the_chargers_version(
    request, operator, charger_name, form, data, action, payload
):
    charger = request.getfixturevalue(charger_name)
    response = post(operator, charger, form, data)
    assert response.status_code == 200, response.content
    command = Command.objects.get()
    assert (command.action, command.payload, command.source, command.requested_by.username) == (
        action,
        payload,
        "user",
        "olga",
    )
    page = response.content.decode()
    assert f"{action} sent to {charger.identity}." in page
    assert f'id="command-{command.pk}"' in page


def test_a_2x_remote_start_carries_a_remote_start_id_and_the_tokens_type(
    operator, organization, cp201
):
    from chargers.services import id_token_create

    id_token_create(organization=organization, token="CARD-9", type="ISO15693")
    post(operator, cp201, "remote_start", {"id_tag": "CARD-9", "connector": "2"})
    post(operator, cp201, "remote_start", {"id_tag": "APP-USER"})
    first, second = Command.objects.order_by("id")
    assert first.action == "RequestStartTransaction"
    assert first.payload["idToken"] == {"idToken": "CARD-9", "type": "ISO15693"}
    assert first.payload["evseId"] == 2
    assert second.payload["idToken"] == {"idToken": "APP-USER", "type": "Central"}
    assert 1 <= first.payload["remoteStartId"] < 2**31
    assert first.remote_start_id == first.payload["remoteStartId"]


def test_remote_stop_offers_the_running_sessions(operator, cp16):
    Session.objects.create(
        charger=cp16,
        connector_number=2,
        transaction_id="17",
        start_key="s",
        started_at="2030-01-01T00:00:00Z",
        meter_start_wh=0,
        id_tag="TAG-1",
    )
    assert '<option value="17">Connector 2: 17 (TAG-1)</option>' in detail(operator, cp16)
    post(operator, cp16, "remote_stop", {"session": "17"})
    assert Command.objects.get().payload == {"transactionId": 17}
    response = post(operator, cp16, "remote_stop", {"session": "18"})
    assert "Select a valid choice" in response.content.decode()


@pytest.mark.parametrize(
    ("form", "data", "message"),
    [
        ("unlock", {"connector": "0"}, "Ensure this value is greater than or equal to 1."),
        ("remote_start", {"id_tag": ""}, "This field is required."),
        ("remote_start", {"id_tag": "A" * 21}, "OCPP 1.6 id tags have at most 20 characters."),
        ("remote_start", {"id_tag": "two words"}, "An id tag is printable ASCII with no spaces."),
        ("change_configuration", {"config_key": "", "value": "1"}, "This field is required."),
        ("get_configuration", {"keys": "A" * 51}, "A configuration key has at most 50 characters."),
        ("reset", {"type": "Immediate"}, "Select a valid choice."),
    ],
)
def test_a_form_error_is_shown_and_nothing_is_sent(operator, cp16, form, data, message):
    response = post(operator, cp16, form, data)
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page
    assert 'class="field has-error"' in page
    assert not Command.objects.exists()


def test_what_the_schema_refuses_is_shown_on_the_form(operator, organization, cp201):
    # An id token whose type was stored by hand as something OCPP does not know.
    from chargers.models import IdToken

    IdToken.objects.create(organization=organization, token="ODD-CARD", type="RFID")
    response = post(operator, cp201, "remote_start", {"id_tag": "ODD-CARD"})
    page = response.content.decode()
    assert (
        "Not a valid OCPP 2.0.1 RequestStartTransaction request: idToken/type: &#x27;RFID&#x27; is not one of"
        in page
    )
    assert not Command.objects.exists()


def test_a_charger_that_never_connected_is_refused_on_the_form(operator, make_charger):
    charger = make_charger("CP-NEW")
    page = post(
        operator, charger, "reset", {"type": "Soft", "deliver_when_offline": "on"}
    ).content.decode()
    assert "CP-NEW has never connected" in page
    assert not Command.objects.exists()


def test_an_offline_charger_refuses_unless_the_command_may_wait(operator, cp16):
    Charger.objects.filter(pk=cp16.pk).update(connected=False)
    response = post(operator, cp16, "reset", {"type": "Soft"})
    page = response.content.decode()
    assert (
        "CP-16 is offline, so the command was not sent. Tick “If offline, send when it connects” to queue it."
        in page
    )
    assert 'role="alert"' in page
    assert not Command.objects.exists()
    post(operator, cp16, "reset", {"type": "Soft", "deliver_when_offline": "on"})
    assert Command.objects.get().state == "queued"
    assert "until it connects" in detail(operator, cp16)


def test_without_htmx_the_page_comes_back_with_a_message(operator, cp16):
    response = post(operator, cp16, "reset", {"type": "Soft"}, htmx=False)
    assert response.status_code == 302
    assert response["Location"] == f"/chargers/{cp16.pk}/#commands-title"
    assert "Reset sent to CP-16." in detail(operator, cp16)
    response = post(operator, cp16, "unlock", {"connector": "0"}, htmx=False)
    assert "Unlock connector: Ensure this value is greater than or equal to 1." in detail(
        operator, cp16
    )


def test_an_unknown_or_unfit_form_is_refused(operator, cp201):
    response = post(operator, cp201, "get_configuration", {"keys": ""}, htmx=False)
    assert response.status_code == 302
    assert "CP-201 takes no such command." in detail(operator, cp201)
    assert not Command.objects.exists()


# --- The list, live --------------------------------------------------------------------------------


def test_the_list_part_renders_alone_for_live_updates(operator, cp16):
    post(operator, cp16, "get_configuration", {})
    command = Command.objects.get()
    Command.objects.filter(pk=command.pk).update(
        state="answered",
        response={
            "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
        },
    )
    cp16.configuration_keys.create(key="HeartbeatInterval", value="300", command=command)
    response = operator.get(
        f"/chargers/{cp16.pk}/", headers={"HX-Request": "true", "HX-Target": "charger-command-list"}
    )
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="charger-command-list"')
    assert 'data-state="answered"' in page
    assert "Configuration as last reported" in page and ">HeartbeatInterval</th>" in page


@pytest.mark.parametrize(
    ("states", "rechecked"),
    [
        (["requested"], True),
        (["accepted", "sent"], True),
        (["queued"], False),  # may wait for days for the charger to connect
        (["accepted", "timeout", "failed"], False),
    ],
)
def test_the_list_is_fetched_again_while_a_command_in_it_is_in_flight(
    operator, cp16, states, rechecked
):
    for state in states:
        Command.objects.create(charger=cp16, action="Reset", ocpp_version="1.6", state=state)
    page = operator.get(
        f"/chargers/{cp16.pk}/", headers={"HX-Request": "true", "HX-Target": "charger-command-list"}
    ).content.decode()
    opening = page.lstrip().split(">", 1)[0]
    assert ('data-live-every="5000"' in opening) is rechecked


def test_a_failed_command_is_retried_from_the_list(operator, cp16):
    post(operator, cp16, "reset", {"type": "Soft"})
    command = Command.objects.get()
    Command.objects.filter(pk=command.pk).update(state="timeout", error_code="Timeout")
    page = detail(operator, cp16)
    assert f'action="/commands/{command.pk}/retry"' in page
    response = operator.post(f"/commands/{command.pk}/retry", headers={"HX-Request": "true"})
    assert response.status_code == 200
    retry = Command.objects.exclude(pk=command.pk).get()
    assert (retry.retry_of, retry.retry_count, retry.requested_by.username) == (command, 1, "olga")
    assert "Reset sent to CP-16 again." in response.content.decode()
    # Not twice: a command under way is not retried.
    response = operator.post(f"/commands/{retry.pk}/retry", headers={"HX-Request": "true"})
    assert "is requested; only rejected, error, timeout and failed" in response.content.decode()


# --- Bulk commands ---------------------------------------------------------------------------------


def test_the_chargers_list_has_checkboxes_and_the_bulk_form_for_operators(
    operator, organization, site, cp16
):
    page = operator.get("/chargers/").content.decode()
    assert 'form="bulk-commands"' in page and 'id="bulk-commands"' in page
    row = operator.get(f"/chargers/{cp16.pk}/row?select=1").content.decode()
    assert f'id="select-charger-{cp16.pk}"' in row
    host = member("hannah", organization, Role.SITE_HOST, (site,))
    page = host.get("/chargers/").content.decode()
    assert "bulk-commands" not in page


def test_a_bulk_reset_goes_to_each_selected_charger_in_its_version(
    operator, cp16, cp201, make_charger
):
    offline = make_charger("CP-OFF", connected=False, ocpp_version="1.6")
    response = operator.post(
        "/chargers/commands/",
        {
            "operation": "reset_hard",
            "chargers": [cp16.pk, cp201.pk, offline.pk],
            "next": "/chargers/?q=CP",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/chargers/?q=CP"
    sent = {c.charger.identity: c.payload for c in Command.objects.select_related("charger")}
    assert sent == {"CP-16": {"type": "Hard"}, "CP-201": {"type": "Immediate"}}
    page = operator.get("/chargers/").content.decode()
    assert "Reset (hard) sent to 2 chargers: CP-16, CP-201." in page
    assert "Reset (hard) not sent to CP-OFF (offline)" in page


def test_a_bulk_trigger_may_wait_for_offline_chargers(operator, make_charger):
    offline = make_charger("CP-OFF", connected=False, ocpp_version="2.0.1")
    operator.post(
        "/chargers/commands/",
        {"operation": "trigger_status", "chargers": [offline.pk], "deliver_when_offline": "on"},
    )
    command = Command.objects.get()
    assert (command.action, command.payload, command.state) == (
        "TriggerMessage",
        {"requestedMessage": "StatusNotification"},
        "queued",
    )


def test_a_bulk_command_needs_chargers_of_ones_own(operator, cp16):
    other = Organization.objects.create(name="Other", slug="other")
    foreign = Charger.objects.create(
        identity="FOREIGN", organization=other, connected=True, ocpp_version="1.6"
    )
    operator.post("/chargers/commands/", {"operation": "reset_soft", "chargers": [foreign.pk]})
    operator.post("/chargers/commands/", {"operation": "reset_soft"})
    page = operator.get("/chargers/").content.decode()
    assert "Select a valid choice" in page
    assert "Select at least one charger." in page
    assert not Command.objects.exists()
