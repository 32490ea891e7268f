"""The routing page: each charger's primary and observers with how each leg is doing (live), the
policy with a review step (and a confirmation for a cut-over), and the change record."""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from chargers import selectors as charger_selectors
from chargers.views import render_page
from cpms.middleware import DashboardRequest, dashboard_view

from .forms import ChargerRoutingFilter, PolicyForm
from .health import charger_routing
from .models import RoutingChange
from .policy_file import policy_document
from .policy_selectors import live_policy
from .policy_services import policy_apply

PAGE_SIZE = 25
RECENT_CHANGES = 20


def _changes(request: DashboardRequest) -> list[RoutingChange]:
    return list(
        RoutingChange.objects.filter(
            Q(organization_id=request.tenant.organization_id) | Q(organization__isnull=True)
        ).select_related("changed_by")[:RECENT_CHANGES]
    )


@dashboard_view(operators_only=True)
def routing_overview(request: DashboardRequest) -> HttpResponse:
    tenant = request.tenant
    filters = ChargerRoutingFilter(request.GET or None)
    chargers = filters.chargers(charger_selectors.chargers_for(tenant).select_related("site"))
    page = Paginator(chargers, PAGE_SIZE).get_page(request.GET.get("page"))
    document = policy_document(live_policy(organization_id=tenant.organization_id))
    form = PolicyForm(
        initial={"policy": json.dumps(document, indent=2)}, organization_id=tenant.organization_id
    )
    context = {
        "filters": filters,
        "page": page,
        "rows": charger_routing(page.object_list),
        "form": form,
        "changes": _changes(request),
    }
    return render_page(
        request,
        "routing/overview.html",
        context,
        parts={"routing-chargers": "routing/_chargers.html"},
    )


@require_POST
@dashboard_view(operators_only=True)
def policy_review(request: DashboardRequest) -> HttpResponse:
    """Check a policy and show what it would change; nothing is written."""
    form = PolicyForm(request.POST, organization_id=request.tenant.organization_id)
    valid = form.is_valid()
    return render(
        request,
        "routing/review.html",
        {"form": form, "plan": form.plan if valid else None},
        status=200 if valid else 400,
    )


@require_POST
@dashboard_view(operators_only=True)
def policy_apply_view(request: DashboardRequest) -> HttpResponse:
    form = PolicyForm(request.POST, organization_id=request.tenant.organization_id)
    if not (form.is_valid() and form.require_confirmation()) or form.plan is None:
        return render(
            request,
            "routing/review.html",
            {"form": form, "plan": form.plan if not form.has_error("policy") else None},
            status=400,
        )
    records = policy_apply(
        plan=form.plan,
        source=RoutingChange.Source.DASHBOARD,
        changed_by=request.user,
    )
    if records:
        messages.success(request, f"Routing changed: {form.plan.summary()}.")
    else:
        messages.info(request, "This policy is live already: nothing changed.")
    return redirect("routing:overview")
