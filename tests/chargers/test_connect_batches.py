"""Handshakes and BootNotifications of many chargers written together: one statement for their
rows, every charger's own answer, and the same outcome as writing them one after the other."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from chargers import services
from chargers.commands import CommandState
from chargers.models import Charger, ChargerEvent, Command, QuirkProfile
from tests.chargers.rowlocks import OtherConnection
from tests.conftest import CHARGER_PASSWORD

pytestmark = pytest.mark.django_db


def arrival(charger: Charger, channel: str, version: str = "1.6") -> services.Arrival:
    login = services.charger_authenticate(identity=charger.identity, password=CHARGER_PASSWORD)
    return services.Arrival(login=login, ocpp_version=version, channel_name=channel)


def test_chargers_arriving_together_are_marked_connected_in_one_statement(make_charger):
    one, two = make_charger("CP-1"), make_charger("CP-2")
    Charger.objects.filter(pk=two.pk).update(connected=True, channel_name="died-with-its-node")
    arrivals = [arrival(one, "chan-1", "2.0.1"), arrival(two, "chan-2")]
    with CaptureQueriesContext(connection) as queries:
        connections = services.chargers_connected_many(arrivals=arrivals)
    assert [(c.identity, c.previous_channel) for c in connections] == [
        ("CP-1", ""),
        ("CP-2", "died-with-its-node"),
    ]
    updates = [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1
    assert list(
        Charger.objects.order_by("identity").values_list(
            "connected", "channel_name", "ocpp_version"
        )
    ) == [
        (True, "chan-1", "2.0.1"),
        (True, "chan-2", "1.6"),
    ]
    assert (
        ChargerEvent.objects.filter(kind=ChargerEvent.Kind.CONNECTION, status="Connected").count()
        == 2
    )


def test_a_charger_arriving_twice_in_one_batch_ends_on_its_second_socket(charger):
    first, second = services.chargers_connected_many(
        arrivals=[arrival(charger, "first"), arrival(charger, "second")]
    )
    # As if one after the other: the second replaces the first, which is told to close.
    assert (first.previous_channel, second.previous_channel) == ("", "first")
    charger.refresh_from_db()
    assert (charger.connected, charger.channel_name) == (True, "second")
    services.charger_disconnect(charger_pk=charger.pk, channel_name="first", close_code=4000)
    charger.refresh_from_db()
    assert (charger.connected, charger.channel_name) == (True, "second")


def test_boots_together_write_each_chargers_fields_and_answer_each(make_charger):
    accepted, pending, pinned = make_charger("CP-A"), make_charger("CP-P"), make_charger("CP-X")
    Charger.objects.filter(pk=pending.pk).update(registration_status="Pending")
    Charger.objects.filter(pk=accepted.pk).update(heartbeat_interval=45, last_transaction_id=7)
    profile = QuirkProfile.objects.create(
        name="acme", vendor="Acme", corrections=["register_resets_on_reboot"]
    )
    pinned_profile = QuirkProfile.objects.create(name="pinned", vendor="Other", corrections=[])
    Charger.objects.filter(pk=pinned.pk).update(
        quirk_profile=pinned_profile, quirk_profile_pinned=True
    )
    boots = [
        services.Boot(
            accepted.pk, services.BootInfo(vendor="Acme", model="AC-22", firmware_version="1.2")
        ),
        services.Boot(
            pending.pk, services.BootInfo(vendor="Acme", model="AC-22", serial_number="S-9")
        ),
        services.Boot(pinned.pk, services.BootInfo(vendor="Acme", model="AC-11")),
    ]
    with CaptureQueriesContext(connection) as queries:
        results = services.chargers_boot_many(boots=boots)
    assert [(r.status, r.interval, r.corrections) for r in results] == [
        ("Accepted", 45, frozenset({"register_resets_on_reboot"})),
        ("Pending", 60, frozenset({"register_resets_on_reboot"})),
        ("Accepted", 300, frozenset()),
    ]
    assert len([q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]) == 1
    rows = {
        c.identity: (c.vendor, c.model, c.firmware_version, c.serial_number, c.quirk_profile_id)
        for c in Charger.objects.all()
    }
    assert rows == {
        "CP-A": ("Acme", "AC-22", "1.2", "", profile.pk),
        "CP-P": ("Acme", "AC-22", "", "S-9", profile.pk),
        "CP-X": ("Acme", "AC-11", "", "", pinned_profile.pk),
    }
    # What a boot does not say is left as it was.
    assert Charger.objects.get(pk=accepted.pk).last_transaction_id == 7
    assert ChargerEvent.objects.filter(kind=ChargerEvent.Kind.BOOT).count() == 3


def test_a_boot_of_a_charger_that_is_gone_fails(charger):
    gone = charger.pk
    charger.delete()
    with pytest.raises(Charger.DoesNotExist):
        services.chargers_boot_many(
            boots=[services.Boot(gone, services.BootInfo(vendor="V", model="M"))]
        )


@override_settings(CPMS_AUTO_REGISTER=True)
def test_a_charger_registered_meanwhile_by_another_socket_still_needs_its_password(
    organization, monkeypatch
):
    def registered_meanwhile(*, identity: str, password: str | None) -> Charger:
        # Another socket's registration of the same id won the race, with its own password.
        return services.charger_create(
            identity=identity,
            organization=organization,
            password="the-first-secret",
            registration_status="Pending",
        )

    monkeypatch.setattr(services, "_charger_auto_register", registered_meanwhile)
    with pytest.raises(services.Refused):
        services.charger_authenticate(identity="NEW-1", password="another-secret")
    assert (
        services.charger_authenticate(identity="NEW-1", password="the-first-secret").identity
        == "NEW-1"
    )


def test_chargers_arriving_together_learn_their_waiting_commands_in_the_same_trip(make_charger):
    one, two, three = make_charger("CP-1"), make_charger("CP-2"), make_charger("CP-3")

    def command(charger: Charger, state: str) -> int:
        return Command.objects.create(
            charger=charger,
            action="Reset",
            payload={"type": "Soft"},
            ocpp_version="1.6",
            state=state,
        ).pk

    first = command(one, CommandState.QUEUED)
    command(two, CommandState.ACCEPTED)  # answered long ago: not waiting
    second = command(one, CommandState.REQUESTED)
    other = command(three, CommandState.QUEUED)  # not arriving now
    arrived = services.chargers_connected_many(
        arrivals=[arrival(one, "chan-1"), arrival(two, "chan-2")]
    )
    assert [(c.identity, c.waiting_commands) for c in arrived] == [
        ("CP-1", (first, second)),
        ("CP-2", ()),
    ]
    assert other not in arrived[0].waiting_commands


@pytest.mark.django_db(transaction=True)
def test_boots_and_arrivals_of_the_same_chargers_in_two_processes_both_commit(make_charger):
    """One process records the boots of three chargers while another marks the same chargers
    connected (they reconnected there), listing them in another order. Each batch locks their
    rows in the same order, so neither ends up waiting on the other in a circle (a deadlock
    PostgreSQL would break by failing one of them)."""
    low, middle, high = make_charger("CP-1"), make_charger("CP-2"), make_charger("CP-3")
    # Rewritten low last: the table now holds the rows high first, as a plan that scans it
    # would meet them.
    Charger.objects.filter(pk=middle.pk).update(heartbeat_interval=60)
    Charger.objects.filter(pk=low.pk).update(heartbeat_interval=60)
    arrivals = [arrival(charger, f"chan-{charger.pk}") for charger in (high, low, middle)]
    boots = [
        services.Boot(charger.pk, services.BootInfo(vendor="Acme", model="AC-22"))
        for charger in (low, middle, high)
    ]

    def boot() -> list[services.BootResult]:
        return services.chargers_boot_many(boots=boots)

    def connect() -> list[services.Connection]:
        return services.chargers_connected_many(arrivals=arrivals)

    if connection.vendor == "postgresql":
        with transaction.atomic():
            # A third transaction holds the middle row: the boots lock the low one and wait
            # there; the arrivals then take whatever they lock before they too must wait.
            Charger.objects.select_for_update(no_key=True).get(pk=middle.pk)
            booting = OtherConnection(boot)
            booting.wait_until_blocked()
            connecting = OtherConnection(connect)
            connecting.wait_until_blocked()
    else:
        # SQLite writes one transaction at a time: the two only have to take turns.
        booting, connecting = OtherConnection(boot), OtherConnection(connect)
    assert [result.status for result in booting.outcome()] == ["Accepted"] * 3
    assert [c.identity for c in connecting.outcome()] == ["CP-3", "CP-1", "CP-2"]
    assert list(
        Charger.objects.order_by("pk").values_list("model", "connected", "channel_name")
    ) == [("AC-22", True, f"chan-{charger.pk}") for charger in (low, middle, high)]
