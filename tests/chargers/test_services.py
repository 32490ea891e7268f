"""The central system's writes: authorization, sessions, meter values, records and batched writes."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chargers import events, normalize, services, watching
from chargers.batching import FrameRow, SampleRow, StatusRow
from chargers.models import (
    Charger,
    ChargerEvent,
    Connector,
    ConnectorStatusChange,
    Frame,
    IdToken,
    MeterSample,
    Session,
    SessionState,
    UnmatchedStop,
)
from tests.chargers.rowlocks import OtherConnection, locked_rows
from tests.conftest import CHARGER_PASSWORD

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)


def at(minutes: float) -> str:
    return normalize.format_datetime(T0 + timedelta(minutes=minutes))


def start_request(
    connector_id: int = 1, id_tag: str = "TAG-OK", meter_start: int = 1000, minutes: float = 0
) -> normalize.StartRequest:
    timestamp = at(minutes)
    return normalize.StartRequest(
        connector_id=connector_id,
        id_tag=id_tag,
        meter_start_wh=Decimal(meter_start),
        timestamp=normalize.parse_datetime(timestamp),
        start_key=normalize.start_fingerprint(
            connector_id=connector_id, id_tag=id_tag, meter_start=meter_start, timestamp=timestamp
        ),
    )


def start(charger: Charger, **kwargs: Any) -> services.StartResult:
    return services.session_start(
        charger_pk=charger.pk,
        organization_pk=charger.organization_id,
        request=start_request(**kwargs),
        ocpp_version="1.6",
    )


def stop_request(
    transaction_id: int | str,
    meter_stop: int = 5000,
    minutes: float = 30,
    id_tag: str = "TAG-OK",
    samples: list[normalize.Sample] | None = None,
) -> normalize.StopRequest:
    return normalize.StopRequest(
        transaction_id=str(transaction_id),
        id_tag=id_tag,
        meter_stop_wh=Decimal(meter_stop),
        timestamp=T0 + timedelta(minutes=minutes),
        reason="Local",
        samples=samples or [],
    )


def stop(charger: Charger, transaction_id: int | str, **kwargs: Any) -> services.StopResult:
    request = stop_request(transaction_id, **kwargs)
    return services.session_stop(
        charger_pk=charger.pk,
        organization_pk=charger.organization_id,
        request=request,
        raw_payload={"transactionId": transaction_id, "meterStop": int(request.meter_stop_wh)},
    )


def register(value: str, minutes: float, context: str = "Sample.Periodic") -> normalize.Sample:
    return normalize.Sample(
        timestamp=T0 + timedelta(minutes=minutes),
        measurand=normalize.ENERGY_REGISTER,
        phase="",
        location="Outlet",
        context=context,
        value=Decimal(value),
        unit="Wh",
        raw_value=value,
        raw_unit="Wh",
    )


@pytest.fixture
def org_events(organization):
    """The events published to the organization's group, read from the real channel layer."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.organization_group(organization.pk), channel)
    # Registered, as a live socket registers its group, or a following process would skip it.
    async_to_sync(watching.watch)(events.organization_group(organization.pk))

    async def receive() -> dict[str, Any]:
        # The deadline only turns a missing event into a failure instead of a hang.
        return await asyncio.wait_for(layer.receive(channel), timeout=10)

    def next_event() -> dict[str, Any]:
        return async_to_sync(receive)()

    yield next_event
    async_to_sync(layer.group_discard)(events.organization_group(organization.pk), channel)


# --- Authorization -------------------------------------------------------------------------------


def authorize(organization, token: str, **kwargs: Any) -> services.Authorization:
    return services.id_token_authorize(organization_pk=organization.pk, token=token, **kwargs)


def test_accepted_token_carries_parent_and_expiry(organization):
    expires = timezone.now() + timedelta(days=30)
    token = services.id_token_create(
        organization=organization, token="CARD-1", expires_at=expires, group_token="FLEET-7"
    )
    assert authorize(organization, "CARD-1") == services.Authorization(
        status="Accepted", expires_at=expires, group_token="FLEET-7", id_token_pk=token.pk
    )


