"""Upstream CPMSes, the routes that give each charger its upstreams, and the live path's state.

Interface:
- ``Upstream``: a CPMS a charger's stream can go to (``local`` is the built-in one, created by a
  data migration and never deleted). ``UpstreamCredential`` holds a per-charger Basic password.
  Passwords are encrypted at rest (``routing.crypto``).
- ``Route`` with its ``RouteLeg`` rows: one primary and any number of observers, scoped to a
  charger, a site, an organization or global; the policy knobs live on the route (what to do when
  the primary is unreachable, protected configuration keys) and on the leg (the CSMS-initiated
  actions an observer may send). ``routing.selectors.route_for_charger(charger=...)`` resolves
  the route that applies (charger, then site, organization, global; ``local`` as primary
  otherwise) into a frozen ``ResolvedRoute``.
- ``RoutingChange``: who changed routing, when, from where, and the before/after JSON.
- ``TransactionMap`` (OCPP 1.6): per observer, the charger's transaction id against the one that
  observer issued, correlated by the charger's StartTransaction message id; the primary's own
  ids are kept too (both the same), for it to follow the transaction as an observer after a
  cut-over, across process restarts.
- ``OutboxEntry``: the durable, ordered copies of a charger's CALLs waiting for an observer.
- ``LegStatus``: per (charger, upstream) leg, what the gateway last knew of it.
- ``routing.redial.routing_changed(charger_identities=...)`` makes the gateways holding those
  chargers re-resolve their routes and re-dial the legs that changed, keeping the charger's socket.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from chargers.models import Charger, Site
from cpms.models import Organization

from .crypto import EncryptedPasswordField

LOCAL = "local"

OCPP_VERSIONS = ("1.6", "2.0.1", "2.1")


class Upstream(models.Model):
    """A CPMS that receives chargers' streams: the built-in ``local`` or a remote one."""

    class Credentials(models.TextChoices):
        NONE = "none", "none"
        BASIC_UPSTREAM = "basic_upstream", "Basic, one password for the upstream"
        BASIC_CHARGER = "basic_charger", "Basic, a password per charger"
        FORWARD = "forward", "forward the charger's own (primary only)"

    name = models.SlugField(max_length=64, unique=True)
    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="upstreams",
        help_text="The organization that owns it; empty for upstreams shared by all (local)",
    )
    url = models.CharField(
        max_length=500,
        blank=True,
        help_text="ws:// or wss:// base URL; the charger's identity is appended. Empty for local",
    )
    ocpp_versions = models.JSONField(
        default=list, blank=True, help_text='OCPP versions it accepts, e.g. ["1.6"]; empty: any'
    )
    identity_template = models.CharField(
        max_length=200,
        default="{charger_id}",
        help_text="How the charger is named to it (appended to the URL); {charger_id} is ours",
    )
    credentials = models.CharField(
        max_length=16, choices=Credentials.choices, default=Credentials.NONE
    )
    username = models.CharField(
        max_length=200, blank=True, help_text="Basic username; empty: the charger's identity there"
    )
    password = EncryptedPasswordField(
        blank=True, help_text="Basic password when it is one for the upstream (encrypted at rest)"
    )
    tls_verify = models.BooleanField(default=True)
    ca_bundle = models.TextField(blank=True, help_text="PEM CA certificates to trust for wss://")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_local(self) -> bool:
        return self.name == LOCAL


class UpstreamCredential(models.Model):
    """The Basic password one charger uses towards one upstream."""

    upstream = models.ForeignKey(Upstream, on_delete=models.CASCADE, related_name="credentials_set")
    charger = models.ForeignKey(
        Charger, on_delete=models.CASCADE, related_name="upstream_credentials"
    )
    username = models.CharField(max_length=200, blank=True, help_text="Empty: the identity used")
    password = EncryptedPasswordField(help_text="Encrypted at rest")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["upstream", "charger"], name="routing_cred_unique")
        ]

    def __str__(self) -> str:
        return f"{self.charger_id} at {self.upstream_id}"


class Route(models.Model):
    """The upstreams of a charger, or the default of a site, an organization or everyone."""

    class Scope(models.TextChoices):
        CHARGER = "charger"
        SITE = "site"
        ORGANIZATION = "organization"
        GLOBAL = "global"

    class PrimaryDown(models.TextChoices):
        CLOSE = "close", "close the charger connection after the grace period"
        KEEP_OPEN = "keep_open", "keep the charger connected; its CALLs get CALLERROR"

    scope = models.CharField(max_length=16, choices=Scope.choices)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, null=True, blank=True, related_name="routes"
    )
    site = models.ForeignKey(
        Site, on_delete=models.CASCADE, null=True, blank=True, related_name="routes"
    )
    charger = models.ForeignKey(
        Charger, on_delete=models.CASCADE, null=True, blank=True, related_name="routes"
    )
    primary_down = models.CharField(
        max_length=16, choices=PrimaryDown.choices, default=PrimaryDown.CLOSE
    )
    primary_grace_seconds = models.PositiveIntegerField(
        default=15, help_text="How long the primary may be unreachable before primary_down applies"
    )
    protected_keys = models.JSONField(
        default=list,
        blank=True,
        help_text="Configuration keys (1.6) or Component/Variable names (2.x) no upstream may set",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(
                        scope="charger",
                        charger__isnull=False,
                        site__isnull=True,
                        organization__isnull=True,
                    )
                    | Q(
                        scope="site",
                        site__isnull=False,
                        charger__isnull=True,
                        organization__isnull=True,
                    )
                    | Q(
                        scope="organization",
                        organization__isnull=False,
                        charger__isnull=True,
                        site__isnull=True,
                    )
                    | Q(
                        scope="global",
                        organization__isnull=True,
                        charger__isnull=True,
                        site__isnull=True,
                    )
                ),
                name="routing_route_scope_target",
            ),
            models.UniqueConstraint(
                fields=["charger"], condition=Q(scope="charger"), name="routing_route_charger"
            ),
            models.UniqueConstraint(
                fields=["site"], condition=Q(scope="site"), name="routing_route_site"
            ),
            models.UniqueConstraint(
                fields=["organization"],
                condition=Q(scope="organization"),
                name="routing_route_organization",
            ),
            models.UniqueConstraint(
                fields=["scope"], condition=Q(scope="global"), name="routing_route_global"
            ),
        ]

    def __str__(self) -> str:
        target = self.charger or self.site or self.organization
        return f"{self.scope} {target}" if target else self.scope


