"""The live path end to end: a charger on a real socket to the real gateway process, routed to
real upstream server processes that record everything they receive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connections

from chargers.models import Alert, AlertCondition, Charger, Frame, MeterSample, Session
from routing.models import (
    LegStatus,
    OutboxEntry,
    Route,
    RouteLeg,
    TransactionMap,
    Upstream,
)
from routing.services import upstream_local
from tests.conftest import CHARGER_PASSWORD, ServerProcess, wait_until_quiet

from .harness import ROUTING_ENV, RawCharger, UpstreamProcess, charger_socket, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

T0 = "2026-03-01T12:00:00Z"


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

    def start(name: str, tx_base: int = 1000) -> UpstreamProcess:
        process = UpstreamProcess(name, tx_base, tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def route_to(
    charger: Charger,
    legs: list[tuple[UpstreamProcess | str, str]],
    *,
    allowed: dict[str, list[str]] | None = None,
    credentials: dict[str, dict[str, str]] | None = None,
    **policy: Any,
) -> Route:
    route = Route.objects.create(scope="charger", charger=charger, **policy)
    for target, role in legs:
        if target == "local":
            upstream = upstream_local()
        else:
            assert isinstance(target, UpstreamProcess)
            upstream, _ = Upstream.objects.update_or_create(
                name=target.name,
                defaults={"url": target.url, **(credentials or {}).get(target.name, {})},
            )
        RouteLeg.objects.create(
            route=route,
            upstream=upstream,
            role=role,
            allowed_actions=(allowed or {}).get(upstream.name, []),
        )
    return route


def boot_payload() -> dict[str, Any]:
    return {"chargePointVendor": "ACME", "chargePointModel": "Wallbox 22"}


def status(connector: int, state: str) -> dict[str, Any]:
    return {"connectorId": connector, "errorCode": "NoError", "status": state, "timestamp": T0}


def meter(transaction_id: int | None, wh: int) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "connectorId": 1,
        "meterValue": [
            {
                "timestamp": f"2026-03-01T12:{wh % 60:02d}:{wh // 60 % 60:02d}Z",
                "sampledValue": [{"value": str(wh)}],
            }
        ],
    }
    if transaction_id is not None:
        payload["transactionId"] = transaction_id
    return payload


async def run_session(cp: RawCharger, *, samples: int = 3) -> int:
    """Boot, statuses, a 1.6 transaction with meter values, its stop; the charger's tx id."""
    assert (await cp.call("BootNotification", boot_payload()))[0] == 3
    assert (await cp.call("StatusNotification", status(0, "Available")))[0] == 3
    assert (await cp.call("StatusNotification", status(1, "Preparing")))[0] == 3
    assert (await cp.call("Authorize", {"idTag": "TAG-OK"}))[0] == 3
    started = await cp.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 1000, "timestamp": T0},
    )
    assert started[0] == 3, started
    transaction_id = started[2]["transactionId"]
    assert (await cp.call("StatusNotification", status(1, "Charging")))[0] == 3
    for n in range(samples):
        assert (await cp.call("MeterValues", meter(transaction_id, 1000 + 500 * (n + 1))))[0] == 3
    stopped = await cp.call(
        "StopTransaction",
        {"transactionId": transaction_id, "meterStop": 1000 + 500 * samples + 100, "timestamp": T0},
    )
    assert stopped[0] == 3
    return transaction_id


