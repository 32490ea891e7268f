"""Charger passwords: a verified credential is remembered in the shared cache, so a restarted
gateway (an empty process cache) does not pay the full hash check again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from chargers import passwords


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
