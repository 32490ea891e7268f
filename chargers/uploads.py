"""Diagnostics and log retrieval: the CPMS gives a charger an upload URL of its own (an
unguessable token that expires), asks for the file with GetDiagnostics (1.6) or GetLog (1.6
security extension, 2.x), follows the upload from the charger's answer and its status
notifications, and keeps the file in Django's storage for operators to download.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files import File
from django.db import transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from . import command_services
from .models import Charger, ChargerEvent, Command, DiagnosticsFile

DIAGNOSTICS_EVENT_KINDS = frozenset({ChargerEvent.Kind.DIAGNOSTICS, ChargerEvent.Kind.LOG})
UPLOAD_PATH = "/uploads/{token}/"
# LogStatusNotification / DiagnosticsStatusNotification statuses.
UPLOADING = frozenset({"Uploading"})
UPLOADED = frozenset({"Uploaded"})
UPLOAD_FAILED = frozenset(
    {"UploadFailed", "UploadFailure", "BadMessage", "NotSupportedOperation", "PermissionDenied"}
)


class UploadNotFound(Exception):
    """No upload URL has this token."""


class UploadExpired(Exception):
    """The upload URL's time is over."""


class UploadTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"The file is larger than the limit of {limit} bytes.")
        self.limit = limit


def _safe_name(name: str) -> str:
    """A file name fit for storage, or "" when nothing usable is left of it."""
    try:
        return get_valid_filename(name.rsplit("/", 1)[-1])[:150]
    except SuspiciousFileOperation:
        return ""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def upload_url(base_url: str, token: str) -> str:
    """The URL a charger uploads to: ``CPMS_UPLOAD_BASE_URL`` when set, else ``base_url`` (the
    address the request that asked for the file came to)."""
    base = (settings.CPMS_UPLOAD_BASE_URL or base_url).rstrip("/")
    return base + UPLOAD_PATH.format(token=token)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def diagnostics_command(
    *,
    version: str,
    kind: str,
    location: str,
    request_id: int,
    start_time: datetime | None,
    stop_time: datetime | None,
) -> tuple[str, dict[str, Any]]:
    """GetDiagnostics for 1.6 diagnostics, GetLog for logs (and for 2.x diagnostics)."""
    if kind == DiagnosticsFile.Kind.DIAGNOSTICS and version == "1.6":
        payload: dict[str, Any] = {"location": location}
        if start_time is not None:
            payload["startTime"] = _iso(start_time)
        if stop_time is not None:
            payload["stopTime"] = _iso(stop_time)
        return "GetDiagnostics", payload
    log: dict[str, Any] = {"remoteLocation": location}
    if start_time is not None:
        log["oldestTimestamp"] = _iso(start_time)
    if stop_time is not None:
        log["latestTimestamp"] = _iso(stop_time)
    log_type = "DiagnosticsLog" if kind == DiagnosticsFile.Kind.DIAGNOSTICS else kind
    return "GetLog", {"logType": log_type, "requestId": request_id, "log": log}


def diagnostics_request(
    *,
    charger: Charger,
    kind: str,
    base_url: str,
    start_time: datetime | None = None,
    stop_time: datetime | None = None,
    requested_by: Any = None,
    api_token: Any = None,
    deliver_when_offline: bool = False,
) -> DiagnosticsFile:
    """Ask a charger for a diagnostics or log file, giving it an upload URL of its own.

    Raises ``command_services.CommandInvalid`` / ``CommandRefused`` as ``command_create`` does;
    then nothing is kept.
    """
    token = secrets.token_urlsafe(32)
    version = (
        Charger.objects.filter(pk=charger.pk).values_list("ocpp_version", flat=True).first() or ""
    )
    with transaction.atomic():
        record = DiagnosticsFile.objects.create(
            charger=charger,
            kind=kind,
            token_digest=token_digest(token),
            expires_at=timezone.now() + timedelta(seconds=settings.CPMS_UPLOAD_TTL),
            start_time=start_time,
            stop_time=stop_time,
            requested_by=requested_by if getattr(requested_by, "is_authenticated", False) else None,
        )
        action, payload = diagnostics_command(
            version=version or "1.6",
            kind=kind,
            location=upload_url(base_url, token),
            request_id=record.pk,
            start_time=start_time,
            stop_time=stop_time,
        )
        command = command_services.command_create(
            charger=charger,
            action=action,
            payload=payload,
            deliver_when_offline=deliver_when_offline,
            requested_by=requested_by,
            api_token=api_token,
            system="" if requested_by or api_token else "diagnostics",
        )
        record.command = command
        record.request_id = record.pk if action == "GetLog" else None
        if action == "GetLog" and kind == DiagnosticsFile.Kind.DIAGNOSTICS:
            record.kind = DiagnosticsFile.Kind.DIAGNOSTICS_LOG
        record.save(update_fields=["command", "request_id", "kind"])
    return record


