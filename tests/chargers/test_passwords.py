"""Charger passwords: a verified credential is remembered in the shared cache, so a restarted
gateway (an empty process cache) does not pay the full hash check again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from chargers import passwords, services
from chargers.models import Charger


@pytest.fixture(autouse=True)
def cold_process_cache() -> Iterator[None]:
    # Only this process's memory is emptied: the shared cache may be the Redis database that the
    # suite's servers use, and every test here uses charger ids of its own (``fresh``).
    passwords._verified.clear()
    yield
    passwords._verified.clear()


def fresh(name: str) -> str:
    """A charger id no earlier run has left in the shared cache."""
    return f"{name}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def full_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The full (PBKDF2) checks made, by password."""
    made: list[str] = []
    real = passwords.check_password

    def counted(password: str, encoded: str, *args: Any, **kwargs: Any) -> bool:
        made.append(password)
        return real(password, encoded, *args, **kwargs)

    monkeypatch.setattr(passwords, "check_password", counted)
    return made


def test_a_restarted_gateway_verifies_from_the_shared_cache(full_checks: list[str]) -> None:
    charger = fresh("CP-1")
    encoded = passwords.hash_password("a-machine-secret-01")
    assert passwords.verify_password(charger, "a-machine-secret-01", encoded)
    passwords._verified.clear()  # the process restarted
    assert passwords.verify_password(charger, "a-machine-secret-01", encoded)
    assert full_checks == ["a-machine-secret-01"]


def test_a_wrong_password_is_never_remembered(full_checks: list[str]) -> None:
    charger = fresh("CP-1")
    encoded = passwords.hash_password("a-machine-secret-01")
    assert not passwords.verify_password(charger, "a-guess", encoded)
    assert not passwords.verify_password(charger, "a-guess", encoded)
    assert full_checks == ["a-guess", "a-guess"]


def test_a_changed_password_does_not_match_the_old_entry(full_checks: list[str]) -> None:
    charger = fresh("CP-1")
    old = passwords.hash_password("a-machine-secret-01")
    assert passwords.verify_password(charger, "a-machine-secret-01", old)
    new = passwords.hash_password("a-machine-secret-02")
    passwords._verified.clear()
    assert not passwords.verify_password(charger, "a-machine-secret-01", new)
    assert passwords.verify_password(charger, "a-machine-secret-02", new)
    assert full_checks == ["a-machine-secret-01", "a-machine-secret-01", "a-machine-secret-02"]


def test_another_charger_with_the_same_password_is_checked_in_full(full_checks: list[str]) -> None:
    charger = fresh("CP-1")
    other = fresh("CP-2")
    encoded = passwords.hash_password("a-machine-secret-01")
    assert passwords.verify_password(charger, "a-machine-secret-01", encoded)
    assert passwords.verify_password(other, "a-machine-secret-01", encoded)
    assert full_checks == ["a-machine-secret-01", "a-machine-secret-01"]


