"""Which tariff version prices a session, and the timeline a session is priced on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from billing import services
from billing.models import Tariff, TariffVersion
from billing.pricing import PeriodState, price_session
from billing.selectors import session_timeline, tariff_spec, tariff_version_for_session
from chargers.models import (
    Charger,
    Connector,
    ConnectorStatusChange,
    IdToken,
    MeterSample,
    Session,
    SessionState,
    Site,
    TransactionEventRecord,
)
from cpms.models import Organization

pytestmark = pytest.mark.django_db

D = Decimal


def energy_tariff(organization: Organization, name: str, price: str, **kwargs: Any) -> Tariff:
    tariff = services.tariff_create(
        organization=organization,
        name=name,
        currency="EUR",
        elements=[{"price_components": [{"type": "ENERGY", "price": price, "vat": 19}]}],
        **kwargs,
    )
    return tariff


def publish(tariff: Tariff, at: datetime) -> TariffVersion:
    """Publish the tariff's draft as if it had been published at ``at``."""
    version = services.tariff_publish(version=services.tariff_draft(tariff=tariff))
    TariffVersion.objects.filter(pk=version.pk).update(effective_from=at)
    version.refresh_from_db()
    return version


def new_session(
    charger: Charger, connector: Connector, started_at: datetime, **fields: Any
) -> Session:
    unique = Session.objects.count()
    return Session.objects.create(
        charger=charger,
        connector=connector,
        connector_number=connector.connector_id,
        transaction_id=f"tx-{unique}",
        start_key=f"start-{unique}",
        started_at=started_at,
        meter_start_wh=D(0),
        **fields,
    )


@pytest.fixture
def connector(charger: Charger) -> Connector:
    return Connector.objects.create(charger=charger, connector_id=1)


T0 = datetime(2026, 6, 16, 8, 0, tzinfo=UTC)


def test_most_specific_assignment_wins(
    organization: Organization, site: Site, charger: Charger, connector: Connector
) -> None:
    on_site = energy_tariff(organization, "Site", "0.30")
    on_charger = energy_tariff(organization, "Charger", "0.40")
    on_connector = energy_tariff(organization, "Connector", "0.50")
    for tariff in (on_site, on_charger, on_connector):
        publish(tariff, T0 - timedelta(days=10))
    since = T0 - timedelta(days=5)
    services.tariff_assign(tariff=on_site, site=site, valid_from=since)
    session = new_session(charger, connector, T0)
    assert tariff_version_for_session(session=session).tariff == on_site  # type: ignore[union-attr]
    services.tariff_assign(tariff=on_charger, charger=charger, valid_from=since)
    assert tariff_version_for_session(session=session).tariff == on_charger  # type: ignore[union-attr]
    services.tariff_assign(tariff=on_connector, connector=connector, valid_from=since)
    assert tariff_version_for_session(session=session).tariff == on_connector  # type: ignore[union-attr]
    # A connector of another charger has nothing to do with this session.
    other = Charger.objects.create(organization=organization, site=site, identity="CP-2")
    services.tariff_assign(
        tariff=on_site,
        connector=Connector.objects.create(charger=other, connector_id=1),
        valid_from=since,
    )
    assert tariff_version_for_session(session=session).tariff == on_connector  # type: ignore[union-attr]


def test_the_version_in_force_when_the_session_started(
    organization: Organization, site: Site, charger: Charger, connector: Connector
) -> None:
    tariff = energy_tariff(organization, "Public", "0.30")
    first = publish(tariff, T0 - timedelta(days=10))
    services.tariff_draft_update(
        version=services.tariff_draft(tariff=tariff),
        data={"elements": [{"price_components": [{"type": "ENERGY", "price": "0.35", "vat": 19}]}]},
    )
    second = publish(tariff, T0 + timedelta(hours=1))
    services.tariff_assign(tariff=tariff, site=site, valid_from=T0 - timedelta(days=10))
    before = new_session(charger, connector, T0 + timedelta(minutes=59), id_tag="a")
    after = new_session(charger, connector, T0 + timedelta(hours=1), id_tag="b")
    assert (first.number, second.number) == (1, 2)
    assert tariff_version_for_session(session=before) == first
    assert tariff_version_for_session(session=after) == second
    # A draft prices nothing.
    services.tariff_draft(tariff=tariff)
    assert tariff_version_for_session(session=after) == second
    # Before any version was in force, and before the assignment: no tariff.
    early = new_session(charger, connector, T0 - timedelta(days=20), id_tag="c")
    assert tariff_version_for_session(session=early) is None


