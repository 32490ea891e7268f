"""Site load management: a site's grid connection, its circuits, the chargers on them, the limits
over time (schedules and demand-response events), and what was commanded and measured."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from chargers.models import Charger, Command, Session, Site

POSITIVE = [MinValueValidator(Decimal("0"))]


class LimitUnit(models.TextChoices):
    AMPERE = "A", "Amperes per phase"
    KILOWATT = "kW", "Kilowatts"


class RateUnit(models.TextChoices):
    AMPERE = "A", "Amperes"
    WATT = "W", "Watts"


class PhaseRotation(models.TextChoices):
    """Which grid phases a charger's L1, L2, L3 are wired to; single-phase chargers use one."""

    RST = "L1L2L3", "L1-L2-L3"
    STR = "L2L3L1", "L2-L3-L1"
    TRS = "L3L1L2", "L3-L1-L2"
    L1 = "L1", "L1 only"
    L2 = "L2", "L2 only"
    L3 = "L3", "L3 only"


class SiteCapacity(models.Model):
    """A site's grid connection and how its load is managed."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="capacity")
    managed = models.BooleanField(
        default=True, help_text="Share the capacity and send charging profiles to the chargers"
    )
    limit = models.DecimalField(max_digits=10, decimal_places=1, validators=POSITIVE)
    limit_unit = models.CharField(max_length=2, choices=LimitUnit.choices, default=LimitUnit.AMPERE)
    phases = models.PositiveSmallIntegerField(choices=[(1, "1 phase"), (3, "3 phases")], default=3)
    voltage = models.DecimalField(
        max_digits=6,
        decimal_places=1,
        default=Decimal("230"),
        validators=[MinValueValidator(Decimal("100")), MaxValueValidator(Decimal("480"))],
        help_text="Phase-to-neutral voltage, to convert between amperes and watts",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "site capacities"

    def __str__(self) -> str:
        return f"{self.site}: {self.limit} {self.limit_unit}"


class Circuit(models.Model):
    """A feeder or sub-panel below a site's grid connection (or below another circuit)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="circuits")
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
    )
    name = models.CharField(max_length=100)
    limit_a = models.DecimalField(
        max_digits=8, decimal_places=1, validators=POSITIVE, help_text="Amperes per phase"
    )
    phases = models.PositiveSmallIntegerField(choices=[(1, "1 phase"), (3, "3 phases")], default=3)

    class Meta:
        ordering = ["site_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="circuit_unique_name_per_site")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.limit_a} A)"


class ChargerLoad(models.Model):
    """Where a charger sits in the site's electrical tree and what it can be steered to."""

    charger = models.OneToOneField(Charger, on_delete=models.CASCADE, related_name="load")
    circuit = models.ForeignKey(
        Circuit,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="chargers",
        help_text="Empty: straight on the site's grid connection",
    )
    phase_rotation = models.CharField(
        max_length=6, choices=PhaseRotation.choices, default=PhaseRotation.RST
    )
    max_current_a = models.DecimalField(
        max_digits=6,
        decimal_places=1,
        default=Decimal("32"),
        validators=POSITIVE,
        help_text="Per connector, amperes per phase",
    )
    min_current_a = models.DecimalField(
        max_digits=6, decimal_places=1, default=Decimal("6"), validators=POSITIVE
    )
    pause_allowed = models.BooleanField(default=True, help_text="May be limited to 0 A")
    rate_unit = models.CharField(max_length=1, choices=RateUnit.choices, default=RateUnit.AMPERE)
    priority = models.SmallIntegerField(default=0, help_text="Higher is served first")
    # What the charger did with the profiles it got.
    profile_rejected_at = models.DateTimeField(null=True, blank=True)
    profile_rejected_reason = models.CharField(max_length=200, blank=True)
    failsafe_limit_a = models.DecimalField(
        max_digits=6, decimal_places=1, null=True, blank=True, help_text="The default profile sent"
    )
    failsafe_sent_at = models.DateTimeField(null=True, blank=True)
    failsafe_accepted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.charger} on {self.circuit or 'the grid connection'}"

    @property
    def phase_count(self) -> int:
        return 1 if self.phase_rotation in ("L1", "L2", "L3") else 3


class LimitSchedule(models.Model):
    """A site limit that holds on some days between two times of day, in the site's time zone."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="limit_schedules")
    name = models.CharField(max_length=100, blank=True)
    weekdays = models.JSONField(default=list, help_text="ISO weekdays, 1 (Monday) to 7")
    start_time = models.TimeField()
    end_time = models.TimeField(help_text="Before the start: runs past midnight")
    limit_a = models.DecimalField(
        max_digits=8, decimal_places=1, validators=POSITIVE, help_text="Amperes per phase"
    )
    price_per_kwh = models.DecimalField(
        max_digits=8,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Energy price in this window, for shifting charging to cheaper hours",
    )

    class Meta:
        ordering = ["site_id", "start_time"]

    def __str__(self) -> str:
        return f"{self.start_time}-{self.end_time}: {self.limit_a} A"


class LimitEvent(models.Model):
    """A demand-response event: the site may draw at most ``limit_a`` from ``starts_at`` to
    ``ends_at``."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="limit_events")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    limit_a = models.DecimalField(
        max_digits=8, decimal_places=1, validators=POSITIVE, help_text="Amperes per phase"
    )
    reason = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=100, blank=True, help_text="Who asked: grid operator, ...")
    created_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-starts_at"]
        indexes = [models.Index(fields=["site", "ends_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")),
                name="limit_event_ends_after_start",
            )
        ]

    def __str__(self) -> str:
        return f"{self.site}: {self.limit_a} A from {self.starts_at} to {self.ends_at}"


class SessionLimit(models.Model):
    """The limit last given to a session, what its charger was commanded, and what it draws."""

    session = models.OneToOneField(Session, on_delete=models.CASCADE, related_name="load_limit")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="session_limits")
    allocated_a = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0"))
    commanded_a = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    commanded_at = models.DateTimeField(null=True, blank=True)
    command = models.ForeignKey(
        Command, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    accepted = models.BooleanField(null=True, blank=True)
    verified_a = models.DecimalField(
        max_digits=8,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="The limit the charger's composite schedule shows",
    )
    verified_at = models.DateTimeField(null=True, blank=True)
    measured_a = models.DecimalField(
        max_digits=8,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Highest phase current last measured",
    )
    measured_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"session {self.session_id}: {self.allocated_a} A"


class LoadSnapshot(models.Model):
    """A site's capacity, allocated and measured current at one moment, for the load chart."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="load_snapshots")
    at = models.DateTimeField(default=timezone.now)
    capacity_a = models.DecimalField(max_digits=8, decimal_places=2)
    allocated_a = models.JSONField(help_text="Per phase, L1 to L3")
    measured_a = models.JSONField(help_text="Per phase, L1 to L3")
    sessions = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["site", "-at"])]

    def __str__(self) -> str:
        return f"{self.site_id} at {self.at}: {self.allocated_a} of {self.capacity_a} A"


class ProfileViolation(models.Model):
    """A charger that draws more than it was commanded, for longer than the grace delay."""

    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="+")
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    commanded_a = models.DecimalField(max_digits=8, decimal_places=2)
    measured_a = models.DecimalField(max_digits=8, decimal_places=2)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "session"],
                condition=models.Q(resolved_at__isnull=True),
                name="one_open_violation_per_session",
            )
        ]

    def __str__(self) -> str:
        return f"{self.charger}: {self.measured_a} A over {self.commanded_a} A"
