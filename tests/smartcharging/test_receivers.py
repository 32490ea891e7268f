"""Load management's domain-event receivers: a transaction's boots send fail-safe profiles only to
chargers on a managed site, in event order, for the same queries whether few chargers boot or
many; what they read about a charger's site is remembered for its meter events."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chargers import events
from chargers.models import Charger, Site
from cpms.models import Organization
from smartcharging import receivers
from smartcharging.models import SiteCapacity
from tests.conftest import booted

pytestmark = pytest.mark.django_db

FAILSAFE = "smartcharging.charger_failsafe"


@pytest.fixture(autouse=True)
def forgotten() -> Iterator[None]:
    receivers.MANAGED.forget()
    yield
    receivers.MANAGED.forget()


@pytest.fixture
def fleet(organization: Organization, site: Site, make_charger: Any) -> dict[str, Charger]:
    """Two chargers on a managed site; one on a site whose load is not managed, one on a site
    with no capacity, and fifty on no site."""
    SiteCapacity.objects.create(site=site, limit=Decimal("63"))
    yard = Site.objects.create(organization=organization, name="Yard", time_zone="UTC")
    SiteCapacity.objects.create(site=yard, limit=Decimal("63"), managed=False)
    shed = Site.objects.create(organization=organization, name="Shed", time_zone="UTC")
    chargers = {
        identity: make_charger(identity, password=None) for identity in ("MANAGED-1", "MANAGED-2")
    }
    chargers["YARD"] = Charger.objects.create(identity="YARD", organization=organization, site=yard)
    chargers["SHED"] = Charger.objects.create(identity="SHED", organization=organization, site=shed)
    for n in range(50):
        chargers[f"LOOSE-{n}"] = Charger.objects.create(
            identity=f"LOOSE-{n}", organization=organization
        )
    return chargers


def storm(fleet: dict[str, Charger], loose: int) -> list[events.DomainEvent]:
    """The two managed chargers among the others, in an order not the chargers' order."""
    rest = [booted(fleet[f"LOOSE-{n}"]) for n in range(loose)]
    return [
        booted(fleet["MANAGED-2"]),
        booted(fleet["YARD"]),
        *rest[: loose // 2],
        booted(fleet["SHED"]),
        booted(fleet["MANAGED-1"]),
        *rest[loose // 2 :],
        booted(fleet["MANAGED-2"]),
    ]


def test_a_transactions_boots_send_fail_safes_to_chargers_on_managed_sites_in_order(
    fleet, tasks_sent
):
    answered = events.DomainEvent(
        "command.updated",
        fleet["YARD"].organization_id,
        "YARD",
        {"command": 999_999, "action": "SetChargingProfile", "state": "accepted"},
    )
    batch = storm(fleet, 10)
    batch.insert(4, answered)
    events.notify_many(batch)
    smart = [task for task in tasks_sent if task[0].startswith("smartcharging.")]
    assert smart == [
        (FAILSAFE, (fleet["MANAGED-2"].pk,)),
        ("smartcharging.profile_answered", (999_999,)),
        (FAILSAFE, (fleet["MANAGED-1"].pk,)),
        (FAILSAFE, (fleet["MANAGED-2"].pk,)),
    ]

    # The same events one transaction each send the same tasks.
    before = len(tasks_sent)
    for event in batch:
        events.notify_many([event])
    assert [task for task in tasks_sent[before:] if task[0].startswith("smartcharging.")] == smart


def test_a_storm_of_boots_costs_the_same_queries_for_few_chargers_as_for_many(fleet, tasks_sent):
    def queries(batch: list[events.DomainEvent]) -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            receivers.on_domain_events(None, events=batch)
        return [query["sql"] for query in captured.captured_queries]

    few, many = queries(storm(fleet, 5)), queries(storm(fleet, 50))
    assert len(few) == len(many)
    # One read of the chargers that booted.
    assert len([sql for sql in many if "LOOSE-49" in sql]) == 1
    assert [name for name, _ in tasks_sent] == [FAILSAFE] * 6


def test_a_boot_reads_the_site_afresh_and_its_meter_events_then_need_no_query(fleet, tasks_sent):
    managed, loose = fleet["MANAGED-1"], fleet["LOOSE-0"]
    # Remembered from meter events before its site's load was managed.
    receivers.MANAGED.remember({managed.identity: None})
    receivers.on_domain_events(None, events=[booted(managed), booted(loose)])
    assert tasks_sent == [(FAILSAFE, (managed.pk,))]
    with CaptureQueriesContext(connection) as captured:
        assert receivers._managed(managed.identity, cached=True) == (managed.pk, managed.site_id)
        assert receivers._managed(loose.identity, cached=True) is None
    assert len(captured) == 0


def meter(charger: Charger, session: int) -> events.DomainEvent:
    samples = [{"measurand": "Current.Import", "value": "16.0"}]
    return events.DomainEvent(
        "session.meter",
        charger.organization_id,
        charger.identity,
        {"session": session, "state": "Active", "samples": samples},
    )


def test_a_batch_of_meter_events_reads_its_chargers_in_one_go_then_remembers_them(
    fleet, tasks_sent
):
    def queries(batch: list[events.DomainEvent]) -> list[str]:
        """The receiver's reads (the tasks it sends run here too, and read their sessions)."""
        with CaptureQueriesContext(connection) as captured:
            receivers.on_domain_events(None, events=batch)
        return [q["sql"] for q in captured.captured_queries if "sessionlimit" not in q["sql"]]

    few = [meter(fleet["MANAGED-1"], 1), *(meter(fleet[f"LOOSE-{n}"], 10 + n) for n in range(3))]
    many = [
        meter(fleet["MANAGED-2"], 2),
        *(meter(fleet[f"LOOSE-{n}"], 10 + n) for n in range(3, 50)),
        meter(fleet["YARD"], 3),
    ]
    assert len(queries(few)) == len(queries(many)) == 2  # the chargers, then their sites
    # Only the chargers on a managed site measure, in event order.
    assert [task for task in tasks_sent if task[0] == "smartcharging.session_measured"] == [
        ("smartcharging.session_measured", (1, 16.0)),
        ("smartcharging.session_measured", (2, 16.0)),
    ]
    # Remembered: the same chargers' next meter values cost no query.
    assert queries(few + many) == []
