"""Reservation services against the database: a 1.6 session that names no reservation still uses
the one held for its id tag or its parent on its connector; the sweep expires 1.6 reservations
at their time and gives 2.x chargers time to report theirs; a lost answer is caught up."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from chargers import normalize, services
from chargers.commands import CommandState
from chargers.models import Command, Connector, Reservation
from chargers.reservation_services import REPORT_GRACE, reservations_sweep

pytestmark = pytest.mark.django_db


def held(charger, *, connector=1, id_tag="TAG-OK", group_token="", state="active", **fields):
    Connector.objects.get_or_create(charger=charger, connector_id=connector)
    return Reservation.objects.create(
        organization_id=charger.organization_id,
        charger=charger,
        connector_number=connector,
        id_tag=id_tag,
        group_token=group_token,
        reservation_id=Reservation.objects.filter(charger=charger).count() + 1,
        ocpp_version=fields.pop("ocpp_version", "1.6"),
        expires_at=fields.pop("expires_at", timezone.now() + timedelta(minutes=30)),
        state=state,
        **fields,
    )


def start(charger, *, connector=1, id_tag="TAG-OK", reservation_id=None):
    return services.session_start(
        charger_pk=charger.pk,
        organization_pk=charger.organization_id,
        request=normalize.StartRequest(
            connector_id=connector,
            id_tag=id_tag,
            meter_start_wh=Decimal(0),
            timestamp=timezone.now(),
            start_key=f"{connector}-{id_tag}-{reservation_id}",
            reservation_id=reservation_id,
        ),
        ocpp_version="1.6",
    )


def test_a_16_start_naming_no_reservation_uses_the_one_for_its_id_tag(charger, id_token):
    reservation = held(charger)
    start(charger)
    reservation.refresh_from_db()
    assert reservation.state == "used"
    assert reservation.session.reservation_id == reservation.reservation_id


def test_a_16_start_uses_the_reservation_of_its_parent(charger, organization):
    services.id_token_create(organization=organization, token="CARD-2", group_token="FLEET")
    reservation = held(charger, id_tag="CARD-1", group_token="FLEET")
    start(charger, id_tag="CARD-2")
    reservation.refresh_from_db()
    assert reservation.state == "used"


def test_another_connector_or_token_leaves_the_reservation_alone(charger, id_token):
    reservation = held(charger)
    start(charger, connector=2)
    start(charger, id_tag="STRANGER")
    reservation.refresh_from_db()
    assert reservation.state == "active"


def test_a_start_naming_its_reservation_uses_it_whoever_starts(charger, id_token):
    reservation = held(charger, id_tag="CARD-1")
    start(charger, reservation_id=reservation.reservation_id)
    reservation.refresh_from_db()
    assert reservation.state == "used"


def test_the_sweep_expires_16_at_their_time_and_2x_after_the_grace(charger):
    now = timezone.now()
    lapsed_16 = held(charger, expires_at=now - timedelta(seconds=1))
    lapsed_2x = held(charger, connector=2, ocpp_version="2.0.1", expires_at=now)
    late_2x = held(charger, connector=3, ocpp_version="2.0.1", expires_at=now - REPORT_GRACE * 2)
    running = held(charger, connector=4)
    result = reservations_sweep(now=now)
    states = {r.pk: r.state for r in Reservation.objects.all()}
    assert result.expired == 2
    assert states == {
        lapsed_16.pk: "expired",
        lapsed_2x.pk: "active",
        late_2x.pk: "expired",
        running.pk: "active",
    }


def test_the_sweep_applies_an_answer_whose_event_was_lost(charger):
    reservation = held(charger, state="requested")
    command = Command.objects.create(
        charger=charger,
        action="ReserveNow",
        payload={},
        ocpp_version="1.6",
        state=CommandState.REJECTED,
        response_status="Unavailable",
        finished_at=timezone.now() - timedelta(minutes=1),
    )
    reservation.commands.add(command)
    assert reservations_sweep().caught_up == 1
    reservation.refresh_from_db()
    assert (reservation.state, reservation.reason) == ("rejected", "Unavailable")