def actions(calls: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    return [action for _, action, _ in calls]


SESSION_ACTIONS = [
    "BootNotification",
    "StatusNotification",
    "StatusNotification",
    "Authorize",
    "StartTransaction",
    "StatusNotification",
    "MeterValues",
    "MeterValues",
    "MeterValues",
    "StopTransaction",
]


# --- The primary answers, observers get copies -----------------------------------------------


async def test_a_routed_16_session_one_answer_per_call_own_ids_and_remapped_transactions(
    gateway: ServerProcess, charger: Charger, id_token: Any, upstreams: Any
) -> None:
    legacy = upstreams("legacy", 5000)
    analytics = upstreams("analytics", 7000)
    await sync_to_async(route_to)(
        charger, [(legacy, "primary"), (analytics, "observer"), ("local", "observer")]
    )
    identity = charger.identity
    async with charger_socket(gateway, identity) as cp:
        transaction_id = await run_session(cp)
        # The charger uses the primary's transaction id.
        assert transaction_id == 5000
        # Exactly one answer per CALL, under the charger's own id.
        for n in range(1, len(SESSION_ACTIONS) + 1):
            assert len(cp.answers_to(f"cp-{n}")) == 1
        await eventually(
            lambda: len(analytics.calls(identity)) >= len(SESSION_ACTIONS), what="copies"
        )
        await asyncio.sleep(0.5)
        assert len(cp.frames) == len(SESSION_ACTIONS)
    primary_calls = legacy.calls(identity)
    observer_calls = await eventually(
        lambda: analytics.calls(identity) if len(analytics.calls(identity)) else None
    )
    assert actions(primary_calls) == SESSION_ACTIONS
    assert actions(observer_calls) == SESSION_ACTIONS
    # Each upstream has its own message ids, none of them the charger's.
    primary_ids = {message_id for message_id, _, _ in primary_calls}
    observer_ids = {message_id for message_id, _, _ in observer_calls}
    charger_ids = {f"cp-{n}" for n in range(1, len(SESSION_ACTIONS) + 1)}
    assert len(primary_ids) == len(observer_ids) == len(SESSION_ACTIONS)
    assert not primary_ids & observer_ids and not primary_ids & charger_ids
    assert not observer_ids & charger_ids
    # The observer saw its own transaction id (7000) in every later frame; the primary its own.
    for _, action, payload in observer_calls:
        if action in ("MeterValues", "StopTransaction"):
            assert payload["transactionId"] == 7000
    for _, action, payload in primary_calls:
        if action in ("MeterValues", "StopTransaction"):
            assert payload["transactionId"] == 5000
    assert [c[0] for c in cp.frames] == [3] * len(SESSION_ACTIONS)

    # local observed: it recorded the session under its own transaction id, with its samples.
    def recorded() -> Session | None:
        return Session.objects.filter(charger=charger, state="Completed").first()

    session = await eventually(recorded, what="local's session")
    assert session.transaction_id != "5000"
    assert await sync_to_async(MeterSample.objects.filter(session=session).count)() == 3
    maps = await sync_to_async(
        lambda: sorted(
            TransactionMap.objects.filter(charger=charger).values_list(
                "upstream__name", "charger_transaction_id", "upstream_transaction_id"
            )
        )
    )()
    assert maps == [
        ("analytics", 5000, 7000),
        # The primary's own id is kept too, for it to follow the transaction after a cut-over.
        ("legacy", 5000, 5000),
        ("local", 5000, int(session.transaction_id)),
    ]

    # The journal has every frame on every leg, with original and rewritten ids.
    def legs() -> set[str]:
        return set(Frame.objects.filter(charger_identity=identity).values_list("leg", flat=True))

    await eventually(lambda: legs() >= {"charger", "legacy", "analytics", "local"}, what="journal")
    forwarded = await sync_to_async(
        lambda: Frame.objects.filter(
            charger_identity=identity, leg="legacy", direction="out", action="StartTransaction"
        ).first()
    )()
    assert forwarded.original_message_id == "cp-5"
    assert forwarded.message_id in primary_ids
    answered = await sync_to_async(
        lambda: Frame.objects.filter(
            charger_identity=identity, leg="analytics", direction="in", action="StartTransaction"
        ).first()
    )()
    assert answered is not None and answered.original_message_id == "cp-5"
    assert answered.message_id in observer_ids and '"transactionId":7000' in answered.raw.replace(
        " ", ""
    )
    assert await sync_to_async(OutboxEntry.objects.filter(charger=charger).exists)() is False


async def test_a_201_charger_is_routed_the_same_way(
    gateway: ServerProcess, make_charger: Any, upstreams: Any
) -> None:
    charger = await sync_to_async(make_charger)("CP-201")
    legacy = upstreams("legacy", 5000)
    analytics = upstreams("analytics", 7000)
    await sync_to_async(route_to)(charger, [(legacy, "primary"), (analytics, "observer")])
    identity = charger.identity
    tx = "tx-201-0001"
    sent = [
        (
            "BootNotification",
            {"chargingStation": {"model": "W", "vendorName": "ACME"}, "reason": "PowerUp"},
        ),
        (
            "StatusNotification",
            {"timestamp": T0, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
        ),
        (
            "TransactionEvent",
            {
                "eventType": "Started",
                "timestamp": T0,
                "triggerReason": "Authorized",
                "seqNo": 0,
                "transactionInfo": {"transactionId": tx},
                "idToken": {"idToken": "TAG-OK", "type": "ISO14443"},
                "evse": {"id": 1, "connectorId": 1},
            },
        ),
        (
            "TransactionEvent",
            {
                "eventType": "Ended",
                "timestamp": T0,
                "triggerReason": "StopAuthorized",
                "seqNo": 1,
                "transactionInfo": {"transactionId": tx, "stoppedReason": "Local"},
            },
        ),
    ]
    async with charger_socket(gateway, identity, subprotocol="ocpp2.0.1") as cp:
        for action, payload in sent:
            answer = await cp.call(action, payload)
            assert answer[0] == 3, answer
        await eventually(lambda: len(analytics.calls(identity)) == len(sent), what="copies")
        assert len(cp.frames) == len(sent)
    for upstream in (legacy, analytics):
        calls = upstream.calls(identity)
        assert actions(calls) == [action for action, _ in sent]
        assert {c[0] for c in calls}.isdisjoint({f"cp-{n}" for n in range(1, 5)})
        # 2.x transaction ids come from the charger and pass through unchanged.
        for _, action, payload in calls:
            if action == "TransactionEvent":
                assert payload["transactionInfo"]["transactionId"] == tx
        assert upstream.connects(identity)[0]["subprotocol"] == "ocpp2.0.1"


# --- CALLs from upstreams ----------------------------------------------------------------------


async def test_primary_calls_reach_the_charger_observer_calls_are_refused_unless_allowed(
    gateway: ServerProcess, charger: Charger, id_token: Any, upstreams: Any
) -> None:
    legacy = upstreams("legacy", 5000)
    analytics = upstreams("analytics", 7000)
    grid = upstreams("grid", 9000)
    await sync_to_async(route_to)(
        charger,
        [(legacy, "primary"), (analytics, "observer"), (grid, "observer")],
        allowed={"grid": ["RemoteStopTransaction"]},
        protected_keys=["CentralSystemUrl"],
    )
    identity = charger.identity
    async with charger_socket(
        gateway, identity, answers={"GetConfiguration": {"configurationKey": []}}
    ) as cp:
        transaction_id = 0
        assert (await cp.call("BootNotification", boot_payload()))[0] == 3
        started = await cp.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": T0},
        )
        transaction_id = started[2]["transactionId"]
        await eventually(
            lambda: [c for c in grid.calls(identity) if c[1] == "StartTransaction"],
            what="grid's copy of the start",
        )
        await asyncio.sleep(0.5)  # grid's answer, and with it its transaction id, is mapped

        # The primary's CALL reaches the charger with a fresh id; the answer goes back under its.
        result = await legacy.control(
            op="call", charger=identity, action="GetConfiguration", payload={}
        )
        assert result["answer"] == [3, result["message_id"], {"configurationKey": []}]
        seen = cp.calls_received[-1]
        assert seen[2] == "GetConfiguration" and seen[1] != result["message_id"]

        # An observer's CALL is refused with a CALLERROR; the charger never sees it.
        before = len(cp.calls_received)
        refused = await analytics.control(
            op="call", charger=identity, action="Reset", payload={"type": "Hard"}
        )
        assert refused["answer"][0] == 4
        assert refused["answer"][2] == "SecurityError"
        assert "legacy" in refused["answer"][3]
        # A protected key is refused to the primary too.
        protected = await legacy.control(
            op="call",
            charger=identity,
            action="ChangeConfiguration",
            payload={"key": "CentralSystemUrl", "value": "ws://elsewhere/"},
        )
        assert protected["answer"][0] == 4 and "CentralSystemUrl" in protected["answer"][3]
        assert len(cp.calls_received) == before

        # An allowed observer action goes through, its transaction id mapped to the charger's.
        stop = await grid.control(
            op="call",
            charger=identity,
            action="RemoteStopTransaction",
            payload={"transactionId": 9000},
        )
        assert stop["answer"][0] == 3
        assert cp.calls_received[-1][2:] == [
            "RemoteStopTransaction",
            {"transactionId": transaction_id},
        ]
        unknown = await grid.control(
            op="call",
            charger=identity,
            action="RemoteStopTransaction",
            payload={"transactionId": 123456},
        )
        assert unknown["answer"][0] == 4
        assert len(cp.calls_received) == before + 1


async def test_local_observing_refuses_commands_naming_the_controller(
    gateway: ServerProcess, charger: Charger, upstreams: Any
) -> None:
    from chargers.command_services import ControlledElsewhere, command_create

    legacy = upstreams("legacy", 5000)
    await sync_to_async(route_to)(charger, [(legacy, "primary"), ("local", "observer")])
    async with charger_socket(gateway, charger.identity) as cp:
        assert (await cp.call("BootNotification", boot_payload()))[0] == 3

        def create() -> None:
            command_create(
                charger=Charger.objects.get(pk=charger.pk), action="Reset", payload={"type": "Soft"}
            )

        with pytest.raises(ControlledElsewhere, match="legacy"):
            await sync_to_async(create)()


# --- Observers down or slow --------------------------------------------------------------------


async def test_an_observer_killed_mid_session_and_restarted_loses_nothing_in_order(
    gateway: ServerProcess, charger: Charger, id_token: Any, upstreams: Any
) -> None:
    legacy = upstreams("legacy", 5000)
    analytics = upstreams("analytics", 7000)
    await sync_to_async(route_to)(charger, [(legacy, "primary"), (analytics, "observer")])
    identity = charger.identity
    async with charger_socket(gateway, identity) as cp:
        assert (await cp.call("BootNotification", boot_payload()))[0] == 3
        assert (await cp.call("StatusNotification", status(1, "Preparing")))[0] == 3
        started = await cp.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": T0},
        )
        transaction_id = started[2]["transactionId"]
        await eventually(
            lambda: [c for c in analytics.calls(identity) if c[1] == "StartTransaction"]
        )
        await asyncio.sleep(0.5)
        analytics.kill()
        # The charger goes on, answered by the primary as if nothing happened.
        assert (await cp.call("StatusNotification", status(1, "Charging")))[0] == 3
        for n in range(5):
            answer = await cp.call("MeterValues", meter(transaction_id, 100 * (n + 1)))
            assert answer[0] == 3
        assert (await cp.call("MeterValues", meter(None, 42)))[0] == 3
        stopped = await cp.call(
            "StopTransaction", {"transactionId": transaction_id, "meterStop": 600, "timestamp": T0}
        )
        assert stopped[0] == 3
        await eventually(
            lambda: OutboxEntry.objects.filter(charger=charger).count() == 8,
            what="eight copies waiting",
        )

        def leg_down() -> bool:
            return LegStatus.objects.filter(
                charger=charger, upstream__name="analytics", connected=False
            ).exists()

        await eventually(leg_down, what="the leg marked down")

        def upstream_down() -> bool:
            return (
                AlertCondition.objects.filter(charger=charger, kind="upstream_down").exists()
                or Alert.objects.filter(
                    charger=charger, kind="upstream_down", resolved_at__isnull=True
                ).exists()
            )

        await eventually(upstream_down, what="the upstream_down condition")
        before_restart = len(analytics.calls(identity))
        analytics.start()
        await eventually(
            lambda: not OutboxEntry.objects.filter(charger=charger).exists(),
            timeout=60,
            what="the outbox drained",
        )
        after = analytics.calls(identity)[before_restart:]
        status_row = await sync_to_async(LegStatus.objects.get)(
            charger=charger, upstream__name="analytics"
        )
        assert status_row.connected and status_row.reconnects >= 1
        await eventually(lambda: not upstream_down(), what="the condition cleared")
    # The cached boot and latest status first, with fresh ids; then the backlog in order (the
    # status just replayed is not sent twice).
    assert actions(after) == [
        "BootNotification",
        "StatusNotification",
        "MeterValues",
        "MeterValues",
        "MeterValues",
        "MeterValues",
        "MeterValues",
        "MeterValues",
        "StopTransaction",
    ]
    assert after[1][2]["status"] == "Charging"
    assert [c[2].get("transactionId") for c in after[2:]] == [7000] * 5 + [None, 7000]
    assert [c[2]["meterValue"][0]["sampledValue"][0]["value"] for c in after[2:8]] == [
        "100",
        "200",
        "300",
        "400",
        "500",
        "42",
    ]
    assert len({c[0] for c in analytics.calls(identity)}) == len(analytics.calls(identity))


