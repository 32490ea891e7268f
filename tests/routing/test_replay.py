"""Outboxes left behind by a charger that did not come back: Celery replays them to a real upstream
process in order, with that upstream's own transaction ids, and expires old copies outside
transactions (counted as drops); transaction messages never expire."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from chargers.models import Charger, Frame
from routing.models import LegStatus, OutboxEntry, Route, RouteLeg, TransactionMap, Upstream
from routing.replay import outbox_expire, outbox_replay, outboxes_left_behind
from routing.tasks import outbox_replay as outbox_replay_task
from routing.tasks import outbox_sweep

from .harness import UpstreamProcess

pytestmark = pytest.mark.django_db

T0 = "2026-03-01T12:00:00Z"


@pytest.fixture
def upstreams(tmp_path: Path) -> Iterator[Callable[[str, int], UpstreamProcess]]:
    started: list[UpstreamProcess] = []

    def start(name: str, tx_base: int) -> UpstreamProcess:
        process = UpstreamProcess(name, tx_base, tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def observed_by(charger: Charger, name: str, url: str, **fields: Any) -> Upstream:
    upstream = Upstream.objects.create(name=name, url=url, **fields)
    local, _ = Upstream.objects.get_or_create(name="local")
    route = Route.objects.create(scope="charger", charger=charger)
    RouteLeg.objects.create(route=route, upstream=local, role="primary")
    RouteLeg.objects.create(route=route, upstream=upstream, role="observer")
    Charger.objects.filter(pk=charger.pk).update(ocpp_version="1.6", connected=False)
    return upstream


def queue(
    charger: Charger,
    upstream: Upstream,
    message_id: str,
    action: str,
    payload: dict[str, Any],
    *,
    transactional: bool = False,
    age: timedelta = timedelta(0),
) -> OutboxEntry:
    return OutboxEntry.objects.create(
        charger=charger,
        upstream=upstream,
        message_id=message_id,
        action=action,
        payload=payload,
        transactional=transactional,
        created_at=timezone.now() - age,
    )


def left_behind_session(charger: Charger, upstream: Upstream) -> None:
    """A 1.6 transaction the charger ran (local gave it id 42) while the observer was down."""
    TransactionMap.objects.create(
        charger=charger, upstream=upstream, start_message_id="cp-1", charger_transaction_id=42
    )
    start = {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": T0}
    queue(charger, upstream, "cp-1", "StartTransaction", start, transactional=True)
    meter = {
        "connectorId": 1,
        "transactionId": 42,
        "meterValue": [{"timestamp": T0, "sampledValue": [{"value": "500"}]}],
    }
    queue(charger, upstream, "cp-2", "MeterValues", meter, transactional=True)
    queue(
        charger,
        upstream,
        "cp-3",
        "StatusNotification",
        {"connectorId": 1, "errorCode": "NoError", "status": "Charging"},
    )
    stop = {"transactionId": 42, "meterStop": 900, "timestamp": T0}
    queue(charger, upstream, "cp-4", "StopTransaction", stop, transactional=True)


def test_a_left_behind_outbox_is_replayed_in_order_with_the_observers_ids(
    charger: Charger, upstreams: Any
) -> None:
    analytics = upstreams("analytics", 7000)
    upstream = observed_by(charger, "analytics", analytics.url)
    left_behind_session(charger, upstream)

    result = outbox_replay(charger_pk=charger.pk, upstream_pk=upstream.pk)

    assert result.delivered == 4 and result.remaining == 0 and result.stopped == ""
    calls = analytics.calls(charger.identity)
    assert [action for _, action, _ in calls] == [
        "StartTransaction",
        "MeterValues",
        "StatusNotification",
        "StopTransaction",
    ]
    # Its own message ids, and its own transaction id in place of the charger's.
    assert not {m for m, _, _ in calls} & {"cp-1", "cp-2", "cp-3", "cp-4"}
    assert calls[1][2]["transactionId"] == 7000 and calls[3][2]["transactionId"] == 7000
    assert analytics.connects(charger.identity)[0]["path"] == f"/ocpp/{charger.identity}"
    mapped = TransactionMap.objects.get(charger=charger, upstream=upstream)
    assert mapped.upstream_transaction_id == 7000 and mapped.stopped_at is not None
    assert not OutboxEntry.objects.exists()
    # The journal has both directions on the observer's leg, with the charger's original ids.
    frames = Frame.objects.filter(leg="analytics").order_by("id")
    assert [(f.direction, f.kind, f.original_message_id) for f in frames][:2] == [
        ("out", 2, "cp-1"),
        ("in", 3, "cp-1"),
    ]
    assert frames.count() == 8


def test_a_frame_of_a_transaction_without_an_id_there_is_held(
    charger: Charger, upstreams: Any
) -> None:
    analytics = upstreams("analytics", 7000)
    upstream = observed_by(charger, "analytics", analytics.url)
    meter = {
        "connectorId": 1,
        "transactionId": 99,
        "meterValue": [{"timestamp": T0, "sampledValue": [{"value": "1"}]}],
    }
    queue(charger, upstream, "cp-9", "MeterValues", meter, transactional=True)
    result = outbox_replay(charger_pk=charger.pk, upstream_pk=upstream.pk)
    assert result.delivered == 0 and result.remaining == 1
    assert "transaction 99 has no id at analytics yet" in result.stopped
    assert analytics.calls(charger.identity) == []


def test_an_unreachable_observer_or_a_charger_back_online_keeps_the_outbox(
    charger: Charger, upstreams: Any
) -> None:
    analytics = upstreams("analytics", 7000)
    upstream = observed_by(charger, "analytics", analytics.url)
    left_behind_session(charger, upstream)
    analytics.kill()
    result = outbox_replay(charger_pk=charger.pk, upstream_pk=upstream.pk)
    assert result.remaining == 4 and result.stopped.startswith("analytics unreachable")
    analytics.start()
    Charger.objects.filter(pk=charger.pk).update(connected=True)
    result = outbox_replay(charger_pk=charger.pk, upstream_pk=upstream.pk)
    assert result.remaining == 4 and "its gateway drains it" in result.stopped
    assert analytics.calls(charger.identity) == []


def test_credentials_go_with_the_replay_but_never_the_chargers_own(
    charger: Charger, upstreams: Any
) -> None:
    analytics = upstreams("analytics", 7000)
    upstream = observed_by(
        charger, "analytics", analytics.url, credentials="basic_upstream", password="obs-secret"
    )
    queue(charger, upstream, "cp-1", "Heartbeat", {})
    assert outbox_replay(charger_pk=charger.pk, upstream_pk=upstream.pk).delivered == 1
    header = analytics.connects(charger.identity)[0]["authorization"]
    assert header.startswith("Basic ")
    Upstream.objects.filter(pk=upstream.pk).update(credentials="forward", password="")
    queue(charger, upstream, "cp-2", "Heartbeat", {})
    assert outbox_replay(charger_pk=charger.pk, upstream_pk=upstream.pk).delivered == 1
    assert analytics.connects(charger.identity)[1]["authorization"] == ""


def test_only_old_outboxes_of_offline_chargers_are_left_behind(
    charger: Charger, make_charger: Any
) -> None:
    online = make_charger("CP-ON")
    upstream = observed_by(charger, "analytics", "ws://127.0.0.1:9/")
    Charger.objects.filter(pk=online.pk).update(connected=True)
    queue(charger, upstream, "a", "Heartbeat", {}, age=timedelta(minutes=5))
    queue(online, upstream, "b", "Heartbeat", {}, age=timedelta(minutes=5))
    young = make_charger("CP-YOUNG")
    queue(young, upstream, "c", "Heartbeat", {})
    assert outboxes_left_behind(older_than=timedelta(minutes=2)) == [(charger.pk, upstream.pk)]


def test_old_copies_outside_transactions_expire_as_drops(charger: Charger) -> None:
    upstream = observed_by(charger, "analytics", "ws://127.0.0.1:9/")
    old = timedelta(days=8)
    queue(charger, upstream, "m1", "MeterValues", {"connectorId": 1, "meterValue": []}, age=old)
    queue(charger, upstream, "s1", "StatusNotification", {"connectorId": 1}, age=old)
    queue(
        charger,
        upstream,
        "t1",
        "StopTransaction",
        {"transactionId": 1},
        transactional=True,
        age=old,
    )
    queue(charger, upstream, "m2", "MeterValues", {"connectorId": 1, "meterValue": []})
    assert outbox_expire() == 2
    assert sorted(OutboxEntry.objects.values_list("message_id", flat=True)) == ["m2", "t1"]
    assert LegStatus.objects.get(charger=charger, upstream=upstream).dropped == 2


@override_settings(CPMS_ROUTING_REPLAY_AFTER=0)
def test_the_tasks_take_ids_and_report(charger: Charger, upstreams: Any) -> None:
    analytics = upstreams("analytics", 7000)
    upstream = observed_by(charger, "analytics", analytics.url)
    left_behind_session(charger, upstream)
    report = outbox_replay_task.apply(args=(charger.pk, upstream.pk)).get()
    assert report == {"delivered": 4, "remaining": 0, "stopped": ""}
    queue(
        charger,
        upstream,
        "late",
        "StatusNotification",
        {"connectorId": 1},
        age=timedelta(minutes=1),
    )
    with override_settings(CELERY_TASK_ALWAYS_EAGER=False):
        assert outbox_sweep.apply().get() == {"expired": 0, "replays": 1}
