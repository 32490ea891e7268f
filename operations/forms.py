"""Dashboard forms of the operations app."""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

from django import forms
from django.utils import timezone

from chargers.models import Charger
from chargers.selectors import chargers_for

from .baselines import ATTRIBUTE_TYPES, SettingIn
from .models import ConfigurationBaseline

# Component[instance]@evse:connector/Variable[instance]#Attribute
_VARIABLE = re.compile(
    r"^(?P<component>[^\[\]@/#=\s]+)(?:\[(?P<component_instance>[^\]]*)\])?"
    r"(?:@(?P<evse>\d+)(?::(?P<connector>\d+))?)?"
    r"/(?P<variable>[^\[\]@/#=\s]+)(?:\[(?P<variable_instance>[^\]]*)\])?"
    r"(?:#(?P<attribute>\w+))?$"
)


def parse_settings(text: str, protocol: str) -> list[SettingIn]:
    """One ``name = value`` per line; raises ValidationError naming the bad lines."""
    items: list[SettingIn] = []
    errors: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            errors.append(f"line {number}: write name = value")
            continue
        if len(value) > 500:
            errors.append(f"line {number}: the value is longer than 500 characters")
            continue
        if protocol == ConfigurationBaseline.Protocol.OCPP16:
            if len(name) > 50 or re.search(r"\s", name):
                errors.append(f"line {number}: {name!r} is not a configuration key")
                continue
            item = SettingIn(value=value, key=name)
        else:
            match = _VARIABLE.match(name)
            if match is None:
                errors.append(
                    f"line {number}: write Component[instance]@evse:connector/Variable"
                    "[instance]#Attribute (only Component/Variable are required)"
                )
                continue
            attribute = match["attribute"] or "Actual"
            if attribute not in ATTRIBUTE_TYPES:
                errors.append(
                    f"line {number}: the attribute is one of {', '.join(ATTRIBUTE_TYPES)}"
                )
                continue
            item = SettingIn(
                value=value,
                component_name=match["component"][:50],
                component_instance=(match["component_instance"] or "")[:50],
                evse_id=int(match["evse"]) if match["evse"] else None,
                connector_id=int(match["connector"]) if match["connector"] else None,
                variable_name=match["variable"][:50],
                variable_instance=(match["variable_instance"] or "")[:50],
                attribute_type=attribute,
            )
        ref = item.ref(protocol)
        if ref in seen:
            errors.append(f"line {number}: {name} is set twice")
            continue
        seen.add(ref)
        items.append(item)
    if errors:
        raise forms.ValidationError(errors)
    if not items:
        raise forms.ValidationError("Give at least one value.")
    return items


class BaselineForm(forms.Form):
    name = forms.CharField(max_length=100)
    vendor = forms.CharField(max_length=50, help_text="As the chargers name it (case ignored)")
    model = forms.CharField(max_length=50, help_text="As the chargers name it (case ignored)")
    protocol = forms.ChoiceField(choices=ConfigurationBaseline.Protocol.choices)
    settings = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
        help_text="One per line. 1.6: Key = value (HeartbeatInterval = 300). 2.x: "
        "Component/Variable = value, optionally Component[instance]@evse:connector/"
        "Variable[instance]#Target (SampledDataCtrlr/TxUpdatedInterval = 60).",
    )
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args: Any, baseline: ConfigurationBaseline | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.baseline = baseline
        if baseline is not None:
            # A baseline's protocol is fixed once it exists.
            self.fields["protocol"].disabled = True

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        protocol = self.baseline.protocol if self.baseline else data.get("protocol")
        if protocol and "settings" in data:
            try:
                data["parsed"] = parse_settings(data["settings"], protocol)
            except forms.ValidationError as exc:
                self.add_error("settings", exc)
        return data


def settings_text(baseline: ConfigurationBaseline) -> str:
    from .baselines import label

    return "\n".join(f"{label(s)} = {s.value}" for s in baseline.settings.all())


class MaintenanceWindowForm(forms.Form):
    reason = forms.CharField(max_length=200)
    starts_at = forms.DateTimeField(
        label="Starts (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    ends_at = forms.DateTimeField(
        label="Ends (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    charger = forms.ModelChoiceField(
        queryset=Charger.objects.none(), required=False, empty_label="Every charger"
    )

    def __init__(self, *args: Any, tenant: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["charger"].queryset = chargers_for(tenant)  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in ("starts_at", "ends_at"):
            if data.get(name) is not None:
                data[name] = (
                    data[name].replace(tzinfo=UTC) if timezone.is_naive(data[name]) else data[name]
                )
        if data.get("starts_at") and data.get("ends_at") and data["ends_at"] <= data["starts_at"]:
            self.add_error("ends_at", "Must be after the start.")
        return data
