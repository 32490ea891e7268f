"""A session priced for its CDR, its running cost and the charger's tariff text: loads the
tariff version and timeline once (``billing.selectors``) and runs the pricing engine on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from chargers.models import Session

from . import costmsg, pricing, selectors

LINE_TEXT = {
    pricing.Dimension.ENERGY: "Energy",
    pricing.Dimension.TIME: "Charging time",
    pricing.Dimension.PARKING_TIME: "Parking time",
    pricing.Dimension.FLAT: "Session fee",
    pricing.MIN_PRICE: "Minimum price",
    pricing.MAX_PRICE: "Maximum price",
}


@dataclass(frozen=True, slots=True)
class LinePrice:
    component: str
    description: str
    starts_at: datetime | None
    ends_at: datetime | None
    quantity: Decimal
    unit: str
    unit_price: Decimal
    vat_rate: Decimal
    amount_excl_vat: Decimal
    vat: Decimal
    amount_incl_vat: Decimal


@dataclass(frozen=True, slots=True)
class SessionPrice:
    tariff_name: str
    tariff_ref: str
    time_zone: str
    currency: str
    energy_wh: Decimal
    charging_seconds: int
    parking_seconds: int
    lines: tuple[LinePrice, ...]
    total_excl_vat: Decimal
    total_vat: Decimal
    total_incl_vat: Decimal


def _line_span(
    priced: pricing.PricedSession, line: pricing.PricedLine
) -> tuple[datetime | None, datetime | None]:
    """When the periods a line bills ran: from the first to the last of them."""
    if line.element_index is None:
        return None, None
    periods = [
        p
        for p in priced.periods
        if p.element_for(line.dimension) == line.element_index
        and (line.dimension != pricing.Dimension.ENERGY or p.energy_wh > 0)
    ]
    if not periods:
        return None, None
    return min(p.start for p in periods), max(p.end for p in periods)


def _description(line: pricing.PricedLine) -> str:
    text = LINE_TEXT.get(line.dimension, str(line.dimension))
    if line.step_volume:
        text += f" (rounded up to the step size by {line.step_volume.normalize():f})"
    return text


def session_price(*, session: Session, until: datetime | None = None) -> SessionPrice | None:
    """The session priced with the tariff version in force when it started; None without one."""
    version = selectors.tariff_version_for_session(session=session)
    if version is None:
        return None
    spec = selectors.tariff_spec(version=version)
    timeline = selectors.session_timeline(session=session, until=until)
    priced = pricing.price_session(spec, timeline)
    lines = []
    for line in priced.lines:
        starts_at, ends_at = _line_span(priced, line)
        lines.append(
            LinePrice(
                component=str(line.dimension),
                description=_description(line),
                starts_at=starts_at,
                ends_at=ends_at,
                quantity=line.quantity,
                unit=line.unit,
                unit_price=line.unit_price,
                vat_rate=line.vat_rate,
                amount_excl_vat=line.amount_excl_vat,
                vat=line.vat_amount,
                amount_incl_vat=line.amount_incl_vat,
            )
        )
    return SessionPrice(
        tariff_name=version.tariff.name,
        tariff_ref=f"tariff {version.tariff_id} version {version.number}",
        time_zone=timeline.tz,
        currency=priced.currency,
        energy_wh=priced.energy_wh,
        charging_seconds=int(priced.charging_seconds),
        parking_seconds=int(priced.parking_seconds),
        lines=tuple(lines),
        total_excl_vat=priced.total_excl_vat,
        total_vat=priced.total_vat,
        total_incl_vat=priced.total_incl_vat,
    )


def _component(spec: pricing.TariffSpec, dimension: pricing.Dimension) -> Decimal | None:
    for element in spec.elements:
        component = element.component(dimension)
        if component is not None:
            return component.price
    return None


def running_cost(*, session: Session, now: datetime) -> costmsg.RunningCost | None:
    """The cost of a running session so far, with the prices it is charged at."""
    version = selectors.tariff_version_for_session(session=session)
    if version is None:
        return None
    spec = selectors.tariff_spec(version=version)
    timeline = selectors.session_timeline(session=session, until=now)
    priced = pricing.price_session(spec, timeline)
    readings = [s.energy_wh for s in timeline.samples if s.energy_wh is not None]
    meter = readings[-1] if readings else session.meter_start_wh
    idle = bool(timeline.periods) and timeline.periods[-1].state == pricing.PeriodState.IDLE
    return costmsg.RunningCost(
        transaction_id=session.transaction_id,
        at=now,
        meter_wh=meter,
        total_incl_vat=priced.total_incl_vat,
        idle=idle,
        kwh_price=_component(spec, pricing.Dimension.ENERGY),
        hour_price=_component(spec, pricing.Dimension.TIME),
        flat_fee=_component(spec, pricing.Dimension.FLAT),
    )


def _price_text(spec: pricing.TariffSpec) -> str:
    parts = []
    currency = spec.currency
    for dimension, unit in (
        (pricing.Dimension.FLAT, "per session"),
        (pricing.Dimension.ENERGY, "per kWh"),
        (pricing.Dimension.TIME, "per hour charging"),
        (pricing.Dimension.PARKING_TIME, "per hour parked"),
    ):
        price = _component(spec, dimension)
        if price:
            parts.append(f"{currency} {price.normalize():f} {unit}")
    if parts and spec.parking_grace_seconds and _component(spec, pricing.Dimension.PARKING_TIME):
        parts[-1] += f" after {spec.parking_grace_seconds // 60} min"
    return ", ".join(parts) + " excl. VAT" if parts else "Free"


def tariff_text(*, session: Session) -> str:
    """What the charger shows the driver: the version's text for drivers, else its prices."""
    version = selectors.tariff_version_for_session(session=session)
    if version is None:
        return ""
    if version.description:
        return str(version.description)
    return _price_text(selectors.tariff_spec(version=version))
