"""The local list's domain-event receivers: a transaction's boots send the list check only to
chargers that have a list or whose organization keeps tokens in local lists, in event order, and
cost the same few queries for a few chargers as for many."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chargers import events, locallist_receivers
from chargers.locallist_models import LocalListSync
from chargers.models import Charger, IdToken
from cpms.models import Organization
from tests.conftest import booted

pytestmark = pytest.mark.django_db

CONNECTED = "chargers.local_list_connected"


@pytest.fixture
def fleet(organization: Organization, make_charger: Any) -> dict[str, Charger]:
    """Two chargers of an organization that keeps tokens in local lists; in another that keeps
    none, one charger with a list and several without."""
    IdToken.objects.create(organization=organization, token="LISTED", local_list=True)
    other = Organization.objects.create(name="Other", slug="other")
    IdToken.objects.create(organization=other, token="UNLISTED", local_list=False)
    chargers = {
        identity: make_charger(identity, password=None) for identity in ("KEEP-1", "KEEP-2")
    }
    for identity in ("LIST-1", *(f"PLAIN-{n}" for n in range(50))):
        chargers[identity] = Charger.objects.create(identity=identity, organization=other)
    LocalListSync.objects.create(charger=chargers["LIST-1"])
    return chargers


def storm(fleet: dict[str, Charger], plain: int) -> list[events.DomainEvent]:
    """The three chargers that qualify, among ``plain`` that do not and one nobody knows, in an
    order that is not the chargers' order; KEEP-2 boots twice."""
    plains = [booted(fleet[f"PLAIN-{n}"]) for n in range(plain)]
    return [
        *plains[: plain // 2],
        booted(fleet["KEEP-2"]),
        booted("GHOST"),
        booted(fleet["LIST-1"]),
        *plains[plain // 2 :],
        booted(fleet["KEEP-1"]),
        booted(fleet["KEEP-2"]),
    ]


def test_a_transactions_boots_check_the_lists_of_the_chargers_that_have_one_in_order(
    fleet, tasks_sent
):
    answered = events.DomainEvent(
        "command.updated",
        fleet["LIST-1"].organization_id,
        "LIST-1",
        {"command": 999_999, "action": "SendLocalList", "state": "accepted"},
    )
    batch = storm(fleet, 20)
    batch.insert(len(batch) - 1, answered)
    events.notify_many(batch)
    pk = {identity: charger.pk for identity, charger in fleet.items()}
    assert [task for task in tasks_sent if task[0].startswith("chargers.local_list")] == [
        (CONNECTED, (pk["KEEP-2"],)),
        (CONNECTED, (pk["LIST-1"],)),
        (CONNECTED, (pk["KEEP-1"],)),
        ("chargers.local_list_command_finished", (999_999,)),
        (CONNECTED, (pk["KEEP-2"],)),
    ]

    # The same events one transaction each send the same tasks.
    before = len(tasks_sent)
    for event in batch:
        events.notify_many([event])
    assert [task for task in tasks_sent[before:] if task[0].startswith("chargers.local_list")] == [
        task for task in tasks_sent[:before] if task[0].startswith("chargers.local_list")
    ]


def test_a_storm_of_boots_costs_the_same_queries_for_few_chargers_as_for_many(fleet, tasks_sent):
    def queries(batch: list[events.DomainEvent]) -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            locallist_receivers.on_domain_events(None, events=batch)
        return [query["sql"] for query in captured.captured_queries]

    few, many = queries(storm(fleet, 5)), queries(storm(fleet, 50))
    assert len(few) == len(many)
    # The chargers are read by identity once; their lists and tokens by pk and organization.
    assert len([sql for sql in many if "PLAIN-49" in sql]) == 1
    assert [name for name, _ in tasks_sent] == [CONNECTED] * 8
