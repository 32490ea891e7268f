"""Dashboard pages of the operations app: transaction reconciliation (cases, their audit trail,
and the operator's close / dismiss / ask actions) and configuration baselines (per model, with
each charger's drift and the apply actions), and uptime (per connector, charger or site, with a
CSV export and planned maintenance windows). Operators and operator admins only."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import IntegrityError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from chargers import command_services
from chargers.selectors import chargers_for, sites_for
from cpms.middleware import DashboardRequest, dashboard_view
from cpms.models import Organization

from . import baselines, reconciliation, reports, selectors
from .forms import BaselineForm, MaintenanceWindowForm, settings_text
from .models import ConfigurationBaseline, MaintenanceWindow, ReconciliationCase

PAGE_SIZE = 25


@dashboard_view(operators_only=True)
def reconciliation_list(request: DashboardRequest) -> HttpResponse:
    cases = selectors.reconciliation_cases_for(request.tenant).select_related("charger", "session")
    state = request.GET.get("state", "unresolved")
    if state == "unresolved":
        cases = cases.exclude(state=ReconciliationCase.State.RESOLVED)
    elif state in ReconciliationCase.State.values:
        cases = cases.filter(state=state)
    kind = request.GET.get("kind", "")
    if kind in ReconciliationCase.Kind.values:
        cases = cases.filter(kind=kind)
    page = Paginator(cases.order_by("-detected_at", "-id"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "operations/reconciliation_list.html",
        {
            "page": page,
            "state": state,
            "kind": kind,
            "states": ReconciliationCase.State.choices,
            "kinds": ReconciliationCase.Kind.choices,
        },
    )


@dashboard_view(operators_only=True)
def reconciliation_detail(request: DashboardRequest, pk: int) -> HttpResponse:
    case = get_object_or_404(
        selectors.reconciliation_cases_for(request.tenant).select_related(
            "charger", "session", "unmatched_stop", "command"
        ),
        pk=pk,
    )
    return render(
        request,
        "operations/reconciliation_detail.html",
        {"case": case, "entries": case.entries.all(), "error": ""},
    )


@require_POST
@dashboard_view(operators_only=True)
def reconciliation_act(request: DashboardRequest, pk: int, verb: str) -> HttpResponse:
    if verb not in ("ask", "close", "dismiss"):
        raise Http404("No such action.")
    case = get_object_or_404(
        selectors.reconciliation_cases_for(request.tenant).select_related("charger", "session"),
        pk=pk,
    )
    user = request.user if request.user.is_authenticated else None
    if verb == "ask":
        if reconciliation.reconciliation_ask(case=case, user=user) is None:  # type: ignore[arg-type]
            messages.error(
                request,
                f"{case.charger.identity} could not be asked now (offline, or the case is "
                "resolved); it is asked again once it is back.",
            )
        else:
            messages.success(request, "The charger was asked; its answer decides the case.")
        return redirect("operations:reconciliation_detail", pk=case.pk)
    reason = request.POST.get("reason", "").strip()
    if not reason:
        return render(
            request,
            "operations/reconciliation_detail.html",
            {"case": case, "entries": case.entries.all(), "error": "Say why.", "verb": verb},
            status=400,
        )
    action = (
        reconciliation.reconciliation_close
        if verb == "close"
        else reconciliation.reconciliation_dismiss
    )
    try:
        action(case=case, reason=reason[:2000], user=user)  # type: ignore[arg-type]
    except reconciliation.CaseResolved as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, "Session closed." if verb == "close" else "Case dismissed; session unchanged."
        )
    return redirect("operations:reconciliation_detail", pk=case.pk)


# --- Configuration baselines ---------------------------------------------------------------------

CHARGERS_SHOWN = 200


def _form_data(baseline: ConfigurationBaseline) -> dict[str, str]:
    return {
        "name": baseline.name,
        "vendor": baseline.vendor,
        "model": baseline.model,
        "protocol": baseline.protocol,
        "settings": settings_text(baseline),
        "notes": baseline.notes,
    }


@dashboard_view(operators_only=True)
def baseline_list(request: DashboardRequest) -> HttpResponse:
    tenant = request.tenant
    form = BaselineForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            baseline = baselines.baseline_create(
                organization=Organization.objects.get(pk=tenant.organization_id),
                name=data["name"],
                vendor=data["vendor"],
                model=data["model"],
                protocol=data["protocol"],
                settings=data["parsed"],
                notes=data["notes"],
            )
        except IntegrityError:
            form.add_error(None, "There is a baseline for this vendor, model and protocol already.")
        else:
            messages.success(request, f"Baseline {baseline.name} created.")
            return redirect("operations:baseline_detail", pk=baseline.pk)
    rows = [
        {"baseline": b, "chargers": baselines.chargers_of(b).count()}
        for b in selectors.baselines_for(tenant).prefetch_related("settings")
    ]
    return render(
        request,
        "operations/baseline_list.html",
        {"rows": rows, "form": form},
        status=400 if form.errors else 200,
    )


@dashboard_view(operators_only=True)
def baseline_detail(request: DashboardRequest, pk: int) -> HttpResponse:
    baseline = get_object_or_404(selectors.baselines_for(request.tenant), pk=pk)
    form = BaselineForm(request.POST or None, baseline=baseline, initial=_form_data(baseline))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            baselines.baseline_update(
                baseline=baseline,
                data={k: data[k] for k in ("name", "vendor", "model", "notes")},
                settings=data["parsed"],
            )
        except IntegrityError:
            form.add_error(None, "There is a baseline for this vendor, model and protocol already.")
        else:
            messages.success(request, "Baseline saved.")
            return redirect("operations:baseline_detail", pk=baseline.pk)
    chargers = list(
        baselines.chargers_of(baseline)
        .filter(pk__in=chargers_for(request.tenant))
        .order_by("identity")[:CHARGERS_SHOWN]
    )
    return render(
        request,
        "operations/baseline_detail.html",
        {
            "baseline": baseline,
            "form": form,
            "settings": [(baselines.label(s), s.value) for s in baseline.settings.all()],
            "chargers": [
                {"charger": c, "report": baselines.drift_report(charger=c, baseline=baseline)}
                for c in chargers
            ],
            "total": baselines.chargers_of(baseline).count(),
        },
        status=400 if form.errors else 200,
    )


@require_POST
@dashboard_view(operators_only=True)
def baseline_apply_all(request: DashboardRequest, pk: int) -> HttpResponse:
    baseline = get_object_or_404(selectors.baselines_for(request.tenant), pk=pk)
    count = baselines.baseline_apply_model(baseline=baseline, requested_by=request.user)
    messages.success(
        request,
        f"Applying {baseline.name} to {count} charger{'s' if count != 1 else ''}; offline "
        "ones get it when they connect.",
    )
    return redirect("operations:baseline_detail", pk=baseline.pk)


@require_POST
@dashboard_view(operators_only=True)
def baseline_delete(request: DashboardRequest, pk: int) -> HttpResponse:
    baseline = get_object_or_404(selectors.baselines_for(request.tenant), pk=pk)
    baselines.baseline_delete(baseline=baseline)
    messages.success(request, f"Baseline {baseline.name} deleted.")
    return redirect("operations:baseline_list")


@require_POST
@dashboard_view(operators_only=True)
def charger_baseline(request: DashboardRequest, pk: int, verb: str) -> HttpResponse:
    """Apply the baseline to one charger, or read its configuration, from its page."""
    if verb not in ("apply", "read"):
        raise Http404("No such action.")
    charger = get_object_or_404(chargers_for(request.tenant), pk=pk)
    baseline = baselines.baseline_for(charger)
    if baseline is None:
        messages.error(request, f"No baseline covers {charger.identity}.")
        return redirect("dashboard:charger_detail", pk=charger.pk)
    try:
        if verb == "apply":
            commands = baselines.baseline_apply(
                baseline=baseline, charger=charger, requested_by=request.user
            )
            messages.success(
                request,
                f"Sent {len(commands)} command{'s' if len(commands) != 1 else ''} to apply "
                f"{baseline.name}."
                if commands
                else f"{charger.identity} is in line with {baseline.name}: nothing to send.",
            )
        else:
            baselines.baseline_read(baseline=baseline, charger=charger, requested_by=request.user)
            messages.success(request, "Reading the charger's configuration.")
    except (command_services.CommandRefused, command_services.CommandInvalid) as exc:
        messages.error(request, getattr(exc, "message", None) or str(exc))
    return redirect(f"{reverse('dashboard:charger_detail', args=[charger.pk])}#configuration-drift")


# --- Uptime ----------------------------------------------------------------------------------------


@dashboard_view(operators_only=True)
def uptime_page(request: DashboardRequest) -> HttpResponse:
    tenant = request.tenant
    form = MaintenanceWindowForm(request.POST or None, tenant=tenant)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        MaintenanceWindow.objects.create(
            organization_id=tenant.organization_id,
            charger=data["charger"],
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
            reason=data["reason"],
            created_by=request.user if request.user.is_authenticated else None,
        )
        messages.success(request, "Maintenance window planned.")
        return redirect(f"{reverse('operations:uptime')}?{request.GET.urlencode()}")
    error = ""
    table: list[dict[str, Any]] = []
    try:
        query = reports.uptime_query(request.GET)
    except reports.BadQuery as exc:
        error = f"{exc.field}: {exc.message}"
        query = reports.uptime_query({})
    if request.GET.get("export") == "csv" and not error:
        response = HttpResponse(
            reports.uptime_csv(query, reports.uptime_table(tenant, query)),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = (
            f'attachment; filename="uptime-{query.start:%Y%m%d}-{query.end:%Y%m%d}.csv"'
        )
        return response
    if not error:
        table = reports.uptime_table(tenant, query)
    export = request.GET.copy()
    export["export"] = "csv"
    return render(
        request,
        "operations/uptime.html",
        {
            "query": query,
            "rows": table,
            "levels": reports.LEVELS,
            "sites": sites_for(tenant),
            "error": error,
            "export_query": export.urlencode(),
            "form": form,
            "windows": selectors.maintenance_windows_for(tenant).select_related("charger", "site")[
                :20
            ],
        },
        status=400 if error or form.errors else 200,
    )
