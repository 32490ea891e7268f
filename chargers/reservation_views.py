"""Dashboard views of reservations: the Reservations page (live), and on a charger's page the
Reserve form with the charger's active reservations, each with its Cancel button. Every member
sees them; operators and operator admins reserve and cancel.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from cpms.middleware import DashboardRequest, dashboard_view

from . import reservation_services, selectors
from .models import Charger, Reservation
from .reservation_forms import ReservationForm
from .reservations import LIVE, ReservationState

PANEL = "chargers/_charger_reservations.html"
LIST = "chargers/_charger_reservation_list.html"
ROWS = "chargers/_reservation_rows.html"
PAGE_SIZE = 100


def _time_zone(charger: Charger) -> str:
    return charger.site.time_zone if charger.site else "UTC"


def panel_context(
    request: DashboardRequest, charger: Charger, form: ReservationForm | None = None
) -> dict[str, Any]:
    """The charger page's reservations: its live ones, and the Reserve form for operators."""
    live = (
        selectors.reservations_for(request.tenant)
        .filter(charger=charger, state__in=list(LIVE))
        .order_by("expires_at", "id")
    )
    operator = request.tenant.is_operator
    return {
        "reservations": list(live),
        "reserve_form": (form or ReservationForm(charger=charger)) if operator else None,
        "can_cancel": operator,
    }


def _charger(request: DashboardRequest, pk: int) -> Charger:
    return get_object_or_404(selectors.chargers_for(request.tenant).select_related("site"), pk=pk)


def _panel(request: DashboardRequest, charger: Charger, **extra: Any) -> HttpResponse:
    context = {
        "charger": charger,
        "time_zone": _time_zone(charger),
        **panel_context(request, charger, extra.pop("form", None)),
        **extra,
    }
    return render(request, PANEL, context)


@dashboard_view
def reservation_list(request: DashboardRequest) -> HttpResponse:
    from .views import render_page

    reservations = selectors.reservations_for(request.tenant).select_related("charger__site")
    state = request.GET.get("state", "")
    if state in ReservationState.__members__.values():
        reservations = reservations.filter(state=state)
    context = {
        "section": "reservations",
        "reservations": list(reservations.order_by("-created_at", "-id")[:PAGE_SIZE]),
        "states": [s.value for s in ReservationState],
        "state": state,
        "can_cancel": request.tenant.is_operator,
    }
    return render_page(
        request, "chargers/reservation_list.html", context, parts={"reservation-list": ROWS}
    )


@dashboard_view
def charger_reservations(request: DashboardRequest, pk: int) -> HttpResponse:
    """The charger page's reservations panel, or its list alone (refreshed live)."""
    charger = _charger(request, pk)
    if request.htmx and request.htmx.target == "charger-reservation-list":
        context = {
            "charger": charger,
            "time_zone": _time_zone(charger),
            **panel_context(request, charger),
        }
        return render(request, LIST, context)
    return _panel(request, charger)


@require_POST
@dashboard_view(operators_only=True)
def charger_reserve(request: DashboardRequest, pk: int) -> HttpResponse:
    """Reserve a connector of this charger; the panel comes back with the form's errors, or
    with the new reservation in its list."""
    charger = _charger(request, pk)
    form = ReservationForm(request.POST, charger=charger)
    made: Reservation | None = None
    if form.is_valid():
        data = form.cleaned_data
        try:
            checked = reservation_services.reservation_check(
                charger=charger,
                connector=data["connector"],
                id_token=data["id_token"],
                expires_at=timezone.now() + timedelta(minutes=data["minutes"]),
            )
            made = reservation_services.reservation_create(
                request=checked, requested_by=request.user
            )
        except reservation_services.ReservationInvalid as exc:
            for field, errors in exc.errors.items():
                target = {"expires_at": "minutes", "charger": None}.get(field, field)
                for error in errors:
                    form.add_error(target, error)
        except reservation_services.ReservationRefused as exc:
            form.add_error(None, str(exc))
    if request.htmx:
        return _panel(request, charger, form=None if made else form, made=made)
    if made is not None:
        messages.success(request, f"Reservation {made.reservation_id} sent to {charger.identity}.")
    else:
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
    return HttpResponseRedirect(reverse("dashboard:charger_detail", args=[charger.pk]))


@require_POST
@dashboard_view(operators_only=True)
def reservation_cancel(request: DashboardRequest, pk: int) -> HttpResponse:
    reservation = get_object_or_404(
        selectors.reservations_for(request.tenant).select_related("charger__site"), pk=pk
    )
    charger = reservation.charger
    error = ""
    try:
        reservation_services.reservation_cancel(reservation=reservation, requested_by=request.user)
    except reservation_services.ReservationRefused as exc:
        error = str(exc)
    if request.htmx and request.htmx.target == "charger-reservations":
        return _panel(request, charger, cancel_error=error)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, f"Cancel of reservation {reservation.reservation_id} sent.")
    if request.POST.get("back") == "list":
        return HttpResponseRedirect(reverse("dashboard:reservation_list"))
    return HttpResponseRedirect(reverse("dashboard:charger_detail", args=[charger.pk]))
