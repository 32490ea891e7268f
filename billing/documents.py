"""Invoices and statements as files: PDF (WeasyPrint) and CSV (tablib).

Rendering reads only the frozen document passed in, and the PDF's dates are the document's issue
time, so the same document always gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import tablib
from django.template.loader import render_to_string

KWH = Decimal("0.001")


@dataclass(frozen=True, slots=True)
class DocumentLine:
    description: str
    reference: str
    energy_wh: Decimal
    amount_excl_vat: Decimal
    vat: Decimal
    amount_incl_vat: Decimal

    @property
    def energy_kwh(self) -> Decimal:
        return (self.energy_wh / 1000).quantize(KWH)


@dataclass(frozen=True, slots=True)
class Party:
    name: str
    address: str = ""
    vat_number: str = ""


@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    number: str
    issued_at: datetime
    period_start: date
    period_end: date  # exclusive
    issuer: Party
    customer: Party
    currency: str
    lines: tuple[DocumentLine, ...]
    total_excl_vat: Decimal
    total_vat: Decimal
    total_incl_vat: Decimal


@dataclass(frozen=True, slots=True)
class StatementSiteLine:
    site: str
    sessions: int
    energy_wh: Decimal
    revenue_excl_vat: Decimal
    platform_fee: Decimal
    payout: Decimal

    @property
    def energy_kwh(self) -> Decimal:
        return (self.energy_wh / 1000).quantize(KWH)


@dataclass(frozen=True, slots=True)
class StatementDocument:
    number: str
    issued_at: datetime
    period_start: date
    period_end: date
    issuer: Party
    site_host: Party
    currency: str
    platform_fee_percent: Decimal
    lines: tuple[StatementSiteLine, ...]
    sessions: int
    energy_wh: Decimal
    revenue_excl_vat: Decimal
    platform_fee: Decimal
    payout: Decimal

    @property
    def energy_kwh(self) -> Decimal:
        return (self.energy_wh / 1000).quantize(KWH)


def _pdf(template: str, context: dict[str, object], issued_at: datetime, title: str) -> bytes:
    from weasyprint import HTML  # imported here: it loads Pango when first used

    html = render_to_string(template, {**context, "title": title, "issued_at": issued_at})
    document = HTML(string=html).render()
    stamp = issued_at.isoformat()
    document.metadata.created = stamp
    document.metadata.modified = stamp
    document.metadata.title = title
    # With the dates fixed, the file is the same byte for byte on every rendering.
    return bytes(document.write_pdf())


def invoice_pdf(document: InvoiceDocument) -> bytes:
    return _pdf(
        "billing/pdf/invoice.html",
        {"invoice": document},
        document.issued_at,
        f"Invoice {document.number}",
    )


def statement_pdf(document: StatementDocument) -> bytes:
    return _pdf(
        "billing/pdf/statement.html",
        {"statement": document},
        document.issued_at,
        f"Statement {document.number}",
    )


def invoice_csv(document: InvoiceDocument) -> str:
    data = tablib.Dataset(
        headers=[
            "invoice",
            "reference",
            "description",
            "energy_kwh",
            "amount_excl_vat",
            "vat",
            "amount_incl_vat",
            "currency",
        ]
    )
    for line in document.lines:
        data.append(
            [
                document.number,
                line.reference,
                line.description,
                str(line.energy_kwh),
                str(line.amount_excl_vat),
                str(line.vat),
                str(line.amount_incl_vat),
                document.currency,
            ]
        )
    data.append(
        [
            document.number,
            "TOTAL",
            "",
            str(sum((line.energy_kwh for line in document.lines), Decimal(0))),
            str(document.total_excl_vat),
            str(document.total_vat),
            str(document.total_incl_vat),
            document.currency,
        ]
    )
    return str(data.export("csv"))


def statement_csv(document: StatementDocument) -> str:
    data = tablib.Dataset(
        headers=[
            "statement",
            "site",
            "sessions",
            "energy_kwh",
            "revenue_excl_vat",
            "platform_fee",
            "payout",
            "currency",
        ]
    )
    for line in document.lines:
        data.append(
            [
                document.number,
                line.site,
                line.sessions,
                str(line.energy_kwh),
                str(line.revenue_excl_vat),
                str(line.platform_fee),
                str(line.payout),
                document.currency,
            ]
        )
    data.append(
        [
            document.number,
            "TOTAL",
            document.sessions,
            str(document.energy_kwh),
            str(document.revenue_excl_vat),
            str(document.platform_fee),
            str(document.payout),
            document.currency,
        ]
    )
    return str(data.export("csv"))
