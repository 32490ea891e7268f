"""Monthly invoices per customer account: their lines and totals, the PDF and CSV, numbers
without gaps (also when generated concurrently), and reproducibility."""

from __future__ import annotations

import csv
import hashlib
import io
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections
from pypdf import PdfReader

from billing import record_services as services
from billing.models import CustomerAccount, DocumentSequence, Invoice
from chargers import services as charger_services
from chargers.models import Charger, IdToken
from cpms.models import Organization
from tests.billing.records import cdr_for, ended_session
from tests.billing.worker import celery_worker, wait_for  # noqa: F401

MARCH = date(2024, 3, 1)


def account_with_token(
    organization: Organization, name: str, token: str
) -> tuple[CustomerAccount, IdToken]:
    id_token = charger_services.id_token_create(organization=organization, token=token)
    account = services.customer_account_save(
        organization_id=organization.pk,
        data={
            "name": name,
            "billing_address": "Kade 1\n1000 AA Amsterdam",
            "id_tokens": [id_token],
        },
    )
    return account, id_token


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


@pytest.mark.django_db
def test_invoice_lists_the_months_cdrs_with_exact_totals(
    organization: Organization, charger: Charger
) -> None:
    account, token = account_with_token(organization, "Jane Driver", "TAG-JANE")
    in_march = [
        cdr_for(
            ended_session(charger, stopped_at=datetime(2024, 3, d, 12, tzinfo=UTC), id_token=token),
            total_excl_vat=Decimal(amount),
            account_id=account.pk,
        )
        for d, amount in ((2, "6.60"), (15, "3.33"), (31, "10.01"))
    ]
    # April and another account's CDRs stay off the invoice.
    cdr_for(
        ended_session(charger, stopped_at=datetime(2024, 4, 1, 0, 0, tzinfo=UTC), id_token=token),
        total_excl_vat=Decimal("5.00"),
        account_id=account.pk,
    )
    other, other_token = account_with_token(organization, "Other", "TAG-OTHER")
    cdr_for(
        ended_session(charger, stopped_at=datetime(2024, 3, 9, tzinfo=UTC), id_token=other_token),
        total_excl_vat=Decimal("1.00"),
        account_id=other.pk,
    )

    invoice = services.invoice_generate(account=account, period_start=MARCH)

    assert invoice is not None
    assert invoice.number == "INV-000001"
    assert [line.cdr_id for line in invoice.lines.all()] == [c.pk for c in in_march]
    # 6.60 + 3.33 + 10.01 = 19.94; VAT 1.39 + 0.70 + 2.10 = 4.19 (each CDR rounded, then summed)
    assert invoice.total_excl_vat == Decimal("19.94")
    assert invoice.total_vat == Decimal("4.19")
    assert invoice.total_incl_vat == Decimal("24.13")
    assert invoice.period_end == date(2024, 4, 1)
    assert invoice.issued_at == datetime(2024, 4, 1, tzinfo=UTC)

    pdf = services.invoice_pdf(invoice=invoice)
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf)
    assert "Invoice INV-000001" in text
    assert "Jane Driver" in text
    assert "19.94" in text and "4.19" in text and "24.13" in text
    for cdr in in_march:
        assert f"CDR {cdr.pk}" in text
    assert invoice.pdf_sha256 == hashlib.sha256(pdf).hexdigest()

    rows = list(
        csv.DictReader(
            io.StringIO(services.documents.invoice_csv(services.invoice_document(invoice)))
        )
    )
    assert [r["amount_excl_vat"] for r in rows] == ["6.60", "3.33", "10.01", "19.94"]
    assert rows[-1]["reference"] == "TOTAL" and rows[-1]["amount_incl_vat"] == "24.13"


