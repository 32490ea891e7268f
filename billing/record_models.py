"""Billing records, the models of ``billing.models`` beyond tariffs: charge detail records,
customer accounts, the energy purchase price, invoices, site-host statements, disputes and credit
notes, and where running cost is shown on chargers.

Documents (CDRs, invoices, statements, credit notes) are never changed once written: a CDR is
corrected by a new version that points to the one it replaces, and money given back is a credit
note. Numbers come from a per-organization sequence allocated in the document's own transaction,
so they have no gaps.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from chargers.models import Charger, IdToken, Session, Site
from cpms.models import Organization

__all__ = [
    "AccountIdToken",
    "Cdr",
    "CdrLine",
    "CostDisplayRule",
    "CreditNote",
    "CustomerAccount",
    "Dispute",
    "DocumentSequence",
    "EnergyPrice",
    "EnergyPricePeriod",
    "Invoice",
    "InvoiceLine",
    "RunningCostSent",
    "SiteHost",
    "Statement",
    "StatementLine",
]


class CustomerAccount(models.Model):
    """Who pays for sessions: the owner of one or more id tokens, invoiced monthly."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="customer_accounts"
    )
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    billing_address = models.TextField(blank=True)
    vat_number = models.CharField(max_length=40, blank=True)
    currency = models.CharField(max_length=3, default="EUR", help_text="ISO 4217")
    id_tokens = models.ManyToManyField(IdToken, through="AccountIdToken", related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="account_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class AccountIdToken(models.Model):
    """An id token's owner: a token belongs to at most one account."""

    account = models.ForeignKey(
        CustomerAccount, on_delete=models.CASCADE, related_name="token_links"
    )
    id_token = models.OneToOneField(IdToken, on_delete=models.CASCADE, related_name="account_link")

    def __str__(self) -> str:
        return f"{self.id_token_id} -> {self.account_id}"


class EnergyPrice(models.Model):
    """What a site pays for energy from a moment on: a flat price per kWh, refined by periods."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="energy_prices")
    valid_from = models.DateTimeField()
    currency = models.CharField(max_length=3, default="EUR")
    price_per_kwh = models.DecimalField(
        max_digits=12,
        decimal_places=5,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Outside every period",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["site_id", "-valid_from"]
        constraints = [
            models.UniqueConstraint(fields=["site", "valid_from"], name="energy_price_unique")
        ]

    def __str__(self) -> str:
        return f"{self.site_id} from {self.valid_from:%Y-%m-%d %H:%M}: {self.price_per_kwh}/kWh"


class EnergyPricePeriod(models.Model):
    """A time-of-use price: on the given weekdays, from start to end in the site's time zone."""

    energy_price = models.ForeignKey(EnergyPrice, on_delete=models.CASCADE, related_name="periods")
    weekdays = models.CharField(
        max_length=7, default="0123456", help_text="Monday is 0; e.g. 01234 for weekdays"
    )
    start_time = models.TimeField()
    end_time = models.TimeField(help_text="00:00 means midnight at the end of the day")
    price_per_kwh = models.DecimalField(
        max_digits=12, decimal_places=5, validators=[MinValueValidator(Decimal(0))]
    )

    class Meta:
        ordering = ["energy_price_id", "start_time", "id"]

    def __str__(self) -> str:
        return f"{self.weekdays} {self.start_time}-{self.end_time}: {self.price_per_kwh}/kWh"


class Cdr(models.Model):
    """A charge detail record: a session priced line by line. Never changed: corrected by a new
    version (``replaces``); the newest version is ``current``."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="cdrs")
    session = models.ForeignKey(Session, on_delete=models.PROTECT, related_name="cdrs")
    charger = models.ForeignKey(Charger, on_delete=models.PROTECT, related_name="cdrs")
    site = models.ForeignKey(
        Site, on_delete=models.PROTECT, null=True, blank=True, related_name="cdrs"
    )
    account = models.ForeignKey(
        CustomerAccount, on_delete=models.PROTECT, null=True, blank=True, related_name="cdrs"
    )
    id_tag = models.CharField(max_length=255, blank=True)
    version = models.PositiveIntegerField(default=1)
    replaces = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="replaced_by"
    )
    current = models.BooleanField(default=True)
    reason = models.CharField(max_length=300, blank=True, help_text="Why a correction was issued")
    tariff_name = models.CharField(max_length=200, blank=True)
    tariff_ref = models.CharField(
        max_length=100, blank=True, help_text="The tariff version the session was priced with"
    )
    time_zone = models.CharField(max_length=64, default="UTC")
    currency = models.CharField(max_length=3)
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField()
    energy_wh = models.DecimalField(max_digits=18, decimal_places=3)
    charging_seconds = models.PositiveIntegerField()
    parking_seconds = models.PositiveIntegerField()
    total_excl_vat = models.DecimalField(max_digits=14, decimal_places=2)
    total_vat = models.DecimalField(max_digits=14, decimal_places=2)
    total_incl_vat = models.DecimalField(max_digits=14, decimal_places=2)
    energy_cost = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="What the energy cost the site",
    )
    margin = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Revenue excl. VAT less energy cost",
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-stopped_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["session", "version"], name="cdr_version_unique"),
            models.UniqueConstraint(
                fields=["session"], condition=Q(current=True), name="cdr_one_current"
            ),
        ]
        indexes = [models.Index(fields=["organization", "stopped_at"])]

    def __str__(self) -> str:
        return f"CDR {self.pk} v{self.version} (session {self.session_id})"


class CdrLine(models.Model):
    """One priced line of a CDR; the lines of a CDR sum exactly to its totals."""

    cdr = models.ForeignKey(Cdr, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    component = models.CharField(max_length=16, help_text="ENERGY, TIME, PARKING_TIME or FLAT")
    description = models.CharField(max_length=300, blank=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    quantity = models.DecimalField(max_digits=18, decimal_places=6)
    unit = models.CharField(max_length=16)
    unit_price = models.DecimalField(max_digits=12, decimal_places=5)
    vat_rate = models.DecimalField(max_digits=5, decimal_places=2)
    amount_excl_vat = models.DecimalField(max_digits=14, decimal_places=2)
    vat = models.DecimalField(max_digits=14, decimal_places=2)
    amount_incl_vat = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        ordering = ["cdr_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["cdr", "position"], name="cdr_line_position_unique")
        ]

    def __str__(self) -> str:
        return f"CDR {self.cdr_id} line {self.position}: {self.component}"


class DocumentSequence(models.Model):
    """The next number of a kind of document in an organization: allocated under a row lock in
    the transaction that writes the document, so a rollback gives the number back."""

    class Kind(models.TextChoices):
        INVOICE = "invoice", "Invoice"
        STATEMENT = "statement", "Statement"
        CREDIT_NOTE = "credit_note", "Credit note"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="document_sequences"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    next_value = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "kind"], name="sequence_unique")
        ]

    def __str__(self) -> str:
        return f"{self.kind} next {self.next_value}"


class Invoice(models.Model):
    """A customer account's sessions of one month (UTC), as a numbered document."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="invoices"
    )
    account = models.ForeignKey(CustomerAccount, on_delete=models.PROTECT, related_name="invoices")
    number = models.CharField(max_length=32)
    sequence = models.PositiveIntegerField()
    period_start = models.DateField(help_text="First day of the month")
    period_end = models.DateField(help_text="First day of the next month")
    currency = models.CharField(max_length=3)
    total_excl_vat = models.DecimalField(max_digits=14, decimal_places=2)
    total_vat = models.DecimalField(max_digits=14, decimal_places=2)
    total_incl_vat = models.DecimalField(max_digits=14, decimal_places=2)
    issued_at = models.DateTimeField()
    pdf_sha256 = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-period_start", "-sequence"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "sequence"], name="invoice_seq_unique"),
            models.UniqueConstraint(
                fields=["account", "period_start"], name="invoice_account_month_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.number


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    cdr = models.ForeignKey(Cdr, on_delete=models.PROTECT, related_name="invoice_lines")
    description = models.CharField(max_length=300)
    energy_wh = models.DecimalField(max_digits=18, decimal_places=3)
    amount_excl_vat = models.DecimalField(max_digits=14, decimal_places=2)
    vat = models.DecimalField(max_digits=14, decimal_places=2)
    amount_incl_vat = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        ordering = ["invoice_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_unique"),
            models.UniqueConstraint(fields=["cdr"], name="cdr_invoiced_once"),
        ]

    def __str__(self) -> str:
        return f"invoice {self.invoice_id} line {self.position}"


