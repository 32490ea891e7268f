"""The migration story, end to end: one real charger on one socket, two real upstream processes,
and ``routing_apply`` run as its own process for every step.

1. legacy is primary and ``local`` observes;
2. an analytics observer is added;
3. cut-over: ``local`` is primary and legacy observes;
4. roll-back: the file of step 2 applied again.

Throughout, the charger is never reconfigured (one socket, the same URL and password), every
charger CALL gets exactly one answer, every upstream sees a consistent stream with its own message
and transaction ids, and an observer killed mid-session and started again loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connections
from rest_framework.test import APIClient

from chargers.command_services import command_create
from chargers.models import Charger, Session, UnmatchedStop
from cpms.models import Membership, Role
from routing.models import OutboxEntry, RoutingChange, TransactionMap
from tests.conftest import ROOT, ServerProcess, database_url_for_test_db, wait_until_quiet

from .harness import ROUTING_ENV, RawCharger, UpstreamProcess, charger_socket, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

T0 = "2026-03-01T12:00:00Z"
TRANSACTION_ACTIONS = ("MeterValues", "StopTransaction")


@pytest.fixture(scope="module")
def gateway_process(django_db_setup: Any, django_db_blocker: Any) -> Iterator[ServerProcess]:
    process = ServerProcess(extra_env=ROUTING_ENV)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def gateway(transactional_db: Any, gateway_process: ServerProcess) -> Iterator[ServerProcess]:
    yield gateway_process
    wait_until_quiet()


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


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


async def routing_apply(tmp_path: Path, step: str, document: dict[str, Any]) -> str:
    """``manage.py routing_apply`` as an operator runs it, in a process of its own."""
    path = tmp_path / f"{step}.json"
    path.write_text(json.dumps(document, indent=2))
    env = {**os.environ, "DATABASE_URL": database_url_for_test_db()}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "routing_apply", str(path), "--actor", "migration"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    result = await asyncio.to_thread(run)
    assert result.returncode == 0, result.stderr
    return result.stdout


def status(connector: int, state: str) -> dict[str, Any]:
    return {"connectorId": connector, "errorCode": "NoError", "status": state, "timestamp": T0}


def meter(transaction_id: int, wh: int) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "transactionId": transaction_id,
        "meterValue": [{"timestamp": T0, "sampledValue": [{"value": str(wh)}]}],
    }


class Story:
    """The charger's side: every CALL it sent, in order, and the answers it got."""

    def __init__(self, cp: RawCharger):
        self.cp = cp
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer = await self.cp.call(action, payload)
        assert answer[0] == 3, (action, answer)
        self.sent.append((answer[1], action, payload))
        return answer[2]  # type: ignore[no-any-return]

    async def start(self, wh: int) -> int:
        await self.call("StatusNotification", status(1, "Preparing"))
        answer = await self.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "TAG-OK", "meterStart": wh, "timestamp": T0},
        )
        assert answer["idTagInfo"]["status"] == "Accepted"
        await self.call("StatusNotification", status(1, "Charging"))
        return int(answer["transactionId"])

    async def stop(self, transaction_id: int, wh: int) -> None:
        await self.call(
            "StopTransaction", {"transactionId": transaction_id, "meterStop": wh, "timestamp": T0}
        )
        await self.call("StatusNotification", status(1, "Available"))

    async def session(self, wh: int) -> int:
        transaction_id = await self.start(wh)
        for n in range(1, 3):
            await self.call("MeterValues", meter(transaction_id, wh + 1000 * n))
        await self.stop(transaction_id, wh + 2500)
        return transaction_id

    def actions_since(self, message_id: str) -> list[str]:
        ids = [m for m, _, _ in self.sent]
        return [action for _, action, _ in self.sent[ids.index(message_id) :]]


def issued(upstream: UpstreamProcess, identity: str) -> list[int]:
    """The transaction ids an upstream issued, from the answers it sent."""
    starts = {m for m, action, _ in upstream.calls(identity) if action == "StartTransaction"}
    ids = []
    for entry in upstream.entries(identity):
        if entry["event"] == "out":
            frame = json.loads(entry["frame"])
            if frame[0] == 3 and frame[1] in starts:
                ids.append(frame[2]["transactionId"])
    return ids


