"""Charger passwords (HTTP Basic, security profiles 1 and 2), hashed with Django's hashers.

A charger's password is a machine secret, not something a person remembers, so it is hashed with
PBKDF2 at a lower iteration count than user passwords: a fleet reconnecting after an outage must
be able to authenticate thousands of chargers a minute. Verified credentials are remembered in
memory (keyed by a digest, never the password) so that reconnects cost one dictionary lookup.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict

from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher, check_password, make_password


class ChargerPasswordHasher(PBKDF2PasswordHasher):
    # Same algorithm name as Django's default, so Django verifies these hashes anywhere; the
    # iteration count is stored inside each hash.
    iterations = 20_000


_hasher = ChargerPasswordHasher()
_verified: OrderedDict[bytes, None] = OrderedDict()
_VERIFIED_MAX = 100_000


def hash_password(password: str) -> str:
    return make_password(password, hasher=_hasher)


def _cache_key(identity: str, password: str, encoded: str) -> bytes:
    # Keyed with SECRET_KEY so the cache holds nothing a password could be guessed from offline.
    message = f"{identity}\x00{password}\x00{encoded}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).digest()


def verify_password(identity: str, password: str, encoded: str) -> bool:
    key = _cache_key(identity, password, encoded)
    if key in _verified:
        _verified.move_to_end(key)
        return True
    if not check_password(password, encoded):
        return False
    _verified[key] = None
    if len(_verified) > _VERIFIED_MAX:
        _verified.popitem(last=False)
    return True
