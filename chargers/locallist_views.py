"""Dashboard panel of a charger's local authorization list: how it stands, what it holds, and
the operator's "Sync now (full)" and "Check version" actions."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from cpms.middleware import DashboardRequest, dashboard_view

from . import locallist_services, selectors
from .locallist_models import LocalListState, LocalListSync
from .models import Charger

PANEL = "chargers/_charger_local_list.html"
SHOWN_ENTRIES = 200
BADGES = {
    LocalListState.UNKNOWN: "status-unknown",
    LocalListState.IN_SYNC: "status-accepted",
    LocalListState.PENDING: "status-queued",
    LocalListState.FAILED: "status-failed",
    LocalListState.TOO_LONG: "status-error",
    LocalListState.NOT_SUPPORTED: "status-unavailable",
}


def local_list_context(request: DashboardRequest, charger: Charger) -> dict[str, Any]:
    """What the charger page needs for its local list panel; nothing for those who may not see
    id tokens."""
    if not request.tenant.is_operator:
        return {"local_list_panel": False}
    sync = locallist_services.local_list_of(charger=charger)
    entries = sorted(sync.entries.items())
    return {
        "local_list_panel": True,
        "local_list": sync,
        "local_list_entries": entries[:SHOWN_ENTRIES],
        "local_list_more": max(0, len(entries) - SHOWN_ENTRIES),
        "local_list_badge": BADGES.get(LocalListState(sync.state), "status-unknown"),
    }


def _charger(request: DashboardRequest, pk: int) -> Charger:
    return get_object_or_404(selectors.chargers_for(request.tenant).select_related("site"), pk=pk)


def _answer(request: DashboardRequest, charger: Charger, note: str, error: bool) -> HttpResponse:
    if request.htmx:
        context = {
            "charger": charger,
            "time_zone": charger.site.time_zone if charger.site else "UTC",
            "local_list_note": note,
            "local_list_note_error": error,
            **local_list_context(request, charger),
        }
        return render(request, PANEL, context)
    (messages.error if error else messages.success)(request, note)
    return HttpResponseRedirect(
        reverse("dashboard:charger_detail", args=[charger.pk]) + "#local-list-title"
    )


def _never_connected(charger: Charger) -> str:
    if charger.ocpp_version:
        return ""
    return (
        f"{charger.identity} has never connected, so its OCPP version (and with it its list) "
        "is not known yet."
    )


def _nothing_sent(sync: LocalListSync | None) -> str:
    """Why nothing went to the charger (it is offline, the list is too long, ...), or ""."""
    if sync is None or sync.command_id is not None or sync.check_command_id is not None:
        return ""
    if sync.state == LocalListState.IN_SYNC:
        return ""
    return sync.last_error


@require_POST
@dashboard_view(operators_only=True)
def local_list_sync(request: DashboardRequest, pk: int) -> HttpResponse:
    charger = _charger(request, pk)
    if refusal := _never_connected(charger):
        return _answer(request, charger, refusal, True)
    sync = locallist_services.local_list_sync(charger_pk=charger.pk, full=True)
    if refusal := _nothing_sent(sync):
        return _answer(request, charger, refusal, True)
    return _answer(request, charger, f"The full list is on its way to {charger.identity}.", False)


@require_POST
@dashboard_view(operators_only=True)
def local_list_check(request: DashboardRequest, pk: int) -> HttpResponse:
    charger = _charger(request, pk)
    if refusal := _never_connected(charger):
        return _answer(request, charger, refusal, True)
    sync = locallist_services.local_list_check(charger_pk=charger.pk)
    if refusal := _nothing_sent(sync):
        return _answer(request, charger, refusal, True)
    return _answer(request, charger, f"{charger.identity} was asked for its list version.", False)
