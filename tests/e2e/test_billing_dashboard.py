"""Billing in a real browser against the real server: a 1.6 session over a real socket is priced
into a CDR whose line-by-line breakdown the operator reads; the operator disputes it and credits
part of it; the driver's monthly invoice is generated and its PDF lists the session; a site host
sees their site's CDRs and statements but no customer invoices."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from billing import record_services
from billing.models import Cdr, CostDisplayRule, Invoice
from chargers.models import Charger, ConnectorStatusChange, IdToken
from cpms.models import Organization, Role
from tests.billing.worker import celery_worker, wait_for  # noqa: F401
from tests.conftest import ServerProcess
from tests.e2e.test_billing_cdr import T0, stamp, tou_tariff
from tests.e2e.test_dashboard import (  # noqa: F401
    _orm_beside_playwright,
    browser,
    browser_context_args,
    make_user,
    ocpp_charger,
    playwright,
    sign_in,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def run_session(server: ServerProcess, charger: Charger, id_token: IdToken) -> None:
    """17:00-19:30 local: 10 kWh, 7 kWh in the peak, then idle for 30 minutes."""
    with ocpp_charger(server, charger.identity) as cp:
        cp.boot()
        cp.call(
            "StatusNotification",
            {
                "connectorId": 1,
                "status": "Preparing",
                "errorCode": "NoError",
                "timestamp": stamp(T0),
            },
        )
        wait_for(lambda: charger.connectors.filter(connector_id=1).exists(), what="connector")
        tx = cp.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": id_token.token, "meterStart": 1000, "timestamp": stamp(T0)},
        )["transactionId"]
        for hour, register in ((1, 11000), (2, 18000)):
            cp.call(
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": tx,
                    "meterValue": [
                        {
                            "timestamp": stamp(T0 + timedelta(hours=hour)),
                            "sampledValue": [{"value": str(register), "unit": "Wh"}],
                        }
                    ],
                },
            )
        cp.call(
            "StatusNotification",
            {
                "connectorId": 1,
                "status": "SuspendedEV",
                "errorCode": "NoError",
                "timestamp": stamp(T0 + timedelta(hours=2)),
            },
        )
        wait_for(
            lambda: ConnectorStatusChange.objects.filter(status="SuspendedEV").exists(),
            what="idle status",
        )
        cp.call(
            "StopTransaction",
            {
                "transactionId": tx,
                "meterStop": 18000,
                "timestamp": stamp(T0 + timedelta(hours=2, minutes=30)),
            },
        )


def test_a_session_becomes_a_cdr_a_dispute_and_an_invoice(
    server: ServerProcess,
    page: Page,
    organization: Organization,
    charger: Charger,
    id_token: IdToken,
    celery_worker: None,  # noqa: F811
) -> None:
    tou_tariff(charger)
    # This charger shows no cost: the plain test client answers no DataTransfer.
    CostDisplayRule.objects.all().delete()
    record_services.customer_account_save(
        organization_id=organization.pk,
        data={"name": "Jane Driver", "id_tokens": [id_token]},
    )
    make_user("operator", organization, Role.OPERATOR)
    make_user("host", organization, Role.SITE_HOST, sites=(charger.site,))
    run_session(server, charger, id_token)
    cdr = wait_for(lambda: Cdr.objects.filter(session__charger=charger).first(), what="CDR")

    sign_in(page, "operator")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    expect(page.get_by_role("heading", name="Charge detail records")).to_be_visible()
    row = page.locator("#cdr-table tbody tr", has_text=charger.identity)
    expect(row).to_contain_text("EUR 9.68")
    row.get_by_role("link", name=f"CDR {cdr.pk}").click()

    # The breakdown matches the hand calculation: 3.00 + 3.50 + 1.50 = 8.00, 9.68 incl. VAT.
    lines = page.locator("#cdr-lines tbody tr")
    expect(lines).to_have_count(3)
    expect(page.locator("#cdr-lines")).to_contain_text("10.000000 kWh")
    expect(page.locator("#cdr-lines")).to_contain_text("7.000000 kWh")
    expect(page.locator("#cdr-lines")).to_contain_text("0.250000 h")
    expect(page.locator("#cdr-total-excl")).to_have_text("8.00")
    expect(page.locator("#cdr-total-incl")).to_have_text("9.68")

    # The session's page shows the same breakdown.
    page.get_by_role("link", name=str(cdr.session_id)).click()
    expect(page.locator("#session-cost")).to_contain_text(f"CDR {cdr.pk}")
    expect(page.locator("#session-cost tbody tr")).to_have_count(3)
    expect(page.locator("#session-cost-total")).to_have_text("9.68")
    page.go_back()

    # An empty reason is refused; a real one opens the dispute.
    page.get_by_role("button", name="Dispute this CDR").click()
    expect(page.get_by_role("alert").first).to_contain_text("required")
    page.get_by_label("Dispute reason").fill("The car was gone by 19:15")
    page.get_by_role("button", name="Dispute this CDR").click()
    expect(page.get_by_text(f"CDR {cdr.pk} disputed.")).to_be_visible()

    page.get_by_role("navigation", name="Billing").get_by_role("link", name="Disputes").click()
    expect(page.locator("#dispute-rate")).to_contain_text("100.00 %")
    page.locator("#dispute-table").get_by_role("link", name=re.compile(r"^Dispute \d+$")).click()
    page.get_by_label("Outcome").select_option("credited")
    page.get_by_label("Resolution").fill("Idle fee after 19:15 refunded")
    page.get_by_label("Amount incl. VAT").fill("20.00")
    page.get_by_role("button", name="Resolve").click()
    expect(page.get_by_text("At most 9.68 EUR is left.")).to_be_visible()
    page.get_by_label("Amount incl. VAT").fill("0.91")
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#credit-note")).to_contain_text("CN-000001: EUR 0.91")
    expect(page.locator("#dispute-state-value")).to_have_text("Credited")

    # The driver's invoice for March, made by Celery, lists the session.
    page.get_by_role("navigation", name="Billing").get_by_role("link", name="Invoices").click()
    page.get_by_label("Account").select_option(label="Jane Driver")
    page.get_by_label("Month").fill("2024-03")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_text("Invoice for 2024-03 queued.")).to_be_visible()
    wait_for(lambda: Invoice.objects.exists(), what="invoice")
    page.reload()
    invoice_row = page.locator("#invoice-table tbody tr", has_text="INV-000001")
    expect(invoice_row).to_contain_text("EUR 9.68")
    with page.expect_download() as download:
        invoice_row.get_by_role("link", name="PDF").click()
    pdf = PdfReader(io.BytesIO(download.value.path().read_bytes()))
    text = "".join(p.extract_text() for p in pdf.pages)
    assert "INV-000001" in text and f"CDR {cdr.pk}" in text
    assert "8.00" in text and "1.68" in text and "9.68" in text
    assert Invoice.objects.get().total_incl_vat == Decimal("9.68")

    # A site host sees the CDR of their site, but no customer invoices.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, "host")
    page.goto("/billing/cdrs/")
    expect(page.locator("#cdr-table")).to_contain_text(charger.identity)
    expect(
        page.get_by_role("navigation", name="Billing").get_by_role("link", name="Invoices")
    ).to_have_count(0)
    assert page.goto("/billing/invoices/").status == 403  # type: ignore[union-attr]


def test_bad_input_changes_nothing(
    server: ServerProcess, page: Page, organization: Organization, charger: Charger, id_token: Any
) -> None:
    make_user("operator", organization, Role.OPERATOR)
    sign_in(page, "operator")
    page.goto("/billing/invoices/")
    page.get_by_label("Month").fill("March")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_text("A month as YYYY-MM, e.g. 2024-03.")).to_be_visible()
    page.goto("/billing/cdrs/?month=2024-13")
    expect(page.get_by_text("A month as YYYY-MM, e.g. 2024-03.")).to_be_visible()
    assert not Invoice.objects.exists()