# --- The primary down or slow ------------------------------------------------------------------


async def test_an_unreachable_primary_closes_the_charger_after_the_grace_period(
    gateway: ServerProcess, charger: Charger, upstreams: Any
) -> None:
    legacy = upstreams("legacy", 5000)
    legacy.kill()
    await sync_to_async(route_to)(
        charger, [(legacy, "primary"), ("local", "observer")], primary_grace_seconds=2
    )
    async with charger_socket(gateway, charger.identity) as cp:
        # Never a made-up answer: the router does not accept a boot the primary has not seen;
        # after the grace period the charger's connection closes, so its offline queue takes over.
        with pytest.raises(ConnectionError):
            await cp.call("BootNotification", boot_payload())
        code = await asyncio.wait_for(cp.closed, 30)
        assert [frame[0] for frame in cp.frames] in ([], [4])
    assert code == 4001
    assert await sync_to_async(Session.objects.count)() == 0


async def test_a_primary_down_with_keep_open_leaves_the_charger_connected(
    gateway: ServerProcess, charger: Charger, upstreams: Any
) -> None:
    legacy = upstreams("legacy", 5000)
    await sync_to_async(route_to)(
        charger, [(legacy, "primary")], primary_grace_seconds=1, primary_down="keep_open"
    )
    async with charger_socket(gateway, charger.identity) as cp:
        assert (await cp.call("BootNotification", boot_payload()))[0] == 3
        legacy.kill()
        refused = await cp.call("Heartbeat", {})
        assert refused[0] == 4
        await asyncio.sleep(2)
        assert not cp.closed.done()
        legacy.start()
        answered = await eventually_answered(cp)
        assert answered[0] == 3
    # The primary that came back got the cached boot first, then the charger's CALL.
    assert actions(legacy.calls(charger.identity))[-2:] == ["BootNotification", "Heartbeat"]


