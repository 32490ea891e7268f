"""Domain events reach in-process receivers once their transaction commits, and never before."""

from __future__ import annotations

from typing import Any

import pytest

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
