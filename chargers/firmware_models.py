"""Firmware campaigns and their targets, and the diagnostics and log files chargers upload.

Imported by ``chargers.models``; the logic lives in ``chargers.firmware`` (pure) and
``chargers.firmware_services``.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from cpms.models import Organization

from .firmware import CampaignState, TargetState


class FirmwareCampaign(models.Model):
    """A firmware image rolled out to the chargers a filter selects, in staged waves."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="firmware_campaigns"
    )
    name = models.CharField(max_length=200)
    location = models.URLField(max_length=512, help_text="Where chargers download the firmware")
    firmware_version = models.CharField(
        max_length=50,
        blank=True,
        help_text="The version the new firmware reports; a charger that boots with it succeeded",
    )
    retrieve_at = models.DateTimeField(
        null=True, blank=True, help_text="When chargers download it (empty: when sent)"
    )
    install_at = models.DateTimeField(null=True, blank=True, help_text="2.x and signed 1.6 only")
    retries = models.PositiveSmallIntegerField(null=True, blank=True)
    retry_interval = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds")
    signature = models.TextField(blank=True, help_text="Base64 signature of the firmware")
    signing_certificate = models.TextField(blank=True, help_text="PEM certificate that signed it")
    # The target filter: every condition given must hold.
    # A site is not deleted from under a campaign: without it the filter would select more.
    site = models.ForeignKey(
        "chargers.Site", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    vendor = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=50, blank=True)
    current_firmware_version = models.CharField(max_length=50, blank=True)
    chargers = models.ManyToManyField(
        "chargers.Charger", blank=True, related_name="+", help_text="An explicit list"
    )
    # Whether the campaign was made for an explicit list: one whose chargers were all deleted
    # since then targets nothing, never every charger.
    by_list = models.BooleanField(default=False)
    # The rollout.
    canary_count = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    wave_size = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    max_failure_ratio = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.2"),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(1))],
        help_text="The campaign halts when more than this share of the targets sent failed",
    )
    target_timeout = models.PositiveIntegerField(
        default=3600, validators=[MinValueValidator(1)], help_text="Seconds per target"
    )
    deliver_when_offline = models.BooleanField(
        default=True,
        help_text="Queue the request for an offline charger; otherwise it is skipped",
    )
    state = models.CharField(
        max_length=16,
        choices=[(s.value, s.value.capitalize()) for s in CampaignState],
        default=CampaignState.DRAFT.value,
    )
    current_wave = models.IntegerField(default=-1, help_text="The last wave sent")
    halt_baseline_wave = models.PositiveIntegerField(default=0)
    halt_reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "state"])]

    def __str__(self) -> str:
        return self.name


class FirmwareTarget(models.Model):
    """One charger of a campaign: its wave, its request and what it reported."""

    campaign = models.ForeignKey(FirmwareCampaign, on_delete=models.CASCADE, related_name="targets")
    charger = models.ForeignKey(
        "chargers.Charger", on_delete=models.CASCADE, related_name="firmware_targets"
    )
    wave = models.PositiveIntegerField()
    state = models.CharField(
        max_length=16,
        choices=[(s.value, s.value.replace("_", " ").capitalize()) for s in TargetState],
        default=TargetState.PENDING.value,
    )
    command = models.ForeignKey(
        "chargers.Command", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    request_id = models.BigIntegerField(null=True, blank=True, help_text="requestId sent (2.x)")
    status = models.CharField(max_length=40, blank=True, help_text="The last status reported")
    status_at = models.DateTimeField(null=True, blank=True)
    firmware_before = models.CharField(max_length=50, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["wave", "id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "charger"], name="firmware_target_once")
        ]
        indexes = [models.Index(fields=["charger", "state"])]

    def __str__(self) -> str:
        return f"{self.campaign} {self.charger} {self.state}"


class DiagnosticsFile(models.Model):
    """A diagnostics or log file asked of a charger, the upload URL it was given, and the file
    once it arrived."""

    class Kind(models.TextChoices):
        DIAGNOSTICS = "diagnostics", "Diagnostics (GetDiagnostics)"
        DIAGNOSTICS_LOG = "DiagnosticsLog", "Diagnostics log (GetLog)"
        SECURITY_LOG = "SecurityLog", "Security log (GetLog)"

    class State(models.TextChoices):
        REQUESTED = "requested"  # asked; nothing reported yet
        UPLOADING = "uploading"  # the charger says it is uploading
        UPLOADED = "uploaded"  # the file arrived
        FAILED = "failed"  # the charger refused, or reported a failed upload
        EXPIRED = "expired"  # the upload URL expired with no file

    charger = models.ForeignKey(
        "chargers.Charger", on_delete=models.CASCADE, related_name="diagnostics_files"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(max_length=12, choices=State.choices, default=State.REQUESTED)
    status = models.CharField(max_length=40, blank=True, help_text="The last status reported")
    request_id = models.BigIntegerField(null=True, blank=True, help_text="requestId sent (GetLog)")
    token_digest = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    start_time = models.DateTimeField(null=True, blank=True)
    stop_time = models.DateTimeField(null=True, blank=True)
    command = models.ForeignKey(
        "chargers.Command", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    file_name = models.CharField(max_length=255, blank=True, help_text="As the charger named it")
    file = models.FileField(upload_to="diagnostics/%Y/%m/", max_length=300, blank=True)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    uploaded_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["charger", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.charger} {self.kind} {self.state}"
