"""Tenancy: the organization that owns sites, chargers, id tokens and everything below them."""

from __future__ import annotations

from django.db import models


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OPERATOR_ADMIN = "operator_admin", "Operator admin"
    OPERATOR = "operator", "Operator"
    SITE_HOST = "site_host", "Site host"
    INTEGRATOR = "integrator", "Integrator"


class Membership(models.Model):
    """A user's role in an organization; a site host also names the sites they look after."""

    user = models.ForeignKey(
        "auth.User", on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.OPERATOR)
    sites = models.ManyToManyField(
        "chargers.Site", blank=True, related_name="host_memberships", help_text="For site hosts"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "user"]
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="membership_once_per_org")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.get_role_display()})"
