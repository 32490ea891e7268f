"""Dashboard pages of tariffs: the list, the editor with a live price example, publishing,
assignments and the simulator. Site hosts see and edit their own sites' tariffs only."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from chargers import selectors as charger_selectors
from chargers.models import Charger, Connector, Site
from cpms.middleware import DashboardRequest, dashboard_view
from cpms.models import Organization
from cpms.tenancy import Tenant

from . import selectors, services, validation
from .models import PriceGroup, Tariff, TariffVersion, TariffVersionState
from .preview import (
    SIMULATE_DEFAULT,
    SIMULATE_MAX,
    format_money,
    next_weekday,
    price_example,
    tariff_simulate,
)
from .pricing import (
    DAYS,
    TariffElement,
    TariffSpec,
    tariff_elements_dump,
    tariff_elements_parse,
)
from .tariff_forms import (
    AssignForm,
    DraftForm,
    ElementForm,
    ElementFormSet,
    ExampleForm,
    PublishForm,
    TariffCreateForm,
    element_initial,
)

DRAFT_ERROR_FIELDS = {"parking_grace_seconds": "parking_grace_minutes"}


# --- Reading ---------------------------------------------------------------------------------------


def _tariff(request: DashboardRequest, pk: int) -> Tariff:
    return get_object_or_404(selectors.tariff_list(tenant=request.tenant), pk=pk)


def _editable_sites(tenant: Tenant) -> Any:
    sites = charger_selectors.sites_for(tenant)
    return sites if tenant.is_operator else sites.filter(pk__in=tenant.site_ids or ())


def describe_element(element: TariffElement, currency: str) -> dict[str, str]:
    """An element in words: its prices and when it applies."""
    units = {
        "ENERGY": "kWh",
        "TIME": "charging hour",
        "PARKING_TIME": "idle hour",
        "FLAT": "session",
    }
    prices = ", ".join(
        f"{format_money(c.price, currency)} per {units[c.type.value]}"
        + (f" (VAT {c.vat.normalize():f} %)" if c.vat else " (no VAT)")
        + (
            f", in steps of {c.step_size} {'Wh' if c.type.value == 'ENERGY' else 's'}"
            if c.step_size > 1
            else ""
        )
        for c in element.price_components
    )
    r = element.restrictions
    when: list[str] = []
    if r.start_time or r.end_time:
        when.append(
            f"{r.start_time.strftime('%H:%M') if r.start_time else '00:00'}-"
            f"{r.end_time.strftime('%H:%M') if r.end_time else '24:00'}"
        )
    if r.day_of_week is not None:
        when.append(", ".join(DAYS[d].title()[:3] for d in sorted(r.day_of_week)))
    if r.start_date or r.end_date:
        when.append(f"dates {r.start_date or '…'} to {r.end_date or '…'}")
    for low, high, unit in (
        (r.min_kwh, r.max_kwh, "kWh"),
        (r.min_power, r.max_power, "kW"),
        (r.min_current, r.max_current, "A"),
    ):
        if low is not None or high is not None:
            when.append(
                f"{low if low is not None else 0}-{high if high is not None else '∞'} {unit}"
            )
    if r.min_duration is not None or r.max_duration is not None:
        when.append(
            f"minute {(r.min_duration or 0) // 60} to "
            f"{r.max_duration // 60 if r.max_duration is not None else 'end'} of the session"
        )
    return {"prices": prices, "when": "; ".join(when) or "always"}


def _version_view(version: TariffVersion) -> dict[str, Any]:
    elements = tariff_elements_parse(version.elements)
    return {
        "version": version,
        "elements": [describe_element(e, version.tariff.currency) for e in elements],
    }


# --- The editor -----------------------------------------------------------------------------------


class Editor:
    """The draft form and its element forms, read together and checked like the API checks."""

    def __init__(self, data: Any | None, *, version: TariffVersion | None = None) -> None:
        draft_initial: dict[str, Any] = {}
        elements_initial: list[dict[str, Any]] = []
        if version is not None:
            draft_initial = {
                "min_price": version.min_price,
                "max_price": version.max_price,
                "parking_grace_minutes": version.parking_grace_seconds // 60,
                "description": version.description,
            }
            elements_initial = [element_initial(e) for e in version.elements]
        # Empty rows to add elements to, with the VAT rate of the last one.
        vat = elements_initial[-1].get("vat", Decimal(0)) if elements_initial else Decimal(0)
        elements_initial += [{"vat": vat}] * (1 if elements_initial else 2)
        self.draft = DraftForm(data, initial=draft_initial)
        self.elements = ElementFormSet(data, initial=elements_initial, prefix="element")
        self.document: list[dict[str, Any]] = []
        self.parsed: tuple[TariffElement, ...] | None = None

    def is_valid(self) -> bool:
        if not (self.draft.is_valid() & self.elements.is_valid()):
            return False
        forms: list[ElementForm] = [
            f
            for f in self.elements.forms
            if not (self.elements.can_delete and f.cleaned_data.get("DELETE")) and not f.is_blank()
        ]
        self.document = [f.element() for f in forms]
        grace = (self.draft.cleaned_data.get("parking_grace_minutes") or 0) * 60
        self.parsed, errors = validation.draft_errors(
            elements=self.document,
            min_price=self.draft.cleaned_data.get("min_price"),
            max_price=self.draft.cleaned_data.get("max_price"),
            parking_grace_seconds=grace,
        )
        for path, problems in errors.items():
            if path.startswith("elements["):
                index = int(path[len("elements[") : path.index("]")])
                form = forms[index]
                field = ElementForm.field_for(path)
                for problem in problems:
                    form.add_error(field if field in form.fields else None, problem)
            elif path == "elements":
                for problem in problems:
                    self.draft.add_error(None, "Give at least one price: " + problem)
            else:
                field = DRAFT_ERROR_FIELDS.get(path, path)
                for problem in problems:
                    self.draft.add_error(field if field in self.draft.fields else None, problem)
        return not errors

    def data(self) -> dict[str, Any]:
        cleaned = self.draft.cleaned_data
        assert self.parsed is not None
        return {
            # Stored in one canonical spelling, as the API stores it.
            "elements": tariff_elements_dump(self.parsed),
            "min_price": cleaned.get("min_price"),
            "max_price": cleaned.get("max_price"),
            "parking_grace_seconds": (cleaned.get("parking_grace_minutes") or 0) * 60,
            "description": cleaned.get("description") or "",
        }

    def spec(self, currency: str) -> TariffSpec:
        assert self.parsed is not None
        data = self.data()
        return TariffSpec(
            currency=currency,
            elements=self.parsed,
            min_price=data["min_price"],
            max_price=data["max_price"],
            parking_grace_seconds=data["parking_grace_seconds"],
        )


def _example(editor: Editor, example: ExampleForm, *, currency: str, tz: str) -> dict[str, Any]:
    if not example.is_valid():
        return {"example_error": "Give a day, a start time, kWh, hours and idle minutes."}
    if not editor.is_valid():
        return {"example_error": "Correct the tariff to see what it charges."}
    data = example.cleaned_data
    result = price_example(
        spec=editor.spec(currency),
        tz=tz,
        started_at=next_weekday(weekday=data["day"], at=data["at"], tz=tz),
        energy_kwh=data["energy_kwh"],
        charging=timedelta(seconds=int(data["hours"] * 3600)),
        idle=timedelta(minutes=data["idle_minutes"]),
    )
    return {"example": result}


def _site_zone(site: Site | None) -> str:
    return site.time_zone if site is not None and site.time_zone else "UTC"


@dashboard_view
def tariff_list(request: DashboardRequest) -> HttpResponse:
    now = timezone.now()
    rows = []
    for tariff in selectors.tariff_list(tenant=request.tenant).prefetch_related("versions"):
        rows.append(
            {
                "tariff": tariff,
                "current": selectors.tariff_version_in_force(tariff=tariff, at=now),
                "draft": next((v for v in tariff.versions.all() if v.state == "draft"), None),
                "assignments": tariff.assignments.exclude(valid_until__lte=now).count(),
            }
        )
    can_create = request.tenant.is_operator or bool(request.tenant.site_ids)
    return render(request, "billing/tariff_list.html", {"rows": rows, "can_create": can_create})


@dashboard_view
def tariff_create(request: DashboardRequest) -> HttpResponse:
    tenant = request.tenant
    sites = _editable_sites(tenant)
    if not tenant.is_operator and not sites.exists():
        raise Http404
    form = TariffCreateForm(
        request.POST or None, sites=sites, allow_organization=tenant.is_operator
    )
    editor = Editor(request.POST or None)
    example = ExampleForm(request.POST or None)
    if request.method == "POST":
        valid = form.is_valid() & editor.is_valid()
        if valid:
            site = form.cleaned_data.get("site")
            currency = selectors.site_currency(site=site)
            errors = validation.tariff_create_errors(tenant=tenant, site=site, currency=currency)
            name = form.cleaned_data["name"]
            if Tariff.objects.filter(organization_id=tenant.organization_id, name=name).exists():
                errors.setdefault("name", []).append(
                    "Your organization has a tariff with this name already."
                )
            for field, problems in errors.items():
                for problem in problems:
                    form.add_error(field if field in form.fields else None, problem)
            if not errors:
                tariff = services.tariff_create(
                    organization=Organization.objects.get(pk=tenant.organization_id),
                    name=name,
                    site=site,
                    currency=currency,
                    user=request.user if request.user.is_authenticated else None,  # type: ignore[arg-type]
                    **editor.data(),
                )
                messages.success(
                    request,
                    f"Tariff {tariff.name} created as a draft: publish it to put it in force.",
                )
                return redirect("tariffs:detail", tariff.pk)
    context = {"form": form, "editor": editor, "example_form": example, "tariff": None}
    return render(
        request,
        "billing/tariff_editor.html",
        context,
        status=400 if request.method == "POST" else 200,
    )


@dashboard_view
def tariff_detail(request: DashboardRequest, pk: int) -> HttpResponse:
    tariff = _tariff(request, pk)
    return _render_detail(request, tariff)


def _assign_form(request: DashboardRequest, tariff: Tariff, data: Any = None) -> AssignForm:
    tenant = request.tenant
    sites = [tariff.site] if tariff.site else list(_editable_sites(tenant))
    targets: list[tuple[str, str]] = []
    for site in sites:
        targets.append((f"site:{site.pk}", f"Site {site.name}"))
        for charger in (
            charger_selectors.chargers_for(tenant).filter(site=site).order_by("identity")
        ):
            targets.append((f"charger:{charger.pk}", f"Charger {charger.identity} ({site.name})"))
            for connector in charger.connectors.filter(connector_id__gt=0).order_by("connector_id"):
                targets.append(
                    (
                        f"connector:{connector.pk}",
                        f"Connector {charger.identity}#{connector.connector_id}",
                    )
                )
    groups = [
        (str(g.pk), g.name) for g in selectors.price_group_list(tenant=tenant).order_by("name")
    ]
    return AssignForm(data, targets=targets, groups=groups)


def _render_detail(
    request: DashboardRequest,
    tariff: Tariff,
    *,
    publish_form: PublishForm | None = None,
    assign_form: AssignForm | None = None,
    status: int = 200,
) -> HttpResponse:
    now = timezone.now()
    versions = list(tariff.versions.order_by("-number"))
    current = selectors.tariff_version_in_force(tariff=tariff, at=now)
    draft = next((v for v in versions if v.state == TariffVersionState.DRAFT), None)
    editable = validation.tariff_editable(tenant=request.tenant, tariff=tariff)
    context = {
        "tariff": tariff,
        "time_zone": _site_zone(tariff.site),
        "versions": versions,
        "current": _version_view(current) if current else None,
        "draft": _version_view(draft) if draft else None,
        "scheduled": [
            v for v in versions if v.is_published and v.effective_from and v.effective_from > now
        ],
        "assignments": tariff.assignments.select_related(
            "site", "charger", "connector__charger", "price_group"
        ).order_by("-valid_from", "-id"),
        "now": now,
        "editable": editable,
        "publish_form": publish_form or PublishForm(),
        "assign_form": assign_form or _assign_form(request, tariff),
    }
    return render(request, "billing/tariff_detail.html", context, status=status)


@dashboard_view
def tariff_edit(request: DashboardRequest, pk: int) -> HttpResponse:
    """The draft editor; a published version is never changed, the draft becomes the next one."""
    tariff = _tariff(request, pk)
    if not validation.tariff_editable(tenant=request.tenant, tariff=tariff):
        raise Http404
    base = (
        tariff.versions.filter(state=TariffVersionState.DRAFT).first()
        or tariff.versions.order_by("-number").first()
    )
    editor = Editor(request.POST or None, version=base)
    example = ExampleForm(request.POST or None)
    if request.method == "POST" and editor.is_valid():
        with transaction.atomic():
            draft = services.tariff_draft_update(
                version=services.tariff_draft(tariff=tariff), data=editor.data()
            )
        messages.success(
            request, f"Draft version {draft.number} saved. Publish it to put it in force."
        )
        return redirect("tariffs:detail", tariff.pk)
    context = {"form": None, "editor": editor, "example_form": example, "tariff": tariff}
    return render(
        request,
        "billing/tariff_editor.html",
        context,
        status=400 if request.method == "POST" else 200,
    )


@require_POST
@dashboard_view
def tariff_example(request: DashboardRequest) -> HttpResponse:
    """The editor's live price example, priced from the form as it stands (nothing is saved)."""
    tenant = request.tenant
    site: Site | None = None
    raw_tariff = request.POST.get("tariff")
    if raw_tariff:
        tariff = _tariff(request, int(raw_tariff)) if raw_tariff.isdigit() else None
        if tariff is None:
            raise Http404
        site, currency = tariff.site, tariff.currency
    else:
        raw_site = request.POST.get("site", "")
        if raw_site.isdigit():
            site = get_object_or_404(charger_selectors.sites_for(tenant), pk=int(raw_site))
        currency = selectors.site_currency(site=site)
    editor = Editor(request.POST)
    example = ExampleForm(request.POST)
    context = _example(editor, example, currency=currency, tz=_site_zone(site))
    return render(request, "billing/_tariff_example.html", context)