def used(upstream: UpstreamProcess, identity: str) -> list[int]:
    """The transaction ids in the MeterValues and StopTransaction an upstream received."""
    return [
        payload["transactionId"]
        for _, action, payload in upstream.calls(identity)
        if action in TRANSACTION_ACTIONS
    ]


def assert_consistent(upstream: UpstreamProcess, identity: str, charger_ids: set[str]) -> None:
    calls = upstream.calls(identity)
    message_ids = [m for m, _, _ in calls]
    # Its own message ids: none twice, none of the charger's.
    assert len(set(message_ids)) == len(message_ids), upstream.name
    assert not set(message_ids) & charger_ids, upstream.name
    # Its own transaction ids, and only those it issued, each one used until its stop.
    assert set(used(upstream, identity)) <= set(issued(upstream, identity)), upstream.name
    # The charger was never reconfigured: every connection names the same charger.
    assert {c["path"].rstrip("/").rsplit("/", 1)[-1] for c in upstream.connects(identity)} == {
        identity
    }


async def test_legacy_to_local_and_back_with_an_analytics_observer(
    gateway: ServerProcess, charger: Charger, id_token: Any, upstreams: Any, tmp_path: Path
) -> None:
    identity = charger.identity
    legacy = upstreams("legacy", 5000)
    analytics = upstreams("analytics", 7000)
    step1 = {
        "upstreams": {
            "legacy": {"url": legacy.url, "ocpp_versions": ["1.6"]},
            "analytics": {"url": analytics.url},
        },
        "routes": [
            {
                "charger_id": identity,
                "upstreams": [
                    {"upstream": "legacy", "role": "primary"},
                    {"upstream": "local", "role": "observer"},
                ],
            }
        ],
    }
    # Steps 2 to 4 use the per-charger shape: the URLs name the upstreams of step 1.
    step2 = {
        "charger_id": identity,
        "upstreams": [
            {"url": legacy.url, "role": "primary"},
            {"url": "local", "role": "observer"},
            {"url": analytics.url, "role": "observer"},
        ],
    }
    step3 = {
        "charger_id": identity,
        "upstreams": [
            {"url": "local", "role": "primary"},
            {"url": legacy.url, "role": "observer"},
            {"url": analytics.url, "role": "observer"},
        ],
    }

    # 1. legacy is primary, local observes.
    out = await routing_apply(tmp_path, "1-legacy-primary", step1)
    assert "cut-over from local" in out
    async with charger_socket(gateway, identity) as cp:
        story = Story(cp)
        await story.call(
            "BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "Wallbox 22"}
        )
        await story.call("StatusNotification", status(1, "Available"))
        tx_a = await story.session(10_000)
        assert tx_a == 5000  # legacy's id: legacy answers the charger

        # 2. analytics observes too; it is dialled while the charger stays connected.
        out = await routing_apply(tmp_path, "2-add-analytics", step2)
        assert "analytics" in out and "cut-over" not in out
        await eventually(lambda: analytics.connects(identity), what="analytics dialled")
        # It gets the cached boot and statuses first.
        replayed = await eventually(
            lambda: [a for _, a, _ in analytics.calls(identity)][:1], what="analytics' replay"
        )
        assert replayed == ["BootNotification"]

        # A session during which analytics is killed and started again.
        transaction_b = await story.start(20_000)
        assert transaction_b == 5001
        b_start = story.sent[-2][0]
        await eventually(
            lambda: "StartTransaction" in [a for _, a, _ in analytics.calls(identity)],
            what="analytics' copy of the start",
        )
        await story.call("MeterValues", meter(transaction_b, 21_000))
        analytics.kill()
        for n in range(2, 5):
            await story.call("MeterValues", meter(transaction_b, 20_000 + 1000 * n))
        analytics.start()
        await story.stop(transaction_b, 24_500)
        b_actions = story.actions_since(b_start)

        # On reconnect the boot and the latest status per connector go first, then the backlog
        # in order: the transaction's frames all arrive, in order; statuses as their latest.
        in_transaction = [a for a in b_actions if a != "StatusNotification"]

        def analytics_caught_up() -> bool:
            actions = [a for _, a, _ in analytics.calls(identity) if a != "StatusNotification"]
            starts = [i for i, a in enumerate(actions) if a == "StartTransaction"]
            return bool(starts) and _contains_in_order(actions[starts[-1] :], in_transaction)

        await eventually(analytics_caught_up, timeout=60, what="analytics caught up")

        def analytics_status() -> tuple[int, str]:
            statuses = [p for _, a, p in analytics.calls(identity) if a == "StatusNotification"]
            return (statuses[-1]["connectorId"], statuses[-1]["status"])

        await eventually(
            lambda: analytics_status() == (1, "Available"), what="analytics' latest status"
        )
        # Every frame of the session reached analytics, in order, under analytics' own id.
        assert used(analytics, identity)[-5:] == [7000] * 5
        await eventually(
            lambda: (
                not OutboxEntry.objects.filter(charger=charger, upstream__name="analytics").exists()
            ),
            what="analytics' outbox empty",
        )

        # 3. cut-over: local answers the charger, legacy observes.
        legacy_connects = len(legacy.connects(identity))
        out = await routing_apply(tmp_path, "3-cut-over", step3)
        assert "cut-over from legacy" in out
        await eventually(
            lambda: len(legacy.connects(identity)) > legacy_connects, what="legacy re-dialled"
        )
        tx_c = await story.session(30_000)
        assert not 5000 <= tx_c < 6000 and not 7000 <= tx_c < 8000  # local's own id now

        # 4. roll back: the file of step 2 again.
        legacy_connects = len(legacy.connects(identity))
        out = await routing_apply(tmp_path, "4-roll-back", step2)
        assert "cut-over from local" in out
        await eventually(
            lambda: len(legacy.connects(identity)) > legacy_connects, what="legacy primary again"
        )
        tx_d = await story.session(40_000)
        assert tx_d not in (tx_a, transaction_b, tx_c) and 5000 <= tx_d < 6000

        # The charger kept its one socket and got exactly one answer per CALL.
        assert not cp.closed.done()
        charger_ids = {m for m, _, _ in story.sent}
        for message_id in charger_ids:
            assert len(cp.answers_to(message_id)) == 1, message_id
        assert len(cp.frames) == len(story.sent)

    # Legacy issued the charger's ids while primary and its own as observer, and saw them back.
    await eventually(lambda: len(used(legacy, identity)) >= 12, what="legacy's copies")
    assert_consistent(legacy, identity, charger_ids)
    legacy_ids = issued(legacy, identity)
    assert legacy_ids[:2] == [5000, 5001] and tx_d in legacy_ids
    assert len(legacy_ids) == 4  # sessions A, B, C (as observer) and D
    assert_consistent(analytics, identity, charger_ids)
    assert len(issued(analytics, identity)) >= 3  # sessions B, C and D

    # local recorded every session, with its own id while observing and the charger's as
    # primary, and nothing stays open: session D, observed again after the roll-back, too.
    def completed() -> list[Session]:
        return list(Session.objects.filter(charger=charger, state="Completed").order_by("pk"))

    sessions = await eventually(lambda: len(completed()) >= 4 and completed(), what="sessions")
    assert [s.transaction_id for s in sessions][2] == str(tx_c)
    assert str(tx_d) not in [s.transaction_id for s in sessions]  # local's own id for D
    assert [s.energy_wh for s in sessions] == [2500, 4500, 2500, 2500]
    assert not await sync_to_async(
        Session.objects.filter(charger=charger).exclude(state="Completed").exists
    )()

    # The journal export has every leg's frames with the upstream, the direction, and the
    # charger's original id beside each upstream's own.
    rows = await sync_to_async(export_rows)(charger, "analytics")
    sent_to_analytics = [r for r in rows if r["direction"] == "out" and r["kind"] == 2]
    # (A copy sent as analytics went down is journaled too, then sent again under a new id.)
    assert {m for m, _, _ in analytics.calls(identity)} <= {
        r["message_id"] for r in sent_to_analytics
    }
    assert {r["original_message_id"] for r in sent_to_analytics} <= charger_ids
    assert any(r["direction"] == "in" and r["kind"] == 3 for r in rows)

    # Four changes, recorded with who and what.
    changes = await sync_to_async(
        lambda: list(RoutingChange.objects.filter(organization=charger.organization).order_by("pk"))
    )()
    assert [c.actor for c in changes] == ["migration"] * 4
    assert "cut-over from legacy" in changes[2].summary
    assert "cut-over from local" in changes[3].summary
    assert changes[3].after["routes"] == changes[1].after["routes"]