@pytest.mark.parametrize("status", ["Blocked", "Expired", "Invalid"])
def test_stored_statuses_are_answered(organization, status):
    services.id_token_create(organization=organization, token="CARD-1", status=status)
    assert authorize(organization, "CARD-1").status == status


def test_an_accepted_token_past_its_expiry_is_expired(organization):
    services.id_token_create(
        organization=organization, token="CARD-1", expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert authorize(organization, "CARD-1").status == "Expired"


def test_an_unknown_token_is_invalid(organization):
    assert authorize(organization, "NOBODY") == services.Authorization(status="Invalid")


def test_a_token_of_another_organization_is_invalid(organization, id_token):
    from cpms.models import Organization

    other = Organization.objects.create(name="Other", slug="other")
    assert authorize(other, id_token.token).status == "Invalid"


def test_a_token_in_a_session_is_concurrent_tx(organization, charger, id_token):
    result = start(charger)
    assert authorize(organization, "TAG-OK").status == "ConcurrentTx"
    session = Session.objects.get(transaction_id=str(result.transaction_id))
    assert authorize(organization, "TAG-OK", exclude_session_pk=session.pk).status == "Accepted"
    assert authorize(organization, "TAG-OK", check_concurrent=False).status == "Accepted"
    IdToken.objects.filter(pk=id_token.pk).update(allow_concurrent=True)
    assert authorize(organization, "TAG-OK").status == "Accepted"


# --- Boot and connection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("registration", "interval"),
    [("Accepted", 300), ("Pending", 60), ("Rejected", 60)],
)
@override_settings(CPMS_HEARTBEAT_INTERVAL=300, CPMS_BOOT_RETRY_INTERVAL=60)
def test_boot_answers_per_registration(make_charger, registration, interval):
    charger = make_charger(registration_status=registration)
    info = services.BootInfo(
        vendor="ACME", model="Wallbox", serial_number="SN-1", firmware_version="2.1"
    )
    assert services.charger_boot(charger_pk=charger.pk, info=info) == services.BootResult(
        registration, interval
    )
    charger.refresh_from_db()
    assert (charger.vendor, charger.model, charger.serial_number, charger.firmware_version) == (
        "ACME",
        "Wallbox",
        "SN-1",
        "2.1",
    )
    assert charger.last_boot_at is not None
    assert charger.events.get(kind=ChargerEvent.Kind.BOOT).status == registration


def test_boot_uses_the_chargers_own_heartbeat_interval(make_charger):
    charger = make_charger(heartbeat_interval=45)
    result = services.charger_boot(
        charger_pk=charger.pk, info=services.BootInfo(vendor="V", model="M")
    )
    assert result.interval == 45


def test_connect_authenticates_and_marks_connected(charger):
    connection = services.charger_connect(
        identity=charger.identity,
        password=CHARGER_PASSWORD,
        ocpp_version="1.6",
        channel_name="chan-1",
    )
    assert (connection.charger_pk, connection.registration_status, connection.previous_channel) == (
        charger.pk,
        "Accepted",
        "",
    )
    charger.refresh_from_db()
    assert (charger.connected, charger.channel_name, charger.ocpp_version) == (
        True,
        "chan-1",
        "1.6",
    )


@pytest.mark.parametrize("password", [None, "wrong-password", ""])
def test_connect_refuses_a_bad_password(charger, password):
    with pytest.raises(services.Refused):
        services.charger_connect(
            identity=charger.identity, password=password, ocpp_version="1.6", channel_name="c"
        )
    assert not Charger.objects.get(pk=charger.pk).connected


def test_connect_refuses_an_unknown_charger(organization):
    with pytest.raises(services.Refused):
        services.charger_connect(
            identity="GHOST", password="x" * 10, ocpp_version="1.6", channel_name="c"
        )
    assert not Charger.objects.filter(identity="GHOST").exists()


