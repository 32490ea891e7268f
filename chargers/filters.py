"""Query filters of the REST API lists. Every list is already limited to the caller's tenant;
these only narrow it."""

from __future__ import annotations

import django_filters as filters
from django.db.models import Q, QuerySet

from cpms.rest import BooleanFilter, DateTimeFilter, IdFilter, StrictFilterSet

from .locallist_models import LocalListState
from .models import (
    Charger,
    Connector,
    ConnectorStatus,
    Frame,
    IdToken,
    IdTokenStatus,
    MeterSample,
    RegistrationStatus,
    Session,
    SessionState,
    Site,
)


class SiteFilter(StrictFilterSet):
    name = filters.CharFilter(lookup_expr="icontains", help_text="Part of the site name")
    city = filters.CharFilter(lookup_expr="iexact")
    country = filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = Site
        fields = ["name", "city", "country"]


LOCAL_LIST_CHOICES = [
    *LocalListState.choices,
    ("out_of_sync", "Out of sync (pending, failed or too long)"),
]
OUT_OF_SYNC = [LocalListState.PENDING, LocalListState.FAILED, LocalListState.TOO_LONG]


def by_local_list(queryset: QuerySet[Charger], name: str, value: str) -> QuerySet[Charger]:
    """Chargers whose local list is in that state; "unknown" includes those never synced."""
    if value == "out_of_sync":
        return queryset.filter(local_list__state__in=OUT_OF_SYNC)
    if value == LocalListState.UNKNOWN:
        return queryset.filter(
            Q(local_list__isnull=True) | Q(local_list__state=LocalListState.UNKNOWN)
        )
    return queryset.filter(local_list__state=value)


class ChargerFilter(StrictFilterSet):
    site = IdFilter(field_name="site_id", help_text="A site id")
    connected = BooleanFilter()
    registration_status = filters.ChoiceFilter(choices=RegistrationStatus.choices)
    ocpp_version = filters.CharFilter()
    identity = filters.CharFilter(lookup_expr="icontains", help_text="Part of the identity")
    local_list = filters.ChoiceFilter(
        choices=LOCAL_LIST_CHOICES,
        method=by_local_list,
        help_text="The state of the charger's local authorization list; out_of_sync: pending, "
        "failed or too long",
    )

    class Meta:
        model = Charger
        fields = [
            "site",
            "connected",
            "registration_status",
            "ocpp_version",
            "identity",
            "local_list",
        ]


class ConnectorFilter(StrictFilterSet):
    charger = filters.CharFilter(field_name="charger__identity", help_text="A charger identity")
    status = filters.ChoiceFilter(choices=ConnectorStatus.choices)

    class Meta:
        model = Connector
        fields = ["charger", "status"]


class IdTokenFilter(StrictFilterSet):
    token = filters.CharFilter(help_text="The exact token value")
    status = filters.ChoiceFilter(choices=IdTokenStatus.choices)
    owner = filters.CharFilter(field_name="owner_name", lookup_expr="icontains")

    class Meta:
        model = IdToken
        fields = ["token", "status", "owner"]


class SessionFilter(StrictFilterSet):
    charger = filters.CharFilter(field_name="charger__identity", help_text="A charger identity")
    site = IdFilter(field_name="charger__site_id", help_text="A site id")
    state = filters.ChoiceFilter(choices=SessionState.choices)
    id_tag = filters.CharFilter()
    transaction_id = filters.CharFilter()
    started_after = DateTimeFilter(field_name="started_at", lookup_expr="gte")
    started_before = DateTimeFilter(field_name="started_at", lookup_expr="lt")

    class Meta:
        model = Session
        fields = ["charger", "site", "state", "id_tag", "transaction_id"]


class MeterSampleFilter(StrictFilterSet):
    measurand = filters.CharFilter(
        help_text="E.g. Energy.Active.Import.Register, Power.Active.Import"
    )
    phase = filters.CharFilter()
    since = DateTimeFilter(field_name="timestamp", lookup_expr="gte")
    until = DateTimeFilter(field_name="timestamp", lookup_expr="lt")

    class Meta:
        model = MeterSample
        fields = ["measurand", "phase"]


class FrameFilter(StrictFilterSet):
    # The journal keeps the identity on every row, indexed with the time: no join needed.
    charger = filters.CharFilter(field_name="charger_identity", help_text="A charger identity")
    action = filters.CharFilter(help_text="An OCPP action, e.g. BootNotification")
    direction = filters.ChoiceFilter(choices=Frame.Direction.choices)
    kind = filters.TypedChoiceFilter(
        choices=Frame.Kind.choices,
        coerce=int,
        help_text="OCPP message type: 2 CALL, 3 CALLRESULT, 4 CALLERROR, 5 CALLRESULTERROR, 6 SEND; 0 unparsed",
    )
    leg = filters.CharFilter(help_text="charger, or an upstream's name")
    message_id = filters.CharFilter()
    since = DateTimeFilter(
        field_name="timestamp", lookup_expr="gte", help_text="From this time on (ISO 8601)"
    )
    until = DateTimeFilter(
        field_name="timestamp", lookup_expr="lt", help_text="Before this time (ISO 8601)"
    )

    class Meta:
        model = Frame
        fields = ["charger", "action", "direction", "kind", "leg", "message_id"]