async def eventually_answered(cp: RawCharger) -> list[Any]:
    for _ in range(60):
        answer = await cp.call("Heartbeat", {})
        if answer[0] == 3:
            return answer
        await asyncio.sleep(0.5)
    raise AssertionError("the primary never came back")


async def test_a_slow_primary_gets_the_charger_a_callerror_and_only_one_answer(
    gateway: ServerProcess, charger: Charger, upstreams: Any
) -> None:
    legacy = upstreams("legacy", 5000)
    await sync_to_async(route_to)(charger, [(legacy, "primary")])
    async with charger_socket(gateway, charger.identity) as cp:
        assert (await cp.call("BootNotification", boot_payload()))[0] == 3
        await legacy.control(op="delay", seconds=7)
        late = await cp.call("Heartbeat", {})
        assert late[0] == 4 and "did not answer" in late[3]
        await asyncio.sleep(5)  # the primary's late answer arrives, and is dropped
        assert len(cp.answers_to("cp-2")) == 1
        await legacy.control(op="delay", seconds=0)
        assert (await cp.call("Heartbeat", {}))[0] == 3


# --- Credentials -------------------------------------------------------------------------------


async def test_credentials_are_forwarded_to_the_primary_only(
    gateway: ServerProcess, charger: Charger, upstreams: Any
) -> None:
    legacy = upstreams("legacy", 5000)
    analytics = upstreams("analytics", 7000)
    grid = upstreams("grid", 9000)
    await sync_to_async(route_to)(
        charger,
        [(legacy, "primary"), (analytics, "observer"), (grid, "observer")],
        credentials={
            "legacy": {"credentials": "forward"},
            "analytics": {"credentials": "forward"},
            "grid": {"credentials": "basic_upstream", "password": "grid-own-secret"},
        },
    )
    identity = charger.identity
    async with charger_socket(gateway, identity) as cp:
        assert (await cp.call("BootNotification", boot_payload()))[0] == 3
        await eventually(lambda: analytics.connects(identity) and grid.connects(identity))
    import base64

    def decoded(entry: dict[str, Any]) -> str:
        header = entry["authorization"]
        return base64.b64decode(header.split()[1]).decode() if header else ""

    assert decoded(legacy.connects(identity)[0]) == f"{identity}:{CHARGER_PASSWORD}"
    assert decoded(analytics.connects(identity)[0]) == ""
    assert decoded(grid.connects(identity)[0]) == f"{identity}:grid-own-secret"
    for upstream in (analytics, grid):
        assert CHARGER_PASSWORD not in upstream.record.read_text()


