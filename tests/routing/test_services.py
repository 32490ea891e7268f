"""The live path's writes: an outbox entry is sent by one sender at a time (two gateways holding
the charger for a moment, or a gateway and a replay), and refusals and drops are counted on the
leg with their reason."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chargers.models import Charger
from routing import services
from routing.models import LegStatus, OutboxEntry, Upstream

pytestmark = pytest.mark.django_db


@pytest.fixture
def upstream() -> Upstream:
    return Upstream.objects.create(name="analytics", url="ws://analytics.example/ocpp")


def entry(charger: Charger, upstream: Upstream) -> int:
    (pk,) = services.outbox_append(
        charger_pk=charger.pk,
        upstream_pks=[upstream.pk],
        message_id="cp-1",
        action="StatusNotification",
        payload={},
        transactional=False,
    )
    return pk


def test_one_sender_at_a_time_takes_an_outbox_entry(charger: Charger, upstream: Upstream) -> None:
    pk = entry(charger, upstream)
    assert services.outbox_claim(pk=pk, owner="node-a", lease_seconds=40) is True
    # Another sender waits; the one that has it may take it again (a retry).
    assert services.outbox_claim(pk=pk, owner="node-b", lease_seconds=40) is False
    assert services.outbox_claim(pk=pk, owner="node-a", lease_seconds=40) is True

    # A sender that died keeps it only as long as its lease.
    OutboxEntry.objects.filter(pk=pk).update(claimed_at=timezone.now() - timedelta(seconds=41))
    assert services.outbox_claim(pk=pk, owner="node-b", lease_seconds=40) is True
    assert services.outbox_claim(pk=pk, owner="node-a", lease_seconds=40) is False

    # One that stops lets go at once.
    services.outbox_release(charger_pk=charger.pk, upstream_pk=upstream.pk, owner="node-b")
    assert services.outbox_claim(pk=pk, owner="node-a", lease_seconds=40) is True

    # Delivered by one: gone for the other.
    services.outbox_remove(pk=pk)
    assert services.outbox_claim(pk=pk, owner="node-b", lease_seconds=40) is None


def test_refusals_and_drops_are_counted_with_their_reason(
    charger: Charger, upstream: Upstream
) -> None:
    services.leg_copy_refused(
        charger_pk=charger.pk, upstream_pk=upstream.pk, problem="StartTransaction refused: X"
    )
    services.leg_copy_refused(
        charger_pk=charger.pk, upstream_pk=upstream.pk, problem="MeterValues refused: Y"
    )
    status = LegStatus.objects.get(charger=charger, upstream=upstream)
    assert status.refused == 2 and status.last_problem == "MeterValues refused: Y"

    pks = [entry(charger, upstream), entry(charger, upstream)]
    dropped = services.outbox_drop(
        charger_pk=charger.pk, upstream_pk=upstream.pk, pks=pks, reason="no id there"
    )
    assert dropped == 2
    status.refresh_from_db()
    assert status.dropped == 2 and status.last_problem == "no id there"
    assert not OutboxEntry.objects.exists()
