"""The one error format of the REST API.

Every 4xx and 5xx answer has the same body::

    {"error": {"code": "not_found", "message": "Not found.", "details": null}}

``code`` is stable and machine-readable; ``message`` is for people; ``details`` carries the
per-field errors of a validation failure (``{"field": [{"message": ..., "code": ...}]}``) or other
structured context (``retry_after`` when throttled).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


class InUse(exceptions.APIException):
    """A delete refused because other records still point at the one to delete."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "in_use"
    default_detail = "It is still in use and cannot be deleted."

    def __init__(self, error: ProtectedError | RestrictedError) -> None:
        held_by = (
            error.protected_objects
            if isinstance(error, ProtectedError)
            else error.restricted_objects
        )
        names = sorted({str(obj._meta.verbose_name_plural) for obj in held_by})
        self.in_use_by = names
        super().__init__(f"It is still in use by {', '.join(names)} and cannot be deleted.")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Turn any exception raised in an API view into the error format; nothing escapes as HTML."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=as_serializer_error(exc))
    elif isinstance(exc, ProtectedError | RestrictedError):
        exc = InUse(exc)

    if not isinstance(exc, exceptions.APIException):
        view = context.get("view")
        logger.exception(
            "unhandled error in %s", view.__class__.__name__ if view else "API view", exc_info=exc
        )
        set_rollback()
        return Response(
            error_body("server_error", "The server could not process the request."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    details: Any = None
    if isinstance(exc, exceptions.ValidationError):
        code = "invalid"
        message = "The request is invalid; see details."
        full = exc.get_full_details()
        details = full if isinstance(full, dict) else {"non_field_errors": full}
    else:
        detail = exc.detail
        message = str(detail) if not isinstance(detail, list | dict) else str(exc.default_detail)
        code = str(getattr(detail, "code", None) or exc.default_code)
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(int(exc.wait))
            details = {"retry_after": int(exc.wait)}
        elif isinstance(exc, InUse):
            details = {"in_use_by": exc.in_use_by}
    set_rollback()
    return Response(error_body(code, message, details), status=exc.status_code, headers=headers)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable error code")
    message = serializers.CharField(help_text="What went wrong, for people")
    details = serializers.JSONField(
        allow_null=True,
        help_text="Per-field errors of a validation failure, or other structured context",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