class RouteLeg(models.Model):
    """One upstream of a route, with its role."""

    class Role(models.TextChoices):
        PRIMARY = "primary"
        OBSERVER = "observer"

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="legs")
    upstream = models.ForeignKey(Upstream, on_delete=models.PROTECT, related_name="legs")
    role = models.CharField(max_length=8, choices=Role.choices)
    identity = models.CharField(
        max_length=200, blank=True, help_text="The charger's name at this upstream, if not the rule"
    )
    allowed_actions = models.JSONField(
        default=list,
        blank=True,
        help_text="CSMS-initiated actions this observer may send to the charger",
    )

    class Meta:
        ordering = ["route", "-role", "upstream__name"]
        constraints = [
            models.UniqueConstraint(fields=["route", "upstream"], name="routing_leg_unique"),
            models.UniqueConstraint(
                fields=["route"], condition=Q(role="primary"), name="routing_leg_one_primary"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.upstream} ({self.role})"


class RoutingChange(models.Model):
    """A change of routing: who, when, through what, and the routes before and after."""

    class Source(models.TextChoices):
        API = "api"
        DASHBOARD = "dashboard"
        COMMAND = "command", "management command"
        ADMIN = "admin"

    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="routing_changes",
    )
    actor = models.CharField(max_length=200, blank=True, help_text="Who, as a name")
    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="routing_changes",
        help_text="Whose routes it changed; empty: the global route or shared upstreams",
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    at = models.DateTimeField(default=timezone.now)
    summary = models.CharField(max_length=500, blank=True)
    before = models.JSONField(default=dict)
    after = models.JSONField(default=dict)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.summary}"


class TransactionMap(models.Model):
    """OCPP 1.6: the transaction id one upstream issued for a transaction of the charger (an
    observer its own; for the primary, the one the charger uses)."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="transaction_maps")
    upstream = models.ForeignKey(
        Upstream, on_delete=models.CASCADE, related_name="transaction_maps"
    )
    start_message_id = models.CharField(
        max_length=64, help_text="The message id of the charger's StartTransaction"
    )
    connector_id = models.PositiveIntegerField(default=0)
    charger_transaction_id = models.BigIntegerField(
        null=True, blank=True, help_text="Issued by the primary; what the charger uses"
    )
    upstream_transaction_id = models.BigIntegerField(
        null=True, blank=True, help_text="Issued by this upstream"
    )
    created_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "upstream", "start_message_id"], name="routing_txmap_unique"
            )
        ]
        indexes = [models.Index(fields=["charger", "upstream", "charger_transaction_id"])]

    def __str__(self) -> str:
        return f"{self.charger_transaction_id} -> {self.upstream_transaction_id}"


class OutboxEntry(models.Model):
    """A copy of one charger CALL waiting for one observer; it leaves once the observer answered."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="outbox")
    upstream = models.ForeignKey(Upstream, on_delete=models.CASCADE, related_name="outbox")
    message_id = models.CharField(max_length=64, help_text="The charger's message id")
    action = models.CharField(max_length=64)
    payload = models.JSONField()
    transactional = models.BooleanField(
        default=False, help_text="Part of a transaction: never dropped"
    )
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    claimed_by = models.CharField(
        max_length=200, blank=True, help_text="Who is sending it (a gateway's leg or a replay)"
    )
    claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="Since when; another may take it over after a lease"
    )

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["charger", "upstream", "id"])]

    def __str__(self) -> str:
        return f"{self.action} {self.message_id}"


class LegStatus(models.Model):
    """What the gateway last knew of one (charger, upstream) leg."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="leg_statuses")
    upstream = models.ForeignKey(Upstream, on_delete=models.CASCADE, related_name="leg_statuses")
    role = models.CharField(max_length=8, choices=RouteLeg.Role.choices)
    channel_name = models.CharField(
        max_length=200,
        blank=True,
        help_text="The consumer whose leg this is; a stale one never writes",
    )
    connected = models.BooleanField(default=False)
    connected_at = models.DateTimeField(null=True, blank=True)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    reconnects = models.PositiveIntegerField(default=0)
    dropped = models.PositiveIntegerField(
        default=0,
        help_text="Copies dropped: meter samples outside transactions at the outbox bound, and "
        "copies of a transaction that has no id at the upstream",
    )
    refused = models.PositiveIntegerField(
        default=0, help_text="Copies the upstream answered with a CALLERROR (then passed over)"
    )
    last_problem = models.CharField(
        max_length=300, blank=True, help_text="The last copy refused or dropped, and why"
    )
    latency_ms = models.FloatField(null=True, blank=True, help_text="Last CALL's answer time")
    last_error = models.CharField(max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["charger", "upstream"], name="routing_legstatus_unique")
        ]

    def __str__(self) -> str:
        return f"{self.charger_id} -> {self.upstream_id} ({self.role})"
