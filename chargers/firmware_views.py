"""Dashboard pages of firmware campaigns (list and detail with live progress, a create form with
a preview of the chargers it targets, start / pause / resume / cancel), and the diagnostics panel
of a charger's page (ask for a file, follow it, download it). Operators and operator admins only.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from cpms.middleware import DashboardRequest, dashboard_view

from . import command_services, firmware_services, selectors, uploads
from . import views as dashboard_views
from .firmware import CampaignState, TargetState
from .firmware_api import campaigns_for, diagnostics_file_response, diagnostics_for
from .firmware_forms import CampaignForm, DiagnosticsForm, TargetFilterForm
from .models import Charger, FirmwareCampaign, FirmwareTarget

PREVIEW_SHOWN = 50
RECENT_FILES = 10
# The order of a progress bar's segments, and the label of each state.
BAR = [
    (TargetState.SUCCEEDED, "Succeeded"),
    (TargetState.FAILED, "Failed"),
    (TargetState.TIMED_OUT, "Timed out"),
    (TargetState.IN_PROGRESS, "In progress"),
    (TargetState.SENT, "Sent"),
    (TargetState.SKIPPED, "Skipped"),
    (TargetState.PENDING, "Pending"),
]
CONTROLS = {
    "start": firmware_services.firmware_campaign_start,
    "pause": firmware_services.firmware_campaign_pause,
    "resume": firmware_services.firmware_campaign_resume,
    "cancel": firmware_services.firmware_campaign_cancel,
}
DONE = {
    "start": "started",
    "pause": "paused",
    "resume": "resumed",
    "cancel": "cancelled",
}


def progress(counts: dict[str, int]) -> dict[str, Any]:
    """A campaign's progress bar: a segment per state with its share, and how many finished."""
    total = counts.get("total", 0)
    segments = [
        {
            "state": state.value,
            "label": label,
            "count": counts.get(state.value, 0),
            "percent": (Decimal(100) * counts.get(state.value, 0) / total).quantize(Decimal("0.1"))
            if total
            else Decimal(0),
        }
        for state, label in BAR
    ]
    finished = sum(
        counts.get(s, 0)
        for s in (
            TargetState.SUCCEEDED,
            TargetState.FAILED,
            TargetState.TIMED_OUT,
            TargetState.SKIPPED,
        )
    )
    return {
        "segments": segments,
        "total": total,
        "finished": finished,
        "finished_percent": round(100 * finished / total) if total else 0,
    }


def _campaigns(request: DashboardRequest) -> Any:
    return firmware_services.campaigns_with_counts(campaigns_for(request.tenant))


def _rows(campaigns: Any) -> list[dict[str, Any]]:
    from .firmware_serializers import target_counts

    return [{"campaign": c, "progress": progress(target_counts(c))} for c in campaigns]


@dashboard_view(operators_only=True)
def campaign_list(request: DashboardRequest) -> HttpResponse:
    context = {
        "section": "firmware",
        "rows": _rows(_campaigns(request).order_by("-created_at", "-id")[:100]),
    }
    return dashboard_views.render_page(
        request,
        "chargers/firmware_campaign_list.html",
        context,
        parts={"campaign-list": "chargers/_firmware_campaign_rows.html"},
    )


def _campaign(request: DashboardRequest, pk: int) -> FirmwareCampaign:
    return get_object_or_404(_campaigns(request).select_related("site", "created_by"), pk=pk)


@dashboard_view(operators_only=True)
def campaign_detail(request: DashboardRequest, pk: int) -> HttpResponse:
    from .firmware_serializers import target_counts

    campaign = _campaign(request, pk)
    targets = list(
        FirmwareTarget.objects.filter(campaign=campaign)
        .select_related("charger", "command")
        .order_by("wave", "charger__identity")
    )
    waves: dict[int, dict[str, int]] = {}
    for target in targets:
        wave = waves.setdefault(target.wave, {"total": 0})
        wave["total"] += 1
        wave[target.state] = wave.get(target.state, 0) + 1
    context = {
        "section": "firmware",
        "campaign": campaign,
        "progress": progress(target_counts(campaign)),
        "targets": targets,
        "waves": [
            {"wave": number, "progress": progress(counts)}
            for number, counts in sorted(waves.items())
        ],
        "can": {
            "start": campaign.state == CampaignState.DRAFT,
            "pause": campaign.state == CampaignState.RUNNING,
            "resume": campaign.state in (CampaignState.PAUSED, CampaignState.HALTED),
            "cancel": campaign.state
            in (
                CampaignState.DRAFT,
                CampaignState.RUNNING,
                CampaignState.PAUSED,
                CampaignState.HALTED,
            ),
        },
        "chargers": list(campaign.chargers.order_by("identity").values_list("identity", flat=True)),
    }
    return dashboard_views.render_page(
        request,
        "chargers/firmware_campaign_detail.html",
        context,
        parts={"campaign-progress": "chargers/_firmware_campaign_progress.html"},
    )


def _filter_form(
    request: DashboardRequest, data: Any = None, form_class: Any = TargetFilterForm
) -> Any:
    return form_class(
        data,
        sites=selectors.sites_for(request.tenant),
        chargers=selectors.chargers_for(request.tenant),
    )