# --- Bounds, route changes and reconnects -------------------------------------------------------


async def test_a_full_outbox_drops_meter_samples_outside_transactions_first(
    gateway: ServerProcess, charger: Charger, id_token: Any, upstreams: Any
) -> None:
    legacy = upstreams("legacy", 5000)
    analytics = upstreams("analytics", 7000)
    analytics.kill()
    await sync_to_async(route_to)(charger, [(legacy, "primary"), (analytics, "observer")])
    identity = charger.identity
    async with charger_socket(gateway, identity) as cp:
        assert (await cp.call("BootNotification", boot_payload()))[0] == 3
        started = await cp.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": T0},
        )
        transaction_id = started[2]["transactionId"]
        for n in range(15):
            assert (await cp.call("MeterValues", meter(None, 1000 + n)))[0] == 3
        for n in range(10):
            assert (await cp.call("MeterValues", meter(transaction_id, 100 + n)))[0] == 3
        stopped = await cp.call(
            "StopTransaction", {"transactionId": transaction_id, "meterStop": 200, "timestamp": T0}
        )
        assert stopped[0] == 3
        # 28 copies for a bound of 20: the 8 oldest samples outside the transaction went.
        await eventually(
            lambda: LegStatus.objects.filter(
                charger=charger, upstream__name="analytics", dropped=8
            ).exists(),
            what="eight drops counted",
        )
        assert await sync_to_async(OutboxEntry.objects.filter(charger=charger).count)() == 20
        analytics.start()
        await eventually(
            lambda: not OutboxEntry.objects.filter(charger=charger).exists(),
            timeout=60,
            what="the outbox drained",
        )
    calls = analytics.calls(identity)
    assert actions(calls) == ["BootNotification", "StartTransaction"] + ["MeterValues"] * 17 + [
        "StopTransaction"
    ]
    values = [c[2]["meterValue"][0]["sampledValue"][0]["value"] for c in calls[2:19]]
    assert values == [str(1000 + n) for n in range(8, 15)] + [str(100 + n) for n in range(10)]
    assert [c[2].get("transactionId") for c in calls[9:]] == [7000] * 11


