"""Dashboard pages of the central system: overview, chargers, sessions, sites and id tokens.

Every page reads through the tenant-scoped selectors, so another organization's object is a 404.
A page that updates live names its parts by element id; an htmx request for one part (its
``HX-Target``) gets just that part rendered, the same template the full page includes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import tablib
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from cpms.middleware import DashboardRequest, dashboard_view
from cpms.models import Organization

from . import (
    command_views,
    dashboard,
    firmware_views,
    locallist_views,
    ocpp16,
    reservation_views,
    selectors,
    services,
)
from .forms import ChargerFilter, FrameFilter, IdTokenFilter, IdTokenForm, SessionFilter
from .models import Charger, Frame, IdTokenStatus, Session, SessionState

PAGE_SIZE = 25
FRAME_PAGE_SIZE = 50
RECENT_SESSIONS = 10
# Suggestions for the frame log's action filter.
OCPP_ACTIONS = sorted(ocpp16.KNOWN_ACTIONS)


def render_page(
    request: DashboardRequest,
    template: str,
    context: dict[str, Any],
    *,
    parts: dict[str, str] | None = None,
) -> HttpResponse:
    """The full page, or only the part an htmx request targets (by element id)."""
    target = request.htmx.target if request.htmx else None
    response = render(request, (parts or {}).get(target or "", template), context)
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


def _csv_cell(value: Any) -> Any:
    """A CSV cell: text that a spreadsheet would run as a formula is quoted, times are ISO 8601."""
    if isinstance(value, datetime):
        return value.astimezone(dashboard.zone("UTC")).isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def csv_response(name: str, headers: list[str], rows: Iterable[Iterable[Any]]) -> HttpResponse:
    dataset = tablib.Dataset(headers=headers)
    for row in rows:
        dataset.append([_csv_cell(value) for value in row])
    response = HttpResponse(dataset.export("csv"), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
    return response


def _page(request: DashboardRequest, queryset: Any, size: int = PAGE_SIZE) -> Any:
    return Paginator(queryset, size).get_page(request.GET.get("page"))


def _charger_rows(chargers: Iterable[Charger]) -> list[dict[str, Any]]:
    rows = []
    for charger in chargers:
        connectors = list(charger.connectors.all())
        rows.append(
            {
                "charger": charger,
                "state": dashboard.charger_state(charger, connectors),
                "connectors": [c for c in connectors if c.connector_id > 0],
            }
        )
    return rows


def _charger_queryset(request: DashboardRequest) -> Any:
    tenant = request.tenant
    return selectors.chargers_for(tenant).select_related("site").prefetch_related("connectors")


# --- Overview ------------------------------------------------------------------------------------


@dashboard_view
def overview(request: DashboardRequest) -> HttpResponse:
    tenant = request.tenant
    active = (
        selectors.sessions_for(tenant)
        .filter(state=SessionState.ACTIVE)
        .select_related("charger__site")
        .order_by("-started_at")[:RECENT_SESSIONS]
    )
    attention = _charger_rows(
        dashboard.with_fault_flag(_charger_queryset(request))
        .filter(Q(connected=False) | Q(has_fault=True))
        .order_by(F("has_fault").desc(), "identity")[:RECENT_SESSIONS]
    )
    context = {
        "overview": dashboard.overview_for(tenant),
        "active_sessions": active,
        "attention": attention,
        "organization": Organization.objects.get(pk=tenant.organization_id),
    }
    return render_page(
        request,
        "chargers/overview.html",
        context,
        parts={"overview-live": "chargers/_overview_live.html"},
    )


# --- Chargers ------------------------------------------------------------------------------------


@dashboard_view
def charger_list(request: DashboardRequest) -> HttpResponse:
    filters = ChargerFilter(
        request.GET or None, queryset=_charger_queryset(request), request=request
    )
    # The identity breaks ties, so that pages never share or skip a charger.
    chargers = filters.qs
    chargers = chargers.order_by(*chargers.query.order_by, "identity")
    if request.GET.get("export") == "csv":
        return csv_response(
            "chargers",
            [
                "identity",
                "state",
                "site",
                "vendor",
                "model",
                "serial_number",
                "firmware_version",
                "ocpp_version",
                "connected",
                "last_seen",
                "registration_status",
            ],
            (
                [
                    row["charger"].identity,
                    row["state"],
                    row["charger"].site.name if row["charger"].site else "",
                    row["charger"].vendor,
                    row["charger"].model,
                    row["charger"].serial_number,
                    row["charger"].firmware_version,
                    row["charger"].ocpp_version,
                    row["charger"].connected,
                    row["charger"].last_seen,
                    row["charger"].registration_status,
                ]
                for row in _charger_rows(chargers.iterator(chunk_size=500))
            ),
        )
    page = _page(request, chargers)
    context = {
        "filters": filters,
        "page": page,
        "rows": _charger_rows(page.object_list),
        **command_views.bulk_context(request),
    }
    return render_page(
        request,
        "chargers/charger_list.html",
        context,
        parts={"charger-results": "chargers/_charger_results.html"},
    )


@dashboard_view
def charger_row(request: DashboardRequest, pk: int) -> HttpResponse:
    """One row of a charger table, re-rendered when the charger's state changes."""
    charger = get_object_or_404(_charger_queryset(request), pk=pk)
    context = {"row": _charger_rows([charger])[0], **command_views.row_context(request)}
    return render(request, "chargers/_charger_row.html", context)


