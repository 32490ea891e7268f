"""Reads of billing records a tenant may see: CDRs, invoices, statements, disputes and credit
notes, and the dispute rate.

Operators see all of their organization's. A site host sees the CDRs of their sites, the
disputes and credit notes on them, and the statements of the site hosts their sites belong to;
customer invoices are the customer's and the operator's only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import QuerySet

from chargers.models import Session, SessionState
from cpms.tenancy import Tenant

from .models import Cdr, CreditNote, CustomerAccount, Dispute, Invoice, SiteHost, Statement


def cdrs_for(tenant: Tenant) -> QuerySet[Cdr]:
    qs = Cdr.objects.filter(organization_id=tenant.organization_id)
    if tenant.site_ids is not None:
        qs = qs.filter(site_id__in=tenant.site_ids)
    return qs.select_related("charger", "site", "account")


def invoices_for(tenant: Tenant) -> QuerySet[Invoice]:
    if not tenant.is_operator and tenant.site_ids is not None:
        return Invoice.objects.none()
    return Invoice.objects.filter(organization_id=tenant.organization_id).select_related("account")


def accounts_for(tenant: Tenant) -> QuerySet[CustomerAccount]:
    if not tenant.is_operator and tenant.site_ids is not None:
        return CustomerAccount.objects.none()
    return CustomerAccount.objects.filter(organization_id=tenant.organization_id)


def site_hosts_for(tenant: Tenant) -> QuerySet[SiteHost]:
    qs = SiteHost.objects.filter(organization_id=tenant.organization_id)
    if tenant.site_ids is not None:
        qs = qs.filter(sites__in=tenant.site_ids).distinct()
    return qs


def statements_for(tenant: Tenant) -> QuerySet[Statement]:
    qs = Statement.objects.filter(organization_id=tenant.organization_id)
    if tenant.site_ids is not None:
        qs = qs.filter(site_host__in=site_hosts_for(tenant))
    return qs.select_related("site_host")


def disputes_for(tenant: Tenant) -> QuerySet[Dispute]:
    qs = Dispute.objects.filter(organization_id=tenant.organization_id)
    if tenant.site_ids is not None:
        qs = qs.filter(cdr__site_id__in=tenant.site_ids)
    return qs.select_related("cdr", "cdr__charger", "credit_note")


def credit_notes_for(tenant: Tenant) -> QuerySet[CreditNote]:
    qs = CreditNote.objects.filter(organization_id=tenant.organization_id)
    if tenant.site_ids is not None:
        qs = qs.filter(cdr__site_id__in=tenant.site_ids)
    return qs


@dataclass(frozen=True, slots=True)
class DisputeRate:
    sessions: int
    disputed: int

    @property
    def percent(self) -> Decimal:
        if not self.sessions:
            return Decimal(0)
        return (Decimal(self.disputed) * 100 / self.sessions).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP
        )


def dispute_rate(
    tenant: Tenant, *, since: datetime | None = None, until: datetime | None = None
) -> DisputeRate:
    """Sessions that ended in the period (all, when no bounds) and how many were disputed."""
    sessions = Session.objects.filter(
        charger__organization_id=tenant.organization_id, state=SessionState.COMPLETED
    )
    if tenant.site_ids is not None:
        sessions = sessions.filter(charger__site_id__in=tenant.site_ids)
    if since is not None:
        sessions = sessions.filter(stopped_at__gte=since)
    if until is not None:
        sessions = sessions.filter(stopped_at__lt=until)
    disputed = sessions.filter(cdrs__disputes__isnull=False).distinct().count()
    return DisputeRate(sessions=sessions.count(), disputed=disputed)
