"""Dashboard pages of alerts: the alerts list that follows new alerts live, with acknowledge and
resolve buttons and the MTTD/MTTR figures; one's own e-mail subscription; and the organization's
webhook endpoints with their delivery log (operator admins)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import django_filters
from django import forms
from django.contrib import messages
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from cpms.middleware import DashboardRequest, dashboard_view

from . import alert_selectors, selectors
from .alert_notify import webhook_secret_new
from .alert_rules import ACTIVE, NOTIFY_EVENTS
from .alerts import AlertNotActive, alert_acknowledge, alert_resolve
from .models import Alert, AlertDelivery, AlertSubscription, WebhookEndpoint
from .views import _page, render_page

STATE_CHOICES = [("active", "Needs attention"), *Alert.State.choices, ("all", "Any state")]
STATS_DAYS = 30


class AlertFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(
        choices=STATE_CHOICES, method="by_state", empty_label=None, label="State"
    )
    kind = django_filters.ChoiceFilter(choices=Alert.Kind.choices, empty_label="Any kind")
    severity = django_filters.ChoiceFilter(
        choices=Alert.Severity.choices, empty_label="Any severity"
    )
    site = django_filters.ModelChoiceFilter(
        field_name="charger__site",
        queryset=lambda request: selectors.sites_for(request.tenant),
        empty_label="All sites",
    )
    charger = django_filters.CharFilter(
        field_name="charger__identity", lookup_expr="icontains", label="Charger"
    )

    class Meta:
        model = Alert
        fields = ["state", "kind", "severity", "site", "charger"]

    def __init__(self, data: Any = None, *args: Any, **kwargs: Any):
        data = data.copy() if data is not None else None
        if data is not None and not data.get("state"):
            data["state"] = "active"
        super().__init__(data, *args, **kwargs)

    def by_state(self, queryset: QuerySet[Alert], name: str, value: str) -> QuerySet[Alert]:
        if value == "active":
            return queryset.filter(state__in=ACTIVE)
        if value == "all":
            return queryset
        return queryset.filter(state=value)


class SubscriptionForm(forms.ModelForm):
    kinds = forms.MultipleChoiceField(
        choices=Alert.Kind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every kind",
    )

    class Meta:
        model = AlertSubscription
        fields = ["min_severity", "kinds"]
        labels = {"min_severity": "E-mail alerts from severity"}


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(
        label="URL",
        max_length=500,
        assume_scheme="https",
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="http:// or https://; each delivery is signed with the secret",
    )
    events = forms.MultipleChoiceField(
        choices=[(event, event) for event in NOTIFY_EVENTS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["name", "url", "events", "min_severity", "enabled"]
        labels = {"min_severity": "From severity"}

    def __init__(self, *args: Any, organization_id: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.organization_id = organization_id

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        clash = WebhookEndpoint.objects.filter(organization_id=self.organization_id, name=name)
        if self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("An endpoint with this name exists already.")
        return name


def _alerts(request: DashboardRequest) -> QuerySet[Alert]:
    return alert_selectors.alerts_for(request.tenant).select_related(
        "charger__site", "acknowledged_by", "resolved_by"
    )


@dashboard_view
def alert_list(request: DashboardRequest) -> HttpResponse:
    tenant = request.tenant
    filters = AlertFilter(request.GET, queryset=_alerts(request), request=request)
    page = _page(request, filters.qs.order_by("-raised_at", "-id"))
    since = timezone.now() - timedelta(days=STATS_DAYS)
    stats = alert_selectors.alert_stats(
        alert_selectors.alerts_for(tenant).filter(raised_at__gte=since)
    )
    subscription = alert_selectors.alert_subscription_of(tenant)
    context = {
        "filters": filters,
        "page": page,
        "stats": stats,
        "stats_days": STATS_DAYS,
        "open_now": alert_selectors.alerts_for(tenant).filter(state__in=ACTIVE).count(),
        "subscription": subscription,
        "subscription_form": SubscriptionForm(instance=subscription),
    }
    return render_page(
        request,
        "chargers/alert_list.html",
        context,
        parts={
            "alert-results": "chargers/_alert_results.html",
            "alert-figures": "chargers/_alert_figures.html",
        },
    )


def _back(request: DashboardRequest) -> HttpResponseRedirect:
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = reverse("dashboard:alert_list")
    return HttpResponseRedirect(back)


def _alert_move(request: DashboardRequest, pk: int, move: Any, done: str) -> HttpResponse:
    alert = get_object_or_404(_alerts(request), pk=pk)
    note = request.POST.get("note", "")[:200]
    try:
        move(alert=alert, user=request.user, note=note)
    except AlertNotActive as exc:
        if request.htmx:
            alert = _alerts(request).get(pk=pk)
            return render(request, "chargers/_alert_row.html", {"alert": alert, "error": str(exc)})
        messages.error(request, f"Alert {pk}: {exc}.")
        return _back(request)
    alert = _alerts(request).get(pk=pk)
    if request.htmx:
        return render(request, "chargers/_alert_row.html", {"alert": alert})
    messages.success(request, f"Alert {pk} {done}.")
    return _back(request)


@require_POST
@dashboard_view(operators_only=True)
def alert_acknowledge_view(request: DashboardRequest, pk: int) -> HttpResponse:
    return _alert_move(request, pk, alert_acknowledge, "acknowledged")


@require_POST
@dashboard_view(operators_only=True)
def alert_resolve_view(request: DashboardRequest, pk: int) -> HttpResponse:
    return _alert_move(request, pk, alert_resolve, "resolved")


@require_POST
@dashboard_view
def alert_subscription(request: DashboardRequest) -> HttpResponse:
    tenant = request.tenant
    current = alert_selectors.alert_subscription_of(tenant)
    if request.POST.get("unsubscribe"):
        if current is not None:
            current.delete()
        messages.success(request, "You will no longer get alert e-mails.")
        return redirect("dashboard:alert_list")
    instance = current or AlertSubscription(
        organization_id=tenant.organization_id, user_id=request.user.pk or 0
    )
    form = SubscriptionForm(request.POST, instance=instance)
    if not form.is_valid():
        messages.error(request, "The subscription was not saved: " + form.errors.as_text())
        return redirect("dashboard:alert_list")
    form.save()
    where = (
        getattr(request.user, "email", "")
        or "(no address on your account: ask an admin to add one)"
    )
    messages.success(request, f"Alert e-mails go to {where}.")
    return redirect("dashboard:alert_list")


# --- Webhook endpoints (operator admins) ---------------------------------------------------------


@dashboard_view(admins_only=True)
def webhook_list(request: DashboardRequest) -> HttpResponse:
    tenant = request.tenant
    form = WebhookEndpointForm(request.POST or None, organization_id=tenant.organization_id)
    if request.method == "POST" and form.is_valid():
        endpoint = form.save(commit=False)
        endpoint.organization_id = tenant.organization_id
        endpoint.secret = webhook_secret_new()
        endpoint.created_by = request.user
        try:
            with transaction.atomic():
                endpoint.save()
        except IntegrityError:
            form.add_error("name", "An endpoint with this name exists already.")
        else:
            messages.success(request, f"Webhook endpoint {endpoint.name} added.")
            return redirect("dashboard:webhook_list")
    endpoints = alert_selectors.webhook_endpoints_for(tenant).order_by("name")
    deliveries = (
        alert_selectors.alert_deliveries_for(tenant)
        .select_related("alert__charger", "endpoint")
        .order_by("-created_at", "-id")
    )
    context = {
        "form": form,
        "endpoints": endpoints,
        "page": _page(request, deliveries),
        "delivery_statuses": AlertDelivery.Status,
    }
    return (
        render_page(
            request,
            "chargers/webhook_list.html",
            context,
            parts={"delivery-log": "chargers/_delivery_log.html"},
        )
        if not form.errors
        else render(request, "chargers/webhook_list.html", context, status=400)
    )


@require_POST
@dashboard_view(admins_only=True)
def webhook_toggle(request: DashboardRequest, pk: int) -> HttpResponse:
    endpoint = get_object_or_404(alert_selectors.webhook_endpoints_for(request.tenant), pk=pk)
    endpoint.enabled = not endpoint.enabled
    endpoint.save(update_fields=["enabled", "updated_at"])
    state = "enabled" if endpoint.enabled else "disabled"
    messages.success(request, f"Webhook endpoint {endpoint.name} {state}.")
    return redirect("dashboard:webhook_list")


@require_POST
@dashboard_view(admins_only=True)
def webhook_delete(request: DashboardRequest, pk: int) -> HttpResponse:
    endpoint = get_object_or_404(alert_selectors.webhook_endpoints_for(request.tenant), pk=pk)
    endpoint.delete()
    messages.success(request, f"Webhook endpoint {endpoint.name} removed.")
    return redirect("dashboard:webhook_list")