def _session_panels(tenant: Any, sessions: Iterable[Session]) -> list[dict[str, Any]]:
    return [
        {
            "session": s,
            "series": dashboard.session_series(tenant, s).as_json(),
            "series_id": f"series-{s.pk}",
        }
        for s in sessions
    ]


@dashboard_view
def charger_detail(request: DashboardRequest, pk: int) -> HttpResponse:
    tenant = request.tenant
    charger = get_object_or_404(_charger_queryset(request), pk=pk)
    connectors = list(charger.connectors.all())
    sessions = selectors.sessions_for(tenant).filter(charger=charger).select_related("id_token")
    active = list(sessions.filter(state=SessionState.ACTIVE).order_by("connector_number"))
    context = {
        "charger": charger,
        "state": dashboard.charger_state(charger, connectors),
        "charger_status": next((c for c in connectors if c.connector_id == 0), None),
        "connectors": [c for c in connectors if c.connector_id > 0],
        "active_sessions": _session_panels(tenant, active),
        "recent_sessions": sessions[:RECENT_SESSIONS],
        "heartbeat_interval": charger.heartbeat_interval or settings.CPMS_HEARTBEAT_INTERVAL,
        "time_zone": charger.site.time_zone if charger.site else "UTC",
        **_frame_log(request, charger),
        **command_views.panel_context(request, charger),
        **firmware_views.diagnostics_context(request, charger),
        **reservation_views.panel_context(request, charger),
        **locallist_views.local_list_context(request, charger),
    }
    return render_page(
        request,
        "chargers/charger_detail.html",
        context,
        parts={
            "charger-summary": "chargers/_charger_summary.html",
            "charger-connectors": "chargers/_connectors.html",
            "charger-active": "chargers/_active_sessions.html",
            "charger-sessions": "chargers/_charger_sessions.html",
            "charger-command-list": command_views.COMMAND_LIST,
            "charger-diagnostics": "chargers/_charger_diagnostics.html",
            "charger-local-list": "chargers/_charger_local_list.html",
            "charger-local-list-state": "chargers/_charger_local_list_state.html",
        },
    )


def _frame_display(frame: Frame) -> dict[str, Any]:
    try:
        pretty = json.dumps(json.loads(frame.raw), indent=2, ensure_ascii=False)
    except ValueError:
        pretty = frame.raw
    return {"frame": frame, "pretty": pretty}


