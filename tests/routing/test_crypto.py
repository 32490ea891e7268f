"""Upstream passwords at rest: Fernet tokens in the database, the plain password on the model,
key rotation, and the data migration that encrypts passwords stored before."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings

from chargers.models import Charger
from routing import crypto
from routing.models import Upstream, UpstreamCredential

pytestmark = pytest.mark.django_db


def stored(table: str, pk: int) -> str:
    """The password column as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT password FROM {table} WHERE id = %s", [pk])
        return str(cursor.fetchone()[0])


def test_passwords_are_tokens_in_the_database_and_plain_on_the_model(charger: Charger) -> None:
    upstream = Upstream.objects.create(
        name="legacy",
        url="ws://legacy.example/ocpp",
        credentials="basic_upstream",
        password="upstream-secret-1",
    )
    credential = UpstreamCredential.objects.create(
        upstream=upstream, charger=charger, password="charger-secret-2"
    )

    raw = stored("routing_upstream", upstream.pk)
    assert "upstream-secret-1" not in raw and raw.startswith("gAAAAA")
    raw_credential = stored("routing_upstreamcredential", credential.pk)
    assert "charger-secret-2" not in raw_credential and raw_credential.startswith("gAAAAA")
    assert Upstream.objects.get(pk=upstream.pk).password == "upstream-secret-1"
    assert UpstreamCredential.objects.get(pk=credential.pk).password == "charger-secret-2"
    # Each save is a fresh token (no equal passwords spotted by equal columns).
    upstream.save()
    assert stored("routing_upstream", upstream.pk) != raw

    # No password stays empty: nothing to encrypt.
    plain = Upstream.objects.create(name="open", url="ws://open.example/ocpp")
    assert stored("routing_upstream", plain.pk) == ""
    assert Upstream.objects.get(pk=plain.pk).password == ""


def test_a_new_key_listed_first_still_opens_passwords_under_the_old_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with override_settings(CPMS_ROUTING_SECRET_KEY=["old-secret"]):
        upstream = Upstream.objects.create(
            name="legacy", url="ws://legacy.example/ocpp", password="kept-across-rotation"
        )
    with override_settings(CPMS_ROUTING_SECRET_KEY=["new-secret", "old-secret"]):
        assert Upstream.objects.get(pk=upstream.pk).password == "kept-across-rotation"
        upstream.save()  # written again: under the new key
    with override_settings(CPMS_ROUTING_SECRET_KEY=["new-secret"]):
        assert Upstream.objects.get(pk=upstream.pk).password == "kept-across-rotation"
    # A key nobody lists any more: no password, and the log says what to do.
    with (
        override_settings(CPMS_ROUTING_SECRET_KEY=["another-secret"]),
        caplog.at_level(logging.ERROR, logger="routing.crypto"),
    ):
        assert Upstream.objects.get(pk=upstream.pk).password == ""
    assert "set the password again" in caplog.text


def test_without_a_routing_key_the_key_comes_from_secret_key() -> None:
    with override_settings(CPMS_ROUTING_SECRET_KEY=[], SECRET_KEY="first-secret-key"):
        token = crypto.encrypt("p4ss")
        assert crypto.decrypt(token) == "p4ss"
    with override_settings(CPMS_ROUTING_SECRET_KEY=[], SECRET_KEY="second-secret-key"):
        assert not crypto.is_encrypted(token)


@pytest.mark.django_db(transaction=True)
def test_the_data_migration_encrypts_passwords_stored_in_plain_text(charger: Charger) -> None:
    executor = MigrationExecutor(connection)
    before = [("routing", "0004_password_text")]
    latest = executor.loader.graph.leaf_nodes("routing")
    executor.migrate(before)
    try:
        old: Any = executor.loader.project_state(before).apps
        upstream = old.get_model("routing", "Upstream").objects.create(
            name="legacy",
            url="ws://legacy.example/ocpp",
            credentials="basic_upstream",
            password="plain-before-1",
        )
        old.get_model("routing", "UpstreamCredential").objects.create(
            upstream_id=upstream.pk, charger_id=charger.pk, password="plain-before-2"
        )
        assert stored("routing_upstream", upstream.pk) == "plain-before-1"
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)

    assert stored("routing_upstream", upstream.pk).startswith("gAAAAA")
    assert Upstream.objects.get(pk=upstream.pk).password == "plain-before-1"
    credential = UpstreamCredential.objects.get(upstream_id=upstream.pk)
    assert stored("routing_upstreamcredential", credential.pk).startswith("gAAAAA")
    assert credential.password == "plain-before-2"

    # Back and forth again: encrypted rows are not encrypted twice, and going back decrypts.
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    assert stored("routing_upstream", upstream.pk) == "plain-before-1"
    executor = MigrationExecutor(connection)
    executor.migrate(latest)
    assert Upstream.objects.get(pk=upstream.pk).password == "plain-before-1"
