"""Tariffs shaped after OCPI 2.2.1: versions, their assignment to sites, chargers and connectors,
and the price groups that id tokens belong to.

A tariff version's elements are kept as the OCPI ``elements`` document (price components and
restrictions), validated on the way in by ``billing.pricing.tariff_elements_parse``. A published
version is never changed: a change is a new version with its own effective time.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from cpms.models import Organization


class SiteBilling(models.Model):
    """A site's billing settings; a site without a row uses ``CPMS_DEFAULT_CURRENCY``."""

    site = models.OneToOneField(
        "chargers.Site", on_delete=models.CASCADE, related_name="billing", primary_key=True
    )
    currency = models.CharField(max_length=3, help_text="ISO 4217 code, e.g. EUR")

    def __str__(self) -> str:
        return f"{self.site} ({self.currency})"


class PriceGroup(models.Model):
    """Drivers who pay their own price: members, residents (often free), fleets.

    An id token belongs to a group when it is listed in ``id_tokens``, or when its group token
    (parentIdTag in 1.6, groupIdToken in 2.x) equals the group's ``group_token``.
    Drivers in no group pay the public price.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="price_groups"
    )
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    group_token = models.CharField(
        max_length=255, blank=True, help_text="Id tokens with this group token belong to the group"
    )
    id_tokens = models.ManyToManyField("chargers.IdToken", blank=True, related_name="price_groups")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="price_group_name_unique_per_org"
            )
        ]

    def __str__(self) -> str:
        return self.name


class Tariff(models.Model):
    """A named tariff. With a site it belongs to that site (its host may edit it); without one it
    belongs to the organization and only operators edit it."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="tariffs")
    site = models.ForeignKey(
        "chargers.Site",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="tariffs",
        help_text="The site the tariff belongs to; empty for an organization-wide tariff",
    )
    name = models.CharField(max_length=100)
    currency = models.CharField(max_length=3, help_text="ISO 4217 code, e.g. EUR")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="tariff_name_unique_per_org"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.currency})"


class TariffVersionState(models.TextChoices):
    DRAFT = "draft"
    PUBLISHED = "published"


class TariffVersion(models.Model):
    """One version of a tariff. Drafts may be edited; published versions never change.

    Prices are excluding VAT; each price component carries its VAT rate in percent. ``elements``
    is the OCPI 2.2.1 TariffElement list; ``parking_grace_seconds`` is how much idle time a session
    may take before PARKING_TIME is charged.
    """

    tariff = models.ForeignKey(Tariff, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(help_text="1, 2, 3 ... per tariff")
    state = models.CharField(
        max_length=10, choices=TariffVersionState.choices, default=TariffVersionState.DRAFT
    )
    elements = models.JSONField(default=list, help_text="OCPI 2.2.1 TariffElement list")
    min_price = models.DecimalField(
        max_digits=12, decimal_places=4, null=True, blank=True, help_text="Excluding VAT"
    )
    max_price = models.DecimalField(
        max_digits=12, decimal_places=4, null=True, blank=True, help_text="Excluding VAT"
    )
    parking_grace_seconds = models.PositiveIntegerField(default=0)
    description = models.CharField(max_length=300, blank=True, help_text="Shown to drivers")
    effective_from = models.DateTimeField(
        null=True, blank=True, help_text="When the version comes into force; set on publish"
    )
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tariff", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["tariff", "number"], name="tariff_version_number_once"),
            models.UniqueConstraint(
                fields=["tariff"],
                condition=Q(state="draft"),
                name="tariff_one_draft",
            ),
            models.CheckConstraint(
                condition=Q(state="draft") | Q(effective_from__isnull=False),
                name="tariff_version_published_has_effective_time",
            ),
        ]
        indexes = [models.Index(fields=["tariff", "state", "effective_from"])]

    def __str__(self) -> str:
        return f"{self.tariff.name} v{self.number} ({self.state})"

    @property
    def is_published(self) -> bool:
        return self.state == TariffVersionState.PUBLISHED


class TariffAssignment(models.Model):
    """Which tariff applies where, for whom and from when.

    Exactly one of site, charger and connector is set. The most specific assignment wins
    (connector, then charger, then site); one for the driver's price group wins over the public one.
    Replacing an assignment ends the old one (``valid_until``) rather than deleting it, so a session
    can always be priced with what was assigned when it started.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="tariff_assignments"
    )
    tariff = models.ForeignKey(Tariff, on_delete=models.CASCADE, related_name="assignments")
    site = models.ForeignKey(
        "chargers.Site",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="tariff_assignments",
    )
    charger = models.ForeignKey(
        "chargers.Charger",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="tariff_assignments",
    )
    connector = models.ForeignKey(
        "chargers.Connector",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="tariff_assignments",
    )
    price_group = models.ForeignKey(
        PriceGroup,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="assignments",
        help_text="Empty for the public price",
    )
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-valid_from", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(site__isnull=False, charger__isnull=True, connector__isnull=True)
                    | Q(site__isnull=True, charger__isnull=False, connector__isnull=True)
                    | Q(site__isnull=True, charger__isnull=True, connector__isnull=False)
                ),
                name="tariff_assignment_one_target",
            ),
        ]
        indexes = [
            models.Index(fields=["site", "valid_from"]),
            models.Index(fields=["charger", "valid_from"]),
            models.Index(fields=["connector", "valid_from"]),
        ]

    def __str__(self) -> str:
        target = self.connector or self.charger or self.site
        group = self.price_group.name if self.price_group else "public"
        return f"{self.tariff.name} on {target} ({group})"

    @property
    def level(self) -> str:
        if self.connector_id is not None:
            return "connector"
        if self.charger_id is not None:
            return "charger"
        return "site"


# The records built on tariffs: CDRs, accounts, invoices, statements, disputes (own module).
from .record_models import *  # noqa: E402, F403
