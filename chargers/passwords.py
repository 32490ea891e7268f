"""Charger passwords (HTTP Basic, security profiles 1 and 2), hashed with Django's hashers.

A charger's password is a machine secret, not something a person remembers, so it is hashed with
PBKDF2 at a lower iteration count than user passwords: a fleet reconnecting after an outage must
be able to authenticate thousands of chargers a minute. Verified credentials are remembered
(keyed by a digest under ``SECRET_KEY``, never the password): in this process's memory, and in
the shared cache (Redis in production), so that a gateway that restarts, or a charger that moves
to another node, does not pay the PBKDF2 check again. A reconnect storm after a restart would
otherwise cost one full check per charger: 10,000 chargers, 80 to 120 CPU-seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import OrderedDict

from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher, check_password, make_password
from django.core.cache import cache


class ChargerPasswordHasher(PBKDF2PasswordHasher):
    # Same algorithm name as Django's default, so Django verifies these hashes anywhere; the
    # iteration count is stored inside each hash.
    iterations = 20_000


logger = logging.getLogger(__name__)

_hasher = ChargerPasswordHasher()
_verified: OrderedDict[bytes, None] = OrderedDict()
_VERIFIED_MAX = 100_000


def hash_password(password: str) -> str:
    return make_password(password, hasher=_hasher)


def _cache_key(identity: str, password: str, encoded: str) -> bytes:
    # Keyed with SECRET_KEY so the cache holds nothing a password could be guessed from offline.
    message = f"{identity}\x00{password}\x00{encoded}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).digest()


def _remember(key: bytes) -> None:
    _verified[key] = None
    if len(_verified) > _VERIFIED_MAX:
        _verified.popitem(last=False)


def _shared_key(key: bytes) -> str:
    return f"chargers:verified:{key.hex()}"


def verify_password(identity: str, password: str, encoded: str) -> bool:
    key = _cache_key(identity, password, encoded)
    if key in _verified:
        _verified.move_to_end(key)
        return True
    try:
        shared = cache.get(_shared_key(key))
    except Exception:
        # The shared cache is an accelerator: without it, the full check decides.
        logger.warning("the shared cache of verified charger credentials is unavailable")
        shared = None
    if shared:
        _remember(key)
        return True
    if not check_password(password, encoded):
        return False
    _remember(key)
    try:
        cache.set(_shared_key(key), 1, settings.CPMS_CHARGER_AUTH_CACHE_TTL)
    except Exception:
        logger.warning("could not share a verified charger credential")
    return True
