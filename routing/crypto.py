"""Upstream passwords at rest: encrypted with Fernet (AES-CBC with an HMAC) under keys derived
from ``CPMS_ROUTING_SECRET_KEY`` (``SECRET_KEY`` when it is not set).

``EncryptedPasswordField`` keeps the column a Fernet token and the model attribute the plain
password, so code that dials an upstream reads it as before and nothing else ever sees it. The
first secret encrypts, every listed one decrypts: to rotate, put the new secret first, keep the
old one after it, and save the upstreams again (``routing_apply`` with their passwords).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models

logger = logging.getLogger(__name__)

_LABEL = b"cpms.routing.upstream-passwords:"


def _key(secret: str) -> bytes:
    """A Fernet key from any secret string (Fernet wants 32 url-safe base64 bytes)."""
    return base64.urlsafe_b64encode(hashlib.sha256(_LABEL + secret.encode()).digest())


@functools.lru_cache(maxsize=4)
def _fernet(secrets: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(_key(secret)) for secret in secrets])


def _secrets() -> tuple[str, ...]:
    configured = tuple(s for s in settings.CPMS_ROUTING_SECRET_KEY if s)
    return configured or (settings.SECRET_KEY,)


def encrypt(plain: str) -> str:
    return _fernet(_secrets()).encrypt(plain.encode()).decode("ascii")


def decrypt(token: str) -> str:
    """The plain password; ``InvalidToken`` when no configured key opens it."""
    return _fernet(_secrets()).decrypt(token.encode("ascii")).decode()


def is_encrypted(value: str) -> bool:
    """Whether ``value`` is a token one of the configured keys opens."""
    try:
        decrypt(value)
    except (InvalidToken, UnicodeError, ValueError):
        return False
    return True


class EncryptedPasswordField(models.TextField):
    """A password stored as a Fernet token; empty stays empty (no password)."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if not value:
            return value
        try:
            return decrypt(value)
        except (InvalidToken, UnicodeError, ValueError):
            # Encrypted under a key no longer configured: dialled without it, and said so.
            logger.error(
                "%s.%s: a stored password opens with none of the keys in "
                "CPMS_ROUTING_SECRET_KEY; set the password again",
                self.model.__name__,
                self.name,
            )
            return ""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(value)
