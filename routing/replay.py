"""Outboxes left behind: replayed and expired off the live path, by Celery.

While a charger is connected, its gateway's observer legs drain their outboxes. A charger that
does not come back (its gateway process restarted, or it went offline while an observer was
down) leaves copies behind that no leg drains. ``outbox_sweep`` finds such outboxes and has
``outbox_replay`` deliver them: it dials the observer as the charger would be dialled (same URL,
identity, credentials and TLS settings), sends the backlog in order with fresh message ids, one
CALL at a time, and removes each entry once the observer answered (a refusal, CALLERROR, is
counted on the leg and passed over). Each entry is taken first (``outbox_claim``), so that a
gateway and a replay never both send it. 1.6 transaction ids are rewritten from the durable map,
and a frame whose transaction has no id at that observer yet is held, as on the live path. A
charger that reconnects meanwhile takes its outbox back.
``outbox_expire`` removes copies outside transactions that waited longer than
``CPMS_ROUTING_OUTBOX_TTL``, counted as drops; transaction messages never expire.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import websockets
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone

from chargers.models import Charger, Frame

from . import remap
from . import services as routing_services
from .models import LOCAL, OutboxEntry, TransactionMap, Upstream
from .selectors import ResolvedLeg, route_for_charger

logger = logging.getLogger(__name__)

SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1", "2.1": "ocpp2.1"}
# Outboxes handed to replay tasks per sweep; the next sweep takes the rest.
SWEEP_BATCH = 200


@dataclass(frozen=True, slots=True)
class ReplayResult:
    delivered: int = 0
    remaining: int = 0
    # Why the replay stopped before the outbox was empty ("" when it emptied it).
    stopped: str = ""


def outboxes_left_behind(*, older_than: timedelta) -> list[tuple[int, int]]:
    """(charger pk, upstream pk) of outboxes whose charger is not connected and whose oldest
    entry has waited longer than ``older_than``."""
    cutoff = timezone.now() - older_than
    rows = (
        OutboxEntry.objects.filter(charger__connected=False)
        .values("charger_id", "upstream_id")
        .annotate(oldest=Min("created_at"), n=Count("id"))
        .filter(oldest__lt=cutoff)
        .order_by("oldest")[:SWEEP_BATCH]
    )
    return [(row["charger_id"], row["upstream_id"]) for row in rows]


def outbox_expire(*, now: Any = None) -> int:
    """Remove copies outside transactions older than the TTL; each counts as a drop of its leg."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.CPMS_ROUTING_OUTBOX_TTL)
    expired = 0
    groups = (
        OutboxEntry.objects.filter(created_at__lt=cutoff, transactional=False)
        .values_list("charger_id", "upstream_id")
        .distinct()
    )
    for charger_pk, upstream_pk in list(groups):
        pks = list(
            OutboxEntry.objects.filter(
                charger_id=charger_pk,
                upstream_id=upstream_pk,
                created_at__lt=cutoff,
                transactional=False,
            ).values_list("pk", flat=True)
        )
        expired += routing_services.outbox_drop(
            charger_pk=charger_pk, upstream_pk=upstream_pk, pks=pks
        )
    return expired


# --- Replay -------------------------------------------------------------------------------------


def _leg_of(charger: Charger, upstream: Upstream) -> ResolvedLeg | None:
    route = route_for_charger(charger=charger)
    leg = route.leg(upstream.name)
    return leg if leg is not None and not leg.is_local else None


