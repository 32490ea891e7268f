"""Dashboard forms of the site load page; each validates at the edge and hands clean data to a
service."""

from __future__ import annotations

from typing import Any

from django import forms

from chargers.models import Charger, Site

from .models import ChargerLoad, Circuit, LimitEvent, LimitSchedule, PhaseRotation, SiteCapacity

WEEKDAYS = [(1, "Mon"), (2, "Tue"), (3, "Wed"), (4, "Thu"), (5, "Fri"), (6, "Sat"), (7, "Sun")]


class CapacityForm(forms.ModelForm):
    class Meta:
        model = SiteCapacity
        fields = ["limit", "limit_unit", "phases", "voltage", "managed"]
        labels = {"limit": "Grid connection limit", "managed": "Manage the load of this site"}


class CircuitForm(forms.ModelForm):
    class Meta:
        model = Circuit
        fields = ["name", "parent", "limit_a", "phases"]
        labels = {"limit_a": "Limit (A per phase)", "parent": "Below"}

    def __init__(self, *args: Any, site: Site, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.site = site
        parent = self.fields["parent"]
        assert isinstance(parent, forms.ModelChoiceField)
        parent.queryset = Circuit.objects.filter(site=site)
        parent.empty_label = "the grid connection"

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        if Circuit.objects.filter(site=self.site, name=name).exists():
            raise forms.ValidationError("This site has a circuit with this name already.")
        return name


class ChargerLoadForm(forms.ModelForm):
    charger = forms.ModelChoiceField(queryset=Charger.objects.none(), to_field_name="identity")

    class Meta:
        model = ChargerLoad
        fields = [
            "charger",
            "circuit",
            "phase_rotation",
            "max_current_a",
            "min_current_a",
            "pause_allowed",
            "rate_unit",
            "priority",
        ]
        labels = {
            "max_current_a": "Maximum per connector (A)",
            "min_current_a": "Minimum current (A)",
            "circuit": "On circuit",
        }

    def __init__(self, *args: Any, site: Site, chargers: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        charger = self.fields["charger"]
        assert isinstance(charger, forms.ModelChoiceField)
        charger.queryset = chargers
        circuit = self.fields["circuit"]
        assert isinstance(circuit, forms.ModelChoiceField)
        circuit.queryset = Circuit.objects.filter(site=site)
        circuit.empty_label = "the grid connection"

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        minimum, maximum = data.get("min_current_a"), data.get("max_current_a")
        if minimum is not None and maximum is not None and minimum > maximum:
            self.add_error("min_current_a", "The minimum current cannot exceed the maximum.")
        circuit = data.get("circuit")
        rotation = data.get("phase_rotation", PhaseRotation.RST)
        if circuit is not None and circuit.phases == 1 and rotation not in ("L1", "L2", "L3"):
            self.add_error(
                "phase_rotation", "A charger on a single-phase circuit draws from one phase."
            )
        return data


class ScheduleForm(forms.ModelForm):
    weekdays = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS, coerce=int, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = LimitSchedule
        fields = ["name", "weekdays", "start_time", "end_time", "limit_a", "price_per_kwh"]
        widgets = {
            "start_time": forms.TimeInput(attrs={"type": "time"}),
            "end_time": forms.TimeInput(attrs={"type": "time"}),
        }
        labels = {"limit_a": "Site limit (A per phase)"}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("start_time") and data.get("start_time") == data.get("end_time"):
            self.add_error("end_time", "The window must not start and end at the same time.")
        return data


class LimitEventForm(forms.ModelForm):
    class Meta:
        model = LimitEvent
        fields = ["starts_at", "ends_at", "limit_a", "reason", "source"]
        widgets = {
            "starts_at": forms.DateTimeInput(attrs={"type": "datetime-local"}),
            "ends_at": forms.DateTimeInput(attrs={"type": "datetime-local"}),
        }
        labels = {"limit_a": "Site limit (A per phase)", "starts_at": "From", "ends_at": "Until"}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        starts, ends = data.get("starts_at"), data.get("ends_at")
        if starts and ends and ends <= starts:
            self.add_error("ends_at", "An event must end after it starts.")
        return data
