"""Template tags of the operations app: its panels on pages of other apps."""

from __future__ import annotations

from typing import Any

from django import template

from chargers.models import Charger

from .. import baselines

register = template.Library()


@register.inclusion_tag("operations/_charger_drift.html", takes_context=True)
def charger_drift(context: dict[str, Any], charger: Charger) -> dict[str, Any]:
    """The charger's drift from its model's configuration baseline (operators only)."""
    tenant = context.get("tenant")
    if tenant is None or not tenant.is_operator:
        return {"hidden": True}
    baseline = baselines.baseline_for(charger)
    return {
        "charger": charger,
        "baseline": baseline,
        "report": baselines.drift_report(charger=charger, baseline=baseline) if baseline else None,
        "can_act": True,
        "csrf_token": context.get("csrf_token"),
    }


@register.filter
def hours(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 3600:.2f}"