@pytest.mark.parametrize("identity", ["CP\x001", "CP\n1"])
@override_settings(CPMS_AUTO_REGISTER=True)
def test_connect_refuses_control_characters_in_the_id(organization, identity):
    with pytest.raises(services.Refused):
        services.charger_connect(
            identity=identity, password="x" * 10, ocpp_version="1.6", channel_name="c"
        )
    assert not Charger.objects.exists()


@override_settings(CPMS_AUTO_REGISTER=True)
def test_auto_register_creates_a_pending_charger(organization):
    connection = services.charger_connect(
        identity="NEW-1", password="new-secret-123", ocpp_version="1.6", channel_name="c"
    )
    charger = Charger.objects.get(identity="NEW-1")
    assert connection.registration_status == charger.registration_status == "Pending"
    assert charger.organization == organization
    # The password it came with is its secret from now on.
    with pytest.raises(services.Refused):
        services.charger_connect(
            identity="NEW-1", password="other-secret", ocpp_version="1.6", channel_name="d"
        )


def test_a_reconnect_names_the_previous_socket_and_a_late_close_keeps_it_connected(charger):
    services.charger_connect(
        identity=charger.identity, password=CHARGER_PASSWORD, ocpp_version="1.6", channel_name="old"
    )
    second = services.charger_connect(
        identity=charger.identity, password=CHARGER_PASSWORD, ocpp_version="1.6", channel_name="new"
    )
    assert second.previous_channel == "old"
    services.charger_disconnect(charger_pk=charger.pk, channel_name="old", close_code=4000)
    charger.refresh_from_db()
    assert (charger.connected, charger.channel_name) == (True, "new")
    services.charger_disconnect(charger_pk=charger.pk, channel_name="new", close_code=1000)
    charger.refresh_from_db()
    assert (charger.connected, charger.channel_name) == (False, "")


# --- Sessions ------------------------------------------------------------------------------------


def test_session_start_opens_a_session(charger, id_token):
    result = start(charger, meter_start=1000)
    assert result.created
    assert result.authorization.status == "Accepted"
    session = Session.objects.get()
    assert (session.transaction_id, session.state, session.meter_start_wh, session.started_at) == (
        str(result.transaction_id),
        SessionState.ACTIVE,
        Decimal(1000),
        T0,
    )
    assert (session.id_token, session.id_tag, session.connector.connector_id) == (
        id_token,
        "TAG-OK",
        1,
    )


def test_a_start_with_an_unknown_token_is_recorded_with_its_status(charger):
    result = start(charger, id_tag="NOBODY")
    assert result.authorization.status == "Invalid"
    assert Session.objects.get().auth_status == "Invalid"


def test_a_resent_start_creates_nothing_and_gets_the_same_id(charger, id_token):
    first = start(charger)
    again = start(charger)
    assert not again.created
    assert again.transaction_id == first.transaction_id
    assert again.authorization.status == "Accepted"
    assert Session.objects.count() == 1


def test_transaction_ids_are_integers_unique_per_charger(make_charger, id_token):
    one, two = make_charger("CP-1"), make_charger("CP-2")
    ids_one = [start(one, connector_id=c).transaction_id for c in (1, 2, 3)]
    ids_two = [start(two, connector_id=c).transaction_id for c in (1, 2)]
    assert all(isinstance(i, int) for i in ids_one + ids_two)
    assert len(set(ids_one)) == 3
    assert len(set(ids_two)) == 2
    assert Charger.objects.get(pk=one.pk).last_transaction_id == max(ids_one)