async def test_a_route_change_redials_only_the_changed_legs_and_keeps_the_charger_socket(
    gateway: ServerProcess, charger: Charger, upstreams: Any, tmp_path: Path
) -> None:
    import json

    from django.core.management import call_command

    legacy = upstreams("legacy", 5000)
    analytics = upstreams("analytics", 7000)
    await sync_to_async(route_to)(charger, [(legacy, "primary")])
    identity = charger.identity
    async with charger_socket(gateway, identity) as cp:
        assert (await cp.call("BootNotification", boot_payload()))[0] == 3
        assert (await cp.call("StatusNotification", status(1, "Available")))[0] == 3
        policy = tmp_path / "policy.json"
        policy.write_text(
            json.dumps(
                {
                    "charger_id": identity,
                    "upstreams": [
                        {"url": legacy.url, "role": "primary"},
                        {"url": analytics.url, "role": "observer"},
                    ],
                }
            )
        )
        await sync_to_async(call_command)("routing_apply", str(policy), "--actor", "ops")
        # The new observer is dialled and gets the cached boot and status first.
        await eventually(
            lambda: (
                actions(analytics.calls(identity)) == ["BootNotification", "StatusNotification"]
            ),
            what="the new observer caught up",
        )
        assert analytics.calls(identity)[1][2]["status"] == "Available"
        answer = await cp.call("Heartbeat", {})
        assert answer[0] == 3
        assert not cp.closed.done()
    # The unchanged primary kept its leg.
    assert len(legacy.connects(identity)) == 1


async def test_a_reconnecting_charger_s_new_legs_take_over_from_the_old_ones(
    gateway: ServerProcess, charger: Charger, upstreams: Any
) -> None:
    legacy = upstreams("legacy", 5000)
    analytics = upstreams("analytics", 7000)
    await sync_to_async(route_to)(charger, [(legacy, "primary"), (analytics, "observer")])
    identity = charger.identity
    async with charger_socket(gateway, identity) as old:
        assert (await old.call("BootNotification", boot_payload()))[0] == 3
        await eventually(lambda: analytics.calls(identity), what="the first copies")
        async with charger_socket(gateway, identity) as new:
            assert await asyncio.wait_for(old.closed, 30) == 4000
            assert (await new.call("BootNotification", boot_payload()))[0] == 3
            assert (await new.call("StatusNotification", status(1, "Available")))[0] == 3
            await eventually(
                lambda: actions(analytics.calls(identity))[-1:] == ["StatusNotification"],
                what="the new leg's copies",
            )
            await asyncio.sleep(1)  # the old connection's legs are gone by now

            def leg_states() -> list[tuple[str, bool]]:
                return list(
                    LegStatus.objects.filter(charger=charger)
                    .order_by("upstream__name")
                    .values_list("upstream__name", "connected")
                )

            # The old legs closing did not mark the new ones down.
            assert await sync_to_async(leg_states)() == [("analytics", True), ("legacy", True)]
            assert (await new.call("Heartbeat", {}))[0] == 3
    # Each upstream saw the old connection's leg close and one new leg.
    for upstream in (legacy, analytics):
        events = [e["event"] for e in upstream.entries(identity) if e["event"] != "in"]
        assert events.count("connect") == 2