class SiteHost(models.Model):
    """A business hosting chargers on its sites: paid their sites' revenue less a platform fee."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="site_hosts"
    )
    name = models.CharField(max_length=200)
    sites = models.ManyToManyField(Site, related_name="site_hosts")
    platform_fee_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="site_host_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class Statement(models.Model):
    """A site host's month: revenue of their sites (excl. VAT), the platform fee and the payout."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="statements"
    )
    site_host = models.ForeignKey(SiteHost, on_delete=models.PROTECT, related_name="statements")
    number = models.CharField(max_length=32)
    sequence = models.PositiveIntegerField()
    period_start = models.DateField()
    period_end = models.DateField()
    currency = models.CharField(max_length=3)
    sessions = models.PositiveIntegerField()
    energy_wh = models.DecimalField(max_digits=18, decimal_places=3)
    revenue_excl_vat = models.DecimalField(max_digits=14, decimal_places=2)
    platform_fee_percent = models.DecimalField(max_digits=5, decimal_places=2)
    platform_fee = models.DecimalField(max_digits=14, decimal_places=2)
    payout = models.DecimalField(max_digits=14, decimal_places=2)
    issued_at = models.DateTimeField()

    class Meta:
        ordering = ["-period_start", "-sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "sequence"], name="statement_seq_unique"
            ),
            models.UniqueConstraint(
                fields=["site_host", "period_start"], name="statement_host_month_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.number


class StatementLine(models.Model):
    statement = models.ForeignKey(Statement, on_delete=models.CASCADE, related_name="lines")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="+")
    sessions = models.PositiveIntegerField()
    energy_wh = models.DecimalField(max_digits=18, decimal_places=3)
    revenue_excl_vat = models.DecimalField(max_digits=14, decimal_places=2)
    platform_fee = models.DecimalField(max_digits=14, decimal_places=2)
    payout = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        ordering = ["statement_id", "site__name", "site_id"]

    def __str__(self) -> str:
        return f"statement {self.statement_id} site {self.site_id}"


