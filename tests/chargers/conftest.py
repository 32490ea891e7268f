"""Fixtures of the alert tests: a clock the test moves, and what listeners hear."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from chargers import alerts as alert_services
from chargers import events
from chargers.alerts import alert_listen
from chargers.models import Charger

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.now = T0
        monkeypatch.setattr(timezone, "now", lambda: self.now)

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def heard() -> Iterator[Any]:
    """Alert notifications and live events, as listeners and receivers see them after commit."""
    notified: list[tuple[int, str]] = []
    published: list[tuple[str, dict[str, Any]]] = []

    def listener(pk: int, event: str) -> None:
        notified.append((pk, event))

    def receiver(sender: str, **kwargs: Any) -> None:
        if sender.startswith("alert."):
            published.append((sender, kwargs["data"]))

    alert_listen(listener)
    events.domain_event.connect(receiver, dispatch_uid="test-alerts")
    yield notified, published
    alert_services._listeners.remove(listener)
    events.domain_event.disconnect(dispatch_uid="test-alerts")


@pytest.fixture
def online(charger: Charger) -> Charger:
    Charger.objects.filter(pk=charger.pk).update(connected=True, last_seen=T0)
    charger.refresh_from_db()
    return charger