def export_rows(charger: Charger, leg: str) -> list[dict[str, Any]]:
    """``GET /api/v1/frames/export.ndjson`` for one charger's leg, as an operator."""
    user = User.objects.create_user("operator", password="a-long-password")
    Membership.objects.create(user=user, organization=charger.organization, role=Role.OPERATOR)
    client = APIClient()
    client.force_authenticate(user)
    response = client.get("/api/v1/frames/export.ndjson", {"charger": charger.identity, "leg": leg})
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    return [json.loads(line) for line in body.splitlines() if line]


def _contains_in_order(haystack: list[str], needle: list[str]) -> bool:
    position = 0
    for item in haystack:
        if position < len(needle) and item == needle[position]:
            position += 1
    return position == len(needle)


async def test_a_cut_over_and_roll_back_with_a_session_running(
    gateway: ServerProcess, charger: Charger, id_token: Any, upstreams: Any, tmp_path: Path
) -> None:
    identity = charger.identity
    legacy = upstreams("legacy", 5000)
    legacy_primary = {
        "charger_id": identity,
        "upstreams": [
            {"url": legacy.url, "role": "primary"},
            {"url": "local", "role": "observer"},
        ],
    }
    local_primary = {
        "charger_id": identity,
        "upstreams": [
            {"url": "local", "role": "primary"},
            {"url": legacy.url, "role": "observer"},
        ],
    }
    await routing_apply(tmp_path, "legacy", legacy_primary)
    async with charger_socket(gateway, identity) as cp:
        story = Story(cp)
        await story.call(
            "BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "Wallbox 22"}
        )
        transaction_id = await story.start(0)
        assert transaction_id == 5000
        await story.call("MeterValues", meter(transaction_id, 1000))

        connects = len(legacy.connects(identity))
        await routing_apply(tmp_path, "cut-over", local_primary)
        await eventually(lambda: len(legacy.connects(identity)) > connects, what="re-dial")
        await story.call("MeterValues", meter(transaction_id, 2000))

        connects = len(legacy.connects(identity))
        await routing_apply(tmp_path, "roll-back", legacy_primary)
        await eventually(lambda: len(legacy.connects(identity)) > connects, what="re-dial")
        await story.call("MeterValues", meter(transaction_id, 3000))
        await story.stop(transaction_id, 3500)

        assert not cp.closed.done()
        for message_id, _, _ in story.sent:
            assert len(cp.answers_to(message_id)) == 1, message_id

    # legacy saw the whole transaction under its own id, as primary and as observer.
    await eventually(
        lambda: "StopTransaction" in [a for _, a, _ in legacy.calls(identity)], what="the stop"
    )
    assert used(legacy, identity) == [5000, 5000, 5000, 5000]


