"""Domain-event receivers of the operations app: cheap checks that hand work to Celery tasks."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings

from chargers.commands import FINISHED, CommandState
from chargers.events import DomainEvent, domain_events, handle_each, tell

# Chargers of this process that accepted a TriggerMessage lately, until when: their next
# connector statuses may answer a reconciliation question. The status comes over the socket that
# answered, so it reaches this process; connector statuses are the busiest events, and this keeps
# them free of any database read.
_triggered: dict[str, float] = {}
_lock = threading.Lock()


def on_command_updated(sender: str, *, charger: str, data: dict[str, Any], **_: Any) -> None:
    """A reconciliation question answered (baselines' commands are found a batch at a time, in
    ``receive_many``)."""
    from . import tasks
    from .reconciliation import QUESTIONS

    action, state = data.get("action"), data.get("state")
    if action not in QUESTIONS:
        return
    if action == "TriggerMessage" and state == CommandState.ACCEPTED:
        with _lock:
            _triggered[charger] = time.monotonic() + max(settings.CPMS_RECONCILIATION_GRACE, 60)
    if state in FINISHED:
        tasks.reconciliation_answer.delay(int(data["command"]))


def on_connector_status(sender: str, *, charger: str, **_: Any) -> None:
    until = _triggered.get(charger)
    if until is None:
        return
    if until < time.monotonic():
        with _lock:
            _triggered.pop(charger, None)
        return
    from . import tasks

    tasks.reconciliation_statuses.delay(charger)


_RECEIVERS = {"command.updated": on_command_updated, "connector.status": on_connector_status}


def _from_baselines(batch: list[DomainEvent]) -> set[int]:
    """Of the batch's finished ChangeConfiguration / SetVariables commands, those a baseline
    sent: one read for the whole batch. Every other part of the system sends these commands
    too, and a group commit answers hundreds of them at once."""
    from .baselines import APPLY_ACTIONS
    from .models import BaselineResult

    finished = {
        int(event.data["command"])
        for event in batch
        if event.kind == "command.updated"
        and event.data.get("action") in APPLY_ACTIONS
        and event.data.get("state") in FINISHED
    }
    if not finished:
        return set()
    return set(
        BaselineResult.objects.filter(command_id__in=finished).values_list("command_id", flat=True)
    )


def receive_many(sender: Any, *, events: list[DomainEvent], **_: Any) -> None:
    """A transaction's events in order: a baseline's command that finished gets its task, the
    rest go to the receivers of single events."""
    from . import tasks
    from .baselines import APPLY_ACTIONS

    baselines = _from_baselines(events)

    def handle(event: DomainEvent) -> None:
        if event.kind == "command.updated" and event.data.get("action") in APPLY_ACTIONS:
            if event.data.get("state") in FINISHED and int(event.data["command"]) in baselines:
                tasks.baseline_result.delay(int(event.data["command"]))
            return
        tell(_RECEIVERS, event)

    handle_each(events, handle)


def connect() -> None:
    domain_events.connect(receive_many, dispatch_uid="operations.receive")