async def test_a_charger_on_local_alone_routed_live_to_upstreams_replays_its_boot_to_them(
    gateway: ServerProcess, charger: Charger, upstreams: Any, tmp_path: Path
) -> None:
    import json

    from django.core.management import call_command

    legacy = upstreams("legacy", 5000)
    analytics = upstreams("analytics", 7000)
    identity = charger.identity
    async with charger_socket(gateway, identity) as cp:
        assert (await cp.call("BootNotification", boot_payload()))[0] == 3
        assert (await cp.call("StatusNotification", status(1, "Available")))[0] == 3

        def journaled() -> bool:
            return Frame.objects.filter(
                charger_identity=identity, action="StatusNotification", direction="in"
            ).exists()

        await eventually(journaled, what="the status in the journal")
        policy = tmp_path / "policy.json"
        policy.write_text(
            json.dumps(
                {
                    "charger_id": identity,
                    "upstreams": [
                        {"url": legacy.url, "role": "primary"},
                        {"url": analytics.url, "role": "observer"},
                        {"upstream": "local", "role": "observer"},
                    ],
                }
            )
        )
        await sync_to_async(call_command)("routing_apply", str(policy), "--actor", "ops")
        await eventually(
            lambda: (
                actions(analytics.calls(identity)) == ["BootNotification", "StatusNotification"]
            ),
            what="the observer caught up",
        )
        # The next CALL goes to the new primary, after the boot and status it had not seen.
        answer = await cp.call("Heartbeat", {})
        assert answer[0] == 3
        assert actions(legacy.calls(identity)) == [
            "BootNotification",
            "StatusNotification",
            "Heartbeat",
        ]
        assert legacy.calls(identity)[0][2] == boot_payload()
        assert not cp.closed.done()


async def test_copies_wait_for_an_observer_s_late_start_answer_and_never_carry_a_wrong_id(
    gateway: ServerProcess, charger: Charger, id_token: Any, upstreams: Any
) -> None:
    legacy = upstreams("legacy", 5000)
    analytics = upstreams("analytics", 7000)
    await sync_to_async(route_to)(charger, [(legacy, "primary"), (analytics, "observer")])
    identity = charger.identity
    async with charger_socket(gateway, identity) as cp:
        assert (await cp.call("BootNotification", boot_payload()))[0] == 3
        await eventually(lambda: analytics.calls(identity), what="the boot's copy")
        # Slower than the gateway waits (4 s): every copy of the start times out and is sent again.
        await analytics.control(op="delay", seconds=6)
        started = await cp.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": T0},
        )
        transaction_id = started[2]["transactionId"]
        for n in range(3):
            assert (await cp.call("MeterValues", meter(transaction_id, 10 * (n + 1))))[0] == 3
        await eventually(
            lambda: actions(analytics.calls(identity)).count("StartTransaction") >= 2,
            what="the start sent again",
        )
        assert "MeterValues" not in actions(analytics.calls(identity))
        await analytics.control(op="delay", seconds=0)
        await eventually(
            lambda: not OutboxEntry.objects.filter(charger=charger).exists(),
            timeout=60,
            what="the outbox drained",
        )
    calls = analytics.calls(identity)
    mapped = await sync_to_async(
        lambda: TransactionMap.objects.get(charger=charger, upstream__name="analytics")
    )()
    assert mapped.charger_transaction_id == transaction_id
    meters = [c for c in calls if c[1] == "MeterValues"]
    assert [c[2]["transactionId"] for c in meters] == [mapped.upstream_transaction_id] * 3
    assert mapped.upstream_transaction_id != transaction_id
    # Nothing of the transaction went before the start was answered.
    last_start = max(i for i, c in enumerate(calls) if c[1] == "StartTransaction")
    assert all(i > last_start for i, c in enumerate(calls) if c[1] == "MeterValues")


# --- Observers that cannot take a transaction's copies ----------------------------------------


@pytest.fixture
def short_hold_gateway(transactional_db: Any) -> Iterator[ServerProcess]:
    """A gateway whose observers wait 2 s, not 5 minutes, for a transaction's id."""
    process = ServerProcess(extra_env={**ROUTING_ENV, "CPMS_ROUTING_HOLD_TIMEOUT": "2"})
    try:
        yield process
    finally:
        process.stop()
        wait_until_quiet()