def _open(charger_pk: int, kind: str, request_id: int | None) -> DiagnosticsFile | None:
    # An uploaded file's request still hears the charger's last word on it ("Uploaded").
    files = DiagnosticsFile.objects.filter(
        charger_id=charger_pk,
        state__in=[
            DiagnosticsFile.State.REQUESTED,
            DiagnosticsFile.State.UPLOADING,
            DiagnosticsFile.State.UPLOADED,
        ],
    )
    if kind == ChargerEvent.Kind.LOG:
        if request_id is None:
            return None
        files = files.filter(request_id=request_id)
    else:
        # 1.6 DiagnosticsStatusNotification names no request: the latest open GetDiagnostics.
        files = files.filter(request_id__isnull=True)
    return files.order_by("-created_at", "-id").first()


def diagnostics_status_record(
    *, charger_pk: int, kind: str, status: str, request_id: int | None
) -> DiagnosticsFile | None:
    """A DiagnosticsStatusNotification or LogStatusNotification for a file we asked for."""
    record = _open(charger_pk, kind, request_id)
    if record is None:
        return None
    fields: dict[str, Any] = {"status": status[:40]}
    if status in UPLOADING and record.state == DiagnosticsFile.State.REQUESTED:
        fields["state"] = DiagnosticsFile.State.UPLOADING
    elif status in UPLOAD_FAILED and record.state != DiagnosticsFile.State.UPLOADED:
        fields["state"] = DiagnosticsFile.State.FAILED
    DiagnosticsFile.objects.filter(pk=record.pk, state=record.state).update(**fields)
    return record


def diagnostics_command_record(*, command_pk: int) -> DiagnosticsFile | None:
    """The charger's answer to GetDiagnostics / GetLog: the file name it will upload, or a
    refusal (GetDiagnostics without a file name means the charger has none)."""
    record = DiagnosticsFile.objects.filter(command_id=command_pk).first()
    if record is None or record.state not in (
        DiagnosticsFile.State.REQUESTED,
        DiagnosticsFile.State.UPLOADING,
    ):
        return None
    command = Command.objects.only("state", "response", "response_status", "error_code").get(
        pk=command_pk
    )
    answer = command.response or {}
    name = str(answer.get("fileName") or answer.get("filename") or "")[:255]
    fields: dict[str, Any] = {}
    if name and not record.file_name:
        fields["file_name"] = name
    if command.state in ("rejected", "error", "timeout", "failed"):
        fields["state"] = DiagnosticsFile.State.FAILED
        fields["status"] = (command.response_status or command.error_code or command.state)[:40]
    elif "fileName" not in answer and command.state == "answered" and record.request_id is None:
        fields["state"] = DiagnosticsFile.State.FAILED
        fields["status"] = "NoFile"
    if fields:
        DiagnosticsFile.objects.filter(pk=record.pk, state=record.state).update(**fields)
    return record


def _open_upload(token: str) -> DiagnosticsFile | None:
    return DiagnosticsFile.objects.filter(token_digest=token_digest(token)).first()


def upload_open(*, token: str) -> bool:
    """Whether a file may be uploaded with this token now."""
    record = _open_upload(token)
    return (
        record is not None
        and record.expires_at > timezone.now()
        and record.state != DiagnosticsFile.State.EXPIRED
    )


def upload_expired(*, token: str) -> bool:
    """Whether the token was an upload URL whose time is over."""
    return _open_upload(token) is not None and not upload_open(token=token)


def diagnostics_upload_receive(
    *, token: str, name: str, content: IO[bytes], size: int, content_type: str = ""
) -> DiagnosticsFile:
    """Keep a file a charger uploaded to its URL. A later upload to the same URL (a charger's
    retry) replaces the file, until the URL expires. The record takes the name the file came
    with: what the charger announced in its answer to the request is only what it meant to send."""
    record = _open_upload(token)
    if record is None:
        raise UploadNotFound()
    now = timezone.now()
    if record.expires_at <= now or record.state == DiagnosticsFile.State.EXPIRED:
        raise UploadExpired()
    limit = settings.CPMS_UPLOAD_MAX_BYTES
    if size > limit:
        raise UploadTooLarge(limit)
    file_name = _safe_name(name or record.file_name) or f"{record.kind}.log"
    old = record.file.name if record.file else ""
    stored = f"{record.charger_id}-{record.pk}-{file_name}"[:200]
    record.file.save(stored, File(content), save=False)
    record.size = size
    record.content_type = content_type[:100]
    record.uploaded_at = now
    record.state = DiagnosticsFile.State.UPLOADED
    record.file_name = file_name[:255]
    record.save(update_fields=["file", "size", "content_type", "uploaded_at", "state", "file_name"])
    if old and old != record.file.name:
        record.file.storage.delete(old)
    return record


def diagnostics_expire(*, now: datetime | None = None) -> int:
    """Upload URLs whose time is over, with no file: expired."""
    return DiagnosticsFile.objects.filter(
        state__in=[DiagnosticsFile.State.REQUESTED, DiagnosticsFile.State.UPLOADING],
        expires_at__lte=now or timezone.now(),
    ).update(state=DiagnosticsFile.State.EXPIRED)
