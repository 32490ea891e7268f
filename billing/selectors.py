"""Reads for billing: tariffs a tenant may see, the tariff version that prices a session, and a
session's timeline loaded once into the pricing engine's dataclasses."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from chargers.models import (
    ConnectorStatus,
    ConnectorStatusChange,
    IdToken,
    MeterSample,
    Session,
    SessionState,
    Site,
    TransactionEventRecord,
)
from cpms.tenancy import Tenant

from .models import PriceGroup, SiteBilling, Tariff, TariffAssignment, TariffVersion
from .pricing import (
    PeriodState,
    SessionTimeline,
    StatePeriod,
    TariffSpec,
    TimelineSample,
    tariff_elements_parse,
)

ENERGY_REGISTER = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
CURRENT = "Current.Import"

# Connector statuses (1.6, and 2.x through its charging state) that say whether energy flows.
_STATUS_STATES = {
    ConnectorStatus.CHARGING: PeriodState.CHARGING,
    ConnectorStatus.SUSPENDED_EV: PeriodState.IDLE,
    ConnectorStatus.SUSPENDED_EVSE: PeriodState.IDLE,
    ConnectorStatus.FINISHING: PeriodState.IDLE,
}
_CHARGING_STATES = {
    "Charging": PeriodState.CHARGING,
    "SuspendedEV": PeriodState.IDLE,
    "SuspendedEVSE": PeriodState.IDLE,
    "EVConnected": PeriodState.IDLE,
    "Idle": PeriodState.IDLE,
}


# --- Tenancy --------------------------------------------------------------------------------------


def tariff_list(*, tenant: Tenant) -> QuerySet[Tariff]:
    """Tariffs the tenant may see: all of the organization's, or a site host's sites' own."""
    tariffs = Tariff.objects.filter(organization_id=tenant.organization_id).select_related("site")
    if tenant.site_ids is not None:
        tariffs = tariffs.filter(site_id__in=tenant.site_ids)
    return tariffs


def tariff_version_list(*, tenant: Tenant) -> QuerySet[TariffVersion]:
    return TariffVersion.objects.filter(tariff__in=tariff_list(tenant=tenant)).select_related(
        "tariff"
    )


def tariff_assignment_list(*, tenant: Tenant) -> QuerySet[TariffAssignment]:
    assignments = TariffAssignment.objects.filter(
        organization_id=tenant.organization_id
    ).select_related("tariff", "site", "charger", "connector__charger", "price_group")
    if tenant.site_ids is not None:
        assignments = assignments.filter(
            Q(site_id__in=tenant.site_ids)
            | Q(charger__site_id__in=tenant.site_ids)
            | Q(connector__charger__site_id__in=tenant.site_ids)
        )
    return assignments


def price_group_list(*, tenant: Tenant) -> QuerySet[PriceGroup]:
    return PriceGroup.objects.filter(organization_id=tenant.organization_id)


def site_currency(*, site: Site | None) -> str:
    if site is None:
        return str(settings.CPMS_DEFAULT_CURRENCY)
    billing = SiteBilling.objects.filter(site=site).first()
    return billing.currency if billing else str(settings.CPMS_DEFAULT_CURRENCY)


# --- Which tariff prices a session ----------------------------------------------------------------


def tariff_version_in_force(*, tariff: Tariff, at: datetime) -> TariffVersion | None:
    return (
        TariffVersion.objects.filter(tariff=tariff, state="published", effective_from__lte=at)
        .order_by("-effective_from", "-number")
        .first()
    )


def id_token_for_session(*, session: Session) -> IdToken | None:
    if session.id_token_id is not None:
        return session.id_token
    if not session.id_tag:
        return None
    return IdToken.objects.filter(
        organization_id=session.charger.organization_id, token=session.id_tag
    ).first()


def price_groups_for_token(*, id_token: IdToken | None) -> QuerySet[PriceGroup]:
    if id_token is None:
        return PriceGroup.objects.none()
    membership = Q(id_tokens=id_token)
    if id_token.group_token:
        membership |= Q(group_token=id_token.group_token)
    return PriceGroup.objects.filter(
        membership, organization_id=id_token.organization_id
    ).distinct()


def tariff_assignment_for(
    *,
    charger_id: int,
    site_id: int | None,
    connector_pk: int | None,
    group_ids: set[int],
    at: datetime,
) -> list[TariffAssignment]:
    """Assignments in force at ``at``, best first: the driver's price group before the public
    price, then connector, charger and site, then the latest."""
    target = Q(charger_id=charger_id)
    if site_id is not None:
        target |= Q(site_id=site_id)
    if connector_pk is not None:
        target |= Q(connector_id=connector_pk)
    candidates = list(
        TariffAssignment.objects.filter(target, valid_from__lte=at)
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gt=at))
        .filter(Q(price_group__isnull=True) | Q(price_group_id__in=group_ids))
        .select_related("tariff")
    )
    level = {"connector": 0, "charger": 1, "site": 2}
    candidates.sort(
        key=lambda a: (
            a.price_group_id is None,
            level[a.level],
            -a.valid_from.timestamp(),
            -a.pk,
        )
    )
    return candidates


