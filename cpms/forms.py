"""Dashboard forms of the tenancy app: issuing an API token."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils import timezone

from chargers import selectors
from chargers.forms import DateTimeInput
from chargers.models import Site

from .models import Role
from .tenancy import Tenant


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Who or what uses this token")
    role = forms.ChoiceField(
        choices=Role.choices,
        initial=Role.INTEGRATOR,
        help_text="What the token may do; integrators read and command through the API",
    )
    sites = forms.ModelMultipleChoiceField(
        queryset=Site.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Required for a site-host token: the sites it may see",
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires",
        widget=DateTimeInput(),
        help_text="UTC; empty never expires",
    )

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["sites"].queryset = selectors.sites_for(tenant)  # type: ignore[attr-defined]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the token a name.")
        return name

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        role, sites = cleaned.get("role"), cleaned.get("sites")
        if role == Role.SITE_HOST and not sites:
            self.add_error("sites", "A site-host token needs at least one site.")
        elif role and role != Role.SITE_HOST and sites:
            self.add_error("sites", "Only site-host tokens are limited to sites.")
        return cleaned
