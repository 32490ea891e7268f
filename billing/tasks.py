"""Celery tasks of billing: thin, ids in, a service does the work."""

from __future__ import annotations

from datetime import date

from celery import shared_task


@shared_task(name="billing.cdr_create", ignore_result=True, max_retries=3, acks_late=True)
def cdr_create(session_id: int) -> int | None:
    from .record_services import cdr_create_for_session, final_cost_send

    cdr = cdr_create_for_session(session_id=session_id)
    if cdr is None:
        return None
    final_cost_send(cdr=cdr)
    return cdr.pk


@shared_task(name="billing.running_cost_send", ignore_result=True)
def running_cost_send(session_id: int) -> bool:
    from .record_services import running_cost_send as send

    return send(session_id=session_id)


@shared_task(name="billing.tariff_text_send", ignore_result=True)
def tariff_text_send(session_id: int) -> bool:
    from .record_services import tariff_text_send as send

    return send(session_id=session_id)


@shared_task(name="billing.invoice_generate", ignore_result=True, max_retries=3)
def invoice_generate(account_id: int, period_start: str) -> int | None:
    from .models import CustomerAccount
    from .record_services import invoice_generate as generate

    account = CustomerAccount.objects.get(pk=account_id)
    invoice = generate(account=account, period_start=date.fromisoformat(period_start))
    return invoice.pk if invoice else None


@shared_task(name="billing.statement_generate", ignore_result=True, max_retries=3)
def statement_generate(site_host_id: int, period_start: str) -> int | None:
    from .models import SiteHost
    from .record_services import statement_generate as generate

    host = SiteHost.objects.get(pk=site_host_id)
    statement = generate(site_host=host, period_start=date.fromisoformat(period_start))
    return statement.pk if statement else None


@shared_task(name="billing.documents_due", ignore_result=True)
def documents_due() -> dict[str, int]:
    """Last month's invoices and statements not made yet, one task each (idempotent)."""
    from django.utils import timezone

    from .models import SiteHost, Statement
    from .record_services import accounts_to_invoice, previous_month

    month = previous_month(timezone.now())
    accounts = accounts_to_invoice(organization_id=None, period_start=month)
    for account_id in accounts:
        invoice_generate.delay(account_id, month.isoformat())
    hosts = list(
        SiteHost.objects.exclude(
            pk__in=Statement.objects.filter(period_start=month).values("site_host_id")
        ).values_list("pk", flat=True)
    )
    for host_id in hosts:
        statement_generate.delay(host_id, month.isoformat())
    return {"invoices": len(accounts), "statements": len(hosts)}


@shared_task(name="billing.cdrs_missing", ignore_result=True)
def cdrs_missing() -> int:
    """CDRs of the last day's ended sessions that have none (idempotent, one task each); the
    last minutes are left to the session.ended receiver."""
    from datetime import timedelta

    from django.utils import timezone

    from .record_services import sessions_without_cdr

    now = timezone.now()
    sessions = sessions_without_cdr(since=now - timedelta(days=1), until=now - timedelta(minutes=5))
    for session_id in sessions:
        cdr_create.delay(session_id)
    return len(sessions)