def _headers(leg: ResolvedLeg) -> dict[str, str]:
    # A charger's own password is never sent to an observer: route resolution has already
    # dropped forwarding for non-primaries, and a replay has no charger password anyway.
    if leg.password and leg.credentials != "forward":
        token = base64.b64encode(f"{leg.username}:{leg.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {}


def _ssl(leg: ResolvedLeg) -> ssl.SSLContext | None:
    if not leg.url.startswith("wss://"):
        return None
    context = ssl.create_default_context(cadata=leg.ca_bundle or None)
    if not leg.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _transaction_ids(charger_pk: int, upstream_pk: int) -> remap.TransactionIds:
    ids = remap.TransactionIds()
    for start, charger_tx, upstream_tx in TransactionMap.objects.filter(
        charger_id=charger_pk, upstream_id=upstream_pk
    ).values_list("start_message_id", "charger_transaction_id", "upstream_transaction_id"):
        if charger_tx is not None:
            ids.charger_assigned(start, charger_tx)
        if upstream_tx is not None:
            ids.upstream_assigned(start, upstream_tx)
    return ids


def outbox_replay(*, charger_pk: int, upstream_pk: int) -> ReplayResult:
    """Deliver one left-behind outbox to its observer (blocking; run from a Celery task)."""
    charger = Charger.objects.filter(pk=charger_pk).first()
    upstream = Upstream.objects.filter(pk=upstream_pk).exclude(name=LOCAL).first()
    if charger is None or upstream is None:
        return ReplayResult(stopped="charger or upstream gone")
    remaining = OutboxEntry.objects.filter(charger_id=charger_pk, upstream_id=upstream_pk).count()
    if charger.connected:
        return ReplayResult(remaining=remaining, stopped="charger connected: its gateway drains it")
    leg = _leg_of(charger, upstream)
    if leg is None:
        return ReplayResult(remaining=remaining, stopped="upstream no longer routed for charger")
    version = charger.ocpp_version or "1.6"
    # async_to_sync, so the database calls inside run back on this thread (and its connection).
    return async_to_sync(_replay)(charger, upstream, leg, version)


async def _replay(
    charger: Charger, upstream: Upstream, leg: ResolvedLeg, version: str
) -> ReplayResult:
    pending = await sync_to_async(routing_services.outbox_pending)(
        charger_pk=charger.pk, upstream_pk=upstream.pk
    )
    ids = await sync_to_async(_transaction_ids)(charger.pk, upstream.pk)
    message_ids = remap.MessageIds()
    owner = f"replay:{message_ids.prefix}"
    journal: list[Frame] = []
    delivered = 0
    stopped = ""
    try:
        async with websockets.connect(
            leg.url,
            subprotocols=[SUBPROTOCOLS.get(version, "ocpp1.6")],  # type: ignore[list-item]
            additional_headers=_headers(leg),
            ssl=_ssl(leg),
            open_timeout=settings.CPMS_ROUTING_CONNECT_TIMEOUT,
            ping_interval=None,
        ) as ws:
            for entry in pending:
                if await sync_to_async(_charger_back)(charger.pk):
                    stopped = "charger reconnected: its gateway drains the rest"
                    break
                payload = remap.to_upstream(entry.action, entry.payload, version, ids)
                if isinstance(payload, remap.Held):
                    stopped = (
                        f"transaction {payload.transaction_id} has no id at {upstream.name} yet"
                    )
                    break
                claimed = await sync_to_async(routing_services.outbox_claim)(
                    pk=entry.pk,
                    owner=owner,
                    lease_seconds=2 * settings.CPMS_ROUTING_ANSWER_TIMEOUT,
                )
                if claimed is None:
                    continue  # delivered by another sender meanwhile
                if not claimed:
                    stopped = "another sender is delivering this outbox"
                    break
                message_id = message_ids.fresh()
                text = json.dumps([2, message_id, entry.action, payload])
                await ws.send(text)
                journal.append(_frame(charger, upstream, "out", 2, message_id, entry, text))
                answer = await _answer(ws, message_id)
                journal.append(
                    _frame(
                        charger, upstream, "in", answer[0], message_id, entry, json.dumps(answer)
                    )
                )
                if answer[0] == 4:
                    # Refused: recorded on the leg, and the outbox moves on.
                    await sync_to_async(routing_services.leg_copy_refused)(
                        charger_pk=charger.pk,
                        upstream_pk=upstream.pk,
                        problem=f"{entry.action} {entry.message_id} refused: "
                        f"{answer[2] if len(answer) > 2 else ''} "
                        f"{answer[3] if len(answer) > 3 else ''}",
                    )
                elif version == "1.6":
                    await sync_to_async(_transaction_answer)(
                        charger.pk, upstream.pk, entry, answer[2], ids
                    )
                await sync_to_async(routing_services.outbox_remove)(pk=entry.pk)
                delivered += 1
    except (OSError, TimeoutError, websockets.WebSocketException) as exc:
        stopped = f"{upstream.name} unreachable: {exc}"[:300]
    finally:
        await sync_to_async(routing_services.outbox_release)(
            charger_pk=charger.pk, upstream_pk=upstream.pk, owner=owner
        )
        if journal:
            await sync_to_async(Frame.objects.bulk_create)(journal)
    remaining = await sync_to_async(
        OutboxEntry.objects.filter(charger_id=charger.pk, upstream_id=upstream.pk).count
    )()
    if stopped:
        logger.info("replay of %s to %s stopped: %s", charger.identity, upstream.name, stopped)
    return ReplayResult(delivered=delivered, remaining=remaining, stopped=stopped)


def _charger_back(charger_pk: int) -> bool:
    return Charger.objects.filter(pk=charger_pk, connected=True).exists()


async def _answer(ws: Any, message_id: str) -> list[Any]:
    """The observer's answer to our CALL; its own CALLs meanwhile get a CALLERROR (the charger is
    not there to answer them)."""
    deadline = asyncio.get_running_loop().time() + settings.CPMS_ROUTING_ANSWER_TIMEOUT
    while True:
        timeout = deadline - asyncio.get_running_loop().time()
        if timeout <= 0:
            raise TimeoutError(f"no answer to {message_id}")
        async with asyncio.timeout(timeout):
            text = await ws.recv()
        frame = json.loads(text)
        if not isinstance(frame, list) or len(frame) < 3:
            continue
        if frame[0] == 2:
            await ws.send(
                json.dumps([4, frame[1], "GenericError", "The charger is not connected", {}])
            )
            continue
        if frame[0] in (3, 4) and frame[1] == message_id:
            return frame


def _transaction_answer(
    charger_pk: int,
    upstream_pk: int,
    entry: routing_services.Queued,
    payload: Any,
    ids: remap.TransactionIds,
) -> None:
    if not isinstance(payload, dict):
        return
    if entry.action == "StartTransaction":
        transaction_id = remap.start_transaction_id(payload)
        if transaction_id is not None:
            ids.upstream_assigned(entry.message_id, transaction_id)
            routing_services.transaction_map_upstream_assigned(
                charger_pk=charger_pk,
                upstream_pk=upstream_pk,
                start_message_id=entry.message_id,
                transaction_id=transaction_id,
            )
    elif entry.action == "StopTransaction":
        charger_tx = entry.payload.get("transactionId")
        upstream_tx = ids.to_upstream(charger_tx) if isinstance(charger_tx, int) else None
        if upstream_tx is not None:
            routing_services.transaction_map_stopped(
                charger_pk=charger_pk, upstream_pk=upstream_pk, upstream_transaction_id=upstream_tx
            )


def _frame(
    charger: Charger,
    upstream: Upstream,
    direction: str,
    kind: int,
    message_id: str,
    entry: routing_services.Queued,
    raw: str,
) -> Frame:
    return Frame(
        charger=charger,
        charger_identity=charger.identity,
        leg=upstream.name,
        direction=direction,
        kind=kind if kind in (2, 3, 4) else 0,
        message_id=message_id,
        original_message_id=entry.message_id,
        action=entry.action,
        raw=raw,
        timestamp=timezone.now(),
    )