async def test_a_cut_over_to_local_mid_transaction_ends_local_s_own_session_at_the_stop(
    gateway: ServerProcess, charger: Charger, id_token: Any, upstreams: Any, tmp_path: Path
) -> None:
    """local observed the start under its own id; once primary, it maps the charger's id (the
    former primary's) back to it, so the charger's stop ends local's session."""
    identity = charger.identity
    legacy = upstreams("legacy", 5000)
    legacy_primary = {
        "charger_id": identity,
        "upstreams": [
            {"url": legacy.url, "role": "primary"},
            {"url": "local", "role": "observer"},
        ],
    }
    local_primary = {
        "charger_id": identity,
        "upstreams": [
            {"url": "local", "role": "primary"},
            {"url": legacy.url, "role": "observer"},
        ],
    }
    await routing_apply(tmp_path, "legacy", legacy_primary)
    async with charger_socket(gateway, identity) as cp:
        story = Story(cp)
        await story.call(
            "BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "Wallbox 22"}
        )
        transaction_id = await story.start(10_000)
        assert transaction_id == 5000
        await story.call("MeterValues", meter(transaction_id, 11_000))

        def local_session() -> Session | None:
            return Session.objects.filter(charger=charger).first()

        observed = await eventually(local_session, what="local's copy of the start")
        assert observed.transaction_id != "5000"  # local's own id while it observes

        connects = len(legacy.connects(identity))
        await routing_apply(tmp_path, "cut-over", local_primary)
        await eventually(lambda: len(legacy.connects(identity)) > connects, what="re-dial")
        await story.call("MeterValues", meter(transaction_id, 12_000))

        # local controls the charger now: a remote stop of its session names the charger's id.
        def remote_stop() -> None:
            command_create(
                charger=Charger.objects.get(pk=charger.pk),
                action="RemoteStopTransaction",
                payload={"transactionId": int(observed.transaction_id)},
            )

        await sync_to_async(remote_stop)()
        received = await eventually(
            lambda: [c for c in cp.calls_received if c[2] == "RemoteStopTransaction"],
            what="the remote stop at the charger",
        )
        assert received[0][3] == {"transactionId": 5000}
        await story.stop(transaction_id, 13_500)
        assert not cp.closed.done()

    session = await eventually(
        lambda: Session.objects.filter(charger=charger, state="Completed").first(),
        what="local's session completed",
    )
    assert session.pk == observed.pk and session.transaction_id == observed.transaction_id
    assert session.energy_wh == 3500
    assert await sync_to_async(Session.objects.filter(charger=charger).count)() == 1
    assert not await sync_to_async(UnmatchedStop.objects.filter(charger=charger).exists)()
    # legacy, observing now, saw the rest of its transaction under its own id.
    await eventually(
        lambda: "StopTransaction" in [a for _, a, _ in legacy.calls(identity)], what="the stop"
    )
    assert used(legacy, identity) == [5000, 5000, 5000]


