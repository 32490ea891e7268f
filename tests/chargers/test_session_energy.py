"""A running session's energy: MeterValues add their readings to the connection's tally with two
statements, and the figure always equals the full recomputation from every stored reading."""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargers import normalize, services
from chargers.models import Charger, MeterSample, Session

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
WRAP = 10**9
_days = itertools.count()


def register(
    value: int | str, moment: datetime, context: str = "Sample.Periodic"
) -> normalize.Sample:
    return normalize.Sample(
        moment, normalize.ENERGY_REGISTER, "", "", context, Decimal(value), "Wh", str(value), "Wh"
    )


def power(value: int, moment: datetime) -> normalize.Sample:
    return normalize.Sample(
        moment,
        "Power.Active.Import",
        "",
        "",
        "Sample.Periodic",
        Decimal(value),
        "W",
        str(value),
        "W",
    )


def session_start(charger: Charger, *, meter_start: int, moment: datetime) -> str:
    timestamp = normalize.format_datetime(moment)
    result = services.session_start(
        charger_pk=charger.pk,
        organization_pk=charger.organization_id,
        request=normalize.StartRequest(
            connector_id=1,
            id_tag="TAG-OK",
            meter_start_wh=Decimal(meter_start),
            timestamp=moment,
            start_key=normalize.start_fingerprint(
                connector_id=1, id_tag="TAG-OK", meter_start=meter_start, timestamp=timestamp
            ),
        ),
        ocpp_version="1.6",
    )
    return str(result.transaction_id)


def meter_values(
    charger: Charger,
    transaction_id: str,
    samples: list[normalize.Sample],
    open_sessions: services.OpenSessions | None,
    register_resets: bool = False,
) -> bool:
    return services.session_meter_values(
        charger_pk=charger.pk,
        organization_pk=charger.organization_id,
        connector_id=1,
        transaction_id=transaction_id,
        samples=samples,
        register_resets=register_resets,
        open_sessions=open_sessions,
    )


def recomputed(
    transaction_id: str, register_resets: bool, charger: Charger | None = None
) -> tuple[Decimal, list[str]]:
    """The session's energy and corrections computed from every stored reading."""
    sessions = Session.objects.filter(charger=charger) if charger else Session.objects.all()
    session = copy.copy(sessions.get(transaction_id=transaction_id))
    services._session_energy_refresh(session, explicit_start=True, register_resets=register_resets)
    return session.energy_wh, session.corrections


def statements(queries: CaptureQueriesContext) -> list[str]:
    """The statements run, without the savepoints of the test's own transaction."""
    return [
        q["sql"].split(" ")[0] + " " + _table(q["sql"])
        for q in queries.captured_queries
        if "SAVEPOINT" not in q["sql"]
    ]


def _table(sql: str) -> str:
    for name in ("chargers_metersample", "chargers_session", "chargers_charger"):
        if name in sql:
            return name
    return "?"


def test_in_order_meter_values_are_two_statements_and_never_reread_the_readings(charger, id_token):
    tx = session_start(charger, meter_start=1000, moment=T0)
    memory: services.OpenSessions = {}
    assert meter_values(charger, tx, [register(1200, T0 + timedelta(minutes=1))], memory)
    assert tx in memory  # the first message reads the session and primes the tally

    with CaptureQueriesContext(connection) as queries:
        assert meter_values(
            charger,
            tx,
            [register(1500, T0 + timedelta(minutes=2)), power(7400, T0 + timedelta(minutes=2))],
            memory,
        )
    done = statements(queries)
    # Nothing is read: one INSERT of the samples (on PostgreSQL after a COPY into a temporary
    # table, which it then empties) and one UPDATE of the session.
    assert not [s for s in done if s.startswith("SELECT")]
    assert done.count("INSERT chargers_metersample") == 1
    assert done.count("UPDATE chargers_session") == 1
    assert len(done) == (2 if connection.vendor == "sqlite" else 4)
    session = Session.objects.get(transaction_id=tx)
    assert session.energy_wh == Decimal(500)
    assert MeterSample.objects.filter(session=session).count() == 3


def test_a_late_reading_recomputes_from_every_reading(charger, id_token):
    tx = session_start(charger, meter_start=1000, moment=T0)
    memory: services.OpenSessions = {}
    meter_values(charger, tx, [register(1500, T0 + timedelta(minutes=5))], memory)
    # A reading from before the latest one (offline data sent late): a glitch below the high.
    with CaptureQueriesContext(connection) as queries:
        meter_values(charger, tx, [register(1100, T0 + timedelta(minutes=2))], memory)
    assert "SELECT chargers_metersample" in statements(queries)
    energy, corrections = recomputed(tx, False)
    session = Session.objects.get(transaction_id=tx)
    assert (session.energy_wh, session.corrections) == (energy, corrections) == (Decimal(500), [])


