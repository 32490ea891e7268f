"""Command services against the database, without a socket: creating (and refusing) commands,
refusing them for a charger another CSMS controls as soon as routing says so, retries, each step a
connection records, the sweep, and remote starts finding their sessions."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.utils import timezone

from chargers import command_services, events, protocol, services, watching
from chargers.command_services import CommandInvalid, CommandRefused, ControlledElsewhere
from chargers.models import (
    Charger,
    ChargerConfigurationKey,
    Command,
    Connector,
    Session,
)
from cpms.models import Organization, Role
from cpms.services import api_token_create
from routing.models import LOCAL, Route, RouteLeg, Upstream
from routing.policy_services import policy_apply, policy_from_data, policy_plan
from routing.selectors import route_for_charger
from routing.services import upstream_local
from tests.chargers.rowlocks import OtherConnection

pytestmark = pytest.mark.django_db


@pytest.fixture
def online(make_charger: Any) -> Charger:
    return make_charger(
        "CP-ON", connected=True, ocpp_version="1.6", channel_name="specific.elsewhere!1"
    )


@pytest.fixture
def offline(make_charger: Any) -> Charger:
    return make_charger("CP-OFF", connected=False, ocpp_version="2.0.1")


def create(charger: Charger, action: str = "Reset", payload: Any = None, **kwargs: Any) -> Command:
    return services.command_create(
        charger=charger,
        action=action,
        payload={"type": "Soft"} if payload is None else payload,
        **kwargs,
    )


# --- Create ----------------------------------------------------------------------------------------


def test_a_command_for_a_connected_charger_is_requested(online):
    command = create(online, system="tests")
    assert (command.state, command.ocpp_version, command.payload) == (
        "requested",
        "1.6",
        {"type": "Soft"},
    )
    assert (command.source, command.system, command.requested_by, command.api_token) == (
        "system",
        "tests",
        None,
        None,
    )
    assert (command.message_id, command.sent_at, command.retry_count) == ("", None, 0)


def test_who_asked_is_kept(online, organization):
    user = User.objects.create_user("olga")
    token, _ = api_token_create(organization=organization, name="ops", role=Role.OPERATOR)
    by_user = create(online, requested_by=user)
    by_token = create(online, api_token=token)
    assert (by_user.source, by_user.requested_by) == ("user", user)
    assert (by_token.source, by_token.api_token) == ("api_token", token)


@pytest.mark.parametrize(
    ("action", "payload", "field", "message"),
    [
        ("Reboot", {}, "action", "'Reboot' is not a command a CSMS sends in OCPP 1.6; one of: "),
        ("BootNotification", {}, "action", "'BootNotification' is not a command a CSMS sends"),
        ("RequestStartTransaction", {}, "action", "not a command a CSMS sends in OCPP 1.6"),
        (
            "Reset",
            {},
            "payload",
            "Not a valid OCPP 1.6 Reset request: payload: 'type' is a required property",
        ),
        ("Reset", {"type": "Gentle"}, "payload", "type: 'Gentle' is not one of ['Hard', 'Soft']"),
        ("Reset", {"type": "Soft", "extra": 1}, "payload", "Additional properties are not allowed"),
        (
            "UnlockConnector",
            {"connectorId": "1"},
            "payload",
            "connectorId: '1' is not of type 'integer'",
        ),
        ("Reset", ["Soft"], "payload", "The payload must be a JSON object."),
    ],
)
def test_a_bad_command_is_refused_with_the_reason_and_nothing_is_written(
    online, action, payload, field, message
):
    with pytest.raises(CommandInvalid) as refused:
        create(online, action, payload)
    assert refused.value.field == field
    assert message in refused.value.message
    assert not Command.objects.exists()


def test_the_payload_is_checked_against_the_chargers_version(offline):
    with pytest.raises(CommandInvalid, match=r"Not a valid OCPP 2\.0\.1 Reset request"):
        create(offline, "Reset", {"type": "Soft"}, deliver_when_offline=True)
    command = create(offline, "Reset", {"type": "Immediate"}, deliver_when_offline=True)
    assert command.ocpp_version == "2.0.1"


def test_an_offline_charger_is_refused_unless_the_command_may_wait(offline):
    with pytest.raises(CommandRefused, match="CP-OFF is offline, so the command was not sent"):
        create(offline, "Reset", {"type": "Immediate"})
    assert not Command.objects.exists()
    command = create(offline, "Reset", {"type": "Immediate"}, deliver_when_offline=True)
    assert (command.state, command.deliver_when_offline) == ("queued", True)


def test_a_charger_that_never_connected_has_no_version_to_check_against(make_charger):
    charger = make_charger("CP-NEW")
    with pytest.raises(CommandRefused, match="CP-NEW has never connected"):
        create(charger, deliver_when_offline=True)


def test_the_chargers_state_is_read_fresh(online):
    stale = Charger.objects.get(pk=online.pk)
    Charger.objects.filter(pk=online.pk).update(connected=False)
    with pytest.raises(CommandRefused, match="offline"):
        create(stale)


def test_a_1_6_remote_start_carries_its_own_id(online):
    command = create(online, "RemoteStartTransaction", {"idTag": "TAG-OK"})
    assert command.remote_start_id == command.pk
    assert Command.objects.get(pk=command.pk).remote_start_id == command.pk


def test_a_created_command_is_published_and_sent_to_the_connection(
    online, django_capture_on_commit_callbacks
):
    layer = get_channel_layer()
    listener = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.charger_group("CP-ON"), listener)
    async_to_sync(watching.watch)(events.charger_group("CP-ON"))  # as a live socket registers
    # The test process holds this charger's socket, as a server process would.
    consumer = async_to_sync(layer.new_channel)()
    Charger.objects.filter(pk=online.pk).update(channel_name=consumer)
    command_services.LOCAL_CHANNELS.add(consumer)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            command = create(online)
        delivered = async_to_sync(layer.receive)(consumer)
        event = async_to_sync(layer.receive)(listener)
    finally:
        command_services.LOCAL_CHANNELS.discard(consumer)
    assert delivered == {"type": "chargers.command", "command": command.pk}
    assert event == {
        "type": "cpms.event",
        "kind": "command.updated",
        "charger": "CP-ON",
        "data": {
            "command": command.pk,
            "action": "Reset",
            "state": "requested",
            "response_status": "",
            "error_code": "",
        },
    }


def test_only_a_reachable_connection_is_told(online, settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert not command_services.reachable("specific.elsewhere!1")
    command_services.LOCAL_CHANNELS.add("specific.here!1")
    try:
        assert command_services.reachable("specific.here!1")
    finally:
        command_services.LOCAL_CHANNELS.discard("specific.here!1")
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}
    assert command_services.reachable("specific.elsewhere!1")
    assert not command_services.reachable("")


# --- Routing ---------------------------------------------------------------------------------------


def controller_refusing(charger: Charger) -> str | None:
    """The upstream a command for the charger is refused for, or None if it is created."""
    try:
        create(charger)
    except ControlledElsewhere as refused:
        return refused.upstream
    return None


def primary(upstream: str, observer: str | None = None) -> list[dict[str, str]]:
    legs = [{"upstream": upstream, "role": "primary"}]
    return legs + ([{"upstream": observer, "role": "observer"}] if observer else [])


def test_a_cut_over_applied_just_before_a_command_decides_it_both_ways(online):
    def route(legs: list[dict[str, str]]) -> None:
        data = {
            "upstreams": {"legacy": {"url": "ws://legacy.example.com:9000/ocpp"}},
            "routes": [{"charger_id": online.identity, "upstreams": legs}],
        }
        plan = policy_plan(
            policy=policy_from_data(data, organization_id=None), organization_id=None
        )
        policy_apply(plan=plan, source="api", actor="ops@example.com")

    assert controller_refusing(online) is None
    route(primary("legacy", observer=LOCAL))
    with pytest.raises(ControlledElsewhere, match="controlled by the upstream CSMS 'legacy'"):
        create(online)
    route(primary(LOCAL, observer="legacy"))
    assert controller_refusing(online) is None
    assert Command.objects.filter(charger=online).count() == 2


def test_the_most_specific_route_decides_as_the_gateway_resolves_it(online, site, organization):
    def upstream(name: str) -> Upstream:
        return Upstream.objects.create(name=name, url=f"ws://{name}.example:9000/ocpp")

    def route(legs: list[tuple[Upstream, str]], **target: Any) -> Route:
        made = Route.objects.create(scope=next(iter(target), "global"), **target)
        for leg_upstream, role in legs:
            RouteLeg.objects.create(route=made, upstream=leg_upstream, role=role)
        return made

    def decided(expected: str | None) -> None:
        resolved = route_for_charger(charger=online)
        assert (None if resolved.local_controls else resolved.primary.upstream) == expected
        assert controller_refusing(online) == expected

    local, alpha, beta, gamma = (
        upstream_local(),
        upstream("alpha"),
        upstream("beta"),
        upstream("gamma"),
    )
    route([(alpha, "primary")])
    decided("alpha")
    other = Organization.objects.create(name="Other", slug="other")
    route([(gamma, "primary")], organization=other)
    decided("alpha")
    route([(local, "primary"), (alpha, "observer")], organization=organization)
    decided(None)
    site_route = route([(beta, "primary")], site=site)
    decided("beta")
    # A route of its own with observers only: local answers, whatever the site says.
    own = route([(gamma, "observer")], charger=online)
    decided(None)
    RouteLeg.objects.filter(route=own).update(role=RouteLeg.Role.PRIMARY)
    decided("gamma")
    own.delete()
    decided("beta")
    RouteLeg.objects.filter(route=site_route).update(upstream=local)
    decided(None)
    Upstream.objects.filter(pk=beta.pk).update(name="beta-renamed")
    RouteLeg.objects.filter(route=site_route).update(upstream=beta)
    decided("beta-renamed")
    Charger.objects.filter(pk=online.pk).update(site=None)
    decided(None)


@pytest.mark.django_db(transaction=True)
def test_a_routing_change_committed_by_another_process_decides_the_next_command(online):
    legacy = Upstream.objects.create(name="legacy", url="ws://legacy.example.com:9000/ocpp")
    local = upstream_local()

    def cut_over_to_legacy() -> Route:
        # As the admin would: a route of the charger's own, legacy its primary.
        route = Route.objects.create(scope=Route.Scope.CHARGER, charger_id=online.pk)
        RouteLeg.objects.create(route=route, upstream=legacy, role=RouteLeg.Role.PRIMARY)
        RouteLeg.objects.create(route=route, upstream=local, role=RouteLeg.Role.OBSERVER)
        return route

    assert controller_refusing(online) is None
    route = OtherConnection(cut_over_to_legacy).outcome()
    assert controller_refusing(online) == "legacy"
    OtherConnection(route.delete).outcome()
    assert controller_refusing(online) is None
    assert Command.objects.filter(charger=online).count() == 2


# --- Retry -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["rejected", "error", "timeout", "failed"])
def test_a_command_that_did_not_succeed_is_retried_as_a_new_one(online, state):
    first = create(online, "UnlockConnector", {"connectorId": 1})
    Command.objects.filter(pk=first.pk).update(state=state)
    first.refresh_from_db()
    retry = services.command_retry(command=first, system="tests")
    again = services.command_retry(command=first, system="tests")
    assert (retry.state, retry.retry_of, retry.retry_count, retry.payload) == (
        "requested",
        first,
        1,
        {"connectorId": 1},
    )
    assert again.retry_count == 1
    Command.objects.filter(pk=retry.pk).update(state="timeout")
    retry.refresh_from_db()
    assert services.command_retry(command=retry).retry_count == 2
    first.refresh_from_db()
    assert first.state == state  # the original keeps its outcome


@pytest.mark.parametrize("state", ["requested", "queued", "sent", "accepted", "answered"])
def test_a_command_that_succeeded_or_is_under_way_is_not_retried(online, state):
    first = create(online)
    Command.objects.filter(pk=first.pk).update(state=state)
    first.refresh_from_db()
    with pytest.raises(
        CommandRefused, match=f"is {state}; only rejected, error, timeout and failed"
    ):
        services.command_retry(command=first)
    assert Command.objects.count() == 1


# --- The connection's steps ------------------------------------------------------------------------


def holder(charger: Charger) -> command_services.Holder:
    return command_services.Holder(
        pk=charger.pk, identity=charger.identity, organization_id=charger.organization_id
    )


def claim(command: Command, charger: Charger, version: str = "1.6", message_id: str = "m-1") -> Any:
    return command_services.command_claim(
        command_pk=command.pk, charger=holder(charger), version=version, message_id=message_id
    )


def test_a_claim_marks_the_command_sent_once(online, make_charger):
    command = create(online)
    other = make_charger("CP-2", connected=True, ocpp_version="1.6")
    assert claim(command, other) is None  # not that charger's
    assert claim(command, online) == command_services.Claim(command.pk, "Reset", {"type": "Soft"})
    assert claim(command, online, message_id="m-2") is None  # already sent
    command.refresh_from_db()
    assert (command.state, command.message_id) == ("sent", "m-1")
    assert command.sent_at is not None


def test_a_requested_command_behind_another_is_marked_queued_then_sent(online):
    command = create(online)
    other = create(online)
    claim(other, online, message_id="m-0")

    def mark() -> int:
        return command_services.commands_mark_queued(
            command_pks=[command.pk, other.pk], charger=holder(online)
        )

    assert mark() == 1  # the other one is sent already
    assert mark() == 0
    assert claim(command, online) is not None
    assert Command.objects.get(pk=command.pk).state == "sent"


def record(command: Command, answer: Any, message_id: str = "m-1", version: str = "1.6") -> str:
    return command_services.command_answer_record(
        command_pk=command.pk,
        charger=holder(command.charger),
        action=command.action,
        payload=command.payload,
        message_id=message_id,
        version=version,
        answer=answer,
    )


def test_answers_are_recorded_once(online):
    command = create(online)
    claim(command, online)
    assert (
        record(command, protocol.CallResult("m-0", {"status": "Accepted"}), message_id="m-0") == ""
    )
    assert record(command, protocol.CallResult("m-1", {"status": "Rejected"})) == "rejected"
    # A second answer to the same CALL changes nothing.
    assert record(command, protocol.CallResult("m-1", {"status": "Accepted"})) == ""
    command.refresh_from_db()
    assert (command.state, command.response, command.response_status) == (
        "rejected",
        {"status": "Rejected"},
        "Rejected",
    )
    assert command.answered_at is not None and command.finished_at is not None


def test_a_callerror_is_kept_with_its_code_and_description(online):
    command = create(online)
    claim(command, online)
    error = protocol.CallError("m-1", "NotSupported", "no reset here", {"hint": "x"})
    assert record(command, error) == "error"
    command.refresh_from_db()
    assert (command.error_code, command.error_description, command.response) == (
        "NotSupported",
        "no reset here",
        {"hint": "x"},
    )


def test_get_configuration_replaces_what_was_reported(online):
    ChargerConfigurationKey.objects.create(charger=online, key="Gone", value="1")
    ChargerConfigurationKey.objects.create(charger=online, key="HeartbeatInterval", value="60")
    command = create(online, "GetConfiguration", {})
    claim(command, online)
    answer = {
        "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}],
        "unknownKey": ["Gone"],
    }
    assert record(command, protocol.CallResult("m-1", answer)) == "answered"
    assert list(
        ChargerConfigurationKey.objects.filter(charger=online).values_list(
            "key", "value", "command"
        )
    ) == [("HeartbeatInterval", "300", command.pk)]


def test_a_timeout_only_hits_a_command_still_waiting_for_that_answer(online):
    command = create(online)

    def timeout() -> bool:
        return command_services.command_timeout(
            command_pk=command.pk,
            charger=holder(online),
            action="Reset",
            message_id="m-1",
            seconds=30,
        )

    assert not timeout()
    claim(command, online)
    assert timeout()
    command.refresh_from_db()
    assert (command.state, command.error_code, command.error_description) == (
        "timeout",
        "Timeout",
        "The charger did not answer within 30 s.",
    )


def test_a_closed_connection_fails_its_call_and_what_may_not_wait(online):
    in_flight, may_wait, may_not = (
        create(online),
        create(online, deliver_when_offline=True),
        create(online),
    )
    claim(in_flight, online)
    command_services.commands_connection_closed(
        charger=holder(online),
        channel_name=online.channel_name,
        in_flight=(in_flight.pk, "m-1"),
    )
    states = dict(Command.objects.values_list("pk", "state"))
    assert states == {in_flight.pk: "failed", may_wait.pk: "queued", may_not.pk: "failed"}
    assert Command.objects.get(pk=in_flight.pk).error_code == "ConnectionClosed"


def test_a_connection_replaced_by_a_newer_one_leaves_the_waiting_commands_to_it(online):
    in_flight, waiting = create(online), create(online)
    claim(in_flight, online)
    command_services.commands_connection_closed(
        charger=holder(online),
        channel_name="specific.old!1",
        in_flight=(in_flight.pk, "m-1"),
    )
    states = dict(Command.objects.values_list("pk", "state"))
    assert states == {in_flight.pk: "failed", waiting.pk: "requested"}


def test_the_poll_finds_requested_commands_of_the_given_connections(online, make_charger):
    other = make_charger(
        "CP-2", connected=True, ocpp_version="1.6", channel_name="specific.other!2"
    )
    mine, theirs = create(online), create(other)
    claimed = create(online)
    claim(claimed, online)
    assert command_services.commands_requested_on(channels=frozenset({online.channel_name})) == [
        (mine.pk, online.channel_name)
    ]
    assert theirs.pk in dict(
        command_services.commands_requested_on(channels=frozenset({"specific.other!2"}))
    )


# --- The sweep -------------------------------------------------------------------------------------


def test_the_sweep_puts_lost_commands_right(online, offline, settings):
    settings.CPMS_CALL_TIMEOUT = 10
    settings.CPMS_COMMAND_QUEUE_TTL = 3600
    now = timezone.now()
    sent = create(online)
    claim(sent, online)
    Command.objects.filter(pk=sent.pk).update(sent_at=now - timedelta(seconds=51))
    fresh_sent = create(online)
    claim(fresh_sent, online, message_id="m-2")
    never_taken = create(online)
    Command.objects.filter(pk=never_taken.pk).update(created_at=now - timedelta(seconds=51))
    to_resend = create(online)
    Command.objects.filter(pk=to_resend.pk).update(created_at=now - timedelta(seconds=6))
    too_long = create(offline, "Reset", {"type": "Immediate"}, deliver_when_offline=True)
    Command.objects.filter(pk=too_long.pk).update(created_at=now - timedelta(seconds=3601))
    waits = create(offline, "Reset", {"type": "Immediate"}, deliver_when_offline=True)
    went_offline = [create(online), create(online, deliver_when_offline=True)]
    Charger.objects.filter(pk=online.pk).update(connected=False)
    result = command_services.commands_sweep(now=now)
    states = dict(Command.objects.values_list("pk", "state"))
    assert states[sent.pk] == "timeout"
    assert states[fresh_sent.pk] == "sent"
    assert states[too_long.pk] == "timeout"
    assert states[waits.pk] == "queued"
    assert states[went_offline[0].pk] == "failed"
    assert states[went_offline[1].pk] == "queued"
    assert states[never_taken.pk] == "failed"  # offline: failed before it could time out
    assert states[to_resend.pk] == "failed"
    assert result.timed_out == 2
    assert Command.objects.get(pk=went_offline[0].pk).error_description == (
        "The charger went offline before the command was sent."
    )


def test_the_sweep_times_out_a_command_no_connection_took_and_resends_recent_ones(online, settings):
    settings.CPMS_CALL_TIMEOUT = 10
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    now = timezone.now()
    never_taken = create(online)
    Command.objects.filter(pk=never_taken.pk).update(created_at=now - timedelta(seconds=51))
    to_resend = create(online)
    Command.objects.filter(pk=to_resend.pk).update(created_at=now - timedelta(seconds=6))
    just_made = create(online)
    # The charger's connection is in another process: nothing to send from here.
    assert command_services.commands_sweep(now=now).redelivered == 0
    command_services.LOCAL_CHANNELS.add(online.channel_name)
    try:
        result = command_services.commands_sweep(now=now)
    finally:
        command_services.LOCAL_CHANNELS.discard(online.channel_name)
    assert result.redelivered == 1
    states = dict(Command.objects.values_list("pk", "state"))
    assert states == {
        never_taken.pk: "timeout",
        to_resend.pk: "requested",
        just_made.pk: "requested",
    }
    assert Command.objects.get(pk=never_taken.pk).error_code == "NotDelivered"


def test_the_sweep_task_runs_the_sweep(online):
    from chargers.tasks import sweep_commands

    command = create(online)
    Charger.objects.filter(pk=online.pk).update(connected=False)
    assert sweep_commands.apply().get() == {
        "timed_out": 0,
        "failed": 1,
        "queued": 0,
        "redelivered": 0,
    }
    assert Command.objects.get(pk=command.pk).state == "failed"


# --- Remote starts -------------------------------------------------------------------------------


def session(
    charger: Charger,
    *,
    id_tag: str = "TAG-OK",
    connector: int = 1,
    version: str = "1.6",
    **fields: Any,
) -> Session:
    return Session.objects.create(
        charger=charger,
        connector=Connector.objects.get_or_create(charger=charger, connector_id=connector)[0],
        connector_number=connector,
        id_tag=id_tag,
        transaction_id=f"tx-{Session.objects.count()}",
        start_key=f"start-{Session.objects.count()}",
        started_at=timezone.now(),
        meter_start_wh=Decimal(0),
        ocpp_version=version,
        **fields,
    )


def accepted(command: Command) -> Command:
    Command.objects.filter(pk=command.pk).update(state="accepted")
    command.refresh_from_db()
    return command


def test_a_1_6_session_takes_the_latest_matching_remote_start(online):
    older = accepted(create(online, "RemoteStartTransaction", {"idTag": "TAG-OK"}))
    other_tag = accepted(create(online, "RemoteStartTransaction", {"idTag": "OTHER"}))
    other_connector = accepted(
        create(online, "RemoteStartTransaction", {"idTag": "TAG-OK", "connectorId": 2})
    )
    latest = accepted(
        create(online, "RemoteStartTransaction", {"idTag": "TAG-OK", "connectorId": 1})
    )
    started = session(online)
    assert command_services.remote_start_link(session=started) == latest
    started.refresh_from_db()
    assert started.remote_start_id == latest.pk
    assert Command.objects.get(pk=latest.pk).session == started
    # The next session on connector 1 takes the older request; nothing matches the third.
    assert command_services.remote_start_link(session=session(online)) == older
    assert command_services.remote_start_link(session=session(online)) is None
    assert {other_tag.pk, other_connector.pk} & set(
        Command.objects.filter(session__isnull=False).values_list("pk", flat=True)
    ) == set()


def test_a_1_6_remote_start_that_was_rejected_or_is_old_starts_nothing(online):
    rejected = create(online, "RemoteStartTransaction", {"idTag": "TAG-OK"})
    Command.objects.filter(pk=rejected.pk).update(state="rejected")
    old = accepted(create(online, "RemoteStartTransaction", {"idTag": "TAG-OK"}))
    Command.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=11))
    assert command_services.remote_start_link(session=session(online)) is None


def test_a_2x_session_takes_the_request_with_its_remote_start_id(offline):
    Charger.objects.filter(pk=offline.pk).update(connected=True)
    token = {"idToken": "TAG-OK", "type": "ISO14443"}
    wanted = create(offline, "RequestStartTransaction", {"idToken": token, "remoteStartId": 9})
    create(offline, "RequestStartTransaction", {"idToken": token, "remoteStartId": 10})
    started = session(offline, version="2.0.1", remote_start_id=9)
    assert command_services.remote_start_link(session=started) == wanted
    assert command_services.remote_start_link(session=session(offline, version="2.0.1")) is None