async def test_a_former_primary_s_ids_survive_a_gateway_restart_in_the_middle_of_a_session(
    gateway: ServerProcess, charger: Charger, id_token: Any, upstreams: Any, tmp_path: Path
) -> None:
    """The gateway holding the charger dies mid-session; the charger comes back to a new one,
    and a cut-over makes the former primary an observer: it still gets the rest of the
    transaction under the id it issued (kept in the database, not only in the dead process)."""
    identity = charger.identity
    legacy = upstreams("legacy", 5000)
    await routing_apply(
        tmp_path,
        "legacy",
        {
            "charger_id": identity,
            "upstreams": [
                {"url": legacy.url, "role": "primary"},
                {"url": "local", "role": "observer"},
            ],
        },
    )
    first = await asyncio.to_thread(ServerProcess, ROUTING_ENV)
    try:
        async with charger_socket(first, identity) as cp:
            story = Story(cp)
            await story.call(
                "BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "Wallbox 22"}
            )
            transaction_id = await story.start(10_000)
            assert transaction_id == 5000
            await story.call("MeterValues", meter(transaction_id, 11_000))
            # local recorded the start and both ids are in its map: the transaction is under
            # way everywhere when the process dies.
            await eventually(
                lambda: TransactionMap.objects.filter(
                    charger=charger,
                    upstream__name="local",
                    charger_transaction_id=5000,
                    upstream_transaction_id__isnull=False,
                ).exists(),
                what="local's map of the transaction",
            )
            first.process.kill()  # no goodbye: whatever it held in memory is gone
            await asyncio.to_thread(first.process.wait)
    finally:
        await asyncio.to_thread(first.stop)

    second = await asyncio.to_thread(ServerProcess, ROUTING_ENV)
    try:
        async with charger_socket(second, identity) as cp:
            story = Story(cp)
            await story.call(
                "BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "Wallbox 22"}
            )
            connects = len(legacy.connects(identity))
            await routing_apply(
                tmp_path,
                "cut-over",
                {
                    "charger_id": identity,
                    "upstreams": [
                        {"url": "local", "role": "primary"},
                        {"url": legacy.url, "role": "observer"},
                    ],
                },
            )
            await eventually(lambda: len(legacy.connects(identity)) > connects, what="re-dial")
            await story.call("MeterValues", meter(transaction_id, 12_000))
            await story.stop(transaction_id, 13_500)

            # legacy, observing now, saw the rest of its transaction under its own id.
            await eventually(
                lambda: "StopTransaction" in [a for _, a, _ in legacy.calls(identity)],
                what="legacy's copy of the stop",
            )
            assert used(legacy, identity) == [5000, 5000, 5000]
            session = await eventually(
                lambda: Session.objects.filter(charger=charger, state="Completed").first(),
                what="local's session completed",
            )
            assert session.energy_wh == 3500
    finally:
        await asyncio.to_thread(second.stop)
