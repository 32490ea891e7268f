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

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="memberships")
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


class ApiToken(models.Model):
    """A REST API client's credential, scoped to one organization with a role.

    Only a SHA-256 digest of the key is stored: keys are 256-bit random strings, so a fast digest
    is as safe as a slow password hash and lets every request find its token with one index lookup.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="Who or what uses this token")
    prefix = models.CharField(
        max_length=16, help_text="The key's first characters, to recognise it; not a secret"
    )
    key_digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the key, hex")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.INTEGRATOR)
    sites = models.ManyToManyField(
        "chargers.Site", blank=True, related_name="api_tokens", help_text="For site-host tokens"
    )
    created_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["organization", "-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