@require_POST
@dashboard_view
def tariff_publish(request: DashboardRequest, pk: int) -> HttpResponse:
    tariff = _tariff(request, pk)
    if not validation.tariff_editable(tenant=request.tenant, tariff=tariff):
        raise Http404
    form = PublishForm(request.POST)
    draft = tariff.versions.filter(state=TariffVersionState.DRAFT).first()
    if draft is None:
        form.add_error(None, "There is no draft to publish: edit the tariff first.")
    if form.is_valid() and draft is not None:
        effective = form.cleaned_data.get("effective_from")
        if effective is not None:
            # A datetime-local input is the site's wall clock.
            effective = effective.replace(tzinfo=None).replace(
                tzinfo=ZoneInfo(_site_zone(tariff.site))
            )
        try:
            version = services.tariff_publish(
                version=draft,
                effective_from=effective,
                user=request.user if request.user.is_authenticated else None,  # type: ignore[arg-type]
            )
        except ValidationError as error:
            for field, problems in (
                error.message_dict.items()
                if hasattr(error, "error_dict")
                else [(None, error.messages)]
            ):
                for problem in problems:
                    form.add_error(field if field in form.fields else None, problem)
        else:
            assert version.effective_from is not None
            messages.success(
                request,
                f"Version {version.number} published, in force from "
                f"{version.effective_from.astimezone(ZoneInfo(_site_zone(tariff.site))):%d %b %Y %H:%M}.",
            )
            return redirect("tariffs:detail", tariff.pk)
    return _render_detail(request, tariff, publish_form=form, status=400)


