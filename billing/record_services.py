"""Billing writes on records: CDRs and their corrections, document numbers, invoices, statements, disputes,
credit notes, and cost shown on chargers.

Callers validate input first (``billing.validation`` and the API serializers); these functions
assume it is valid and make each change in one transaction.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from chargers.models import Charger, MeterSample, Session, SessionState
from chargers.normalize import ENERGY_REGISTER

from . import costmsg, documents, energycost, pricing_bridge
from .models import (
    AccountIdToken,
    Cdr,
    CdrLine,
    CostDisplayRule,
    CreditNote,
    CustomerAccount,
    Dispute,
    DocumentSequence,
    EnergyPrice,
    EnergyPricePeriod,
    Invoice,
    InvoiceLine,
    RunningCostSent,
    SiteHost,
    Statement,
    StatementLine,
)

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")
NUMBER_PREFIX = {
    DocumentSequence.Kind.INVOICE: "INV",
    DocumentSequence.Kind.STATEMENT: "STM",
    DocumentSequence.Kind.CREDIT_NOTE: "CN",
}


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def zone_named(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


# --- Document numbers ----------------------------------------------------------------------------


def document_number_allocate(*, organization_id: int, kind: str) -> tuple[int, str]:
    """The next number of ``kind`` in the organization; call inside the document's transaction.

    The sequence row stays locked until that transaction ends, so concurrent documents queue
    for it, and a rolled-back document gives its number back: numbers have no gaps.
    """
    assert transaction.get_connection().in_atomic_block, "allocate inside the document's atomic"
    DocumentSequence.objects.get_or_create(organization_id=organization_id, kind=kind)
    row = DocumentSequence.objects.select_for_update().get(
        organization_id=organization_id, kind=kind
    )
    value = row.next_value
    DocumentSequence.objects.filter(pk=row.pk).update(next_value=F("next_value") + 1)
    return value, f"{NUMBER_PREFIX[DocumentSequence.Kind(kind)]}-{value:06d}"


# --- Energy cost ---------------------------------------------------------------------------------


def _energy_specs(site_id: int) -> list[energycost.EnergyPriceSpec]:
    prices = EnergyPrice.objects.filter(site_id=site_id).prefetch_related("periods")
    return [
        energycost.EnergyPriceSpec(
            valid_from=price.valid_from,
            price_per_kwh=price.price_per_kwh,
            periods=tuple(
                energycost.PricePeriod(
                    weekdays=frozenset(int(d) for d in period.weekdays),
                    start=period.start_time,
                    end=period.end_time,
                    price_per_kwh=period.price_per_kwh,
                )
                for period in price.periods.all()
            ),
        )
        for price in prices
    ]


def _session_readings(session: Session) -> list[energycost.Reading]:
    readings = [energycost.Reading(session.started_at, session.meter_start_wh)]
    samples = (
        MeterSample.objects.filter(
            session=session, measurand=ENERGY_REGISTER, phase="", value__isnull=False
        )
        .order_by("timestamp", "id")
        .values_list("timestamp", "value")
    )
    readings += [
        energycost.Reading(at, value)
        for at, value in samples
        if value is not None and at >= session.started_at
    ]
    if session.stopped_at is not None and session.meter_stop_wh is not None:
        readings.append(energycost.Reading(session.stopped_at, session.meter_stop_wh))
    # A register never runs backwards inside a session; a lower reading is noise, not energy.
    monotonic: list[energycost.Reading] = []
    for reading in sorted(readings, key=lambda r: r.at):
        if monotonic and reading.energy_wh < monotonic[-1].energy_wh:
            continue
        monotonic.append(reading)
    return monotonic


def session_energy_cost(*, session: Session) -> Decimal | None:
    """What the session's energy cost its site; None when the site has no purchase price."""
    site = session.charger.site
    if site is None:
        return None
    specs = _energy_specs(site.pk)
    if not specs:
        return None
    return energycost.energy_cost(_session_readings(session), specs, zone_named(site.time_zone))


# --- Charge detail records -----------------------------------------------------------------------


