"""Dashboard forms of the tariff editor: one form per tariff element (its prices and when it
applies), the draft's own fields, publishing, assigning and the price example.

The element forms turn into the OCPI ``elements`` document and back; the whole draft is then
checked by ``billing.validation`` so the dashboard refuses exactly what the API refuses, each
problem shown beside the element it concerns.
"""

from __future__ import annotations

import re
from datetime import time
from decimal import Decimal
from typing import Any

from django import forms
from django.forms import formset_factory

from chargers.models import Site

from .pricing import DAYS

MONEY = {"max_digits": 12, "decimal_places": 4, "min_value": Decimal(0), "required": False}
DAY_CHOICES = [(day, day.title()) for day in DAYS]
# Price fields of an element form and the OCPI component they become.
PRICE_FIELDS = {
    "energy_price": "ENERGY",
    "time_price": "TIME",
    "parking_price": "PARKING_TIME",
    "flat_price": "FLAT",
}
STEP_FIELDS = {"ENERGY": "energy_step", "TIME": "time_step", "PARKING_TIME": "parking_step"}
RESTRICTION_FIELDS = {
    "start_date": "start_date",
    "end_date": "end_date",
    "min_kwh": "min_kwh",
    "max_kwh": "max_kwh",
    "min_power": "min_power",
    "max_power": "max_power",
    "min_current": "min_current",
    "max_current": "max_current",
}
TIME_WIDGET = forms.TimeInput(attrs={"type": "time"}, format="%H:%M")
DATE_WIDGET = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class ElementForm(forms.Form):
    energy_price = forms.DecimalField(label="Energy, per kWh", **MONEY)  # type: ignore[arg-type]
    time_price = forms.DecimalField(label="Charging time, per hour", **MONEY)  # type: ignore[arg-type]
    parking_price = forms.DecimalField(label="Idle fee, per hour", **MONEY)  # type: ignore[arg-type]
    flat_price = forms.DecimalField(label="Per session", **MONEY)  # type: ignore[arg-type]
    vat = forms.DecimalField(
        label="VAT %", max_digits=6, decimal_places=3, min_value=Decimal(0), max_value=Decimal(100)
    )
    energy_step = forms.IntegerField(
        label="Energy billed per (Wh)",
        min_value=1,
        required=False,
        help_text="e.g. 1000: whole kWh",
    )
    time_step = forms.IntegerField(
        label="Charging time billed per (s)", min_value=1, required=False
    )
    parking_step = forms.IntegerField(label="Idle time billed per (s)", min_value=1, required=False)
    start_time = forms.TimeField(label="From (local time)", required=False, widget=TIME_WIDGET)
    end_time = forms.TimeField(label="Until (local time)", required=False, widget=TIME_WIDGET)
    days = forms.MultipleChoiceField(
        label="Days", choices=DAY_CHOICES, required=False, widget=forms.CheckboxSelectMultiple
    )
    start_date = forms.DateField(label="From date", required=False, widget=DATE_WIDGET)
    end_date = forms.DateField(label="Until date (exclusive)", required=False, widget=DATE_WIDGET)
    min_kwh = forms.DecimalField(label="From kWh in the session", **MONEY)  # type: ignore[arg-type]
    max_kwh = forms.DecimalField(label="Below kWh in the session", **MONEY)  # type: ignore[arg-type]
    min_power = forms.DecimalField(label="From power (kW)", **MONEY)  # type: ignore[arg-type]
    max_power = forms.DecimalField(label="Below power (kW)", **MONEY)  # type: ignore[arg-type]
    min_current = forms.DecimalField(label="From current (A)", **MONEY)  # type: ignore[arg-type]
    max_current = forms.DecimalField(label="Below current (A)", **MONEY)  # type: ignore[arg-type]
    min_duration = forms.IntegerField(
        label="From minute of the session", min_value=0, required=False
    )
    max_duration = forms.IntegerField(
        label="Before minute of the session", min_value=0, required=False
    )

    def is_blank(self) -> bool:
        data = getattr(self, "cleaned_data", {})
        return not any(data.get(name) is not None for name in PRICE_FIELDS)

    def element(self) -> dict[str, Any]:
        """This form as an OCPI TariffElement."""
        data = self.cleaned_data
        components = []
        for name, kind in PRICE_FIELDS.items():
            if data.get(name) is None:
                continue
            component: dict[str, Any] = {
                "type": kind,
                "price": str(data[name]),
                "vat": str(data["vat"]),
            }
            step = data.get(STEP_FIELDS.get(kind, ""))
            if step:
                component["step_size"] = step
            components.append(component)
        restrictions: dict[str, Any] = {}
        for key in ("start_time", "end_time"):
            if data.get(key) is not None:
                restrictions[key] = data[key].strftime("%H:%M")
        for key in ("start_date", "end_date"):
            if data.get(key) is not None:
                restrictions[key] = data[key].isoformat()
        for field, key in RESTRICTION_FIELDS.items():
            if key in ("start_date", "end_date"):
                continue
            if data.get(field) is not None:
                restrictions[key] = str(data[field])
        for key in ("min_duration", "max_duration"):
            if data.get(key) is not None:
                restrictions[key] = data[key] * 60
        if data.get("days"):
            restrictions["day_of_week"] = [d for d in DAYS if d in data["days"]]
        element: dict[str, Any] = {"price_components": components}
        if restrictions:
            element["restrictions"] = restrictions
        return element

    # Where an error of the parsed document belongs in this form.
    @staticmethod
    def field_for(path: str) -> str | None:
        match = re.match(r"^elements\[\d+\]\.restrictions\.(\w+)$", path)
        if match:
            key = match[1]
            return "days" if key == "day_of_week" else key
        return None