def test_a_new_start_on_a_busy_connector_closes_the_stale_session(
    charger, id_token, org_events, django_capture_on_commit_callbacks
):
    stale = start(charger, meter_start=1000)
    services.session_meter_values(
        charger_pk=charger.pk,
        organization_pk=charger.organization_id,
        connector_id=1,
        transaction_id=str(stale.transaction_id),
        samples=[register("1500", 10)],
    )
    with django_capture_on_commit_callbacks(execute=True):
        fresh = start(charger, meter_start=1600, minutes=60)
    assert fresh.created
    assert fresh.transaction_id != stale.transaction_id
    # The token's own stale session does not make the new one concurrent.
    assert fresh.authorization.status == "Accepted"
    closed = Session.objects.get(transaction_id=str(stale.transaction_id))
    assert (
        closed.state,
        closed.stop_reason,
        closed.meter_stop_wh,
        closed.energy_wh,
        closed.stopped_at,
    ) == (
        SessionState.COMPLETED,
        "SupersededByNewTransaction",
        Decimal(1600),
        Decimal(600),
        T0 + timedelta(minutes=60),
    )
    assert (
        Session.objects.get(transaction_id=str(fresh.transaction_id)).state == SessionState.ACTIVE
    )
    assert (
        charger.events.filter(kind=ChargerEvent.Kind.RECONCILIATION, status="SessionClosed").count()
        == 1
    )
    published = [org_events() for _ in range(2)]
    assert [(e["kind"], e["data"]["transaction_id"]) for e in published] == [
        ("session.ended", str(stale.transaction_id)),
        ("session.started", str(fresh.transaction_id)),
    ]
    assert published[0]["data"]["state"] == SessionState.COMPLETED


def test_issued_transaction_ids_skip_ids_the_charger_used_itself(charger, id_token):
    Session.objects.create(
        charger=charger,
        transaction_id="1",
        ocpp_version="2.0.1",
        start_key="tx-from-2x",
        started_at=T0,
        meter_start_wh=Decimal(0),
        state=SessionState.COMPLETED,
    )
    assert start(charger).transaction_id == 2


def test_a_late_stop_of_a_superseded_session_replaces_the_estimate(charger, id_token):
    stale = start(charger, meter_start=1000)
    start(charger, meter_start=1600, minutes=60)
    late = stop(charger, stale.transaction_id, meter_stop=1550, minutes=40)
    assert late.matched
    closed = Session.objects.get(transaction_id=str(stale.transaction_id))
    assert (closed.stop_reason, closed.meter_stop_wh, closed.energy_wh, closed.stopped_at) == (
        "Local",
        Decimal(1550),
        Decimal(550),
        T0 + timedelta(minutes=40),
    )
    corrected = charger.events.get(
        kind=ChargerEvent.Kind.RECONCILIATION, status="SupersededSessionCorrected"
    )
    assert corrected.detail["estimated_meter_stop_wh"] == "1600.000"
    # A re-send of the same stop changes nothing more.
    stop(charger, stale.transaction_id, meter_stop=1550, minutes=40)
    assert charger.events.filter(status="SupersededSessionCorrected").count() == 1


def test_session_stop_closes_the_session(
    charger, id_token, org_events, django_capture_on_commit_callbacks
):
    result = start(charger, meter_start=1000)
    with django_capture_on_commit_callbacks(execute=True):
        stopped = stop(charger, result.transaction_id, meter_stop=8500, minutes=45)
    assert stopped.matched
    assert stopped.authorization is not None and stopped.authorization.status == "Accepted"
    session = Session.objects.get()
    assert (
        session.state,
        session.meter_stop_wh,
        session.energy_wh,
        session.stop_reason,
        session.stop_id_tag,
    ) == (SessionState.COMPLETED, Decimal(8500), Decimal(7500), "Local", "TAG-OK")
    assert session.stopped_at == T0 + timedelta(minutes=45)
    event = org_events()
    assert (event["kind"], event["data"]["energy_wh"]) == ("session.ended", "7500.000")


def test_session_stop_stores_transaction_data_with_the_session(charger, id_token):
    result = start(charger)
    stop(
        charger,
        result.transaction_id,
        samples=[register("1000", 0, "Transaction.Begin"), register("5000", 30, "Transaction.End")],
    )
    session = Session.objects.get()
    assert sorted(session.meter_samples.values_list("context", "value")) == [
        ("Transaction.Begin", Decimal(1000)),
        ("Transaction.End", Decimal(5000)),
    ]


