"""The firmware receivers of domain events: a transaction's boots reach the campaigns only for
chargers being updated, in event order, for the same queries whether few chargers boot or many."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chargers import events, firmware_receivers
from chargers.firmware import TargetState
from chargers.firmware_models import FirmwareCampaign, FirmwareTarget
from chargers.models import Charger
from cpms.models import Organization
from tests.conftest import booted

pytestmark = pytest.mark.django_db

BOOTED = "chargers.firmware_booted"


@pytest.fixture
def fleet(organization: Organization, make_charger: Any) -> dict[str, Charger]:
    """Two chargers a campaign is updating, one it has not reached and one it has finished with,
    and fifty it never targeted."""
    identities = ["SENT", "INSTALLING", "WAITING", "DONE", *(f"OTHER-{n}" for n in range(50))]
    chargers = {identity: make_charger(identity, password=None) for identity in identities}
    campaign = FirmwareCampaign.objects.create(
        organization=organization, name="Spring", location="https://firmware.example/2.0.bin"
    )
    for identity, state in [
        ("SENT", TargetState.SENT),
        ("INSTALLING", TargetState.IN_PROGRESS),
        ("WAITING", TargetState.PENDING),
        ("DONE", TargetState.SUCCEEDED),
    ]:
        FirmwareTarget.objects.create(
            campaign=campaign, charger=chargers[identity], wave=0, state=state
        )
    return chargers


def storm(fleet: dict[str, Charger], others: int) -> list[events.DomainEvent]:
    """The two chargers being updated among the others, in an order not the chargers' order."""
    rest = [booted(fleet[f"OTHER-{n}"]) for n in range(others)]
    return [
        booted(fleet["INSTALLING"]),
        *rest[: others // 2],
        booted(fleet["DONE"]),
        booted(fleet["SENT"]),
        booted(fleet["WAITING"]),
        *rest[others // 2 :],
        booted(fleet["INSTALLING"]),
    ]


def test_a_transactions_boots_reach_the_campaigns_of_chargers_being_updated_in_order(
    fleet, tasks_sent
):
    other = fleet["OTHER-3"]
    status = events.DomainEvent(
        "charger.event",
        other.organization_id,
        other.identity,
        {"kind": "FirmwareStatus", "status": "Downloading", "request_id": None},
    )
    batch = storm(fleet, 10)
    batch.insert(3, status)
    events.notify_many(batch)
    firmware = [task for task in tasks_sent if task[0].startswith("chargers.firmware")]
    assert firmware == [
        (BOOTED, (fleet["INSTALLING"].pk,)),
        ("chargers.firmware_status", (other.pk, "FirmwareStatus", "Downloading", None)),
        (BOOTED, (fleet["SENT"].pk,)),
        (BOOTED, (fleet["INSTALLING"].pk,)),
    ]

    # The same events one transaction each send the same tasks.
    before = len(tasks_sent)
    for event in batch:
        events.notify_many([event])
    assert [task for task in tasks_sent[before:] if task[0].startswith("chargers.firmware")] == (
        firmware
    )


def test_a_storm_of_boots_costs_the_same_queries_for_few_chargers_as_for_many(fleet, tasks_sent):
    def queries(batch: list[events.DomainEvent]) -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            firmware_receivers.on_domain_events(None, events=batch)
        return [query["sql"] for query in captured.captured_queries]

    few, many = queries(storm(fleet, 5)), queries(storm(fleet, 50))
    assert len(few) == len(many)
    # One read of the targets of all the chargers that booted.
    assert len([sql for sql in many if "OTHER-49" in sql]) == 1
    assert [name for name, _ in tasks_sent] == [BOOTED] * 6
