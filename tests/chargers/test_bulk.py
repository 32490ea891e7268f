"""Bulk writes of the hot path: what goes in comes back exactly, refusals are Django's errors, a
flush of last-seen times is one statement, and rows are locked in pk order."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from chargers import bulk
from chargers.models import Charger, Frame, MeterSample
from tests.chargers.rowlocks import OtherConnection, locked_rows

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def row(charger_pk: int | None, raw: str, kind: int = 2, at: datetime = T0) -> tuple[object, ...]:
    return (charger_pk, "CP-1", "charger", "in", kind, "m-1", "", "Heartbeat", raw, at)


def test_frames_come_back_exactly_as_written(charger):
    awkward = (
        '[2,"m-1","DataTransfer",{"data":"tab\\there\\\\ \\"quoted\\" \\u0000 é \\n"}]\ttab\nline\\'
    )
    bulk.frames_insert(
        [row(charger.pk, awkward), row(None, "[]", kind=0, at=T0 + timedelta(seconds=1))]
    )
    stored = list(Frame.objects.order_by("timestamp").values_list(*bulk.FRAME_FIELDS))
    assert stored == [
        (charger.pk, "CP-1", "charger", "in", 2, "m-1", "", "Heartbeat", awkward, T0),
        (None, "CP-1", "charger", "in", 0, "m-1", "", "Heartbeat", "[]", T0 + timedelta(seconds=1)),
    ]


def test_a_frame_the_database_refuses_is_an_integrity_error(charger):
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk.frames_insert([row(charger.pk, "[]"), row(charger.pk, "[]", kind=-1)])
    assert not Frame.objects.exists()


def test_last_seen_times_are_one_statement(make_charger):
    chargers = [make_charger(f"CP-{n}") for n in range(5)]
    untouched = make_charger("CP-QUIET")
    seen = {c.pk: T0 + timedelta(seconds=n) for n, c in enumerate(chargers)}
    with CaptureQueriesContext(connection) as queries:
        bulk.last_seen_update(seen)
    assert len(queries.captured_queries) == 1
    assert dict(Charger.objects.filter(pk__in=seen).values_list("pk", "last_seen")) == seen
    untouched.refresh_from_db()
    assert untouched.last_seen is None


@pytest.mark.django_db(transaction=True)
def test_rows_are_locked_in_pk_order_whatever_order_they_come_in(make_charger):
    low, middle, high = make_charger("CP-1"), make_charger("CP-2"), make_charger("CP-3")
    # Rewritten low last: the table now holds the rows high first, as a plan that scans it
    # would meet them.
    Charger.objects.filter(pk=middle.pk).update(heartbeat_interval=60)
    Charger.objects.filter(pk=low.pk).update(heartbeat_interval=60)
    seen = [(charger.pk, T0) for charger in (high, middle, low)]
    if connection.vendor == "postgresql":
        with transaction.atomic():
            # Another transaction holds the middle row; the write waits for it holding the row
            # below, and none above (which another batch may hold, waiting for the middle one).
            Charger.objects.select_for_update(no_key=True).get(pk=middle.pk)
            flush = OtherConnection(lambda: bulk.rows_update(Charger, ["last_seen"], seen))
            flush.wait_until_blocked()
            assert locked_rows(Charger._meta.db_table, [low.pk, high.pk]) == {low.pk}
        flush.outcome()
    else:
        # One lock for the whole database: what is left to see is the rows named in pk order.
        with CaptureQueriesContext(connection) as queries:
            bulk.rows_update(Charger, ["last_seen"], seen)
        [update] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
        [named] = re.findall(r" IN \(([\d, ]+)\)", update)
        assert [int(pk) for pk in named.split(", ")] == [low.pk, middle.pk, high.pk]
    assert set(Charger.objects.values_list("last_seen", flat=True)) == {T0}


def sample_row(
    charger: Charger, moment: datetime, value: str, context: str = "Sample.Periodic"
) -> tuple[object, ...]:
    return (
        charger.pk,
        1,
        None,
        moment,
        "Energy.Active.Import.Register",
        "",
        "Outlet",
        context,
        Decimal(value),
        "Wh",
        value,
        "kWh",
        "",
        json.dumps(["energy_unit_mislabelled"]),
    )


def test_samples_come_back_exactly_and_those_already_stored_are_skipped(charger):
    first = [
        sample_row(charger, T0, "1000.5"),
        sample_row(charger, T0 + timedelta(minutes=1), "1200"),
    ]
    assert bulk.samples_insert(first) == 2
    # A re-send of the second beside a new one: only the new one is stored.
    again = [first[1], sample_row(charger, T0 + timedelta(minutes=2), "1300")]
    assert bulk.samples_insert(again) == 1
    assert bulk.samples_insert(again) == 0
    stored = list(MeterSample.objects.order_by("timestamp").values_list(*bulk.SAMPLE_FIELDS))
    assert stored == [(*row[:-1], ["energy_unit_mislabelled"]) for row in [*first, again[1]]]


def test_a_sample_the_database_refuses_is_never_stored(charger):
    good = sample_row(charger, T0 + timedelta(minutes=1), "5")
    refused = (
        *sample_row(charger, T0, "10")[:1],
        -1,
        *sample_row(charger, T0, "10")[2:],
    )  # connector -1
    if connection.vendor == "postgresql":
        # An IntegrityError, so that the batch writer singles the row out.
        with pytest.raises(IntegrityError), transaction.atomic():
            bulk.samples_insert([good, refused])
        assert not MeterSample.objects.exists()
    else:
        # SQLite's INSERT OR IGNORE skips it, as it skips a sample already stored.
        assert bulk.samples_insert([good, refused]) == 1
        assert list(MeterSample.objects.values_list("connector_number", flat=True)) == [1]