@require_POST
@dashboard_view
def tariff_assign(request: DashboardRequest, pk: int) -> HttpResponse:
    tenant = request.tenant
    tariff = _tariff(request, pk)
    if not validation.tariff_editable(tenant=tenant, tariff=tariff):
        raise Http404
    form = _assign_form(request, tariff, request.POST)
    if form.is_valid():
        kind, _, raw = form.cleaned_data["target"].partition(":")
        targets: dict[str, Any] = {"site": None, "charger": None, "connector": None}
        if kind == "site":
            targets["site"] = get_object_or_404(charger_selectors.sites_for(tenant), pk=raw)
        elif kind == "charger":
            targets["charger"] = get_object_or_404(
                Charger, pk=raw, organization_id=tenant.organization_id
            )
        else:
            targets["connector"] = get_object_or_404(
                Connector.objects.select_related("charger__site"),
                pk=raw,
                charger__organization_id=tenant.organization_id,
            )
        group = None
        if form.cleaned_data.get("price_group"):
            group = get_object_or_404(
                PriceGroup,
                pk=form.cleaned_data["price_group"],
                organization_id=tenant.organization_id,
            )
        errors = validation.assignment_errors(
            tenant=tenant, tariff=tariff, price_group=group, **targets
        )
        for problems in errors.values():
            for problem in problems:
                form.add_error("target", problem)
        if not errors:
            services.tariff_assign(
                tariff=tariff,
                price_group=group,
                user=request.user if request.user.is_authenticated else None,  # type: ignore[arg-type]
                **targets,
            )
            messages.success(request, f"Tariff {tariff.name} assigned.")
            return redirect("tariffs:detail", tariff.pk)
    return _render_detail(request, tariff, assign_form=form, status=400)