def _preview(request: DashboardRequest, form: TargetFilterForm) -> dict[str, Any]:
    if not form.is_valid():
        return {"preview_valid": False}
    chargers = firmware_services.chargers_matching(
        form.target_filter(request.tenant.organization_id)
    )
    return {
        "preview_valid": True,
        "preview_count": chargers.count(),
        "preview_chargers": list(chargers[:PREVIEW_SHOWN]),
    }


@dashboard_view(operators_only=True)
def campaign_preview(request: DashboardRequest) -> HttpResponse:
    """The chargers the create form's filter selects now (an htmx part of the form)."""
    form = _filter_form(request, request.GET)
    return render(request, "chargers/_firmware_preview.html", _preview(request, form))


@dashboard_view(operators_only=True)
def campaign_create(request: DashboardRequest) -> HttpResponse:
    if request.method == "POST":
        form = _filter_form(request, request.POST, CampaignForm)
        if form.is_valid():
            data = form.cleaned_data
            chosen = form.target_filter(request.tenant.organization_id)
            campaign = firmware_services.firmware_campaign_create(
                organization_id=request.tenant.organization_id,
                name=data["name"],
                location=data["location"],
                firmware_version=data["firmware_version"],
                retrieve_at=data["retrieve_at"],
                install_at=data["install_at"],
                retries=data["retries"],
                retry_interval=data["retry_interval"],
                signature=data["signature"],
                signing_certificate=data["signing_certificate"],
                site_id=chosen.site_id,
                vendor=data["vendor"],
                model=data["model"],
                current_firmware_version=data["current_firmware_version"],
                chargers=data["chargers"],
                canary_count=data["canary_count"],
                wave_size=data["wave_size"],
                max_failure_ratio=(data["max_failure_percent"] / 100).quantize(Decimal("0.001")),
                target_timeout=data["target_timeout_minutes"] * 60,
                deliver_when_offline=data["deliver_when_offline"],
                created_by=request.user,
            )
            messages.success(request, f"Campaign “{campaign.name}” created as a draft.")
            return HttpResponseRedirect(reverse("firmware:campaign_detail", args=[campaign.pk]))
    else:
        form = _filter_form(request, None, CampaignForm)
    context = {
        "section": "firmware",
        "form": form,
        **_preview(request, _filter_form(request, request.POST or {})),
    }
    return render(request, "chargers/firmware_campaign_form.html", context)


@require_POST
@dashboard_view(operators_only=True)
def campaign_control(request: DashboardRequest, pk: int, operation: str) -> HttpResponse:
    campaign = _campaign(request, pk)
    control = CONTROLS.get(operation)
    if control is None:
        raise Http404("No such operation.")
    try:
        control(campaign_pk=campaign.pk)
    except firmware_services.CampaignRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Campaign “{campaign.name}” {DONE[operation]}.")
    return HttpResponseRedirect(reverse("firmware:campaign_detail", args=[campaign.pk]))


# --- Diagnostics on a charger's page -----------------------------------------------------------------


def diagnostics_context(
    request: DashboardRequest, charger: Charger, form: DiagnosticsForm | None = None
) -> dict[str, Any]:
    """What the charger page needs for its diagnostics panel; nothing for those who may not."""
    if not request.tenant.is_operator:
        return {"diagnostics_panel": False}
    files = diagnostics_for(request.tenant).filter(charger=charger).order_by("-created_at", "-id")
    return {
        "diagnostics_panel": True,
        "diagnostics_form": form or DiagnosticsForm(),
        "diagnostics_files": list(files[:RECENT_FILES]),
    }


def _charger(request: DashboardRequest, pk: int) -> Charger:
    return get_object_or_404(selectors.chargers_for(request.tenant).select_related("site"), pk=pk)


@require_POST
@dashboard_view(operators_only=True)
def diagnostics_request(request: DashboardRequest, pk: int) -> HttpResponse:
    charger = _charger(request, pk)
    form = DiagnosticsForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            record = uploads.diagnostics_request(
                charger=charger,
                kind=data["kind"],
                base_url=request.build_absolute_uri("/").rstrip("/"),
                start_time=data["start_time"],
                stop_time=data["stop_time"],
                deliver_when_offline=data["deliver_when_offline"],
                requested_by=request.user,
            )
        except command_services.ChargerOffline as exc:
            form.add_error(
                None,
                f"{exc.identity} is offline, so nothing was asked. Tick "
                f"“{DiagnosticsForm.base_fields['deliver_when_offline'].label}” to ask when it "
                "connects.",
            )
        except (command_services.CommandInvalid, command_services.CommandRefused) as exc:
            form.add_error(None, getattr(exc, "message", str(exc)))
        else:
            messages.success(request, f"{record.get_kind_display()} asked of {charger.identity}.")
            form = DiagnosticsForm()
    context = {
        "charger": charger,
        "time_zone": charger.site.time_zone if charger.site else "UTC",
        "show_messages": True,
        **diagnostics_context(request, charger, form),
    }
    if request.htmx:
        return render(request, "chargers/_charger_diagnostics.html", context)
    for error in form.non_field_errors():
        messages.error(request, str(error))
    return HttpResponseRedirect(
        reverse("dashboard:charger_detail", args=[charger.pk]) + "#diagnostics-title"
    )


@dashboard_view(operators_only=True)
def diagnostics_download(request: DashboardRequest, pk: int) -> FileResponse:
    record = get_object_or_404(diagnostics_for(request.tenant), pk=pk)
    if not record.file:
        raise Http404("The charger has not uploaded this file (yet).")
    return diagnostics_file_response(record)
