"""What a tariff would charge before it is published: the editor's price example ("a 22 kWh,
2 h session on Tuesday at 18:00 costs ...") and the tariff simulator, which prices a site's last
sessions with a draft and with what they were priced with, session by session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.utils import timezone

from chargers.models import Session, SessionState, Site

from .pricing import (
    PricedSession,
    TariffSpec,
    currency_minor_units,
    price_session,
    timeline_example,
)
from .selectors import session_timeline, tariff_spec, tariff_version_for_session

# The simulator's default and largest number of sessions.
SIMULATE_DEFAULT = 50
SIMULATE_MAX = 500
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, slots=True)
class PriceExample:
    started_at: datetime  # local, in the site's zone
    energy_kwh: Decimal
    charging: timedelta
    idle: timedelta
    priced: PricedSession

    @property
    def sentence(self) -> str:
        hours = Decimal(int(self.charging.total_seconds())) / 3600
        duration = f"{format_number(hours)} h"
        idle = ""
        if self.idle:
            idle = f" plus {format_number(Decimal(int(self.idle.total_seconds())) / 60)} min idle"
        day = DAY_NAMES[self.started_at.weekday()]
        return (
            f"A {format_number(self.energy_kwh)} kWh, {duration} session{idle} on {day} "
            f"{self.started_at:%d %b %Y} at {self.started_at:%H:%M} costs "
            f"{format_money(self.priced.total_incl_vat, self.priced.currency)} including VAT "
            f"({format_money(self.priced.total_excl_vat, self.priced.currency)} excluding VAT)."
        )


def format_number(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def format_money(amount: Decimal, currency: str) -> str:
    places = currency_minor_units(currency)
    return f"{amount:,.{places}f} {currency}"


def next_weekday(*, weekday: int, at: time, tz: str, today: date | None = None) -> datetime:
    """The next local day with that weekday (today counts) at that time, in the zone."""
    zone = ZoneInfo(tz)
    today = today or timezone.now().astimezone(zone).date()
    day = today + timedelta(days=(weekday - today.weekday()) % 7)
    return datetime.combine(day, at, tzinfo=zone)


def price_example(
    *,
    spec: TariffSpec,
    tz: str,
    started_at: datetime,
    energy_kwh: Decimal,
    charging: timedelta,
    idle: timedelta = timedelta(0),
) -> PriceExample:
    timeline = timeline_example(
        started_at=started_at,
        charging=charging,
        idle=idle,
        energy_wh=energy_kwh * 1000,
        tz=tz,
    )
    return PriceExample(
        started_at=started_at.astimezone(ZoneInfo(tz)),
        energy_kwh=energy_kwh,
        charging=charging,
        idle=idle,
        priced=price_session(spec, timeline),
    )


@dataclass(frozen=True, slots=True)
class SimulatedSession:
    session_id: int
    charger: str
    started_at: datetime
    energy_wh: Decimal
    tariff_now: str  # "Tariff v3", or "" when no tariff priced it
    now: PricedSession | None
    draft: PricedSession

    @property
    def now_excl_vat(self) -> Decimal:
        return self.now.total_excl_vat if self.now else Decimal(0)

    @property
    def difference(self) -> Decimal:
        return self.draft.total_excl_vat - self.now_excl_vat


@dataclass(frozen=True, slots=True)
class Simulation:
    site_id: int
    currency: str
    rows: tuple[SimulatedSession, ...]

    @property
    def revenue_now(self) -> Decimal:
        return sum((row.now_excl_vat for row in self.rows), Decimal(0))

    @property
    def revenue_draft(self) -> Decimal:
        return sum((row.draft.total_excl_vat for row in self.rows), Decimal(0))

    @property
    def difference(self) -> Decimal:
        return self.revenue_draft - self.revenue_now

    @property
    def difference_percent(self) -> Decimal | None:
        if not self.revenue_now:
            return None
        return (self.difference * 100 / self.revenue_now).quantize(Decimal("0.1"))

    @property
    def session_count(self) -> int:
        return len(self.rows)

    @property
    def unpriced(self) -> int:
        return sum(1 for row in self.rows if row.now is None)


def tariff_simulate(*, site: Site, draft: TariffSpec, limit: int = SIMULATE_DEFAULT) -> Simulation:
    """The site's last ``limit`` completed sessions priced with the draft and with the version that
    priced (or would price) each when it started. Revenue is compared excluding VAT."""
    sessions = (
        Session.objects.filter(charger__site=site, state=SessionState.COMPLETED)
        .select_related("charger__site", "connector", "id_token")
        .order_by("-started_at", "-id")[: max(1, min(limit, SIMULATE_MAX))]
    )
    specs: dict[int, TariffSpec] = {}
    rows: list[SimulatedSession] = []
    for session in sessions:
        timeline = session_timeline(session=session)
        version = tariff_version_for_session(session=session)
        now: PricedSession | None = None
        label = ""
        if version is not None:
            spec = specs.get(version.pk)
            if spec is None:
                spec = specs[version.pk] = tariff_spec(version=version)
            now = price_session(spec, timeline)
            label = f"{version.tariff.name} v{version.number}"
        draft_priced = price_session(draft, timeline)
        rows.append(
            SimulatedSession(
                session_id=session.pk,
                charger=session.charger.identity,
                started_at=session.started_at,
                energy_wh=draft_priced.energy_wh,
                tariff_now=label,
                now=now,
                draft=draft_priced,
            )
        )
    return Simulation(site_id=site.pk, currency=draft.currency, rows=tuple(rows))
