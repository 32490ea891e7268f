"""REST representations of CDRs, invoices, statements, disputes, credit notes, customer accounts,
site hosts, energy purchase prices and cost display rules. Money and energy are decimal strings.
Input serializers check everything a service assumes."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any

from django.db.models import Sum
from rest_framework import serializers

from chargers import selectors as charger_selectors
from chargers.models import Charger, IdToken, Site
from cpms.fields import CharField, ModelSerializer, SlugRelatedField
from cpms.tenancy import Tenant

from . import record_selectors
from .models import (
    Cdr,
    CdrLine,
    CostDisplayRule,
    CreditNote,
    CustomerAccount,
    Dispute,
    EnergyPrice,
    EnergyPricePeriod,
    Invoice,
    InvoiceLine,
    SiteHost,
    Statement,
    StatementLine,
)

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def _tenant(serializer: serializers.Serializer) -> Tenant:
    tenant = serializer.context.get("tenant")
    assert tenant is not None
    return tenant


# --- CDRs -----------------------------------------------------------------------------------------


class CdrLineSerializer(ModelSerializer):
    class Meta:
        model = CdrLine
        fields = [
            "position",
            "component",
            "description",
            "starts_at",
            "ends_at",
            "quantity",
            "unit",
            "unit_price",
            "vat_rate",
            "amount_excl_vat",
            "vat",
            "amount_incl_vat",
        ]


class CdrSerializer(ModelSerializer):
    charger = serializers.CharField(source="charger.identity", read_only=True)
    site_name = serializers.CharField(
        source="site.name", read_only=True, default=None, allow_null=True
    )
    replaced_by = serializers.SerializerMethodField()
    lines = CdrLineSerializer(many=True, read_only=True)

    class Meta:
        model = Cdr
        fields = [
            "id",
            "session",
            "charger",
            "site",
            "site_name",
            "account",
            "id_tag",
            "version",
            "replaces",
            "replaced_by",
            "current",
            "reason",
            "tariff_name",
            "tariff_ref",
            "time_zone",
            "currency",
            "started_at",
            "stopped_at",
            "energy_wh",
            "charging_seconds",
            "parking_seconds",
            "total_excl_vat",
            "total_vat",
            "total_incl_vat",
            "energy_cost",
            "margin",
            "created_at",
            "lines",
        ]
        read_only_fields = fields

    def get_replaced_by(self, cdr: Cdr) -> int | None:
        return Cdr.objects.filter(replaces=cdr).values_list("pk", flat=True).first()


class CdrCorrectSerializer(serializers.Serializer):
    reason = CharField(max_length=300, help_text="Why the CDR is corrected; kept on the new one")


# --- Customer accounts ----------------------------------------------------------------------------


class CustomerAccountSerializer(ModelSerializer):
    id_tokens = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=IdToken.objects.all(),
        required=False,
        help_text="Ids of the id tokens this account owns (and pays for)",
    )
    currency = serializers.RegexField(
        r"^[A-Z]{3}$", required=False, default="EUR", help_text="ISO 4217, e.g. EUR"
    )

    class Meta:
        model = CustomerAccount
        fields = [
            "id",
            "name",
            "email",
            "billing_address",
            "vat_number",
            "currency",
            "id_tokens",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]

    def to_representation(self, instance: CustomerAccount) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["id_tokens"] = sorted(instance.token_links.values_list("id_token_id", flat=True))
        return data

    def validate_id_tokens(self, tokens: list[IdToken]) -> list[IdToken]:
        tenant = _tenant(self)
        for token in tokens:
            if token.organization_id != tenant.organization_id:
                raise serializers.ValidationError(f"Unknown id token {token.pk}.")
            owner = getattr(token, "account_link", None)
            if owner is not None and (
                self.instance is None or owner.account_id != self.instance.pk
            ):
                raise serializers.ValidationError(
                    f"Id token {token.token} belongs to another account already."
                )
        return tokens

    def validate_name(self, name: str) -> str:
        tenant = _tenant(self)
        clash = CustomerAccount.objects.filter(organization_id=tenant.organization_id, name=name)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError("Your organization has an account with this name.")
        return name


# --- Site hosts -----------------------------------------------------------------------------------


class SiteHostSerializer(ModelSerializer):
    sites = serializers.PrimaryKeyRelatedField(many=True, queryset=Site.objects.all())
    platform_fee_percent = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=Decimal(0), max_value=Decimal(100)
    )

    class Meta:
        model = SiteHost
        fields = ["id", "name", "sites", "platform_fee_percent", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_sites(self, sites: list[Site]) -> list[Site]:
        tenant = _tenant(self)
        if not sites:
            raise serializers.ValidationError("Name at least one site.")
        for site in sites:
            if site.organization_id != tenant.organization_id:
                raise serializers.ValidationError(f"Unknown site {site.pk}.")
        return sites

    def validate_name(self, name: str) -> str:
        tenant = _tenant(self)
        clash = SiteHost.objects.filter(organization_id=tenant.organization_id, name=name)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError("Your organization has a site host with this name.")
        return name


# --- Energy purchase prices -----------------------------------------------------------------------


class EnergyPricePeriodSerializer(ModelSerializer):
    weekdays = serializers.RegexField(
        r"^[0-6]{1,7}$",
        default="0123456",
        help_text="Weekday digits, Monday 0 ... Sunday 6, e.g. 01234",
        error_messages={"invalid": "Digits 0 (Monday) to 6 (Sunday), each once, e.g. 01234."},
    )
    price_per_kwh = serializers.DecimalField(max_digits=12, decimal_places=5, min_value=Decimal(0))

    class Meta:
        model = EnergyPricePeriod
        fields = ["weekdays", "start_time", "end_time", "price_per_kwh"]

    def validate_weekdays(self, value: str) -> str:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("Give each weekday once.")
        return "".join(sorted(value))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs["start_time"], attrs["end_time"]
        if (end.hour or end.minute or end.second) and end <= start:
            raise serializers.ValidationError(
                {"end_time": "A period ends after it starts (00:00 is the end of the day)."}
            )
        return attrs


class EnergyPriceSerializer(ModelSerializer):
    periods = EnergyPricePeriodSerializer(many=True, required=False)
    price_per_kwh = serializers.DecimalField(
        max_digits=12,
        decimal_places=5,
        min_value=Decimal(0),
        help_text="Per kWh, outside every period (a flat price when there are none)",
    )
    currency = serializers.RegexField(r"^[A-Z]{3}$", default="EUR")

    class Meta:
        model = EnergyPrice
        fields = ["id", "site", "valid_from", "currency", "price_per_kwh", "periods"]
        read_only_fields = ["id"]

    def validate_site(self, site: Site) -> Site:
        tenant = _tenant(self)
        if not charger_selectors.sites_for(tenant).filter(pk=site.pk).exists():
            raise serializers.ValidationError(f"Unknown site {site.pk}.")
        return site

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        periods = attrs.get("periods", [])
        # Periods on the same weekday must not overlap: which price holds would be ambiguous.
        for i, a in enumerate(periods):
            for b in periods[i + 1 :]:
                if not set(a["weekdays"]) & set(b["weekdays"]):
                    continue
                a_end = a["end_time"] if a["end_time"].hour or a["end_time"].minute else None
                b_end = b["end_time"] if b["end_time"].hour or b["end_time"].minute else None
                if (b_end is None or a["start_time"] < b_end) and (
                    a_end is None or b["start_time"] < a_end
                ):
                    raise serializers.ValidationError(
                        {"periods": ["Two periods overlap on the same weekday."]}
                    )
        site = attrs.get("site") or (self.instance.site if self.instance else None)
        valid_from = attrs.get("valid_from") or (
            self.instance.valid_from if self.instance else None
        )
        if site is not None and valid_from is not None:
            clash = EnergyPrice.objects.filter(site=site, valid_from=valid_from)
            if self.instance is not None:
                clash = clash.exclude(pk=self.instance.pk)
            if clash.exists():
                raise serializers.ValidationError(
                    {"valid_from": ["This site has a price from this moment already."]}
                )
        return attrs


# --- Invoices and statements ----------------------------------------------------------------------


class InvoiceLineSerializer(ModelSerializer):
    class Meta:
        model = InvoiceLine
        fields = [
            "position",
            "cdr",
            "description",
            "energy_wh",
            "amount_excl_vat",
            "vat",
            "amount_incl_vat",
        ]


class InvoiceSerializer(ModelSerializer):
    account_name = serializers.CharField(source="account.name", read_only=True)
    lines = InvoiceLineSerializer(many=True, read_only=True)

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "account",
            "account_name",
            "period_start",
            "period_end",
            "currency",
            "total_excl_vat",
            "total_vat",
            "total_incl_vat",
            "issued_at",
            "pdf_sha256",
            "lines",
        ]
        read_only_fields = fields


class StatementLineSerializer(ModelSerializer):
    site_name = serializers.CharField(source="site.name", read_only=True)

    class Meta:
        model = StatementLine
        fields = [
            "site",
            "site_name",
            "sessions",
            "energy_wh",
            "revenue_excl_vat",
            "platform_fee",
            "payout",
        ]


class StatementSerializer(ModelSerializer):
    site_host_name = serializers.CharField(source="site_host.name", read_only=True)
    lines = StatementLineSerializer(many=True, read_only=True)

    class Meta:
        model = Statement
        fields = [
            "id",
            "number",
            "site_host",
            "site_host_name",
            "period_start",
            "period_end",
            "currency",
            "sessions",
            "energy_wh",
            "revenue_excl_vat",
            "platform_fee_percent",
            "platform_fee",
            "payout",
            "issued_at",
            "lines",
        ]
        read_only_fields = fields


class MonthField(serializers.CharField):
    """A calendar month as ``YYYY-MM``, given as its first day."""

    def to_internal_value(self, data: Any) -> date:  # type: ignore[override]
        text = super().to_internal_value(data)
        match = MONTH.match(text)
        if not match:
            raise serializers.ValidationError("A month as YYYY-MM, e.g. 2024-03.")
        return date(int(match.group(1)), int(match.group(2)), 1)


class InvoiceGenerateSerializer(serializers.Serializer):
    account = serializers.PrimaryKeyRelatedField(queryset=CustomerAccount.objects.all())
    month = MonthField(help_text="YYYY-MM")

    def validate_account(self, account: CustomerAccount) -> CustomerAccount:
        if account.organization_id != _tenant(self).organization_id:
            raise serializers.ValidationError(f"Unknown account {account.pk}.")
        return account


class StatementGenerateSerializer(serializers.Serializer):
    site_host = serializers.PrimaryKeyRelatedField(queryset=SiteHost.objects.all())
    month = MonthField(help_text="YYYY-MM")

    def validate_site_host(self, host: SiteHost) -> SiteHost:
        if host.organization_id != _tenant(self).organization_id:
            raise serializers.ValidationError(f"Unknown site host {host.pk}.")
        return host


# --- Disputes -------------------------------------------------------------------------------------


class CreditNoteSerializer(ModelSerializer):
    class Meta:
        model = CreditNote
        fields = [
            "id",
            "number",
            "cdr",
            "currency",
            "amount_excl_vat",
            "vat",
            "amount_incl_vat",
            "reason",
            "issued_at",
        ]
        read_only_fields = fields


class DisputeSerializer(ModelSerializer):
    credit_note = CreditNoteSerializer(read_only=True)
    session = serializers.IntegerField(source="cdr.session_id", read_only=True)

    class Meta:
        model = Dispute
        fields = [
            "id",
            "cdr",
            "session",
            "reason",
            "state",
            "opened_at",
            "resolved_at",
            "resolution",
            "credit_note",
        ]
        read_only_fields = [
            "id",
            "session",
            "state",
            "opened_at",
            "resolved_at",
            "resolution",
            "credit_note",
        ]

    def validate_reason(self, reason: str) -> str:
        if not reason.strip():
            raise serializers.ValidationError("Say why the CDR is disputed.")
        return reason.strip()

    def validate_cdr(self, cdr: Cdr) -> Cdr:
        if not record_selectors.cdrs_for(_tenant(self)).filter(pk=cdr.pk).exists():
            raise serializers.ValidationError(f"Unknown CDR {cdr.pk}.")
        if not cdr.current:
            raise serializers.ValidationError(
                "This CDR was corrected; dispute its current version."
            )
        if Dispute.objects.filter(cdr=cdr, state=Dispute.State.OPEN).exists():
            raise serializers.ValidationError("This CDR has an open dispute already.")
        return cdr


class DisputeResolveSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(
        choices=[Dispute.State.REJECTED.value, Dispute.State.CREDITED.value]
    )
    resolution = CharField(max_length=2000, help_text="What was decided and why")
    amount_incl_vat = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        required=False,
        help_text="Credited: the amount incl. VAT; default what is left of the CDR's total",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        dispute: Dispute = self.context["dispute"]
        if dispute.state != Dispute.State.OPEN:
            raise serializers.ValidationError(
                {"outcome": [f"This dispute is resolved already ({dispute.state})."]}
            )
        if not attrs["resolution"].strip():
            raise serializers.ValidationError({"resolution": ["Say what was decided and why."]})
        if attrs["outcome"] == Dispute.State.CREDITED:
            cdr = dispute.cdr
            credited = CreditNote.objects.filter(cdr__session_id=cdr.session_id).aggregate(
                total=Sum("amount_incl_vat")
            )["total"] or Decimal(0)
            left = cdr.total_incl_vat - credited
            amount = attrs.get("amount_incl_vat", left)
            if amount <= 0:
                raise serializers.ValidationError(
                    {"amount_incl_vat": ["Credit a positive amount (nothing is left to credit)."]}
                )
            if amount > left:
                raise serializers.ValidationError(
                    {"amount_incl_vat": [f"At most {left} {cdr.currency} is left to credit."]}
                )
            attrs["amount_incl_vat"] = amount
        elif "amount_incl_vat" in attrs:
            raise serializers.ValidationError(
                {"amount_incl_vat": ["Only a credited dispute has an amount."]}
            )
        return attrs


class DisputeRateSerializer(serializers.Serializer):
    sessions = serializers.IntegerField()
    disputed = serializers.IntegerField()
    percent = serializers.DecimalField(max_digits=6, decimal_places=2)


# --- Cost display ---------------------------------------------------------------------------------


class CostDisplayRuleSerializer(ModelSerializer):
    charger = SlugRelatedField(
        slug_field="identity",
        queryset=Charger.objects.all(),
        required=False,
        allow_null=True,
        help_text="A charger identity; or leave empty and name a vendor and model",
    )

    class Meta:
        model = CostDisplayRule
        fields = ["id", "charger", "vendor", "model", "enabled"]
        read_only_fields = ["id"]

    def validate_charger(self, charger: Charger | None) -> Charger | None:
        if charger is None:
            return None
        if not charger_selectors.chargers_for(_tenant(self)).filter(pk=charger.pk).exists():
            raise serializers.ValidationError(f"Unknown charger {charger.identity}.")
        return charger

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        charger = attrs.get("charger", self.instance.charger if self.instance else None)
        model = attrs.get("model", self.instance.model if self.instance else "")
        vendor = attrs.get("vendor", self.instance.vendor if self.instance else "")
        if charger is None and not model:
            raise serializers.ValidationError(
                {"model": ["Name a charger, or a charger model (and optionally its vendor)."]}
            )
        if charger is not None and (model or vendor):
            raise serializers.ValidationError(
                {"charger": ["A rule is for one charger or for a model, not both."]}
            )
        clash = CostDisplayRule.objects.filter(organization_id=_tenant(self).organization_id)
        clash = (
            clash.filter(charger=charger)
            if charger is not None
            else clash.filter(charger__isnull=True, vendor=vendor, model=model)
        )
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError({"charger": ["A rule for this exists already."]})
        return attrs
