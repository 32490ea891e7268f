"""Billing's domain-event receivers: which chargers show cost is read for a whole batch of events
in one query, remembered, and read again once a charger connects or boots; tasks go out in
event order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import receivers
from billing.record_models import CostDisplayRule
from billing.record_services import chargers_showing_cost, cost_display_enabled
from chargers import events
from chargers.models import Charger
from cpms.models import Organization
from tests.conftest import booted

pytestmark = pytest.mark.django_db

RUNNING = "billing.running_cost_send"


@pytest.fixture(autouse=True)
def forgotten() -> Iterator[None]:
    receivers.forget()
    yield
    receivers.forget()


@pytest.fixture
def fleet(organization: Organization, make_charger: Any) -> dict[str, Charger]:
    """Chargers of two models; rules by model (any vendor, one vendor), by charger, and one of
    another organization that must not count."""
    other = Organization.objects.create(name="Other", slug="other")
    CostDisplayRule.objects.create(organization=organization, model="wallbox", enabled=True)
    CostDisplayRule.objects.create(
        organization=organization, vendor="acme", model="wallbox", enabled=False
    )
    CostDisplayRule.objects.create(organization=other, model="pillar", enabled=True)
    chargers = {
        "ANY-VENDOR": make_charger("ANY-VENDOR", vendor="Volta", model="WallBox"),
        "ACME": make_charger("ACME", vendor="ACME", model="wallbox"),
        "OWN-ON": make_charger("OWN-ON", vendor="acme", model="wallbox"),
        "OWN-OFF": make_charger("OWN-OFF", vendor="Volta", model="wallbox"),
        "NO-RULE": make_charger("NO-RULE", vendor="Volta", model="pillar"),
    }
    CostDisplayRule.objects.create(
        organization=organization, charger=chargers["OWN-ON"], enabled=True
    )
    CostDisplayRule.objects.create(
        organization=organization, charger=chargers["OWN-OFF"], enabled=False
    )
    for n in range(40):
        chargers[f"PLAIN-{n}"] = make_charger(f"PLAIN-{n}", vendor="Volta", model="WallBox")
    return chargers


def test_one_query_says_what_the_rules_say_of_each_charger(fleet):
    with CaptureQueriesContext(connection) as captured:
        shows = chargers_showing_cost([*fleet, "UNKNOWN"])
    assert len(captured) == 1
    assert {identity: shows[identity] for identity in list(fleet)[:5]} == {
        "ANY-VENDOR": True,
        "ACME": False,  # the rule naming the vendor wins over the one for any vendor
        "OWN-ON": True,  # a charger's own rule wins over its model's
        "OWN-OFF": False,
        "NO-RULE": False,  # only another organization has a rule for its model
    }
    assert shows == {identity: cost_display_enabled(charger=c) for identity, c in fleet.items()}
    assert "UNKNOWN" not in shows


def meter(charger: Charger, session: int) -> events.DomainEvent:
    return events.DomainEvent(
        "session.meter", charger.organization_id, charger.identity, {"session": session}
    )


def test_a_batch_reads_its_chargers_once_and_sends_tasks_in_order(fleet, tasks_sent):
    def queries(batch: list[events.DomainEvent]) -> int:
        with CaptureQueriesContext(connection) as captured:
            receivers.on_domain_events(None, events=batch)
        # The tasks run here too, and read their sessions: count the receiver's reads only.
        return len([q for q in captured.captured_queries if "billing_costdisplayrule" in q["sql"]])

    few = [meter(fleet["ANY-VENDOR"], 1), meter(fleet["ACME"], 2)]
    many = [
        events.DomainEvent("session.ended", 0, "OWN-OFF", {"session": 3}),
        meter(fleet["OWN-OFF"], 3),
        *(meter(fleet[f"PLAIN-{n}"], 10 + n) for n in range(40)),
        events.DomainEvent("session.started", 0, "OWN-ON", {"session": 4}),
        events.DomainEvent("session.meter", 0, "OWN-ON", {"state": "no session"}),
    ]
    assert queries(few) == queries(many) == 1
    assert tasks_sent == [
        (RUNNING, (1,)),
        ("billing.cdr_create", (3,)),
        *((RUNNING, (10 + n,)) for n in range(40)),
        ("billing.tariff_text_send", (4,)),
    ]
    # Remembered: no read for the same chargers; a boot makes its charger read again.
    assert queries(few + many) == 0
    rule = CostDisplayRule.objects.get(charger=fleet["OWN-OFF"])
    rule.enabled = True
    rule.save()
    assert queries([meter(fleet["OWN-OFF"], 5)]) == 0
    assert tasks_sent[-1] != (RUNNING, (5,))
    assert queries([booted(fleet["OWN-OFF"]), meter(fleet["OWN-OFF"], 6)]) == 1
    assert tasks_sent[-1] == (RUNNING, (6,))
