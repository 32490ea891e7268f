"""The upload URL chargers send diagnostics and log files to: ``/uploads/<token>/`` (optionally
followed by a file name, as chargers that treat the location as a folder add one).

It takes a multipart POST (the file in its first file field, ``file`` preferred) or the bare file
as the body of a PUT or POST. The token is the only credential: unknown tokens are a 404, expired
ones a 410, a file past ``CPMS_UPLOAD_MAX_BYTES`` a 413.
"""

from __future__ import annotations

import re
import tempfile
from typing import IO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt

from cpms.errors import error_body

from . import uploads

CHUNK = 64 * 1024
# A multipart body carries boundaries and headers besides the file.
MULTIPART_OVERHEAD = 64 * 1024
_DISPOSITION_NAME = re.compile(r'filename="?([^";]+)"?')


_CODES = {
    400: "invalid_upload",
    404: "not_found",
    405: "method_not_allowed",
    410: "expired",
    413: "too_large",
}


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse(error_body(_CODES[status], message), status=status)


def _declared_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def _read_body(request: HttpRequest, limit: int) -> tuple[IO[bytes], int]:
    """The request body in a temporary file (spilled to disk past 1 MiB) and its size; stops
    reading past ``limit``."""
    spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 - returned
    size = 0
    while chunk := request.read(CHUNK):
        size += len(chunk)
        if size > limit:
            spool.close()
            raise uploads.UploadTooLarge(limit)
        spool.write(chunk)
    spool.seek(0)
    return spool, size


@csrf_exempt
def upload(request: HttpRequest, token: str, name: str | None = None) -> HttpResponse:
    name = name or ""
    if request.method not in ("POST", "PUT"):
        response = _error(405, "Upload the file with POST (multipart or the bare file) or PUT.")
        response["Allow"] = "POST, PUT"
        return response
    if not uploads.upload_open(token=token):
        return (
            _error(410, "This upload URL has expired.")
            if uploads.upload_expired(token=token)
            else _error(404, "Unknown upload URL.")
        )
    limit = settings.CPMS_UPLOAD_MAX_BYTES
    declared = _declared_length(request)
    multipart = request.content_type == "multipart/form-data"
    if declared is not None and declared > limit + (MULTIPART_OVERHEAD if multipart else 0):
        return _error(413, f"The file is larger than the limit of {limit} bytes.")
    try:
        if multipart:
            try:
                files = request.FILES
            except MultiPartParserError as exc:
                return _error(400, f"The multipart body could not be read: {exc}")
            picked = files.get("file") or next(iter(files.values()), None)
            if not isinstance(picked, UploadedFile) or picked.file is None:
                return _error(400, "The multipart body has no file.")
            upload_file: UploadedFile = picked
            content: IO[bytes] = picked.file
            size = upload_file.size or 0
            file_name = name or upload_file.name or ""
            content_type = upload_file.content_type or ""
        else:
            content, size = _read_body(request, limit)
            disposition = _DISPOSITION_NAME.search(request.headers.get("Content-Disposition", ""))
            file_name = name or (disposition.group(1) if disposition else "")
            content_type = request.content_type or ""
        if size == 0:
            return _error(400, "The upload is empty.")
        record = uploads.diagnostics_upload_receive(
            token=token, name=file_name, content=content, size=size, content_type=content_type
        )
    except uploads.UploadTooLarge as exc:
        return _error(413, str(exc))
    except uploads.UploadExpired:
        return _error(410, "This upload URL has expired.")
    except uploads.UploadNotFound:
        return _error(404, "Unknown upload URL.")
    return JsonResponse({"stored": record.file_name, "size": record.size}, status=201)