def test_session_stop_is_idempotent(charger, id_token):
    result = start(charger)
    stop(
        charger,
        result.transaction_id,
        meter_stop=5000,
        samples=[register("5000", 30, "Transaction.End")],
    )
    again = stop(
        charger,
        result.transaction_id,
        meter_stop=5000,
        samples=[register("5000", 30, "Transaction.End")],
    )
    assert again.matched
    session = Session.objects.get()
    assert (session.state, session.energy_wh) == (SessionState.COMPLETED, Decimal(4000))
    assert MeterSample.objects.count() == 1
    assert not UnmatchedStop.objects.exists()


def test_a_stop_for_an_unknown_transaction_is_kept_and_answered(charger, id_token):
    result = stop(charger, 999, meter_stop=4200)
    assert not result.matched
    assert result.authorization is not None and result.authorization.status == "Accepted"
    unmatched = UnmatchedStop.objects.get()
    assert (
        unmatched.charger,
        unmatched.transaction_id,
        unmatched.meter_stop_wh,
        unmatched.id_tag,
    ) == (charger, "999", Decimal(4200), "TAG-OK")
    assert unmatched.payload == {"transactionId": 999, "meterStop": 4200}
    stop(charger, 999, meter_stop=4200)
    assert UnmatchedStop.objects.count() == 1
    assert not Session.objects.exists()


def test_a_stop_without_id_tag_has_no_authorization(charger, id_token):
    result = start(charger)
    assert stop(charger, result.transaction_id, id_tag="").authorization is None


def test_meter_values_in_a_transaction_are_stored_with_the_session(charger, id_token):
    result = start(charger, meter_start=1000)
    known = services.session_meter_values(
        charger_pk=charger.pk,
        organization_pk=charger.organization_id,
        connector_id=1,
        transaction_id=str(result.transaction_id),
        samples=[register("1200", 1), register("1900", 2)],
    )
    assert known
    session = Session.objects.get()
    assert session.energy_wh == Decimal(900)
    assert sorted(session.meter_samples.values_list("value", flat=True)) == [
        Decimal(1200),
        Decimal(1900),
    ]


def test_meter_values_for_an_unknown_transaction_are_kept_without_a_session(charger):
    known = services.session_meter_values(
        charger_pk=charger.pk,
        organization_pk=charger.organization_id,
        connector_id=2,
        transaction_id="77",
        samples=[register("1200", 1)],
    )
    assert not known
    sample = MeterSample.objects.get()
    assert (sample.session, sample.connector_number, sample.value) == (None, 2, Decimal(1200))


def test_meter_values_after_the_stop_do_not_change_the_energy(charger, id_token):
    result = start(charger, meter_start=1000)
    stop(charger, result.transaction_id, meter_stop=2000)
    services.session_meter_values(
        charger_pk=charger.pk,
        organization_pk=charger.organization_id,
        connector_id=1,
        transaction_id=str(result.transaction_id),
        samples=[register("9000", 40)],
    )
    assert Session.objects.get().energy_wh == Decimal(1000)


# --- Records -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        (ChargerEvent.Kind.FIRMWARE, "firmware_status"),
        (ChargerEvent.Kind.SIGNED_FIRMWARE, "firmware_status"),
        (ChargerEvent.Kind.DIAGNOSTICS, "diagnostics_status"),
    ],
)
def test_status_notifications_update_the_charger(charger, kind, field):
    services.charger_event_record(
        charger_pk=charger.pk, kind=kind, status="Installing", request_id=4
    )
    charger.refresh_from_db()
    assert getattr(charger, field) == "Installing"
    assert getattr(charger, field + "_at") is not None
    event = charger.events.get(kind=kind)
    assert (event.status, event.request_id) == ("Installing", 4)


# --- Batched writes ------------------------------------------------------------------------------


