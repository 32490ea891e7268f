"""The operations receivers of domain events: a finished ChangeConfiguration or SetVariables gets
its baseline task only when a baseline sent it (one read for a whole batch of answers), and the
other events reach the single receivers as before."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chargers import command_services, events
from chargers.commands import CommandState
from chargers.models import Charger, Command
from operations import baselines, receivers

pytestmark = pytest.mark.django_db

BASELINE_TASK = "operations.baseline_result"


@pytest.fixture
def from_baseline(online: Charger, baseline16: Any) -> list[Command]:
    return baselines.baseline_apply(baseline=baseline16, charger=online)


@pytest.fixture(autouse=True)
def forget_triggers() -> Any:
    yield
    receivers._triggered.clear()


def elsewhere(charger: Charger, count: int) -> list[Command]:
    """ChangeConfigurations an operator sent: no baseline waits for their answers."""
    return [
        command_services.command_create(
            charger=charger,
            action="ChangeConfiguration",
            payload={"key": f"Key{n}", "value": "1"},
        )
        for n in range(count)
    ]


def updated(command: Command, state: str) -> events.DomainEvent:
    data = {"command": command.pk, "action": command.action, "state": state}
    return events.DomainEvent("command.updated", 1, "CP-1", data)


def test_only_a_baselines_finished_commands_get_its_task_in_order(
    online, from_baseline, tasks_sent
):
    first, second, _ = from_baseline
    [other] = elsewhere(online, 1)
    tasks_sent.clear()
    receivers.receive_many(
        None,
        events=[
            updated(second, CommandState.ACCEPTED),
            updated(other, CommandState.ACCEPTED),
            updated(first, CommandState.SENT),  # not finished yet
            updated(first, CommandState.REJECTED),
        ],
    )
    assert tasks_sent == [(BASELINE_TASK, (second.pk,)), (BASELINE_TASK, (first.pk,))]


@pytest.mark.parametrize("others", [5, 50])
def test_a_batch_of_answers_takes_one_read_however_many(online, from_baseline, tasks_sent, others):
    commands = [*elsewhere(online, others), *from_baseline]
    tasks_sent.clear()
    batch = [updated(command, CommandState.ACCEPTED) for command in commands]
    with CaptureQueriesContext(connection) as queries:
        # The tasks run where they are sent here; only the receiver's own reads are counted.
        receivers._from_baselines(batch)
    assert len(queries.captured_queries) == 1
    receivers.receive_many(None, events=batch)
    assert tasks_sent == [(BASELINE_TASK, (command.pk,)) for command in from_baseline]


def test_other_events_still_reach_the_single_receivers(online, tasks_sent):
    trigger = command_services.command_create(
        charger=online, action="TriggerMessage", payload={"requestedMessage": "StatusNotification"}
    )
    tasks_sent.clear()
    receivers.receive_many(
        None,
        events=[
            updated(trigger, CommandState.ACCEPTED),
            events.DomainEvent("connector.status", 1, "CP-1", {"connector": 1}),
        ],
    )
    # A TriggerMessage answered: the reconciliation hears of it, and of the status after it.
    assert tasks_sent == [
        ("operations.reconciliation_answer", (trigger.pk,)),
        ("operations.reconciliation_statuses", ("CP-1",)),
    ]
