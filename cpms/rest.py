"""Conventions every REST API view shares: the tenant of the request, cursor pagination, strict
filters, per-token throttling, strict JSON parsing and streamed exports.

REST framework imports the parser, throttle and pagination classes named in the settings while it
loads, so this module must not import ``rest_framework.views``; the error format lives in
``cpms.errors`` and the schema parts in ``cpms.schema``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import django_filters as filters
from asgiref.sync import sync_to_async
from django import forms
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections
from django.db.models import Model, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from .authentication import request_tenant
from .models import ApiToken
from .permissions import ADMIN_ROLES, ALL_ROLES, OPERATOR_ROLES
from .tenancy import Tenant

__all__ = ["ADMIN_ROLES", "ALL_ROLES", "OPERATOR_ROLES"]


def acting_user(request: Request) -> User | None:
    """The signed-in person behind a request; None when an API token makes it."""
    user = request.user
    return user if isinstance(user, User) and user.is_authenticated else None


# --- Views ----------------------------------------------------------------------------------------


class TenantViewMixin:
    """The tenant of the request, for views that read through selectors.

    Views name their ``model`` and implement ``tenant_queryset(tenant)``; the schema generator,
    which has no tenant, sees an empty queryset of the model.
    """

    request: Request
    model: ClassVar[type[Model]]
    read_roles: ClassVar[frozenset[str]] = ALL_ROLES
    write_roles: ClassVar[frozenset[str]] = OPERATOR_ROLES

    def tenant_queryset(self, tenant: Tenant) -> QuerySet:
        raise NotImplementedError

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return self.model._default_manager.none()
        return self.tenant_queryset(self.tenant)

    @property
    def tenant(self) -> Tenant:
        tenant = request_tenant(self.request)
        if tenant is None:  # TenantRolePermission has refused such requests already
            raise exceptions.PermissionDenied("You are not a member of any organization.")
        return tenant

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()  # type: ignore[misc]
        # The schema generator builds serializers without a real request.
        context["tenant"] = request_tenant(self.request) if getattr(self, "request", None) else None
        return context


# --- Pagination -----------------------------------------------------------------------------------


class Pagination(CursorPagination):
    """Cursor pagination everywhere: stable under inserts and cheap on the large tables (no count).

    Views name their order with ``cursor_ordering``; the first field decides the cursor position.
    """

    page_size_query_param = "page_size"
    max_page_size = 1000
    ordering = "-id"

    def __init__(self) -> None:
        self.page_size = settings.CPMS_API_PAGE_SIZE

    def get_ordering(self, request: Request, queryset: QuerySet, view: Any) -> tuple[str, ...]:
        ordering = getattr(view, "cursor_ordering", self.ordering)
        return (ordering,) if isinstance(ordering, str) else tuple(ordering)

    def get_page_size(self, request: Request) -> int:
        for name in (self.page_size_query_param, self.cursor_query_param):
            if len(request.query_params.getlist(name)) > 1:
                raise exceptions.ValidationError({name: ["Give this parameter once."]})
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if size < 1:
            raise exceptions.ValidationError(
                {self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size}."]}
            )
        return min(size, self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["minimum"] = 1
                parameter["description"] = (
                    f"Items per page, 1 or more (larger values give {self.max_page_size})"
                )
        return parameters

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            raise exceptions.ValidationError(
                {
                    self.cursor_query_param: [
                        "Invalid cursor: pass the next or previous link as given."
                    ]
                }
            ) from None


# --- Filtering ------------------------------------------------------------------------------------


class _TrueOrFalseField(forms.Field):
    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        if value in ("true", "false"):
            return value == "true"
        raise forms.ValidationError("Give true or false.", code="invalid")


class BooleanFilter(filters.BooleanFilter):
    """``true`` or ``false``, as JSON spells them; anything else is a 400."""

    field_class = _TrueOrFalseField


# The largest primary key a database column holds (a signed 64-bit integer).
MAX_ID = 2**63 - 1


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdFilter(filters.NumberFilter):
    """An object's id: a whole number from 1, never a float or an out-of-range integer."""

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class _UtcDateTimeField(IsoDateTimeField):
    def to_python(self, value: Any) -> datetime | None:
        moment = super().to_python(value)
        if moment is None:
            return None
        # Offsets are normalised here: the database takes UTC (PostgreSQL refuses offsets past
        # ±15:59), and a moment that falls outside years 1 to 9999 in UTC does not exist for it.
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("This moment is out of range.", code="invalid") from None


