"""Dashboard page of a site's load: capacity, the live chart of allocated and measured current,
per-session limits, the circuit tree, the schedule editor and demand-response events."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from chargers.models import Site
from cpms.middleware import DashboardRequest, dashboard_view
from cpms.tenancy import Tenant

from . import selectors, services
from .forms import CapacityForm, ChargerLoadForm, CircuitForm, LimitEventForm, ScheduleForm
from .models import ChargerLoad, SiteCapacity


def _can_edit(tenant: Tenant) -> bool:
    return tenant.is_operator or tenant.is_site_host


def _forms(site: Site, tenant: Tenant, bound: tuple[str, Any] | None = None) -> dict[str, Any]:
    chargers = selectors.site_chargers(tenant, site)
    capacity = SiteCapacity.objects.filter(site=site).first()
    forms: dict[str, Any] = {
        "capacity": CapacityForm(instance=capacity, prefix="capacity"),
        "circuit": CircuitForm(site=site, prefix="circuit"),
        "charger": ChargerLoadForm(site=site, chargers=chargers, prefix="charger"),
        "schedule": ScheduleForm(prefix="schedule"),
        "event": LimitEventForm(prefix="event"),
    }
    if bound is not None:
        forms[bound[0]] = bound[1]
    return forms


def _page(
    request: DashboardRequest, site: Site, *, bound: tuple[str, Any] | None = None
) -> HttpResponse:
    tenant = request.tenant
    load = selectors.site_load(site=site)
    context = {
        "site": site,
        "load": load,
        "tree": selectors.circuit_tree(site),
        "schedules": selectors.limit_schedules_for(tenant, site),
        "events": selectors.limit_events_for(tenant, site)[:50],
        "forms": _forms(site, tenant, bound),
        "can_edit": _can_edit(tenant),
        "now": timezone.now(),
    }
    status = 400 if bound is not None else 200
    return render(request, "smartcharging/site_load.html", context, status=status)


def _site(request: DashboardRequest, pk: int) -> Site:
    return get_object_or_404(selectors.sites_for(request.tenant), pk=pk)


@dashboard_view
def site_load(request: DashboardRequest, pk: int) -> HttpResponse:
    return _page(request, _site(request, pk))


@require_POST
@dashboard_view
def site_load_change(request: DashboardRequest, pk: int, form: str) -> HttpResponse:
    site = _site(request, pk)
    tenant = request.tenant
    if not _can_edit(tenant):
        raise PermissionDenied("Your role does not allow changing this site's load settings.")
    user = request.user if request.user.is_authenticated else None
    # Times typed in the dashboard are the site's local times.
    with timezone.override(site.time_zone or "UTC"):
        if form == "capacity":
            bound: Any = CapacityForm(
                request.POST,
                instance=SiteCapacity.objects.filter(site=site).first(),
                prefix="capacity",
            )
            if bound.is_valid():
                data = {name: bound.cleaned_data[name] for name in CapacityForm.Meta.fields}
                services.capacity_set(site=site, data=data)
                messages.success(request, "Grid connection saved.")
                return redirect("smartcharging:site_load", pk=site.pk)
        elif form == "circuit":
            bound = CircuitForm(request.POST, site=site, prefix="circuit")
            if bound.is_valid():
                services.circuit_create(site=site, data=bound.cleaned_data)
                messages.success(request, f"Circuit {bound.cleaned_data['name']} added.")
                return redirect("smartcharging:site_load", pk=site.pk)
        elif form == "charger":
            chargers = selectors.site_chargers(tenant, site)
            identity = request.POST.get("charger-charger", "")
            existing = ChargerLoad.objects.filter(
                charger__in=chargers, charger__identity=identity
            ).first()
            bound = ChargerLoadForm(
                request.POST, instance=existing, site=site, chargers=chargers, prefix="charger"
            )
            if bound.is_valid():
                data = dict(bound.cleaned_data)
                charger = data.pop("charger")
                services.charger_load_set(charger=charger, data=data)
                messages.success(request, f"{charger.identity} wiring saved.")
                return redirect("smartcharging:site_load", pk=site.pk)
        elif form == "schedule":
            bound = ScheduleForm(request.POST, prefix="schedule")
            if bound.is_valid():
                services.limit_schedule_create(site=site, data=bound.cleaned_data)
                messages.success(request, "Schedule window added.")
                return redirect("smartcharging:site_load", pk=site.pk)
        elif form == "event":
            bound = LimitEventForm(request.POST, prefix="event")
            if bound.is_valid():
                services.limit_event_create(site=site, data=bound.cleaned_data, created_by=user)
                messages.success(request, "Demand-response event created.")
                return redirect("smartcharging:site_load", pk=site.pk)
        else:
            raise Http404("No such form.")
        return _page(request, site, bound=(form, bound))


@require_POST
@dashboard_view
def site_load_delete(request: DashboardRequest, pk: int, kind: str, item: int) -> HttpResponse:
    site = _site(request, pk)
    tenant = request.tenant
    if not _can_edit(tenant):
        raise PermissionDenied("Your role does not allow changing this site's load settings.")
    if kind == "circuit":
        circuit = get_object_or_404(selectors.circuits_for(tenant, site), pk=item)
        services.circuit_delete(circuit=circuit)
        messages.success(request, f"Circuit {circuit.name} removed.")
    elif kind == "schedule":
        schedule = get_object_or_404(selectors.limit_schedules_for(tenant, site), pk=item)
        services.limit_schedule_delete(schedule=schedule)
        messages.success(request, "Schedule window removed.")
    elif kind == "event":
        event = get_object_or_404(selectors.limit_events_for(tenant, site), pk=item)
        services.limit_event_cancel(event=event)
        messages.success(request, "Demand-response event cancelled.")
    else:
        raise Http404("Nothing of that kind here.")
    return redirect("smartcharging:site_load", pk=site.pk)
