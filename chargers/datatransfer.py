"""Vendor handlers for charger-initiated DataTransfer.

A handler is registered for a vendor id (and optionally one message id) and returns
``(status, data)``. Vendors listed in ``CPMS_DATATRANSFER_ACCEPT_VENDORS`` are accepted and recorded
with no handler; any other vendor gets UnknownVendorId, and a known vendor with an unhandled
message id gets UnknownMessageId. Modules named in ``CPMS_DATATRANSFER_HANDLER_MODULES`` are
imported at start-up so that their ``@register`` calls run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True, slots=True)
class Request:
    charger_identity: str
    vendor_id: str
    message_id: str
    data: str


Handler = Callable[[Request], tuple[str, str | None]]

_handlers: dict[tuple[str, str], Handler] = {}
_loaded = False


def register(vendor_id: str, message_id: str = "*") -> Callable[[Handler], Handler]:
    """Decorator: handle DataTransfer for ``vendor_id`` (every message id unless one is named)."""

    def decorator(func: Handler) -> Handler:
        _handlers[(vendor_id, message_id)] = func
        return func

    return decorator


def unregister(vendor_id: str, message_id: str = "*") -> None:
    _handlers.pop((vendor_id, message_id), None)


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in settings.CPMS_DATATRANSFER_HANDLER_MODULES:
            importlib.import_module(module)
        _loaded = True


def handle(request: Request) -> tuple[str, str | None]:
    """Answer a DataTransfer: (status, data). Runs in a worker thread; handlers may use the ORM."""
    _load()
    handler = _handlers.get((request.vendor_id, request.message_id)) or _handlers.get(
        (request.vendor_id, "*")
    )
    if handler is not None:
        return handler(request)
    if any(vendor_id == request.vendor_id for vendor_id, _ in _handlers):
        return "UnknownMessageId", None
    if request.vendor_id in settings.CPMS_DATATRANSFER_ACCEPT_VENDORS:
        return "Accepted", None
    return "UnknownVendorId", None