def status_row(charger: Charger, connector_id: int, status: str, minutes: float) -> StatusRow:
    return StatusRow(
        charger_pk=charger.pk,
        organization_pk=charger.organization_id,
        charger_identity=charger.identity,
        connector_id=connector_id,
        evse_id=connector_id or None,
        status=status,
        raw_status=status,
        error_code="NoError",
        info="",
        vendor_id="",
        vendor_error_code="",
        timestamp=T0 + timedelta(minutes=minutes),
    )


def frame_row(charger: Charger | None, direction: str, message_id: str) -> FrameRow:
    return FrameRow(
        charger_pk=charger.pk if charger else None,
        charger_identity=charger.identity if charger else "?",
        direction=direction,
        kind=2,
        message_id=message_id,
        action="Heartbeat",
        raw=f'[2,"{message_id}","Heartbeat",{{}}]',
        timestamp=T0,
    )


def test_batch_write_stores_frames_statuses_samples_and_last_seen(charger):
    seen = T0 + timedelta(minutes=9)
    services.batch_write(
        frames=[frame_row(charger, "in", "a"), frame_row(charger, "out", "a")],
        seen={charger.pk: seen},
        statuses=[
            status_row(charger, 0, "Available", 0),
            status_row(charger, 1, "Preparing", 1),
            status_row(charger, 1, "Charging", 2),
        ],
        samples=[SampleRow(charger.pk, 1, register("321", 3))],
    )
    assert list(Frame.objects.order_by("id").values_list("direction", "message_id", "action")) == [
        ("in", "a", "Heartbeat"),
        ("out", "a", "Heartbeat"),
    ]
    assert Charger.objects.get(pk=charger.pk).last_seen == seen
    assert dict(
        Connector.objects.filter(charger=charger).values_list("connector_id", "status")
    ) == {0: "Available", 1: "Charging"}
    history = ConnectorStatusChange.objects.filter(connector__connector_id=1).order_by("timestamp")
    assert list(history.values_list("status", flat=True)) == ["Preparing", "Charging"]
    sample = MeterSample.objects.get()
    assert (sample.session, sample.value) == (None, Decimal(321))


def test_batch_write_updates_existing_connectors_and_keeps_their_history(charger):
    services.batch_write(
        frames=[], seen={}, statuses=[status_row(charger, 1, "Available", 0)], samples=[]
    )
    services.batch_write(
        frames=[], seen={}, statuses=[status_row(charger, 1, "Faulted", 5)], samples=[]
    )
    connector = Connector.objects.get(charger=charger, connector_id=1)
    assert (connector.status, connector.status_at) == ("Faulted", T0 + timedelta(minutes=5))
    assert connector.history.count() == 2


def three_connectors(make_charger: Any) -> tuple[Connector, Connector, Connector]:
    """Connectors low, middle and high in key order (charger, connector number), created high
    first: neither their pks nor the order the table holds them in is the key order."""
    one, two = make_charger("CP-1"), make_charger("CP-2")
    high = Connector.objects.create(charger=two, connector_id=2)
    middle = Connector.objects.create(charger=two, connector_id=1)
    low = Connector.objects.create(charger=one, connector_id=2)
    return low, middle, high


def statuses_of(connectors: list[Connector], status: str) -> list[StatusRow]:
    return [status_row(c.charger, c.connector_id, status, 1) for c in connectors]


@pytest.mark.django_db(transaction=True)
def test_batch_write_locks_connector_rows_in_key_order_whatever_order_they_come_in(make_charger):
    low, middle, high = three_connectors(make_charger)
    statuses = statuses_of([high, middle, low], "Charging")

    def flush() -> None:
        services.batch_write(frames=[], seen={}, statuses=statuses, samples=[])

    if connection.vendor == "postgresql":
        with transaction.atomic():
            # Another flush holds the middle row: this one waits for it holding the row below,
            # and none above (which that flush may go on to want).
            Connector.objects.select_for_update(no_key=True).get(pk=middle.pk)
            flushing = OtherConnection(flush)
            flushing.wait_until_blocked()
            assert locked_rows(Connector._meta.db_table, [low.pk, high.pk]) == {low.pk}
        flushing.outcome()
    else:
        # One lock for the whole database: what is left to see is the rows named in key order.
        with CaptureQueriesContext(connection) as queries:
            flush()
        [upsert] = [
            q["sql"]
            for q in queries.captured_queries
            if q["sql"].startswith('INSERT INTO "chargers_connector" ')
        ]
        named = re.findall(r"\((\d+), (\d+), ", upsert.split(" VALUES ", 1)[1])
        assert [(int(charger), int(number)) for charger, number in named] == [
            (c.charger_id, c.connector_id) for c in (low, middle, high)
        ]
    assert set(Connector.objects.values_list("status", flat=True)) == {"Charging"}


