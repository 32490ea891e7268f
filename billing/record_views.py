"""Dashboard pages of billing records: CDRs (with their lines, versions and disputes), invoices,
statements and disputes. Pages read through the record selectors, so another organization's (or
another host's) record is a 404; forms check input before a service writes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet, Sum
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from chargers import selectors as charger_selectors
from cpms.middleware import DashboardRequest, dashboard_view

from . import documents, record_selectors, record_services, tasks
from .models import Cdr, CreditNote, CustomerAccount, Dispute, SiteHost
from .records_serializers import MONTH

PAGE_SIZE = 25


def _page(request: DashboardRequest, queryset: QuerySet[Any]) -> Any:
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def _attachment(content: bytes | str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class MonthField(forms.CharField):
    def clean(self, value: Any) -> date:  # type: ignore[override]
        text = super().clean(value)
        match = MONTH.match(text or "")
        if not match:
            raise forms.ValidationError("A month as YYYY-MM, e.g. 2024-03.")
        return date(int(match.group(1)), int(match.group(2)), 1)


# --- CDRs -----------------------------------------------------------------------------------------


class CdrFilterForm(forms.Form):
    site: forms.ModelChoiceField[Any] = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="All sites"
    )
    month = MonthField(required=False, help_text="YYYY-MM")
    q = forms.CharField(required=False, label="Charger or id tag")

    def __init__(self, *args: Any, sites: QuerySet[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["site"].queryset = sites  # type: ignore[attr-defined]


@dashboard_view
def cdr_list(request: DashboardRequest) -> HttpResponse:
    tenant = request.tenant
    cdrs = record_selectors.cdrs_for(tenant).filter(current=True)
    form = CdrFilterForm(request.GET or None, sites=charger_selectors.sites_for(tenant))
    if form.is_valid():
        data = form.cleaned_data
        if data["site"]:
            cdrs = cdrs.filter(site=data["site"])
        if data["month"]:
            _, _, start, end = record_services.month_bounds(data["month"])
            cdrs = cdrs.filter(stopped_at__gte=start, stopped_at__lt=end)
        if data["q"]:
            cdrs = cdrs.filter(Q(charger__identity__icontains=data["q"]) | Q(id_tag=data["q"]))
    totals = cdrs.aggregate(
        energy=Sum("energy_wh"), revenue=Sum("total_excl_vat"), margin=Sum("margin")
    )
    return render(
        request,
        "billing/cdr_list.html",
        {
            "section": "billing",
            "tab": "cdrs",
            "form": form,
            "page": _page(request, cdrs.order_by("-stopped_at", "-id")),
            "totals": totals,
        },
        status=400 if form.errors else 200,
    )


class DisputeForm(forms.Form):
    reason = forms.CharField(
        label="Dispute reason", widget=forms.Textarea(attrs={"rows": 3}), max_length=2000
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why the CDR is disputed.")
        return reason


class CorrectForm(forms.Form):
    reason = forms.CharField(
        label="Correction reason", max_length=300, help_text="Why the CDR is corrected"
    )


@dashboard_view
def cdr_detail(request: DashboardRequest, pk: int) -> HttpResponse:
    tenant = request.tenant
    cdr = get_object_or_404(record_selectors.cdrs_for(tenant), pk=pk)
    dispute_form = DisputeForm(prefix="dispute")
    correct_form = CorrectForm(prefix="correct")
    status = 200
    if request.method == "POST" and tenant.is_operator:
        if "dispute-reason" in request.POST:
            dispute_form = DisputeForm(request.POST, prefix="dispute")
            if dispute_form.is_valid():
                if not cdr.current:
                    dispute_form.add_error(None, "This CDR was corrected; dispute its current one.")
                elif cdr.disputes.filter(state=Dispute.State.OPEN).exists():
                    dispute_form.add_error(None, "This CDR has an open dispute already.")
                else:
                    record_services.dispute_open(
                        cdr=cdr, reason=dispute_form.cleaned_data["reason"], user=request.user
                    )
                    messages.success(request, f"CDR {cdr.pk} disputed.")
                    return redirect("billing:cdr_detail", pk=cdr.pk)
        elif "correct-reason" in request.POST:
            correct_form = CorrectForm(request.POST, prefix="correct")
            if correct_form.is_valid():
                try:
                    new = record_services.cdr_correct(
                        cdr=cdr, reason=correct_form.cleaned_data["reason"], user=request.user
                    )
                except record_services.NothingToCorrect as exc:
                    correct_form.add_error(None, str(exc))
                else:
                    messages.success(request, f"CDR corrected: version {new.version}.")
                    return redirect("billing:cdr_detail", pk=new.pk)
        status = 400
    versions = Cdr.objects.filter(session_id=cdr.session_id).order_by("version")
    return render(
        request,
        "billing/cdr_detail.html",
        {
            "section": "billing",
            "tab": "cdrs",
            "cdr": cdr,
            "lines": cdr.lines.all(),
            "versions": versions,
            "disputes": Dispute.objects.filter(cdr__session_id=cdr.session_id).select_related(
                "credit_note"
            ),
            "dispute_form": dispute_form,
            "correct_form": correct_form,
        },
        status=status,
    )


# --- Invoices -------------------------------------------------------------------------------------


class InvoiceGenerateForm(forms.Form):
    account = forms.ModelChoiceField(queryset=CustomerAccount.objects.none())
    month = MonthField(help_text="YYYY-MM")

    def __init__(self, *args: Any, accounts: QuerySet[CustomerAccount], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["account"].queryset = accounts  # type: ignore[attr-defined]


@dashboard_view(operators_only=True)
def invoice_list(request: DashboardRequest) -> HttpResponse:
    tenant = request.tenant
    accounts = record_selectors.accounts_for(tenant)
    form = InvoiceGenerateForm(request.POST or None, accounts=accounts)
    if request.method == "POST" and form.is_valid():
        month = form.cleaned_data["month"]
        tasks.invoice_generate.delay(form.cleaned_data["account"].pk, month.isoformat())
        messages.success(request, f"Invoice for {month:%Y-%m} queued.")
        return redirect("billing:invoice_list")
    invoices = record_selectors.invoices_for(tenant).order_by("-sequence")
    return render(
        request,
        "billing/invoice_list.html",
        {"section": "billing", "tab": "invoices", "form": form, "page": _page(request, invoices)},
        status=400 if form.errors else 200,
    )


@dashboard_view(operators_only=True)
def invoice_file(request: DashboardRequest, pk: int, kind: str) -> HttpResponse:
    invoice = get_object_or_404(record_selectors.invoices_for(request.tenant), pk=pk)
    if kind == "pdf":
        return _attachment(
            record_services.invoice_pdf(invoice=invoice), "application/pdf", f"{invoice.number}.pdf"
        )
    content = documents.invoice_csv(record_services.invoice_document(invoice))
    return _attachment(content, "text/csv; charset=utf-8", f"{invoice.number}.csv")


# --- Statements -----------------------------------------------------------------------------------


class StatementGenerateForm(forms.Form):
    site_host = forms.ModelChoiceField(queryset=SiteHost.objects.none())
    month = MonthField(help_text="YYYY-MM")

    def __init__(self, *args: Any, hosts: QuerySet[SiteHost], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["site_host"].queryset = hosts  # type: ignore[attr-defined]


@dashboard_view
def statement_list(request: DashboardRequest) -> HttpResponse:
    tenant = request.tenant
    form = StatementGenerateForm(
        request.POST or None, hosts=record_selectors.site_hosts_for(tenant)
    )
    if request.method == "POST":
        if not tenant.is_operator:
            return HttpResponse("Only operators generate statements.", status=403)
        if form.is_valid():
            month = form.cleaned_data["month"]
            tasks.statement_generate.delay(form.cleaned_data["site_host"].pk, month.isoformat())
            messages.success(request, f"Statement for {month:%Y-%m} queued.")
            return redirect("billing:statement_list")
    statements = record_selectors.statements_for(tenant).order_by("-sequence")
    return render(
        request,
        "billing/statement_list.html",
        {
            "section": "billing",
            "tab": "statements",
            "form": form,
            "page": _page(request, statements),
        },
        status=400 if form.errors else 200,
    )


@dashboard_view
def statement_file(request: DashboardRequest, pk: int, kind: str) -> HttpResponse:
    statement = get_object_or_404(record_selectors.statements_for(request.tenant), pk=pk)
    document = record_services.statement_document(statement)
    if kind == "pdf":
        return _attachment(
            documents.statement_pdf(document), "application/pdf", f"{statement.number}.pdf"
        )
    return _attachment(
        documents.statement_csv(document), "text/csv; charset=utf-8", f"{statement.number}.csv"
    )


# --- Disputes -------------------------------------------------------------------------------------


class ResolveForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=[(Dispute.State.REJECTED, "Reject"), (Dispute.State.CREDITED, "Credit")]
    )
    resolution = forms.CharField(max_length=2000)
    amount_incl_vat = forms.DecimalField(
        max_digits=14,
        decimal_places=2,
        required=False,
        label="Amount incl. VAT",
        help_text="Credit only; empty credits what is left of the CDR",
    )

    def __init__(self, *args: Any, dispute: Dispute, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dispute = dispute

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.dispute.state != Dispute.State.OPEN:
            raise forms.ValidationError(f"This dispute is resolved already ({self.dispute.state}).")
        if data.get("outcome") == Dispute.State.CREDITED:
            cdr = self.dispute.cdr
            left = cdr.total_incl_vat - record_services.credited_so_far(cdr)
            amount = data.get("amount_incl_vat")
            amount = left if amount is None else amount
            if amount <= 0:
                self.add_error("amount_incl_vat", "Credit a positive amount.")
            elif amount > left:
                self.add_error("amount_incl_vat", f"At most {left} {cdr.currency} is left.")
            data["amount_incl_vat"] = amount
        elif data.get("amount_incl_vat") is not None:
            self.add_error("amount_incl_vat", "Only a credit has an amount.")
        return data


@dashboard_view
def dispute_list(request: DashboardRequest) -> HttpResponse:
    tenant = request.tenant
    disputes = record_selectors.disputes_for(tenant)
    state = request.GET.get("state", "")
    if state in Dispute.State.values:
        disputes = disputes.filter(state=state)
    return render(
        request,
        "billing/dispute_list.html",
        {
            "section": "billing",
            "tab": "disputes",
            "page": _page(request, disputes.order_by("-opened_at", "-id")),
            "rate": record_selectors.dispute_rate(tenant),
            "state": state,
            "states": Dispute.State.choices,
            "credited": CreditNote.objects.filter(
                pk__in=record_selectors.credit_notes_for(tenant).values("pk")
            ).aggregate(total=Sum("amount_incl_vat"))["total"]
            or Decimal(0),
        },
    )


@dashboard_view(operators_only=True)
def dispute_detail(request: DashboardRequest, pk: int) -> HttpResponse:
    dispute = get_object_or_404(record_selectors.disputes_for(request.tenant), pk=pk)
    form = ResolveForm(request.POST or None, dispute=dispute)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if data["outcome"] == Dispute.State.REJECTED:
            record_services.dispute_reject(
                dispute=dispute, resolution=data["resolution"], user=request.user
            )
            messages.success(request, f"Dispute {dispute.pk} rejected.")
        else:
            dispute = record_services.dispute_credit(
                dispute=dispute,
                resolution=data["resolution"],
                amount_incl_vat=data["amount_incl_vat"],
                user=request.user,
            )
            assert dispute.credit_note is not None
            messages.success(request, f"Credit note {dispute.credit_note.number} issued.")
        return redirect("billing:dispute_detail", pk=dispute.pk)
    return render(
        request,
        "billing/dispute_detail.html",
        {"section": "billing", "tab": "disputes", "dispute": dispute, "form": form},
        status=400 if form.errors else 200,
    )