class DateTimeFilter(filters.IsoDateTimeFilter):
    """An ISO 8601 moment with a time zone offset, compared in UTC."""

    field_class = _UtcDateTimeField


class StrictFilterSet(filters.FilterSet):
    """A filter parameter given empty or more than once is a 400, not silently ignored: a client
    that sends ``?status=`` or ``?site=1&site=2`` would otherwise get more than it asked for."""

    def is_valid(self) -> bool:
        valid = super().is_valid()
        for name in self.filters:
            if name not in self.data:
                continue
            values = self.data.getlist(name) if hasattr(self.data, "getlist") else [self.data[name]]
            if len(values) > 1:
                self.form.add_error(name, "Give this parameter once.")
            elif values[0] == "":
                self.form.add_error(name, "Give a value, or leave the parameter out.")
        return valid and not self.form.errors


# --- Throttling -----------------------------------------------------------------------------------


class ApiRateThrottle(SimpleRateThrottle):
    """One request budget per API token (per user for dashboard sessions), shared by all nodes
    through the cache; the rate comes from ``CPMS_API_THROTTLE_RATE`` (e.g. ``1200/min``)."""

    scope = "api"

    def get_rate(self) -> str | None:
        return settings.CPMS_API_THROTTLE_RATE or None

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, ApiToken):
            # The digest, not the pk: ids are reused when a database is rebuilt, the cache may not be.
            ident = "token:" + request.auth.key_digest[:32]
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = "ip:" + (self.get_ident(request) or "")
        return f"throttle_{self.scope}_{ident}"


# --- Parsing --------------------------------------------------------------------------------------


def _encodable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodable(v) for v in value)
    return True


class StrictJSONParser(JSONParser):
    """JSON whose strings are all valid Unicode: a lone surrogate (``"\\ud800"``) is a 400 here
    instead of an encoding error in the database."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        if not _encodable(data):
            raise exceptions.ParseError(
                "JSON parse error - strings must be valid Unicode (no lone surrogates)."
            )
        return data


# --- Streamed exports -----------------------------------------------------------------------------


def _is_asgi(request: HttpRequest) -> bool:
    return hasattr(request, "scope")


class AsyncChunks:
    """A synchronous chunk generator served to an ASGI server, one chunk per thread hop.

    Under ASGI Django would read a synchronous iterator whole before sending the first byte. The
    database cursor lives in the request's thread, so every pull runs there (thread-sensitive).
    Django calls ``close()`` when the response is done, and the pulling generator closes the
    source when it is itself closed (client gone, or finished).
    """

    def __init__(self, chunks: Iterable[str]):
        self._iterator = iter(chunks)

    def __aiter__(self) -> Any:
        return self._pull()

    async def _pull(self) -> Any:
        done = object()
        pull = sync_to_async(lambda: next(self._iterator, done), thread_sensitive=True)
        try:
            while (chunk := await pull()) is not done:
                yield chunk
        except Exception:
            # The status line is sent already, so the server can only cut the response short (the
            # client sees it incomplete). Django then never finishes the request, so the database
            # connection of this request's thread is given back here.
            await sync_to_async(connections.close_all, thread_sensitive=True)()
            raise
        finally:
            await sync_to_async(self.close, thread_sensitive=True)()

    def close(self) -> None:
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()


def _prefixed(first: str | None, rest: Iterator[str]) -> Iterator[str]:
    try:
        if first is not None:
            yield first
        yield from rest
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()


def streaming_response(
    request: Request, chunks: Iterator[str], *, content_type: str, filename: str
) -> StreamingHttpResponse:
    """A response sent while it is produced; ``chunks`` yields a few hundred rows at a time.

    The first chunk is read before the response starts, so that the query runs (and any error
    becomes an ordinary error response) before a 200 is sent.
    """
    first = next(chunks, None)
    chunks = _prefixed(first, chunks)
    django_request = request._request
    content: Any = AsyncChunks(chunks) if _is_asgi(django_request) else chunks
    response = StreamingHttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def ndjson_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
