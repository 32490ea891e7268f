"""Forms of the routing page: a policy document to review, and its confirmation."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from .health import routed_chargers
from .policy_file import PolicyInvalid
from .policy_services import PolicyPlan, policy_from_data, policy_plan


class PolicyForm(forms.Form):
    """A policy document as JSON; valid once it parses, checks against the database and plans."""

    policy = forms.CharField(
        label="Policy (JSON)",
        widget=forms.Textarea(attrs={"rows": 18, "class": "mono", "spellcheck": "false"}),
        help_text="Named upstreams with routes, or the per-charger shape "
        '{"charger_id": ..., "upstreams": [{"url": ..., "role": "primary"}]}.',
    )
    confirm_cutover = forms.BooleanField(
        required=False, label="I confirm the cut-over: the primary of the routes above changes"
    )

    def __init__(self, *args: Any, organization_id: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.organization_id = organization_id
        self.plan: PolicyPlan | None = None

    def clean_policy(self) -> Any:
        text = self.cleaned_data["policy"]
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
            ) from None
        try:
            self.plan = policy_plan(
                policy=policy_from_data(data, organization_id=self.organization_id),
                organization_id=self.organization_id,
            )
        except PolicyInvalid as exc:
            raise forms.ValidationError([str(error) for error in exc.errors]) from None
        return text

    def require_confirmation(self) -> bool:
        """On applying: a cut-over needs the box ticked; False (with the error) when it is not."""
        if (
            self.plan is not None
            and self.plan.cutovers
            and not self.cleaned_data.get("confirm_cutover")
        ):
            self.add_error("confirm_cutover", "Tick this box to confirm the cut-over.")
            return False
        return True


class ChargerRoutingFilter(forms.Form):
    q = forms.CharField(required=False, label="Charger")
    routed = forms.BooleanField(required=False, label="Only chargers routed beyond local")

    def chargers(self, queryset: Any) -> Any:
        if not self.is_valid():
            return routed_chargers(queryset)
        if self.cleaned_data["q"]:
            queryset = queryset.filter(identity__icontains=self.cleaned_data["q"])
        return routed_chargers(queryset, remote_only=self.cleaned_data["routed"])