def _frame_log(request: DashboardRequest, charger: Charger) -> dict[str, Any]:
    queryset = selectors.frames_for(request.tenant).filter(charger=charger)
    filters = FrameFilter(request.GET, queryset=queryset)
    frames = list(filters.qs.order_by("-id")[: FRAME_PAGE_SIZE + 1])
    older = frames[FRAME_PAGE_SIZE].pk + 1 if len(frames) > FRAME_PAGE_SIZE else None
    frames = frames[:FRAME_PAGE_SIZE]
    query = request.GET.copy()
    query.pop("before", None)
    return {
        "frame_filters": filters,
        "frames": [_frame_display(f) for f in frames],
        # The log follows the journal live only on its first page.
        "frames_live": not request.GET.get("before"),
        "older_query": f"{query.urlencode()}&before={older}" if older else "",
        "ocpp_actions": OCPP_ACTIONS,
    }


@dashboard_view
def charger_frames(request: DashboardRequest, pk: int) -> HttpResponse:
    """The OCPP frame log of one charger, newest first, with filters; follows the journal live."""
    charger = get_object_or_404(selectors.chargers_for(request.tenant), pk=pk)
    context = {
        "charger": charger,
        "time_zone": charger.site.time_zone if charger.site else "UTC",
        **_frame_log(request, charger),
    }
    return render_page(
        request,
        "chargers/charger_frames.html",
        context,
        parts={"frame-log": "chargers/_frame_log.html"},
    )


# --- Sessions ------------------------------------------------------------------------------------


@dashboard_view
def session_list(request: DashboardRequest) -> HttpResponse:
    queryset = selectors.sessions_for(request.tenant).select_related("charger__site")
    filters = SessionFilter(request.GET or None, queryset=queryset, request=request)
    sessions = filters.qs
    sessions = sessions.order_by(*(sessions.query.order_by or ("-started_at",)), "-id")
    if request.GET.get("export") == "csv":
        return csv_response(
            "sessions",
            [
                "id",
                "charger",
                "site",
                "connector",
                "transaction_id",
                "id_tag",
                "state",
                "started_at",
                "stopped_at",
                "meter_start_wh",
                "meter_stop_wh",
                "energy_wh",
                "stop_reason",
            ],
            (
                [
                    s.pk,
                    s.charger.identity,
                    s.charger.site.name if s.charger.site else "",
                    s.connector_number,
                    s.transaction_id,
                    s.id_tag,
                    s.state,
                    s.started_at,
                    s.stopped_at,
                    s.meter_start_wh,
                    s.meter_stop_wh,
                    s.energy_wh,
                    s.stop_reason,
                ]
                for s in sessions.iterator(chunk_size=500)
            ),
        )
    page = _page(request, sessions)
    context = {"filters": filters, "page": page}
    return render_page(
        request,
        "chargers/session_list.html",
        context,
        parts={"session-results": "chargers/_session_results.html"},
    )


@dashboard_view
def session_detail(request: DashboardRequest, pk: int) -> HttpResponse:
    tenant = request.tenant
    session = get_object_or_404(
        selectors.sessions_for(tenant).select_related("charger__site", "id_token"), pk=pk
    )
    context = {
        "session": session,
        "series": dashboard.session_series(tenant, session).as_json(),
        "time_zone": session.charger.site.time_zone if session.charger.site else "UTC",
        "duration": (session.stopped_at or timezone.now()) - session.started_at,
    }
    return render_page(
        request,
        "chargers/session_detail.html",
        context,
        parts={"session-summary": "chargers/_session_summary.html"},
    )


# --- Sites ---------------------------------------------------------------------------------------


def _site_marker(site: Any) -> dict[str, Any] | None:
    if site.latitude is None or site.longitude is None:
        return None
    return {
        "name": site.name,
        "lat": float(site.latitude),
        "lng": float(site.longitude),
        "url": reverse("dashboard:site_detail", args=[site.pk]),
    }