def element_initial(element: dict[str, Any]) -> dict[str, Any]:
    """An OCPI TariffElement as the initial data of an ElementForm."""
    initial: dict[str, Any] = {}
    for component in element.get("price_components", []):
        for name, kind in PRICE_FIELDS.items():
            if component.get("type") == kind:
                initial[name] = Decimal(str(component["price"]))
                initial.setdefault("vat", Decimal(str(component.get("vat", 0))))
                step = component.get("step_size", 1)
                if kind in STEP_FIELDS and step and step != 1:
                    initial[STEP_FIELDS[kind]] = step
    restrictions = element.get("restrictions") or {}
    for key in ("start_time", "end_time"):
        if restrictions.get(key):
            hours, minutes = restrictions[key].split(":")
            initial[key] = time(int(hours), int(minutes))
    for key in ("start_date", "end_date"):
        if restrictions.get(key):
            initial[key] = restrictions[key]
    for field, key in RESTRICTION_FIELDS.items():
        if key not in ("start_date", "end_date") and restrictions.get(key) is not None:
            initial[field] = Decimal(str(restrictions[key]))
    for key in ("min_duration", "max_duration"):
        if restrictions.get(key) is not None:
            initial[key] = int(restrictions[key]) // 60
    if restrictions.get("day_of_week"):
        initial["days"] = list(restrictions["day_of_week"])
    return initial


# Rows come from initial data only: the elements, then one or two empty rows to add more.
ElementFormSet = formset_factory(ElementForm, extra=0, can_delete=True)


class DraftForm(forms.Form):
    min_price = forms.DecimalField(label="Minimum per session (excl. VAT)", **MONEY)  # type: ignore[arg-type]
    max_price = forms.DecimalField(label="Maximum per session (excl. VAT)", **MONEY)  # type: ignore[arg-type]
    parking_grace_minutes = forms.IntegerField(
        label="Idle minutes free of charge",
        min_value=0,
        max_value=24 * 60,
        initial=0,
        required=False,
        help_text="Idle fees start once a session has been idle this long",
    )
    description = forms.CharField(label="Description for drivers", max_length=300, required=False)


class TariffCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    site = forms.ModelChoiceField(
        queryset=Site.objects.none(),
        required=False,
        empty_label="All sites of the organization",
        help_text="The site the tariff is for; its currency and time zone apply",
    )

    def __init__(self, *args: Any, sites: Any, allow_organization: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        site_field = self.fields["site"]
        site_field.queryset = sites  # type: ignore[attr-defined]
        if not allow_organization:
            site_field.required = True
            site_field.empty_label = None  # type: ignore[attr-defined]


class PublishForm(forms.Form):
    effective_from = forms.DateTimeField(
        label="In force from (site time)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Empty: now. Sessions that started earlier keep the price they started with.",
    )


class AssignForm(forms.Form):
    target = forms.ChoiceField(label="Where")
    price_group = forms.ChoiceField(label="For", required=False)

    def __init__(
        self,
        *args: Any,
        targets: list[tuple[str, str]],
        groups: list[tuple[str, str]],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = targets  # type: ignore[attr-defined]
        self.fields["price_group"].choices = [("", "Everyone (public price)"), *groups]  # type: ignore[attr-defined]


class ExampleForm(forms.Form):
    day = forms.TypedChoiceField(
        label="Day",
        choices=[(i, d.title()) for i, d in enumerate(DAYS)],
        coerce=int,
        initial=1,
    )
    at = forms.TimeField(label="Starting at", initial=time(18, 0), widget=TIME_WIDGET)
    energy_kwh = forms.DecimalField(
        label="kWh",
        min_value=Decimal(0),
        max_value=Decimal(10000),
        initial=Decimal(22),
        decimal_places=3,
    )
    hours = forms.DecimalField(
        label="Charging hours",
        min_value=Decimal(0),
        max_value=Decimal(168),
        initial=Decimal(2),
        decimal_places=2,
    )
    idle_minutes = forms.IntegerField(
        label="Idle minutes after", min_value=0, max_value=10080, initial=0
    )

    prefix = "example"