def test_without_the_shared_cache_the_full_check_decides(
    full_checks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    charger = fresh("CP-1")

    class Down:
        def get(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("cache down")

        def set(self, *args: Any, **kwargs: Any) -> None:
            raise ConnectionError("cache down")

    monkeypatch.setattr(passwords, "cache", Down())
    encoded = passwords.hash_password("a-machine-secret-01")
    assert passwords.verify_password(charger, "a-machine-secret-01", encoded)
    assert not passwords.verify_password(charger, "wrong", encoded)
    assert full_checks == ["a-machine-secret-01", "wrong"]


# --- Machine secrets: a keyed digest ------------------------------------------------------------

MACHINE_SECRET = "q7Vx2LmR9tKc4WzN8bHy3JpD"  # 24 characters of base62, as a CPMS generates them


@pytest.mark.parametrize(
    ("password", "strong"),
    [
        (MACHINE_SECRET, True),
        ("b3Jx_Qe9-LrT0vWm2YhK8sZa5NcD7uFg", True),  # secrets.token_urlsafe(24)
        ("9f86d081884c7d659a2feaa0c55ad015", True),  # 32 hex digits: 128 bits
        ("test-charger-secret-1", False),
        ("a-machine-secret-01", False),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", False),  # long, but one character
        ("0123456789abcdef", False),  # 16 hex digits: 64 bits
        ("Xk9$mP2q", False),  # short
    ],
)
def test_a_machine_secret_is_told_by_its_length_and_characters(password: str, strong: bool) -> None:
    assert passwords.is_machine_secret(password) is strong


def test_a_machine_secret_is_kept_as_a_keyed_digest_and_checked_without_pbkdf2(
    full_checks: list[str], settings: Any
) -> None:
    charger = fresh("CP-1")
    encoded = passwords.hash_password(MACHINE_SECRET)
    assert encoded.startswith("cpms_keyed_sha256$")
    assert MACHINE_SECRET not in encoded
    # Salted: the same secret twice is stored two ways.
    assert passwords.hash_password(MACHINE_SECRET) != encoded
    assert passwords.verify_password(charger, MACHINE_SECRET, encoded)
    assert not passwords.verify_password(charger, MACHINE_SECRET[:-1] + "x", encoded)
    assert not passwords.verify_password(charger, "", encoded)
    assert full_checks == []
    assert not passwords.needs_update(MACHINE_SECRET, encoded)

    # Another SECRET_KEY, and the digest no longer matches: the key is not in the database.
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "another-secret-key-of-this-deployment"
    assert not passwords.verify_password(charger, MACHINE_SECRET, encoded)
    # Rotated with the old key kept as a fallback, it matches and asks to be made again.
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert passwords.verify_password(charger, MACHINE_SECRET, encoded)
    assert passwords.needs_update(MACHINE_SECRET, encoded)


def test_with_the_fast_digest_off_every_password_is_hashed_with_pbkdf2(settings: Any) -> None:
    settings.CPMS_CHARGER_FAST_DIGEST = False
    encoded = passwords.hash_password(MACHINE_SECRET)
    assert encoded.startswith("pbkdf2_sha256$")
    settings.CPMS_CHARGER_FAST_DIGEST = True
    assert passwords.needs_update(MACHINE_SECRET, encoded)
    assert not passwords.needs_update("test-charger-secret-1", encoded)


@pytest.mark.django_db
def test_a_login_moves_a_stored_hash_to_the_scheme_its_password_calls_for(
    make_charger: Any, full_checks: list[str], settings: Any
) -> None:
    """A machine secret hashed with PBKDF2 before becomes a digest at the charger's next login,
    and the login after makes no PBKDF2 check; after a SECRET_KEY rotation, a digest under the
    old key is made again under the new one."""
    charger = make_charger(fresh("CP-1"))
    before = passwords.make_password(MACHINE_SECRET, hasher=passwords._hasher)
    Charger.objects.filter(pk=charger.pk).update(password_hash=before)
    services.charger_authenticate(identity=charger.identity, password=MACHINE_SECRET)
    charger.refresh_from_db()
    assert charger.password_hash.startswith("cpms_keyed_sha256$")
    passwords._verified.clear()
    services.charger_authenticate(identity=charger.identity, password=MACHINE_SECRET)
    assert full_checks == [MACHINE_SECRET]

    digest = charger.password_hash
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the-next-secret-key-of-this-deployment"
    services.charger_authenticate(identity=charger.identity, password=MACHINE_SECRET)
    charger.refresh_from_db()
    assert charger.password_hash.startswith("cpms_keyed_sha256$")
    assert charger.password_hash != digest
    settings.SECRET_KEY_FALLBACKS = []
    services.charger_authenticate(identity=charger.identity, password=MACHINE_SECRET)
    with pytest.raises(services.Refused):
        services.charger_authenticate(identity=charger.identity, password="wrong" * 5)