@require_POST
@dashboard_view
def assignment_end(request: DashboardRequest, pk: int) -> HttpResponse:
    assignment = get_object_or_404(selectors.tariff_assignment_list(tenant=request.tenant), pk=pk)
    if not validation.tariff_editable(tenant=request.tenant, tariff=assignment.tariff):
        raise Http404
    services.tariff_assignment_end(assignment=assignment)
    messages.success(request, "Assignment ended; it stays on record for the sessions it priced.")
    return redirect("tariffs:detail", assignment.tariff_id)


@dashboard_view
def tariff_simulator(request: DashboardRequest, pk: int) -> HttpResponse:
    """The draft against the site's last sessions: revenue now and with the draft."""
    tariff = _tariff(request, pk)
    draft = tariff.versions.filter(state=TariffVersionState.DRAFT).first()
    sites = [tariff.site] if tariff.site else list(_editable_sites(request.tenant))
    try:
        count = min(max(int(request.GET.get("sessions", SIMULATE_DEFAULT)), 1), SIMULATE_MAX)
    except ValueError:
        count = SIMULATE_DEFAULT
    site = sites[0] if sites else None
    raw_site = request.GET.get("site", "")
    if raw_site.isdigit():
        site = next((s for s in sites if s.pk == int(raw_site)), site)
    simulation = None
    if draft is not None and site is not None:
        spec = TariffSpec(
            currency=tariff.currency,
            elements=tariff_elements_parse(draft.elements),
            min_price=draft.min_price,
            max_price=draft.max_price,
            parking_grace_seconds=draft.parking_grace_seconds,
        )
        simulation = tariff_simulate(site=site, draft=spec, limit=count)
    context = {
        "tariff": tariff,
        "draft": draft,
        "sites": sites,
        "site": site,
        "count": count,
        "simulation": simulation,
        "time_zone": _site_zone(site),
    }
    return render(request, "billing/tariff_simulator.html", context)
