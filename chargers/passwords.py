"""Charger passwords (HTTP Basic, security profiles 1 and 2), hashed with Django's hashers.

A charger's password is a machine secret, not something a person remembers, so it is hashed with
PBKDF2 at a lower iteration count than user passwords: a fleet reconnecting after an outage must
be able to authenticate thousands of chargers a minute. Verified credentials are remembered
(keyed by a digest under ``SECRET_KEY``, never the password): in this process's memory, and in
the shared cache (Redis in production), so that a gateway that restarts, or a charger that moves
to another node, does not pay the PBKDF2 check again. A reconnect storm after a restart would
otherwise cost one full check per charger: 10,000 chargers, 80 to 120 CPU-seconds.

A charger's first connect ever still pays that check, and a fleet's first day is a storm of
first connects. So a password that is a machine secret by its look (at least 16 characters, and
about 128 bits by the characters it draws on; OCPP 2.0.1's ``BasicAuthPassword`` is 16 to 40
characters, a CPMS generates it at random) is stored as a keyed digest instead: HMAC-SHA256 under
a key derived from ``SECRET_KEY``, with a salt of its own. Guessing such a secret is hopeless
however fast one hash is, and the key, which is not in the database, guards a human passphrase
that only looks strong. Checking it costs microseconds. A stored hash is moved to the scheme its
password calls for at the charger's next login: PBKDF2 hashes of strong passwords made before,
and digests under a key from ``SECRET_KEY_FALLBACKS`` after a rotation (``needs_update``).
``CPMS_CHARGER_FAST_DIGEST = False`` hashes every charger password with PBKDF2.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import secrets
from collections import OrderedDict

from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher, check_password, make_password
from django.core.cache import cache
from django.utils.crypto import salted_hmac


class ChargerPasswordHasher(PBKDF2PasswordHasher):
    # Same algorithm name as Django's default, so Django verifies these hashes anywhere; the
    # iteration count is stored inside each hash.
    iterations = 20_000


logger = logging.getLogger(__name__)

_hasher = ChargerPasswordHasher()
_verified: OrderedDict[bytes, None] = OrderedDict()
_VERIFIED_MAX = 100_000


DIGEST = "cpms_keyed_sha256"
# The least a password must have to be taken for a machine secret.
STRONG_LENGTH = 16
STRONG_BITS = 128
STRONG_DISTINCT = 12


def is_machine_secret(password: str) -> bool:
    """Whether ``password`` looks like a random machine secret: long enough, with enough
    different characters, and about ``STRONG_BITS`` by the classes of characters it uses."""
    if len(password) < STRONG_LENGTH or len(set(password)) < STRONG_DISTINCT:
        return False
    pool = (
        26 * any(c.islower() for c in password)
        + 26 * any(c.isupper() for c in password)
        + 10 * any(c.isdigit() for c in password)
        + 33 * any(not c.isalnum() for c in password)
    )
    return len(password) * math.log2(pool) >= STRONG_BITS


def _keys() -> list[str]:
    return [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]


def _key_id(key: str) -> str:
    return hashlib.sha256(f"chargers.passwords:{key}".encode()).hexdigest()[:8]


def _digest(password: str, salt: str, key: str) -> str:
    mac = salted_hmac("chargers.passwords.digest", f"{salt}\x00{password}", key, algorithm="sha256")
    return base64.b64encode(mac.digest()).decode("ascii")


def _digest_encode(password: str) -> str:
    key = settings.SECRET_KEY
    salt = secrets.token_urlsafe(12)
    return f"{DIGEST}${_key_id(key)}${salt}${_digest(password, salt, key)}"


def _digest_verify(password: str, encoded: str) -> bool:
    try:
        _, key_id, salt, expected = encoded.split("$", 3)
    except ValueError:
        return False
    for key in _keys():
        if _key_id(key) == key_id:
            return hmac.compare_digest(_digest(password, salt, key), expected)
    return False


def hash_password(password: str) -> str:
    if settings.CPMS_CHARGER_FAST_DIGEST and is_machine_secret(password):
        return _digest_encode(password)
    return make_password(password, hasher=_hasher)


def needs_update(password: str, encoded: str) -> bool:
    """Whether a stored hash that ``password`` matched should be made again: it is not in the
    scheme the password calls for now, or its digest was made under a retired key."""
    digest = encoded.startswith(DIGEST + "$")
    if settings.CPMS_CHARGER_FAST_DIGEST and is_machine_secret(password):
        return not digest or encoded.split("$", 2)[1] != _key_id(settings.SECRET_KEY)
    return digest


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
    if encoded.startswith(DIGEST + "$"):
        # As cheap as the cache lookups would be.
        return _digest_verify(password, encoded)
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