def tariff_version_for_session(*, session: Session) -> TariffVersion | None:
    """The version in force when the session started, of the most specific tariff assigned for
    the session's id token's price group (else the public one)."""
    charger = session.charger
    groups = set(
        price_groups_for_token(id_token=id_token_for_session(session=session)).values_list(
            "pk", flat=True
        )
    )
    for assignment in tariff_assignment_for(
        charger_id=charger.pk,
        site_id=charger.site_id,
        connector_pk=session.connector_id,
        group_ids=groups,
        at=session.started_at,
    ):
        version = tariff_version_in_force(tariff=assignment.tariff, at=session.started_at)
        if version is not None:
            return version
    return None


def tariff_spec(*, version: TariffVersion) -> TariffSpec:
    return TariffSpec(
        currency=version.tariff.currency,
        elements=tariff_elements_parse(version.elements),
        min_price=version.min_price,
        max_price=version.max_price,
        parking_grace_seconds=version.parking_grace_seconds,
    )


# --- A session's timeline -------------------------------------------------------------------------


def session_timeline(*, session: Session, until: datetime | None = None) -> SessionTimeline:
    """Meter samples and charging/idle periods of a session, for the pricing engine.

    A session still running is read up to ``until`` (default: now). Charging and idle come from
    the connector's status changes (1.6) and the transaction events' charging states (2.x).
    """
    site = session.charger.site
    ended_at = session.stopped_at or until or timezone.now()
    ended_at = max(ended_at, session.started_at)

    rows = (
        MeterSample.objects.filter(
            session=session,
            measurand__in=(ENERGY_REGISTER, POWER, CURRENT),
            location__in=("", "Outlet"),
            value__isnull=False,
        )
        .order_by("timestamp", "id")
        .values_list("timestamp", "measurand", "phase", "value")
    )
    energy: dict[datetime, Decimal] = {}
    power: dict[datetime, Decimal] = {}
    power_phases: dict[datetime, Decimal] = defaultdict(Decimal)
    current: dict[datetime, Decimal] = {}
    for at, measurand, phase, value in rows:
        if value is None:
            continue
        if measurand == ENERGY_REGISTER:
            if not phase or at not in energy:
                energy[at] = value
        elif measurand == POWER:
            if not phase:
                power[at] = value
            elif phase in ("L1", "L2", "L3"):
                power_phases[at] += value
        elif measurand == CURRENT:
            current[at] = max(current.get(at, value), value)
    for at, total in power_phases.items():
        power.setdefault(at, total)
    samples = tuple(
        TimelineSample(
            at=at, energy_wh=energy.get(at), power_w=power.get(at), current_a=current.get(at)
        )
        for at in sorted(set(energy) | set(power) | set(current))
    )

    changes: list[tuple[datetime, int, PeriodState]] = []
    if session.connector_id is not None:
        statuses = ConnectorStatusChange.objects.filter(
            connector_id=session.connector_id,
            timestamp__gte=session.started_at,
            timestamp__lte=ended_at,
            status__in=list(_STATUS_STATES),
        ).values_list("timestamp", "id", "status")
        changes.extend(
            (at, pk, _STATUS_STATES[ConnectorStatus(status)]) for at, pk, status in statuses
        )
    events = (
        TransactionEventRecord.objects.filter(session=session)
        .exclude(charging_state="")
        .values_list("timestamp", "id", "charging_state")
    )
    changes.extend(
        (at, pk, _CHARGING_STATES[state]) for at, pk, state in events if state in _CHARGING_STATES
    )
    changes.sort()
    periods: list[StatePeriod] = []
    cursor, state = session.started_at, PeriodState.CHARGING
    for at, _pk, new_state in changes:
        at = min(max(at, session.started_at), ended_at)
        if new_state == state:
            continue
        if at > cursor:
            periods.append(StatePeriod(cursor, at, state))
        cursor, state = at, new_state
    if ended_at > cursor:
        periods.append(StatePeriod(cursor, ended_at, state))

    completed = session.state == SessionState.COMPLETED
    return SessionTimeline(
        started_at=session.started_at,
        ended_at=ended_at,
        tz=site.time_zone if site is not None and site.time_zone else "UTC",
        samples=samples,
        periods=tuple(periods),
        meter_start_wh=session.meter_start_wh,
        energy_wh=session.energy_wh if completed else None,
    )