def test_price_group_members_get_their_tariff_everyone_else_the_public_one(
    organization: Organization, site: Site, charger: Charger, connector: Connector
) -> None:
    public = energy_tariff(organization, "Public", "0.30")
    residents = energy_tariff(organization, "Residents", "0")
    fleet = energy_tariff(organization, "Fleet", "0.20")
    for tariff in (public, residents, fleet):
        publish(tariff, T0 - timedelta(days=1))
    resident = IdToken.objects.create(organization=organization, token="RESIDENT-1")
    driver = IdToken.objects.create(organization=organization, token="FLEET-7", group_token="FLEET")
    stranger = IdToken.objects.create(organization=organization, token="ANYONE")
    resident_group = services.price_group_create(
        organization=organization, name="Residents", id_tokens=[resident]
    )
    fleet_group = services.price_group_create(
        organization=organization, name="Fleet", group_token="FLEET"
    )
    since = T0 - timedelta(days=1)
    services.tariff_assign(tariff=public, connector=connector, valid_from=since)
    services.tariff_assign(
        tariff=residents, site=site, price_group=resident_group, valid_from=since
    )
    services.tariff_assign(tariff=fleet, charger=charger, price_group=fleet_group, valid_from=since)

    def tariff_for(token: IdToken | None, tag: str) -> Tariff | None:
        session = new_session(charger, connector, T0, id_token=token, id_tag=tag)
        version = tariff_version_for_session(session=session)
        return version.tariff if version else None

    # The driver's group wins over the more specific public connector tariff.
    assert tariff_for(resident, "RESIDENT-1") == residents
    assert tariff_for(driver, "FLEET-7") == fleet
    assert tariff_for(stranger, "ANYONE") == public
    # An id tag the charger sent without a token row: matched by its text.
    assert tariff_for(None, "RESIDENT-1") == residents
    assert tariff_for(None, "UNKNOWN") == public


def test_a_replaced_assignment_still_prices_the_sessions_that_started_under_it(
    organization: Organization, site: Site, charger: Charger, connector: Connector
) -> None:
    old = energy_tariff(organization, "Old", "0.30")
    new = energy_tariff(organization, "New", "0.45")
    publish(old, T0 - timedelta(days=10))
    publish(new, T0 - timedelta(days=10))
    services.tariff_assign(tariff=old, site=site, valid_from=T0 - timedelta(days=5))
    services.tariff_assign(tariff=new, site=site, valid_from=T0)
    earlier = new_session(charger, connector, T0 - timedelta(seconds=1), id_tag="x")
    later = new_session(charger, connector, T0, id_tag="y")
    assert tariff_version_for_session(session=earlier).tariff == old  # type: ignore[union-attr]
    assert tariff_version_for_session(session=later).tariff == new  # type: ignore[union-attr]


def add_sample(session: Session, minute: int, measurand: str, value: str, phase: str = "") -> None:
    MeterSample.objects.create(
        charger=session.charger,
        connector_number=session.connector_number,
        session=session,
        timestamp=session.started_at + timedelta(minutes=minute),
        measurand=measurand,
        phase=phase,
        value=D(value),
    )


