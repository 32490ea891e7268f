"""Dashboard views that send commands: the commands panel of a charger's page (one form per
operation, the commands sent and their answers, updated live), retries, and bulk commands from
the chargers list. Operators and operator admins only.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from cpms.middleware import DashboardRequest, dashboard_view

from . import command_services, selectors
from .command_forms import (
    BULK_ACTIONS,
    FORMS_BY_KEY,
    BulkCommandForm,
    CommandForm,
    bulk_command,
    forms_for,
)
from .commands import IN_FLIGHT, RETRYABLE
from .models import Charger, Command

RECENT_COMMANDS = 15
PANEL = "chargers/_charger_commands.html"
COMMAND_LIST = "chargers/_charger_command_list.html"
# While a command shown is in flight, the list is fetched again this often (milliseconds) besides
# on its live events: those are sent at most once, and a lost one would leave the row behind.
RECHECK_IN_FLIGHT_MS = 5000


def _pretty(value: Any) -> str:
    return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False)


def _list_context(request: DashboardRequest, charger: Charger) -> dict[str, Any]:
    commands = list(
        selectors.commands_for(request.tenant)
        .filter(charger=charger)
        .select_related("requested_by", "api_token")
        .order_by("-created_at", "-id")[:RECENT_COMMANDS]
    )
    in_flight = any(command.state in IN_FLIGHT for command in commands)
    return {
        "commands": [
            {
                "command": command,
                "payload": _pretty(command.payload),
                "response": _pretty(command.response),
            }
            for command in commands
        ],
        "retryable": {state.value for state in RETRYABLE},
        "recheck_ms": RECHECK_IN_FLIGHT_MS if in_flight else None,
        "time_zone": charger.site.time_zone if charger.site else "UTC",
        "configuration_keys": (
            list(selectors.configuration_keys_for(request.tenant).filter(charger=charger))
            if charger.ocpp_version == "1.6"
            else []
        ),
    }


def panel_context(
    request: DashboardRequest, charger: Charger, bound: CommandForm | None = None
) -> dict[str, Any]:
    """What the charger page needs for its commands panel; nothing for those who may not send."""
    if not request.tenant.is_operator:
        return {"commands_panel": False}
    command_forms = [
        bound if bound is not None and bound.key == form.key else form(charger=charger)
        for form in forms_for(charger)
    ]
    return {
        "commands_panel": True,
        "command_forms": command_forms,
        **_list_context(request, charger),
    }


def bulk_context(request: DashboardRequest) -> dict[str, Any]:
    """The chargers list: rows with a checkbox and the bulk command form, for operators."""
    if not request.tenant.is_operator:
        return {"bulk_select": False}
    return {"bulk_select": True, "bulk_actions": list(BULK_ACTIONS.items())}


def row_context(request: DashboardRequest) -> dict[str, Any]:
    """A chargers list row refreshed on its own keeps its checkbox."""
    return {"bulk_select": request.GET.get("select") == "1" and request.tenant.is_operator}


def offline_message(identity: str) -> str:
    return (
        f"{identity} is offline, so the command was not sent. "
        f"Tick “{CommandForm.base_fields['deliver_when_offline'].label}” to queue it."
    )


def _charger(request: DashboardRequest, pk: int) -> Charger:
    return get_object_or_404(selectors.chargers_for(request.tenant).select_related("site"), pk=pk)


def _back_to(request: DashboardRequest, charger: Charger) -> HttpResponseRedirect:
    return HttpResponseRedirect(
        reverse("dashboard:charger_detail", args=[charger.pk]) + "#commands-title"
    )


@require_POST
@dashboard_view(operators_only=True)
def charger_command(request: DashboardRequest, pk: int) -> HttpResponse:
    """Send the command of one of the panel's forms; the panel comes back with the form's errors,
    or with the command at the top of its list."""
    charger = _charger(request, pk)
    form_class = FORMS_BY_KEY.get(request.POST.get("form", ""))
    if form_class is None or form_class not in forms_for(charger):
        messages.error(request, f"{charger.identity} takes no such command.")
        return _back_to(request, charger)
    form = form_class(request.POST, charger=charger)
    sent: Command | None = None
    if form.is_valid():
        action, payload = form.command()
        try:
            sent = command_services.command_create(
                charger=charger,
                action=action,
                payload=payload,
                deliver_when_offline=form.cleaned_data["deliver_when_offline"],
                requested_by=request.user,
            )
        except command_services.CommandInvalid as exc:
            form.add_error(None, exc.message)
        except command_services.ChargerOffline as exc:
            form.add_error(None, offline_message(exc.identity))
        except command_services.CommandRefused as exc:
            form.add_error(None, str(exc))
    if request.htmx:
        context = {
            "charger": charger,
            "sent": sent,
            **panel_context(request, charger, bound=None if sent else form),
        }
        return render(request, PANEL, context)
    if sent is not None:
        messages.success(request, f"{sent.action} sent to {charger.identity}.")
    else:
        errors = " ".join(str(error) for errors in form.errors.values() for error in errors)
        messages.error(request, f"{form.title}: {errors}")
    return _back_to(request, charger)


@require_POST
@dashboard_view(operators_only=True)
def command_retry(request: DashboardRequest, pk: int) -> HttpResponse:
    command = get_object_or_404(
        selectors.commands_for(request.tenant).select_related("charger"), pk=pk
    )
    charger = command.charger
    try:
        retried = command_services.command_retry(command=command, requested_by=request.user)
    except (command_services.CommandRefused, command_services.CommandInvalid) as exc:
        messages.error(request, getattr(exc, "message", str(exc)))
    else:
        messages.success(request, f"{retried.action} sent to {charger.identity} again.")
    if request.htmx:
        return render(
            request,
            COMMAND_LIST,
            {"charger": charger, "show_messages": True, **_list_context(request, charger)},
        )
    return _back_to(request, charger)


@require_POST
@dashboard_view(operators_only=True)
def charger_bulk_command(request: DashboardRequest) -> HttpResponse:
    """One command to each selected charger; says how many went out and which were refused."""
    chargers = selectors.chargers_for(request.tenant)
    form = BulkCommandForm(request.POST, chargers=chargers)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = reverse("dashboard:charger_list")
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
        return HttpResponseRedirect(back)
    operation = form.cleaned_data["operation"]
    sent: list[str] = []
    refused: list[str] = []
    for charger in chargers.filter(pk__in=form.cleaned_data["chargers"]).order_by("identity"):
        action, payload = bulk_command(operation, charger.ocpp_version)
        try:
            command_services.command_create(
                charger=charger,
                action=action,
                payload=payload,
                deliver_when_offline=form.cleaned_data["deliver_when_offline"],
                requested_by=request.user,
            )
        except command_services.ChargerOffline:
            refused.append(f"{charger.identity} (offline)")
        except (command_services.CommandRefused, command_services.CommandInvalid) as exc:
            refused.append(f"{charger.identity} ({getattr(exc, 'message', str(exc))})")
        else:
            sent.append(charger.identity)
    label = BULK_ACTIONS[operation]
    if sent:
        messages.success(
            request,
            f"{label} sent to {len(sent)} charger{'s' if len(sent) != 1 else ''}: {', '.join(sent)}.",
        )
    if refused:
        messages.error(request, f"{label} not sent to {'; '.join(refused)}")
    return HttpResponseRedirect(back)