def _map_context(sites: Iterable[Any]) -> dict[str, Any]:
    markers = [m for m in (_site_marker(site) for site in sites) if m is not None]
    return {
        "map": {
            "tiles": settings.CPMS_MAP_TILE_URL,
            "attribution": settings.CPMS_MAP_ATTRIBUTION,
            "markers": markers,
        },
    }


@dashboard_view
def site_list(request: DashboardRequest) -> HttpResponse:
    tenant = request.tenant
    chargers = selectors.chargers_for(tenant)
    sites = list(
        selectors.sites_for(tenant).annotate(
            charger_count=Count("chargers", filter=Q(chargers__in=chargers), distinct=True),
            online_count=Count(
                "chargers", filter=Q(chargers__in=chargers, chargers__connected=True), distinct=True
            ),
        )
    )
    return render_page(request, "chargers/site_list.html", {"sites": sites, **_map_context(sites)})


@dashboard_view
def site_detail(request: DashboardRequest, pk: int) -> HttpResponse:
    tenant = request.tenant
    site = get_object_or_404(selectors.sites_for(tenant), pk=pk)
    chargers = _charger_queryset(request).filter(site=site).order_by("identity")
    rows = _charger_rows(chargers)
    active = (
        selectors.sessions_for(tenant)
        .filter(charger__site=site, state=SessionState.ACTIVE)
        .select_related("charger")
    )
    context = {
        "site": site,
        "rows": rows,
        "active_sessions": active,
        "time_zone": site.time_zone,
        **_map_context([site]),
    }
    return render_page(
        request,
        "chargers/site_detail.html",
        context,
        parts={"site-sessions": "chargers/_site_sessions.html"},
    )


# --- Id tokens -----------------------------------------------------------------------------------


@dashboard_view(operators_only=True)
def id_token_list(request: DashboardRequest) -> HttpResponse:
    queryset = selectors.id_tokens_for(request.tenant)
    filters = IdTokenFilter(request.GET or None, queryset=queryset, request=request)
    page = _page(request, filters.qs.order_by("token"))
    return render_page(
        request,
        "chargers/id_token_list.html",
        {"filters": filters, "page": page},
        parts={"id-token-results": "chargers/_id_token_results.html"},
    )


@dashboard_view(operators_only=True)
def id_token_create(request: DashboardRequest) -> HttpResponse:
    tenant = request.tenant
    form = IdTokenForm(request.POST or None, organization_id=tenant.organization_id)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                id_token = services.id_token_create(
                    organization=Organization.objects.get(pk=tenant.organization_id),
                    **form.cleaned_data,
                )
        except IntegrityError:
            # Created by someone else between the form's check and the insert.
            form.add_error("token", "This organization already has an id token with this value.")
        else:
            messages.success(request, f"Id token {id_token.token} created.")
            return redirect("dashboard:id_token_list")
    return render(
        request, "chargers/id_token_form.html", {"form": form}, status=400 if form.errors else 200
    )


def _id_token_set_status(request: DashboardRequest, pk: int, status: str) -> HttpResponse:
    id_token = get_object_or_404(selectors.id_tokens_for(request.tenant), pk=pk)
    services.id_token_update(id_token=id_token, data={"status": status})
    if request.htmx:
        return render(request, "chargers/_id_token_row.html", {"id_token": id_token})
    verb = "blocked" if status == IdTokenStatus.BLOCKED else "unblocked"
    messages.success(request, f"Id token {id_token.token} {verb}.")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = reverse("dashboard:id_token_list")
    return HttpResponseRedirect(back)


@require_POST
@dashboard_view(operators_only=True)
def id_token_block(request: DashboardRequest, pk: int) -> HttpResponse:
    return _id_token_set_status(request, pk, IdTokenStatus.BLOCKED)


@require_POST
@dashboard_view(operators_only=True)
def id_token_unblock(request: DashboardRequest, pk: int) -> HttpResponse:
    return _id_token_set_status(request, pk, IdTokenStatus.ACCEPTED)