@pytest.mark.django_db
def test_generating_again_changes_nothing_and_the_pdf_is_reproducible(
    organization: Organization, charger: Charger
) -> None:
    account, token = account_with_token(organization, "Jane Driver", "TAG-JANE")
    cdr_for(
        ended_session(charger, stopped_at=datetime(2024, 3, 2, tzinfo=UTC), id_token=token),
        total_excl_vat=Decimal("6.60"),
        account_id=account.pk,
    )
    first = services.invoice_generate(account=account, period_start=MARCH)
    again = services.invoice_generate(account=account, period_start=date(2024, 3, 17))
    assert first is not None and again is not None
    assert again.pk == first.pk
    assert Invoice.objects.count() == 1
    assert DocumentSequence.objects.get(organization=organization, kind="invoice").next_value == 2
    assert services.invoice_pdf(invoice=first) == services.invoice_pdf(invoice=again)
    # A month without sessions gets no invoice and takes no number.
    assert services.invoice_generate(account=account, period_start=date(2024, 5, 1)) is None
    assert DocumentSequence.objects.get(organization=organization, kind="invoice").next_value == 2


@pytest.mark.django_db
def test_a_failed_invoice_gives_its_number_back(
    organization: Organization, charger: Charger
) -> None:
    account, token = account_with_token(organization, "Jane Driver", "TAG-JANE")
    dollars = cdr_for(
        ended_session(charger, stopped_at=datetime(2024, 3, 2, tzinfo=UTC), id_token=token),
        total_excl_vat=Decimal("1.00"),
        account_id=account.pk,
    )
    cdr_for(
        ended_session(charger, stopped_at=datetime(2024, 3, 3, tzinfo=UTC), id_token=token),
        total_excl_vat=Decimal("2.00"),
        account_id=account.pk,
    )
    type(dollars).objects.filter(pk=dollars.pk).update(currency="USD")
    with pytest.raises(ValueError, match="several currencies"):
        services.invoice_generate(account=account, period_start=MARCH)
    type(dollars).objects.filter(pk=dollars.pk).update(currency="EUR")
    invoice = services.invoice_generate(account=account, period_start=MARCH)
    assert invoice is not None and invoice.number == "INV-000001"


@pytest.mark.django_db(transaction=True)
def test_concurrent_generation_numbers_without_gaps(
    organization: Organization, charger: Charger
) -> None:
    accounts = []
    for n in range(8):
        account, token = account_with_token(organization, f"Driver {n}", f"TAG-{n}")
        cdr_for(
            ended_session(charger, stopped_at=datetime(2024, 3, 10, n, tzinfo=UTC), id_token=token),
            total_excl_vat=Decimal("1.00") + n,
            account_id=account.pk,
        )
        accounts.append(account)
    barrier = threading.Barrier(len(accounts) * 2)
    errors: list[BaseException] = []

    def generate(account: CustomerAccount) -> None:
        try:
            barrier.wait(timeout=60)
            services.invoice_generate(account=account, period_start=MARCH)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    # Each account twice at once: one invoice per account, no number lost or given twice.
    threads = [threading.Thread(target=generate, args=(a,)) for a in accounts for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    invoices = list(Invoice.objects.order_by("sequence"))
    assert [i.sequence for i in invoices] == list(range(1, len(accounts) + 1))
    assert sorted(i.account_id for i in invoices) == sorted(a.pk for a in accounts)
    assert len({i.number for i in invoices}) == len(accounts)


@pytest.mark.django_db(transaction=True)
def test_documents_due_generates_last_months_invoices_on_celery(
    organization: Organization,
    charger: Charger,
    celery_worker: None,  # noqa: F811
    monkeypatch: Any,
) -> None:
    from billing import tasks

    account, token = account_with_token(organization, "Jane Driver", "TAG-JANE")
    cdr_for(
        ended_session(charger, stopped_at=datetime(2024, 3, 2, tzinfo=UTC), id_token=token),
        total_excl_vat=Decimal("6.60"),
        account_id=account.pk,
    )
    monkeypatch.setattr("django.utils.timezone.now", lambda: datetime(2024, 4, 2, 3, tzinfo=UTC))
    # The periodic job finds the account and hands its invoice to a task.
    assert tasks.documents_due() == {"invoices": 1, "statements": 0}
    invoice = wait_for(lambda: Invoice.objects.filter(account=account).first(), what="invoice")
    assert invoice.period_start == MARCH and invoice.number == "INV-000001"
    assert invoice.pdf_sha256
    # Once made, there is nothing left to do for that month.
    assert tasks.documents_due() == {"invoices": 0, "statements": 0}
