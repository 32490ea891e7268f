"""Domain-event receivers of the operations app: cheap checks that hand work to Celery tasks."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings

from chargers.commands import FINISHED, CommandState
from chargers.events import domain_event

# Chargers of this process that accepted a TriggerMessage lately, until when: their next
# connector statuses may answer a reconciliation question. The status comes over the socket that
# answered, so it reaches this process; connector statuses are the busiest events, and this keeps
# them free of any database read.
_triggered: dict[str, float] = {}
_lock = threading.Lock()


def on_command_updated(sender: str, *, charger: str, data: dict[str, Any], **_: Any) -> None:
    from . import tasks
    from .baselines import APPLY_ACTIONS
    from .reconciliation import QUESTIONS

    action, state = data.get("action"), data.get("state")
    if action in APPLY_ACTIONS and state in FINISHED:
        tasks.baseline_result.delay(int(data["command"]))
        return
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


def receive(sender: str, **kwargs: Any) -> None:
    receiver = _RECEIVERS.get(sender)
    if receiver is not None:
        receiver(sender, **kwargs)


def connect() -> None:
    domain_event.connect(receive, dispatch_uid="operations.receive")
