"""Domain events reach in-process receivers once their transaction commits, and never before."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from chargers import events, services
from chargers.models import Charger, ChargerEvent
from tests.chargers.test_services import start

pytestmark = pytest.mark.django_db


@pytest.fixture
def received() -> Any:
    seen: list[tuple[str, dict[str, Any]]] = []

    def receiver(sender: str, **kwargs: Any) -> None:
        seen.append((sender, kwargs))

    events.domain_event.connect(receiver, weak=False)
    yield seen
    events.domain_event.disconnect(receiver)


def test_a_session_start_is_told_after_commit(
    charger: Charger, id_token: Any, received: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = start(charger)
    assert received == []
    for callback in callbacks:
        callback()
    kinds = [kind for kind, _ in received]
    assert kinds == ["session.started"]
    told = received[0][1]
    assert told["charger"] == charger.identity
    assert told["organization_pk"] == charger.organization_id
    assert told["data"]["transaction_id"] == str(result.transaction_id)


def test_a_failing_receiver_never_breaks_the_write_or_the_others(
    charger: Charger, received: Any, django_capture_on_commit_callbacks: Any
) -> None:
    def broken(sender: str, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    events.domain_event.connect(broken, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            services.charger_event_record(
                charger_pk=charger.pk,
                kind=ChargerEvent.Kind.FIRMWARE,
                status="Installing",
                request_id=7,
            )
    finally:
        events.domain_event.disconnect(broken)
    assert [kind for kind, _ in received] == ["charger.event"]
    assert received[0][1]["data"]["status"] == "Installing"
    assert received[0][1]["data"]["request_id"] == 7
    charger.refresh_from_db()
    assert charger.firmware_status == "Installing"


@pytest.fixture
def batches() -> Any:
    seen: list[list[tuple[str, str]]] = []

    def receiver(sender: Any, *, events: list[Any], **_: Any) -> None:
        seen.append([(event.kind, event.charger) for event in events])

    events.domain_events.connect(receiver, weak=False)
    yield seen
    events.domain_events.disconnect(receiver)


def connected(identity: str) -> None:
    events.publish("charger.connected", organization_pk=1, charger=identity, data={})


def test_a_transactions_events_reach_batch_receivers_together_after_commit(
    received: Any, batches: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        for identity in ("CP-1", "CP-2", "CP-3"):
            connected(identity)
        assert batches == [] and received == []
    assert batches == [[("charger.connected", f"CP-{n}") for n in (1, 2, 3)]]
    # Receivers of single events still get each, in order.
    assert [kwargs["charger"] for _, kwargs in received] == ["CP-1", "CP-2", "CP-3"]

    # The next transaction is a batch of its own.
    with django_capture_on_commit_callbacks(execute=True):
        connected("CP-4")
    assert batches[1:] == [[("charger.connected", "CP-4")]]


def test_events_of_a_savepoint_rolled_back_are_never_told_and_the_order_holds(
    received: Any, batches: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        connected("CP-1")
        with transaction.atomic():
            connected("CP-2")
        try:
            with transaction.atomic():
                connected("CP-GONE")
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        connected("CP-3")
    told = [charger for batch in batches for _, charger in batch]
    assert told == ["CP-1", "CP-2", "CP-3"]
    assert [kwargs["charger"] for _, kwargs in received] == ["CP-1", "CP-2", "CP-3"]


@pytest.mark.django_db(transaction=True)
def test_nothing_is_told_of_a_transaction_rolled_back(received: Any, batches: Any) -> None:
    try:
        with transaction.atomic():
            connected("CP-1")
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    with transaction.atomic():
        connected("CP-2")
    assert batches == [[("charger.connected", "CP-2")]]
    assert [kwargs["charger"] for _, kwargs in received] == ["CP-2"]