async def test_an_observer_added_mid_transaction_drops_its_copies_counted_and_moves_on(
    short_hold_gateway: ServerProcess,
    charger: Charger,
    id_token: Any,
    upstreams: Any,
    tmp_path: Path,
) -> None:
    legacy = upstreams("legacy", 5000)
    analytics = upstreams("analytics", 7000)
    await sync_to_async(route_to)(charger, [(legacy, "primary")])
    identity = charger.identity
    async with charger_socket(short_hold_gateway, identity) as cp:
        assert (await cp.call("BootNotification", boot_payload()))[0] == 3
        started = await cp.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": T0},
        )
        transaction_id = started[2]["transactionId"]
        # analytics joins in the middle of the transaction: it never saw the start.
        await sync_to_async(Upstream.objects.create)(name="analytics", url=analytics.url)
        policy = tmp_path / "policy.json"
        policy.write_text(
            json.dumps(
                {
                    "routes": [
                        {
                            "charger_id": identity,
                            "upstreams": [
                                {"upstream": "legacy", "role": "primary"},
                                {"upstream": "analytics", "role": "observer"},
                            ],
                        }
                    ]
                }
            )
        )
        await sync_to_async(call_command)("routing_apply", str(policy), "--actor", "ops")
        await eventually(lambda: analytics.calls(identity), what="analytics dialled")
        for n in range(2):
            assert (await cp.call("MeterValues", meter(transaction_id, 10 * (n + 1))))[0] == 3
        stopped = await cp.call(
            "StopTransaction", {"transactionId": transaction_id, "meterStop": 50, "timestamp": T0}
        )
        assert stopped[0] == 3
        assert (await cp.call("StatusNotification", status(1, "Available")))[0] == 3

        # What follows the transaction gets through; its copies never went with a wrong id.
        await eventually(
            lambda: "StatusNotification" in actions(analytics.calls(identity))[1:],
            what="the status after the transaction",
        )
        assert not {"MeterValues", "StopTransaction"} & set(actions(analytics.calls(identity)))
        status_row = await eventually(
            lambda: LegStatus.objects.filter(
                charger=charger, upstream__name="analytics", dropped=3
            ).first(),
            what="the drops counted",
        )
        assert f"transaction {transaction_id} has no id at analytics" in status_row.last_problem
        assert not await sync_to_async(
            OutboxEntry.objects.filter(charger=charger, upstream__name="analytics").exists
        )()
        # The routing page says so.
        page = await sync_to_async(routing_page)(charger)
        assert "dropped 3" in page and f"transaction {transaction_id} has no id" in page


async def test_an_observer_refusing_a_copy_is_recorded_and_its_outbox_moves_on(
    gateway: ServerProcess, charger: Charger, id_token: Any, upstreams: Any
) -> None:
    legacy = upstreams("legacy", 5000)
    analytics = upstreams("analytics", 7000)
    await sync_to_async(route_to)(charger, [(legacy, "primary"), (analytics, "observer")])
    identity = charger.identity
    await analytics.control(op="refuse", action="StartTransaction")
    async with charger_socket(gateway, identity) as cp:
        assert (await cp.call("BootNotification", boot_payload()))[0] == 3
        started = await cp.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": T0},
        )
        transaction_id = started[2]["transactionId"]
        assert (await cp.call("MeterValues", meter(transaction_id, 10)))[0] == 3
        stopped = await cp.call(
            "StopTransaction", {"transactionId": transaction_id, "meterStop": 50, "timestamp": T0}
        )
        assert stopped[0] == 3
        assert (await cp.call("StatusNotification", status(1, "Available")))[0] == 3

        # The refusal is recorded, the transaction's copies go with it, the rest follows.
        await eventually(
            lambda: actions(analytics.calls(identity))[-1:] == ["StatusNotification"],
            what="the status after the refused start",
        )
        assert actions(analytics.calls(identity)).count("StartTransaction") == 1
        assert not {"MeterValues", "StopTransaction"} & set(actions(analytics.calls(identity)))
        status_row = await eventually(
            lambda: LegStatus.objects.filter(
                charger=charger, upstream__name="analytics", refused=1, dropped=2
            ).first(),
            what="the refusal recorded",
        )
        assert "analytics refused its start" in status_row.last_problem
        assert not await sync_to_async(
            OutboxEntry.objects.filter(charger=charger, upstream__name="analytics").exists
        )()
        page = await sync_to_async(routing_page)(charger)
        assert "refused 1" in page


def routing_page(charger: Charger) -> str:
    """The routing page as an operator of the charger's organization sees it."""
    from django.contrib.auth.models import User
    from django.test import Client

    from cpms.models import Membership, Role

    user, _ = User.objects.get_or_create(username="routing-operator")
    Membership.objects.get_or_create(
        user=user, organization=charger.organization, defaults={"role": Role.OPERATOR}
    )
    client = Client()
    client.force_login(user)
    response = client.get("/routing/")
    assert response.status_code == 200
    return response.content.decode()