class CreditNote(models.Model):
    """Money given back on a CDR, numbered like invoices."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="credit_notes"
    )
    cdr = models.ForeignKey(Cdr, on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=32)
    sequence = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    amount_excl_vat = models.DecimalField(max_digits=14, decimal_places=2)
    vat = models.DecimalField(max_digits=14, decimal_places=2)
    amount_incl_vat = models.DecimalField(max_digits=14, decimal_places=2)
    reason = models.CharField(max_length=500)
    issued_at = models.DateTimeField()

    class Meta:
        ordering = ["-sequence"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "sequence"], name="credit_seq_unique"),
        ]

    def __str__(self) -> str:
        return self.number


class Dispute(models.Model):
    """A CDR contested with a reason; resolved by rejecting it or by issuing a credit note."""

    class State(models.TextChoices):
        OPEN = "open", "Open"
        REJECTED = "rejected", "Rejected"
        CREDITED = "credited", "Credited"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="disputes"
    )
    cdr = models.ForeignKey(Cdr, on_delete=models.PROTECT, related_name="disputes")
    reason = models.TextField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    opened_at = models.DateTimeField(default=timezone.now)
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolution = models.TextField(blank=True)
    credit_note = models.OneToOneField(
        CreditNote, on_delete=models.PROTECT, null=True, blank=True, related_name="dispute"
    )

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # One open dispute per CDR at a time.
            models.UniqueConstraint(
                fields=["cdr"], condition=Q(state="open"), name="dispute_one_open"
            ),
        ]

    def __str__(self) -> str:
        return f"dispute {self.pk} on CDR {self.cdr_id} ({self.state})"


class CostDisplayRule(models.Model):
    """Whether chargers show running and final cost: per charger, or per vendor and model.

    A rule for the charger itself wins over a model rule; without a rule, cost is not sent.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="cost_display_rules"
    )
    charger = models.OneToOneField(
        Charger, on_delete=models.CASCADE, null=True, blank=True, related_name="cost_display_rule"
    )
    vendor = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=50, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(charger__isnull=False) | ~Q(model=""), name="cost_rule_has_target"
            ),
            models.UniqueConstraint(
                fields=["organization", "vendor", "model"],
                condition=Q(charger__isnull=True),
                name="cost_rule_model_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"cost display {'on' if self.enabled else 'off'}: {self.charger_id or self.model}"


class RunningCostSent(models.Model):
    """The last running cost a session's charger was sent, so updates go out at a bounded rate."""

    session = models.OneToOneField(Session, on_delete=models.CASCADE, related_name="+")
    sent_at = models.DateTimeField()
    total_incl_vat = models.DecimalField(max_digits=14, decimal_places=2)

    def __str__(self) -> str:
        return f"session {self.session_id}: {self.total_incl_vat} at {self.sent_at}"
