"""Dashboard forms: list filters (django-filter) and the id token form.

Filter choices come from the tenant's own rows, so a filter never reveals another
organization's sites, vendors or versions.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.utils import timezone

from . import dashboard, selectors
from .models import Charger, ConnectorStatus, Frame, IdToken, IdTokenStatus, Session, SessionState

CHARGER_STATES = [
    ("Online", "Online"),
    (dashboard.OFFLINE, "Offline"),
    (ConnectorStatus.FAULTED.value, "Faulted"),
    (ConnectorStatus.CHARGING.value, "Charging"),
    (ConnectorStatus.OCCUPIED.value, "Occupied"),
    (ConnectorStatus.AVAILABLE.value, "Available"),
    (ConnectorStatus.UNAVAILABLE.value, "Unavailable"),
]

ID_TOKEN_TYPES = [
    (value, value)
    for value in (
        "ISO14443",
        "ISO15693",
        "Central",
        "eMAID",
        "KeyCode",
        "Local",
        "MacAddress",
        "NoAuthorization",
    )
]


def _tenant_sites(request: Any) -> QuerySet[Any]:
    return selectors.sites_for(request.tenant)


def _distinct(queryset: QuerySet[Any], field: str) -> list[tuple[str, str]]:
    values = (
        queryset.exclude(**{field: ""}).order_by(field).values_list(field, flat=True).distinct()
    )
    return [(value, value) for value in values]


class ChargerFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    site = django_filters.ModelChoiceFilter(queryset=_tenant_sites, empty_label="All sites")
    status = django_filters.ChoiceFilter(
        choices=CHARGER_STATES, method="by_state", empty_label="Any status", label="Status"
    )
    ocpp_version = django_filters.ChoiceFilter(empty_label="Any version", label="OCPP")
    vendor = django_filters.ChoiceFilter(empty_label="Any vendor")
    sort = django_filters.OrderingFilter(
        fields=(
            ("identity", "identity"),
            ("site__name", "site"),
            ("vendor", "vendor"),
            ("ocpp_version", "ocpp"),
            ("last_seen", "last_seen"),
        ),
        empty_label="Sort",
    )

    class Meta:
        model = Charger
        fields = ["q", "site", "status", "ocpp_version", "vendor"]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        chargers = selectors.chargers_for(self.request.tenant)
        self.filters["ocpp_version"].extra["choices"] = _distinct(chargers, "ocpp_version")
        self.filters["vendor"].extra["choices"] = _distinct(chargers, "vendor")

    def search(self, queryset: QuerySet[Charger], name: str, value: str) -> QuerySet[Charger]:
        return queryset.filter(
            Q(identity__icontains=value)
            | Q(vendor__icontains=value)
            | Q(model__icontains=value)
            | Q(serial_number__icontains=value)
            | Q(site__name__icontains=value)
        )

    def by_state(self, queryset: QuerySet[Charger], name: str, value: str) -> QuerySet[Charger]:
        return dashboard.filter_by_state(queryset, value)


class DateInput(forms.DateInput):
    input_type = "date"


class SessionFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    site = django_filters.ModelChoiceFilter(
        field_name="charger__site", queryset=_tenant_sites, empty_label="All sites", label="Site"
    )
    state = django_filters.ChoiceFilter(choices=SessionState.choices, empty_label="Any state")
    started_from = django_filters.DateFilter(
        field_name="started_at", lookup_expr="date__gte", label="From", widget=DateInput
    )
    started_to = django_filters.DateFilter(
        field_name="started_at", lookup_expr="date__lte", label="To", widget=DateInput
    )
    sort = django_filters.OrderingFilter(
        fields=(
            ("started_at", "started"),
            ("energy_wh", "energy"),
            ("charger__identity", "charger"),
        ),
        empty_label="Sort",
    )

    class Meta:
        model = Session
        fields = ["q", "site", "state", "started_from", "started_to"]

    def search(self, queryset: QuerySet[Session], name: str, value: str) -> QuerySet[Session]:
        return queryset.filter(
            Q(charger__identity__icontains=value)
            | Q(id_tag__icontains=value)
            | Q(transaction_id=value)
        )


class FrameFilter(django_filters.FilterSet):
    direction = django_filters.ChoiceFilter(
        choices=Frame.Direction.choices, empty_label="Both directions"
    )
    kind = django_filters.ChoiceFilter(choices=Frame.Kind.choices, empty_label="Any kind")
    action = django_filters.CharFilter(lookup_expr="iexact")
    before = django_filters.NumberFilter(
        field_name="id", lookup_expr="lt", widget=forms.HiddenInput
    )

    class Meta:
        model = Frame
        fields = ["direction", "kind", "action", "before"]


class IdTokenFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    status = django_filters.ChoiceFilter(choices=IdTokenStatus.choices, empty_label="Any status")

    class Meta:
        model = IdToken
        fields = ["q", "status"]

    def search(self, queryset: QuerySet[IdToken], name: str, value: str) -> QuerySet[IdToken]:
        return queryset.filter(
            Q(token__icontains=value)
            | Q(owner_name__icontains=value)
            | Q(owner_email__icontains=value)
            | Q(group_token__icontains=value)
        )


class DateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, **kwargs: Any):
        super().__init__(format="%Y-%m-%dT%H:%M", **kwargs)


class IdTokenForm(forms.Form):
    token = forms.CharField(
        max_length=36, help_text="The idTag (OCPP 1.6) or idToken (2.x), as the charger reads it"
    )
    type = forms.ChoiceField(choices=ID_TOKEN_TYPES, initial="ISO14443", help_text="For OCPP 2.x")
    status = forms.ChoiceField(choices=IdTokenStatus.choices, initial=IdTokenStatus.ACCEPTED)
    owner_name = forms.CharField(max_length=200, required=False, label="Owner")
    owner_email = forms.EmailField(required=False, label="Owner e-mail")
    group_token = forms.CharField(
        max_length=36, required=False, label="Group token", help_text="parentIdTag / groupIdToken"
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires",
        widget=DateTimeInput(),
        help_text="UTC; empty never expires",
    )
    allow_concurrent = forms.BooleanField(
        required=False, label="Allow more than one session at a time"
    )
    local_list = forms.BooleanField(
        required=False,
        label="In chargers' local lists",
        help_text="Chargers keep this token in their local authorization list and accept it offline",
    )

    def __init__(self, *args: Any, organization_id: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.organization_id = organization_id

    def clean_token(self) -> str:
        token = self.cleaned_data["token"].strip()
        if not token:
            raise forms.ValidationError("Enter the token.")
        if IdToken.objects.filter(organization_id=self.organization_id, token=token).exists():
            raise forms.ValidationError(
                "This organization already has an id token with this value."
            )
        return token

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at