@pytest.mark.django_db(transaction=True)
def test_flushes_of_the_same_connectors_in_two_processes_both_commit(make_charger):
    """A charger that reconnected to another process has its statuses flushed by both for a
    moment, listed in other orders. Both lock the rows in one order, so neither ends up waiting
    on the other in a circle (a deadlock PostgreSQL would break by failing one of them)."""
    low, middle, high = three_connectors(make_charger)

    def flush(connectors: list[Connector], status: str) -> None:
        services.batch_write(
            frames=[], seen={}, statuses=statuses_of(connectors, status), samples=[]
        )

    if connection.vendor == "postgresql":
        with transaction.atomic():
            # A third transaction holds the middle row: the first flush locks the low one and
            # waits there; the second then takes whatever it locks before it too must wait.
            Connector.objects.select_for_update(no_key=True).get(pk=middle.pk)
            first = OtherConnection(lambda: flush([low, middle, high], "Preparing"))
            first.wait_until_blocked()
            second = OtherConnection(lambda: flush([high, middle, low], "Charging"))
            second.wait_until_blocked()
    else:
        # SQLite writes one transaction at a time: the two only have to take turns.
        first = OtherConnection(lambda: flush([low, middle, high], "Preparing"))
        second = OtherConnection(lambda: flush([high, middle, low], "Charging"))
    first.outcome()
    second.outcome()
    assert ConnectorStatusChange.objects.count() == 6


def test_batch_write_drops_rows_of_a_deleted_charger(make_charger):
    kept, gone = make_charger("CP-1"), make_charger("CP-2")
    gone_pk = gone.pk
    gone.delete()
    gone.pk = gone_pk
    services.batch_write(
        frames=[frame_row(kept, "in", "a"), frame_row(gone, "in", "b"), frame_row(None, "in", "c")],
        seen={kept.pk: T0, gone_pk: T0},
        statuses=[status_row(gone, 1, "Available", 0)],
        samples=[SampleRow(gone_pk, 1, register("1", 0))],
    )
    assert sorted(Frame.objects.values_list("message_id", flat=True)) == ["a", "c"]
    assert not Connector.objects.exists()
    assert not MeterSample.objects.exists()


def test_duplicate_samples_are_written_once(charger):
    row = SampleRow(charger.pk, 1, register("100", 1))
    services.batch_write(frames=[], seen={}, statuses=[], samples=[row, row])
    services.batch_write(frames=[], seen={}, statuses=[], samples=[row])
    assert MeterSample.objects.count() == 1


# --- Offline detection ---------------------------------------------------------------------------


@override_settings(CPMS_HEARTBEAT_INTERVAL=300, CPMS_OFFLINE_AFTER_HEARTBEATS=3)
def test_silent_chargers_are_marked_offline(make_charger):
    now = timezone.now()
    silent = make_charger("CP-1", connected=True, last_seen=now - timedelta(minutes=20))
    alive = make_charger("CP-2", connected=True, last_seen=now - timedelta(minutes=5))
    assert services.chargers_expire_stale(now=now) == 1
    assert not Charger.objects.get(pk=silent.pk).connected
    assert Charger.objects.get(pk=alive.pk).connected
    assert silent.events.filter(kind=ChargerEvent.Kind.CONNECTION, status="Expired").exists()