def test_timeline_of_a_1_6_session_priced_by_hand(
    organization: Organization, site: Site, charger: Charger, connector: Connector
) -> None:
    # Amsterdam, Tuesday 16 June 2026 10:00-12:00 local (08:00-10:00 UTC). The meter goes from
    # 5000 Wh to 17000 Wh by 11:00, the car pauses 10:30-10:40 (SuspendedEV) and is full at
    # 11:00 (Finishing) until the cable is pulled at 12:00.
    tariff = services.tariff_create(
        organization=organization,
        name="Day",
        currency="EUR",
        elements=[
            {
                "price_components": [
                    {"type": "ENERGY", "price": "0.30", "vat": 21},
                    {"type": "TIME", "price": "1.20", "vat": 21},
                    {"type": "PARKING_TIME", "price": "6.00", "vat": 21},
                ]
            }
        ],
        parking_grace_seconds=1800,
    )
    publish(tariff, T0 - timedelta(days=1))
    services.tariff_assign(tariff=tariff, site=site, valid_from=T0 - timedelta(days=1))
    session = new_session(
        charger,
        connector,
        T0,
        meter_stop_wh=D(17000),
        stopped_at=T0 + timedelta(hours=2),
        state=SessionState.COMPLETED,
        energy_wh=D(12000),
    )
    Session.objects.filter(pk=session.pk).update(meter_start_wh=D(5000))
    session.refresh_from_db()
    for minute, wh in ((0, "5000"), (30, "11000"), (40, "11000"), (60, "17000"), (120, "17000")):
        add_sample(session, minute, "Energy.Active.Import.Register", wh)
    add_sample(session, 0, "Current.Import", "16", phase="L1")
    add_sample(session, 0, "Current.Import", "15", phase="L2")
    for minute, status in (
        (0, "Charging"),
        (30, "SuspendedEV"),
        (40, "Charging"),
        (60, "Finishing"),
    ):
        ConnectorStatusChange.objects.create(
            connector=connector, status=status, timestamp=T0 + timedelta(minutes=minute)
        )
    # A status long after the session is not part of it.
    ConnectorStatusChange.objects.create(
        connector=connector, status="Charging", timestamp=T0 + timedelta(hours=5)
    )

    timeline = session_timeline(session=session)
    assert timeline.tz == "Europe/Amsterdam"
    assert [(p.state, p.end - p.start) for p in timeline.periods] == [
        (PeriodState.CHARGING, timedelta(minutes=30)),
        (PeriodState.IDLE, timedelta(minutes=10)),
        (PeriodState.CHARGING, timedelta(minutes=20)),
        (PeriodState.IDLE, timedelta(minutes=60)),
    ]
    assert timeline.samples[0].current_a == D(16)  # the highest phase

    version = tariff_version_for_session(session=session)
    assert version is not None
    priced = price_session(tariff_spec(version=version), timeline)
    # Energy 12 kWh x 0.30 = 3.60. Charging 50 min x 1.20/h = 1.00. Idle 70 min, 30 min free:
    # 40 min x 6.00/h = 4.00. 8.60 excl. VAT, 21 % VAT = 1.806 -> 1.81, 10.41 in all.
    assert [(ln.dimension, ln.amount_excl_vat) for ln in priced.lines] == [
        ("ENERGY", D("3.60")),
        ("TIME", D("1.00")),
        ("PARKING_TIME", D("4.00")),
    ]
    assert priced.total_excl_vat == D("8.60")
    assert priced.total_vat == D("1.81")
    assert priced.total_incl_vat == D("10.41")


def test_timeline_of_a_2x_session_follows_its_charging_states(
    organization: Organization, charger: Charger, connector: Connector
) -> None:
    session = new_session(charger, connector, T0, ocpp_version="2.0.1")
    for seq, (minute, state) in enumerate(
        ((0, "Charging"), (45, "SuspendedEV"), (50, "Charging"), (90, "EVConnected"))
    ):
        TransactionEventRecord.objects.create(
            session=session,
            event_key=str(seq),
            seq_no=seq,
            event_type="Updated",
            trigger_reason="ChargingStateChanged",
            timestamp=T0 + timedelta(minutes=minute),
            charging_state=state,
            fingerprint=str(seq),
        )
    timeline = session_timeline(session=session, until=T0 + timedelta(minutes=100))
    assert [(p.state, (p.end - p.start).seconds // 60) for p in timeline.periods] == [
        (PeriodState.CHARGING, 45),
        (PeriodState.IDLE, 5),
        (PeriodState.CHARGING, 40),
        (PeriodState.IDLE, 10),
    ]
    assert timeline.energy_wh is None  # still running: the samples say how far it got
    assert timeline.ended_at == T0 + timedelta(minutes=100)


def test_running_session_is_read_up_to_now(
    organization: Organization, charger: Charger, connector: Connector
) -> None:
    started = timezone.now() - timedelta(minutes=5)
    session = new_session(charger, connector, started)
    timeline = session_timeline(session=session)
    assert timeline.started_at == started
    assert started < timeline.ended_at <= timezone.now()
