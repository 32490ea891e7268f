"""The dashboard's Reserve form on a charger's page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from .models import Charger, Connector


class ReservationForm(forms.Form):
    id_token = forms.CharField(max_length=255, label="Id token")

    def __init__(self, *args: Any, charger: Charger, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.charger = charger
        connectors = Connector.objects.filter(charger=charger, connector_id__gt=0)
        if charger.ocpp_version == "1.6":
            numbers = sorted({c.connector_id for c in connectors})
            what = "Connector"
        else:
            numbers = sorted({c.evse_id for c in connectors if c.evse_id})
            what = "EVSE"
        choices: list[tuple[Any, str]] = [(n, f"{what} {n}") for n in numbers]
        choices.append((0, "Any connector"))
        self.fields["connector"] = forms.TypedChoiceField(
            coerce=int, choices=choices, label="Connector"
        )
        self.fields["minutes"] = forms.IntegerField(
            min_value=1,
            max_value=int(settings.CPMS_RESERVATION_MAX_HOURS * 60),
            initial=30,
            label="Hold for (minutes)",
            help_text="The connector is freed when this time passes unused.",
        )
        self.order_fields(["connector", "id_token", "minutes"])