def _account_for(session: Session) -> CustomerAccount | None:
    if session.id_token_id is None:
        return None
    return CustomerAccount.objects.filter(token_links__id_token_id=session.id_token_id).first()


def _cdr_write(
    *,
    session: Session,
    priced: pricing_bridge.SessionPrice,
    version: int,
    replaces: Cdr | None,
    reason: str,
    user: Any,
) -> Cdr:
    charger = session.charger
    assert session.stopped_at is not None, "a CDR is for an ended session"
    energy_cost = session_energy_cost(session=session)
    cdr = Cdr.objects.create(
        organization_id=charger.organization_id,
        session=session,
        charger=charger,
        site=charger.site,
        account=_account_for(session),
        id_tag=session.id_tag,
        version=version,
        replaces=replaces,
        current=True,
        reason=reason,
        tariff_name=priced.tariff_name,
        tariff_ref=priced.tariff_ref,
        time_zone=priced.time_zone,
        currency=priced.currency,
        started_at=session.started_at,
        stopped_at=session.stopped_at,
        energy_wh=priced.energy_wh,
        charging_seconds=priced.charging_seconds,
        parking_seconds=priced.parking_seconds,
        total_excl_vat=priced.total_excl_vat,
        total_vat=priced.total_vat,
        total_incl_vat=priced.total_incl_vat,
        energy_cost=energy_cost,
        margin=None if energy_cost is None else priced.total_excl_vat - energy_cost,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    CdrLine.objects.bulk_create(
        CdrLine(
            cdr=cdr,
            position=position,
            component=line.component,
            description=line.description,
            starts_at=line.starts_at,
            ends_at=line.ends_at,
            quantity=line.quantity,
            unit=line.unit,
            unit_price=line.unit_price,
            vat_rate=line.vat_rate,
            amount_excl_vat=line.amount_excl_vat,
            vat=line.vat,
            amount_incl_vat=line.amount_incl_vat,
        )
        for position, line in enumerate(priced.lines, start=1)
    )
    return cdr


def cdr_create_for_session(*, session_id: int) -> Cdr | None:
    """The CDR of an ended session: created once, however often this runs.

    None while the session is still running, or when no tariff applies to it.
    """
    existing = Cdr.objects.filter(session_id=session_id, current=True).first()
    if existing is not None:
        return existing
    session = (
        Session.objects.select_related("charger__site", "id_token").filter(pk=session_id).first()
    )
    if session is None or session.state != SessionState.COMPLETED or session.stopped_at is None:
        return None
    priced = pricing_bridge.session_price(session=session)
    if priced is None:
        logger.info("session %s has no tariff; no CDR", session_id)
        return None
    try:
        with transaction.atomic():
            return _cdr_write(
                session=session, priced=priced, version=1, replaces=None, reason="", user=None
            )
    except IntegrityError:
        # Another worker wrote it first (a redelivered task): that one stands.
        return Cdr.objects.get(session_id=session_id, current=True)


def sessions_without_cdr(
    *, since: datetime, until: datetime | None = None, limit: int = 1000
) -> list[int]:
    """Ended sessions (stopped in [since, until)) of organizations that price sessions, with no
    CDR: their end event was missed, e.g. a worker down when the receiver ran. Oldest first."""
    sessions = Session.objects.filter(
        state=SessionState.COMPLETED,
        stopped_at__gte=since,
        cdrs__isnull=True,
        charger__organization__tariffs__isnull=False,
    )
    if until is not None:
        sessions = sessions.filter(stopped_at__lt=until)
    return list(
        sessions.order_by("stopped_at", "id").values_list("pk", flat=True).distinct()[:limit]
    )


class NothingToCorrect(Exception):
    """A correction that would change no figure of the CDR."""


def cdr_correct(*, cdr: Cdr, reason: str, user: Any = None) -> Cdr:
    """Price the session again (its data or tariff was fixed) as a new version of the CDR.

    The old version stays as it was, no longer current; the new one points to it.
    """
    with transaction.atomic():
        current = Cdr.objects.select_for_update().get(pk=cdr.pk)
        if not current.current:
            raise NothingToCorrect("Only the current version of a CDR can be corrected.")
        session = Session.objects.select_related("charger__site", "id_token").get(
            pk=current.session_id
        )
        priced = pricing_bridge.session_price(session=session)
        if priced is None:
            raise NothingToCorrect("No tariff applies to this session any more.")
        Cdr.objects.filter(pk=current.pk).update(current=False)
        return _cdr_write(
            session=session,
            priced=priced,
            version=current.version + 1,
            replaces=current,
            reason=reason,
            user=user,
        )


# --- Periods -------------------------------------------------------------------------------------


def month_bounds(period_start: date) -> tuple[date, date, datetime, datetime]:
    """The month starting at ``period_start``: first day, first day of the next, as UTC instants."""
    first = period_start.replace(day=1)
    days = calendar.monthrange(first.year, first.month)[1]
    following = first + timedelta(days=days)
    return (
        first,
        following,
        datetime(first.year, first.month, 1, tzinfo=UTC),
        datetime(following.year, following.month, 1, tzinfo=UTC),
    )


def previous_month(now: datetime) -> date:
    first_of_this = now.astimezone(UTC).date().replace(day=1)
    return (first_of_this - timedelta(days=1)).replace(day=1)


# --- Invoices ------------------------------------------------------------------------------------


def invoice_document(invoice: Invoice) -> documents.InvoiceDocument:
    account = invoice.account
    organization = invoice.organization
    return documents.InvoiceDocument(
        number=invoice.number,
        issued_at=invoice.issued_at,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        issuer=documents.Party(name=organization.name),
        customer=documents.Party(
            name=account.name, address=account.billing_address, vat_number=account.vat_number
        ),
        currency=invoice.currency,
        lines=tuple(
            documents.DocumentLine(
                description=line.description,
                reference=f"CDR {line.cdr_id}",
                energy_wh=line.energy_wh,
                amount_excl_vat=line.amount_excl_vat,
                vat=line.vat,
                amount_incl_vat=line.amount_incl_vat,
            )
            for line in invoice.lines.all()
        ),
        total_excl_vat=invoice.total_excl_vat,
        total_vat=invoice.total_vat,
        total_incl_vat=invoice.total_incl_vat,
    )


def invoice_pdf(*, invoice: Invoice) -> bytes:
    return documents.invoice_pdf(invoice_document(invoice))


def _cdr_description(cdr: Cdr) -> str:
    zone = zone_named(cdr.time_zone)
    start = cdr.started_at.astimezone(zone)
    return f"{start:%Y-%m-%d %H:%M} {cdr.charger.identity}" + (
        f" at {cdr.site.name}" if cdr.site else ""
    )


def invoice_generate(
    *, account: CustomerAccount, period_start: date, now: datetime | None = None
) -> Invoice | None:
    """The account's invoice for the month starting at ``period_start`` (UTC), made once.

    Lists the current CDRs of sessions that stopped in the month and were not invoiced before;
    None when there are none. The issue time is the end of the month, so generating it again
    from the same CDRs gives the same document.
    """
    first, following, start, end = month_bounds(period_start)
    existing = Invoice.objects.filter(account=account, period_start=first).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        CustomerAccount.objects.select_for_update().get(pk=account.pk)
        existing = Invoice.objects.filter(account=account, period_start=first).first()
        if existing is not None:
            return existing
        cdrs = list(
            Cdr.objects.filter(
                account=account,
                current=True,
                stopped_at__gte=start,
                stopped_at__lt=end,
                invoice_lines__isnull=True,
            )
            .select_related("charger", "site")
            .order_by("stopped_at", "id")
        )
        if not cdrs:
            return None
        currencies = {cdr.currency for cdr in cdrs}
        if len(currencies) != 1:
            raise ValueError(f"{account} has sessions in several currencies: {sorted(currencies)}")
        sequence, number = document_number_allocate(
            organization_id=account.organization_id, kind=DocumentSequence.Kind.INVOICE
        )
        invoice = Invoice.objects.create(
            organization_id=account.organization_id,
            account=account,
            number=number,
            sequence=sequence,
            period_start=first,
            period_end=following,
            currency=currencies.pop(),
            total_excl_vat=sum((c.total_excl_vat for c in cdrs), Decimal(0)),
            total_vat=sum((c.total_vat for c in cdrs), Decimal(0)),
            total_incl_vat=sum((c.total_incl_vat for c in cdrs), Decimal(0)),
            issued_at=end if now is None or now >= end else now,
        )
        InvoiceLine.objects.bulk_create(
            InvoiceLine(
                invoice=invoice,
                position=position,
                cdr=cdr,
                description=_cdr_description(cdr),
                energy_wh=cdr.energy_wh,
                amount_excl_vat=cdr.total_excl_vat,
                vat=cdr.total_vat,
                amount_incl_vat=cdr.total_incl_vat,
            )
            for position, cdr in enumerate(cdrs, start=1)
        )
        # The document's fingerprint, written with it: the same invoice always renders the same.
        pdf = invoice_pdf(
            invoice=Invoice.objects.select_related("account", "organization").get(pk=invoice.pk)
        )
        invoice.pdf_sha256 = hashlib.sha256(pdf).hexdigest()
        Invoice.objects.filter(pk=invoice.pk).update(pdf_sha256=invoice.pdf_sha256)
    return invoice


def accounts_to_invoice(*, organization_id: int | None, period_start: date) -> list[int]:
    """Accounts with current, uninvoiced CDRs in the month and no invoice for it yet."""
    _, _, start, end = month_bounds(period_start)
    cdrs = Cdr.objects.filter(
        current=True,
        account__isnull=False,
        stopped_at__gte=start,
        stopped_at__lt=end,
        invoice_lines__isnull=True,
    ).exclude(account__invoices__period_start=period_start.replace(day=1))
    if organization_id is not None:
        cdrs = cdrs.filter(organization_id=organization_id)
    return sorted(set(cdrs.values_list("account_id", flat=True)))


# --- Statements ----------------------------------------------------------------------------------


def statement_document(statement: Statement) -> documents.StatementDocument:
    return documents.StatementDocument(
        number=statement.number,
        issued_at=statement.issued_at,
        period_start=statement.period_start,
        period_end=statement.period_end,
        issuer=documents.Party(name=statement.organization.name),
        site_host=documents.Party(name=statement.site_host.name),
        currency=statement.currency,
        platform_fee_percent=statement.platform_fee_percent,
        lines=tuple(
            documents.StatementSiteLine(
                site=line.site.name,
                sessions=line.sessions,
                energy_wh=line.energy_wh,
                revenue_excl_vat=line.revenue_excl_vat,
                platform_fee=line.platform_fee,
                payout=line.payout,
            )
            for line in statement.lines.select_related("site")
        ),
        sessions=statement.sessions,
        energy_wh=statement.energy_wh,
        revenue_excl_vat=statement.revenue_excl_vat,
        platform_fee=statement.platform_fee,
        payout=statement.payout,
    )


@dataclass(frozen=True, slots=True)
class _SiteFigures:
    sessions: int
    energy_wh: Decimal
    revenue_excl_vat: Decimal


def statement_generate(
    *, site_host: SiteHost, period_start: date, now: datetime | None = None
) -> Statement | None:
    """The site host's statement for the month (UTC), made once: per site, the revenue excl. VAT
    of sessions that stopped in the month less credit notes issued in it, the platform fee
    (rounded half up per site) and the payout. None when their sites had no sessions."""
    first, following, start, end = month_bounds(period_start)
    existing = Statement.objects.filter(site_host=site_host, period_start=first).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        SiteHost.objects.select_for_update().get(pk=site_host.pk)
        existing = Statement.objects.filter(site_host=site_host, period_start=first).first()
        if existing is not None:
            return existing
        sites = list(site_host.sites.order_by("name", "id"))
        figures: dict[int, _SiteFigures] = {}
        currencies: set[str] = set()
        for site in sites:
            cdrs = Cdr.objects.filter(
                site=site, current=True, stopped_at__gte=start, stopped_at__lt=end
            )
            totals = cdrs.aggregate(energy=Sum("energy_wh"), revenue=Sum("total_excl_vat"))
            credited = CreditNote.objects.filter(
                cdr__site=site, issued_at__gte=start, issued_at__lt=end
            ).aggregate(amount=Sum("amount_excl_vat"))["amount"] or Decimal(0)
            count = cdrs.count()
            if count == 0 and not credited:
                continue
            currencies |= set(cdrs.values_list("currency", flat=True))
            figures[site.pk] = _SiteFigures(
                sessions=count,
                energy_wh=totals["energy"] or Decimal(0),
                revenue_excl_vat=(totals["revenue"] or Decimal(0)) - credited,
            )
        if not figures:
            return None
        if len(currencies) > 1:
            raise ValueError(f"{site_host} has sessions in several currencies")
        percent = site_host.platform_fee_percent
        lines = []
        for site in sites:
            if site.pk not in figures:
                continue
            fig = figures[site.pk]
            fee = _cents(fig.revenue_excl_vat * percent / 100)
            lines.append((site, fig, fee, fig.revenue_excl_vat - fee))
        sequence, number = document_number_allocate(
            organization_id=site_host.organization_id, kind=DocumentSequence.Kind.STATEMENT
        )
        statement = Statement.objects.create(
            organization_id=site_host.organization_id,
            site_host=site_host,
            number=number,
            sequence=sequence,
            period_start=first,
            period_end=following,
            currency=currencies.pop() if currencies else "EUR",
            sessions=sum(fig.sessions for _, fig, _, _ in lines),
            energy_wh=sum((fig.energy_wh for _, fig, _, _ in lines), Decimal(0)),
            revenue_excl_vat=sum((fig.revenue_excl_vat for _, fig, _, _ in lines), Decimal(0)),
            platform_fee_percent=percent,
            platform_fee=sum((fee for _, _, fee, _ in lines), Decimal(0)),
            payout=sum((payout for _, _, _, payout in lines), Decimal(0)),
            issued_at=end if now is None or now >= end else now,
        )
        StatementLine.objects.bulk_create(
            StatementLine(
                statement=statement,
                site=site,
                sessions=fig.sessions,
                energy_wh=fig.energy_wh,
                revenue_excl_vat=fig.revenue_excl_vat,
                platform_fee=fee,
                payout=payout,
            )
            for site, fig, fee, payout in lines
        )
    return statement


# --- Disputes and credit notes -------------------------------------------------------------------


def credited_so_far(cdr: Cdr) -> Decimal:
    return CreditNote.objects.filter(cdr__session_id=cdr.session_id).aggregate(
        total=Sum("amount_incl_vat")
    )["total"] or Decimal(0)


def dispute_open(*, cdr: Cdr, reason: str, user: Any = None) -> Dispute:
    return Dispute.objects.create(
        organization_id=cdr.organization_id,
        cdr=cdr,
        reason=reason,
        opened_by=user if getattr(user, "is_authenticated", False) else None,
    )


def dispute_reject(*, dispute: Dispute, resolution: str, user: Any = None) -> Dispute:
    with transaction.atomic():
        dispute = Dispute.objects.select_for_update().get(pk=dispute.pk)
        dispute.state = Dispute.State.REJECTED
        dispute.resolution = resolution
        dispute.resolved_at = timezone.now()
        dispute.resolved_by = user if getattr(user, "is_authenticated", False) else None
        dispute.save()
    return dispute


def dispute_credit(
    *, dispute: Dispute, resolution: str, amount_incl_vat: Decimal, user: Any = None
) -> Dispute:
    """Resolve a dispute with a credit note for ``amount_incl_vat`` (VAT split pro rata)."""
    with transaction.atomic():
        dispute = Dispute.objects.select_for_update().select_related("cdr").get(pk=dispute.pk)
        cdr = dispute.cdr
        if cdr.total_incl_vat:
            excl = _cents(amount_incl_vat * cdr.total_excl_vat / cdr.total_incl_vat)
        else:
            excl = amount_incl_vat
        sequence, number = document_number_allocate(
            organization_id=cdr.organization_id, kind=DocumentSequence.Kind.CREDIT_NOTE
        )
        note = CreditNote.objects.create(
            organization_id=cdr.organization_id,
            cdr=cdr,
            number=number,
            sequence=sequence,
            currency=cdr.currency,
            amount_excl_vat=excl,
            vat=amount_incl_vat - excl,
            amount_incl_vat=amount_incl_vat,
            reason=resolution or dispute.reason,
            issued_at=timezone.now(),
        )
        dispute.state = Dispute.State.CREDITED
        dispute.resolution = resolution
        dispute.resolved_at = note.issued_at
        dispute.resolved_by = user if getattr(user, "is_authenticated", False) else None
        dispute.credit_note = note
        dispute.save()
    return dispute


# --- Cost on the charger -------------------------------------------------------------------------


def cost_display_enabled(*, charger: Charger) -> bool:
    """A rule for the charger itself wins; else the rule for its vendor and model."""
    own = CostDisplayRule.objects.filter(charger=charger).values_list("enabled", flat=True).first()
    if own is not None:
        return bool(own)
    rules = CostDisplayRule.objects.filter(
        organization_id=charger.organization_id, charger__isnull=True, model__iexact=charger.model
    ).filter(Q(vendor="") | Q(vendor__iexact=charger.vendor))
    # A rule naming the vendor is more specific than one for the model of any vendor.
    rule = rules.order_by("-vendor").values_list("enabled", flat=True).first()
    return bool(rule)


def chargers_showing_cost(identities: Iterable[str]) -> dict[str, bool]:
    """``cost_display_enabled`` for many chargers in one query, by identity (chargers that do not
    exist are left out)."""
    own = CostDisplayRule.objects.filter(charger=OuterRef("pk")).values("enabled")[:1]
    by_model = (
        CostDisplayRule.objects.filter(
            organization_id=OuterRef("organization_id"),
            charger__isnull=True,
            model__iexact=OuterRef("model"),
        )
        .filter(Q(vendor="") | Q(vendor__iexact=OuterRef("vendor")))
        .order_by("-vendor")
        .values("enabled")[:1]
    )
    rows = (
        Charger.objects.filter(identity__in=list(identities))
        .annotate(shows=Coalesce(Subquery(own), Subquery(by_model), Value(False)))
        .values_list("identity", "shows")
    )
    return {identity: bool(shows) for identity, shows in rows}


def _send(charger: Charger, action: str, payload: dict[str, Any]) -> None:
    from chargers.command_services import CommandInvalid, CommandRefused, command_create

    try:
        command_create(charger=charger, action=action, payload=payload, system="billing")
    except (CommandInvalid, CommandRefused) as exc:
        # The charger went away or does not take it; cost display is best effort.
        logger.info("cost message %s to %s not sent: %s", action, charger.identity, exc)


def running_cost_send(*, session_id: int, now: datetime | None = None) -> bool:
    """Send a running session's cost so far to its charger when it changed, at most once per
    ``CPMS_RUNNING_COST_INTERVAL``."""
    now = now or timezone.now()
    session = (
        Session.objects.select_related("charger__site", "id_token").filter(pk=session_id).first()
    )
    if session is None or session.state != SessionState.ACTIVE:
        return False
    charger = session.charger
    if not cost_display_enabled(charger=charger):
        return False
    interval = timedelta(seconds=settings.CPMS_RUNNING_COST_INTERVAL)
    with transaction.atomic():
        last = RunningCostSent.objects.select_for_update().filter(session=session).first()
        if last is not None and now - last.sent_at < interval:
            return False
        running = pricing_bridge.running_cost(session=session, now=now)
        # Nothing new to show: no cost yet, or the figure the charger shows already.
        shown = last.total_incl_vat if last is not None else Decimal(0)
        if running is None or running.total_incl_vat == shown:
            return False
        RunningCostSent.objects.update_or_create(
            session=session,
            defaults={"sent_at": now, "total_incl_vat": running.total_incl_vat},
        )
        if charger.ocpp_version == "1.6":
            _send(charger, "DataTransfer", costmsg.running_cost_16(running))
        else:
            _send(charger, "CostUpdated", costmsg.cost_updated(running))
    return True


def tariff_text_send(*, session_id: int) -> bool:
    """Show the session's tariff on its charger when the session starts."""
    session = (
        Session.objects.select_related("charger__site", "id_token").filter(pk=session_id).first()
    )
    if session is None or session.state != SessionState.ACTIVE:
        return False
    charger = session.charger
    if not cost_display_enabled(charger=charger):
        return False
    text = pricing_bridge.tariff_text(session=session)
    if not text:
        return False
    if charger.ocpp_version == "1.6":
        if not session.id_tag:
            return False
        _send(
            charger, "DataTransfer", costmsg.user_price_16(id_token=session.id_tag, price_text=text)
        )
    else:
        message_id = costmsg.DISPLAY_MESSAGE_BASE_ID + session.pk % 100_000_000
        _send(
            charger,
            "SetDisplayMessage",
            costmsg.tariff_display_message(
                message_id=message_id, transaction_id=session.transaction_id, text=text
            ),
        )
    return True


def final_cost_send(*, cdr: Cdr) -> bool:
    """1.6: the final cost after the session (2.x gets it in the TransactionEvent answer)."""
    charger = cdr.charger
    if charger.ocpp_version != "1.6" or not cost_display_enabled(charger=charger):
        return False
    text = costmsg.final_cost_text(
        total_incl_vat=cdr.total_incl_vat, currency=cdr.currency, energy_wh=cdr.energy_wh
    )
    _send(
        charger,
        "DataTransfer",
        costmsg.final_cost_16(
            transaction_id=cdr.session.transaction_id,
            total_incl_vat=cdr.total_incl_vat,
            price_text=text,
        ),
    )
    return True


def session_total_cost(*, session_pk: int) -> Decimal | None:
    """2.x: the final cost to put in the TransactionEvent Ended answer, when the charger shows
    cost; the same figure the CDR will carry."""
    session = (
        Session.objects.select_related("charger__site", "id_token").filter(pk=session_pk).first()
    )
    if session is None or not cost_display_enabled(charger=session.charger):
        return None
    existing = Cdr.objects.filter(session=session, current=True).first()
    if existing is not None:
        return existing.total_incl_vat
    priced = pricing_bridge.session_price(session=session)
    return None if priced is None else priced.total_incl_vat


# --- Accounts, site hosts, energy prices, cost display rules -------------------------------------


def customer_account_save(
    *, organization_id: int, data: dict[str, Any], account: CustomerAccount | None = None
) -> CustomerAccount:
    """Create or change an account; ``id_tokens``, when given, replaces the tokens it owns."""
    tokens = data.pop("id_tokens", None)
    with transaction.atomic():
        if account is None:
            account = CustomerAccount.objects.create(organization_id=organization_id, **data)
        else:
            for name, value in data.items():
                setattr(account, name, value)
            account.save()
        if tokens is not None:
            AccountIdToken.objects.filter(account=account).exclude(id_token__in=tokens).delete()
            for token in tokens:
                AccountIdToken.objects.get_or_create(id_token=token, defaults={"account": account})
    return account


def site_host_save(
    *, organization_id: int, data: dict[str, Any], site_host: SiteHost | None = None
) -> SiteHost:
    sites = data.pop("sites", None)
    with transaction.atomic():
        if site_host is None:
            site_host = SiteHost.objects.create(organization_id=organization_id, **data)
        else:
            for name, value in data.items():
                setattr(site_host, name, value)
            site_host.save()
        if sites is not None:
            site_host.sites.set(sites)
    return site_host


def energy_price_save(*, data: dict[str, Any], price: EnergyPrice | None = None) -> EnergyPrice:
    """Create or replace a site's energy purchase price with its time-of-use periods."""
    periods = data.pop("periods", None)
    with transaction.atomic():
        if price is None:
            price = EnergyPrice.objects.create(**data)
        else:
            for name, value in data.items():
                setattr(price, name, value)
            price.save()
        if periods is not None:
            price.periods.all().delete()
            EnergyPricePeriod.objects.bulk_create(
                EnergyPricePeriod(energy_price=price, **period) for period in periods
            )
    return price