def test_a_session_written_elsewhere_since_is_read_again(charger, id_token):
    tx = session_start(charger, meter_start=1000, moment=T0)
    memory: services.OpenSessions = {}
    meter_values(charger, tx, [register(1200, T0 + timedelta(minutes=1))], memory)
    # Another connection of the same charger (another server) stored a later reading.
    other: services.OpenSessions = {}
    meter_values(charger, tx, [register(1900, T0 + timedelta(minutes=3))], other)
    assert Session.objects.get(transaction_id=tx).energy_wh == Decimal(900)
    # This connection's tally has not seen it; its next message (a glitch below that reading)
    # must not lose it.
    meter_values(charger, tx, [register(1500, T0 + timedelta(minutes=4))], memory)
    session = Session.objects.get(transaction_id=tx)
    assert (session.energy_wh, session.corrections) == (Decimal(900), ["register_fall_ignored"])


def test_a_reading_the_database_already_has_is_not_counted_twice(charger, id_token):
    tx = session_start(charger, meter_start=1000, moment=T0)
    memory: services.OpenSessions = {}
    meter_values(charger, tx, [register(1200, T0 + timedelta(minutes=1))], memory)
    # Stored without the session (sent without a transactionId): the same reading again is
    # dropped by the database, and the tally must not count it.
    MeterSample.objects.create(
        charger=charger,
        connector_number=1,
        timestamp=T0 + timedelta(minutes=2),
        measurand=normalize.ENERGY_REGISTER,
        context="Sample.Periodic",
        value=Decimal(1800),
        unit="Wh",
    )
    meter_values(charger, tx, [register(1800, T0 + timedelta(minutes=2))], memory)
    assert (
        Session.objects.get(transaction_id=tx).energy_wh == recomputed(tx, False)[0] == Decimal(200)
    )


def test_a_stopped_session_is_no_longer_running(charger, id_token):
    tx = session_start(charger, meter_start=1000, moment=T0)
    memory: services.OpenSessions = {}
    meter_values(charger, tx, [register(1200, T0 + timedelta(minutes=1))], memory)
    services.session_stop(
        charger_pk=charger.pk,
        organization_pk=charger.organization_id,
        request=normalize.StopRequest(
            transaction_id=tx,
            id_tag="TAG-OK",
            meter_stop_wh=Decimal(2000),
            timestamp=T0 + timedelta(minutes=10),
            reason="Local",
            samples=[],
        ),
        raw_payload={},
    )
    assert meter_values(charger, tx, [register(9000, T0 + timedelta(minutes=11))], memory)
    assert Session.objects.get(transaction_id=tx).energy_wh == Decimal(1000)
    assert tx not in memory


# Register values that make every case happen: climbs, falls, resets and wraps at 10^9 Wh.
register_values = st.one_of(
    st.integers(min_value=0, max_value=2_000_000),
    st.integers(min_value=0, max_value=5_000_000).map(lambda v: WRAP - v),
    st.integers(min_value=0, max_value=1000),
)
# A message: readings at minute offsets (repeats of a time in one message are possible and the
# database keeps the first), sometimes with a power sample beside them.
message = st.lists(
    st.tuples(st.integers(min_value=0, max_value=40), register_values, st.booleans()),
    max_size=4,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    meter_start=register_values,
    arrivals=st.lists(message, min_size=1, max_size=8),
    resend=st.lists(st.integers(min_value=0, max_value=7), max_size=3),
    register_resets=st.booleans(),
)
def test_the_running_energy_equals_the_full_recomputation(
    charger, id_token, meter_start, arrivals, resend, register_resets
):
    base = T0 + timedelta(days=next(_days))
    tx = session_start(charger, meter_start=meter_start, moment=base)
    memory: services.OpenSessions = {}
    frames: list[list[normalize.Sample]] = []
    for readings in arrivals:
        frame: list[normalize.Sample] = []
        for minute, value, with_power in readings:
            moment = base + timedelta(minutes=1 + minute)
            frame.append(register(value, moment))
            if with_power:
                frame.append(power(value % 22_000, moment))
        frames.append(frame)
    for index in resend:  # a charger re-sends a message whose answer it did not get
        if index < len(frames):
            frames.append(frames[index])
    for frame in frames:
        meter_values(charger, tx, frame, memory, register_resets)
        session = Session.objects.get(transaction_id=tx)
        assert (session.energy_wh, session.corrections) == recomputed(tx, register_resets)
