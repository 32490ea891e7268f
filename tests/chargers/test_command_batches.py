"""Claims and answers of many connections written together: the same outcome, the same events as
one after the other, a fixed number of statements however many there are, rows locked in pk
order, and a claim the close interrupts still written before the close fails its command."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from chargers import command_sender, command_services, events, groupcommit, protocol
from chargers.command_services import AnswerIn, ClaimIn, Holder
from chargers.models import Charger, ChargerConfigurationKey, Command
from tests.chargers.rowlocks import OtherConnection, locked_rows

pytestmark = pytest.mark.django_db

# What a test compares of the command rows: the times only as set or not.
ROW = (
    "pk",
    "state",
    "message_id",
    "response",
    "response_status",
    "error_code",
    "error_description",
)


def holder(charger: Charger) -> Holder:
    return Holder(pk=charger.pk, identity=charger.identity, organization_id=charger.organization_id)


def command(
    charger: Charger,
    state: str = "requested",
    action: str = "Reset",
    payload: dict[str, Any] | None = None,
    version: str = "1.6",
    message_id: str = "",
) -> Command:
    return Command.objects.create(
        charger=charger,
        action=action,
        payload={"type": "Soft"} if payload is None else payload,
        ocpp_version=version,
        state=state,
        message_id=message_id,
    )


def rows() -> list[tuple[Any, ...]]:
    return [
        (*values, sent_at is not None, answered_at is not None, finished_at is not None)
        for *values, sent_at, answered_at, finished_at in Command.objects.order_by(
            "pk"
        ).values_list(*ROW, "sent_at", "answered_at", "finished_at")
    ]


@pytest.fixture
def heard() -> Iterator[list[tuple[str, str, dict[str, Any]]]]:
    """The domain events told after commit, in order: (kind, charger, data)."""
    told: list[tuple[str, str, dict[str, Any]]] = []

    def receiver(sender: str, **kwargs: Any) -> None:
        told.append((sender, kwargs["charger"], kwargs["data"]))

    events.domain_event.connect(receiver, dispatch_uid="test-command-batches")
    yield told
    events.domain_event.disconnect(dispatch_uid="test-command-batches")


@pytest.fixture
def outcome_of(
    heard: list[tuple[str, str, dict[str, Any]]], django_capture_on_commit_callbacks: Any
) -> Callable[[Callable[[], Any]], tuple[Any, ...]]:
    """What ``write()`` returns, the rows it leaves, the configuration keys and the events it
    tells; then it is undone, so that another way of writing can start from the same rows."""

    def outcome(write: Callable[[], Any]) -> tuple[Any, ...]:
        heard.clear()
        with transaction.atomic():
            with django_capture_on_commit_callbacks(execute=True):
                result = write()
            keys = list(
                ChargerConfigurationKey.objects.order_by("key").values_list(
                    "charger", "key", "value", "command"
                )
            )
            written = (result, rows(), keys, list(heard))
            transaction.set_rollback(True)
        return written

    return outcome


# --- Claims ----------------------------------------------------------------------------------------


def test_claims_together_come_out_as_one_after_the_other(make_charger, outcome_of):
    one = make_charger("CP-1", connected=True, ocpp_version="1.6")
    two = make_charger("CP-2", connected=True, ocpp_version="1.6")
    newer = make_charger("CP-3", connected=True, ocpp_version="2.0.1")
    requested = command(one)
    queued = command(two, state="queued", action="UnlockConnector", payload={"connectorId": 1})
    of_another = command(two)
    already_sent = command(one, state="sent", message_id="m-old")
    made_for_16 = command(newer)
    made_for_201 = command(newer, payload={"type": "Immediate"}, version="2.0.1")
    gone = command(one)
    Command.objects.filter(pk=gone.pk).delete()
    claims = [
        ClaimIn(requested.pk, holder(one), "1.6", "m-1"),
        ClaimIn(queued.pk, holder(two), "1.6", "m-2"),
        ClaimIn(of_another.pk, holder(one), "1.6", "m-3"),
        ClaimIn(already_sent.pk, holder(one), "1.6", "m-4"),
        ClaimIn(made_for_16.pk, holder(newer), "2.0.1", "m-5"),
        ClaimIn(made_for_201.pk, holder(newer), "2.0.1", "m-6"),
        ClaimIn(gone.pk, holder(one), "1.6", "m-7"),
        # The same commands claimed again: by another connection of its charger, and by the
        # connection of the charger it is for.
        ClaimIn(requested.pk, holder(one), "1.6", "m-8"),
        ClaimIn(of_another.pk, holder(two), "1.6", "m-9"),
    ]

    def one_by_one() -> list[command_services.Claim | None]:
        # Each claim through command_claim, as the batch does elsewhere than PostgreSQL.
        return [command_services._claim(item) for item in claims]

    expected = outcome_of(one_by_one)
    together = outcome_of(lambda: command_services.command_claim_many(claims=claims))
    assert together == expected
    results, states, _, told = expected
    assert results == [
        command_services.Claim(requested.pk, "Reset", {"type": "Soft"}),
        command_services.Claim(queued.pk, "UnlockConnector", {"connectorId": 1}),
        None,
        None,
        None,
        command_services.Claim(made_for_201.pk, "Reset", {"type": "Immediate"}),
        None,
        None,
        command_services.Claim(of_another.pk, "Reset", {"type": "Soft"}),
    ]
    by_pk = {row[0]: row[1:] for row in states}
    assert by_pk[requested.pk][:2] == ("sent", "m-1")
    assert by_pk[of_another.pk][:2] == ("sent", "m-9")
    assert by_pk[already_sent.pk][:2] == ("sent", "m-old")
    assert by_pk[made_for_16.pk][:2] == ("failed", "")
    assert by_pk[made_for_16.pk][4] == "VersionChanged"
    assert [(charger, data["command"], data["state"]) for _, charger, data in told] == [
        ("CP-1", requested.pk, "sent"),
        ("CP-2", queued.pk, "sent"),
        ("CP-3", made_for_16.pk, "failed"),
        ("CP-3", made_for_201.pk, "sent"),
        ("CP-2", of_another.pk, "sent"),
    ]


@pytest.mark.parametrize("count", [5, 50])
def test_claims_together_are_one_statement_however_many(make_charger, count):
    chargers = [make_charger(f"CP-{n}", connected=True, ocpp_version="1.6") for n in range(5)]
    commands = [command(chargers[n % 5]) for n in range(count)]
    claims = [
        ClaimIn(c.pk, holder(chargers[n % 5]), "1.6", f"m-{n}") for n, c in enumerate(commands)
    ]
    with CaptureQueriesContext(connection) as queries:
        results = command_services.command_claim_many(claims=claims)
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    if connection.vendor == "postgresql":
        # The UPDATE, inside the savepoint of the batch's transaction.
        assert statements == ["SAVEPOINT", "UPDATE", "RELEASE"]
    else:
        # Elsewhere each claim is written alone.
        assert statements.count("UPDATE") == count
    assert [claim.command_pk if claim else None for claim in results] == [c.pk for c in commands]
    assert list(Command.objects.order_by("pk").values_list("state", "message_id")) == [
        ("sent", f"m-{n}") for n in range(count)
    ]


# --- Answers ---------------------------------------------------------------------------------------


def test_answers_together_come_out_as_one_after_the_other(make_charger, outcome_of):
    one = make_charger("CP-1", connected=True, ocpp_version="1.6")
    two = make_charger("CP-2", connected=True, ocpp_version="2.0.1")
    accepted = command(one, state="sent", message_id="m-1")
    rejected = command(two, state="sent", message_id="m-2", payload={"type": "Immediate"})
    refused = command(one, state="sent", message_id="m-3")
    malformed = command(one, state="sent", message_id="m-4")
    finished = command(one, state="timeout", message_id="m-5")
    resent = command(one, state="sent", message_id="m-6-again")
    configuration = command(
        one, state="sent", action="GetConfiguration", payload={}, message_id="m-7"
    )
    changed = command(
        two,
        state="sent",
        action="ChangeConfiguration",
        payload={"key": "MeterValueSampleInterval", "value": "60"},
        message_id="m-8",
    )
    not_changed = command(
        one,
        state="sent",
        action="ChangeConfiguration",
        payload={"key": "Locked", "value": "1"},
        message_id="m-9",
    )
    ChargerConfigurationKey.objects.create(charger=one, key="Gone", value="1")
    configuration_answer = {
        "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}],
        "unknownKey": ["Gone"],
    }

    def answer(
        sent: Command, charger: Charger, message_id: str, reply: Any, version: str = "1.6"
    ) -> AnswerIn:
        return AnswerIn(
            sent.pk, holder(charger), sent.action, sent.payload, message_id, version, reply
        )

    answers = [
        answer(accepted, one, "m-1", protocol.CallResult("m-1", {"status": "Accepted"})),
        answer(
            rejected,
            two,
            "m-2",
            protocol.CallResult("m-2", {"status": "Rejected"}),
            version="2.0.1",
        ),
        answer(refused, one, "m-3", protocol.CallError("m-3", "NotSupported", "no", {"x": 1})),
        answer(malformed, one, "m-4", protocol.CallResult("m-4", {"status": "Maybe"})),
        answer(finished, one, "m-5", protocol.CallResult("m-5", {"status": "Accepted"})),
        answer(resent, one, "m-6", protocol.CallResult("m-6", {"status": "Accepted"})),
        answer(configuration, one, "m-7", protocol.CallResult("m-7", configuration_answer)),
        answer(changed, two, "m-8", protocol.CallResult("m-8", {"status": "Accepted"})),
        answer(not_changed, one, "m-9", protocol.CallResult("m-9", {"status": "Rejected"})),
        # The first answer again: its command no longer waits for it.
        answer(accepted, one, "m-1", protocol.CallResult("m-1", {"status": "Rejected"})),
        # The answer to the CALL that went out last.
        answer(resent, one, "m-6-again", protocol.CallResult("m-6-again", {"status": "Rejected"})),
    ]

    def one_by_one() -> list[str]:
        # Each answer through command_answer_record, as the batch does elsewhere than PostgreSQL.
        return [command_services._answer_record(item) for item in answers]

    expected = outcome_of(one_by_one)
    together = outcome_of(lambda: command_services.command_answer_record_many(answers=answers))
    assert together == expected
    results, states, keys, told = expected
    assert results == [
        "accepted",
        "rejected",
        "error",
        "error",
        "",
        "",
        "answered",
        "accepted",
        "rejected",
        "",
        "rejected",
    ]
    by_pk = {row[0]: row[1:] for row in states}
    assert by_pk[accepted.pk] == (
        "accepted",
        "m-1",
        {"status": "Accepted"},
        "Accepted",
        "",
        "",
        False,
        True,
        True,
    )
    assert by_pk[refused.pk] == (
        "error",
        "m-3",
        {"x": 1},
        "",
        "NotSupported",
        "no",
        False,
        True,
        True,
    )
    assert by_pk[malformed.pk][4] != "" and "does not match the schema" in by_pk[malformed.pk][5]
    assert by_pk[finished.pk][0] == "timeout"
    assert by_pk[resent.pk][:4] == ("rejected", "m-6-again", {"status": "Rejected"}, "Rejected")
    assert sorted(keys) == sorted(
        [
            (one.pk, "HeartbeatInterval", "300", configuration.pk),
            (two.pk, "MeterValueSampleInterval", "60", changed.pk),
        ]
    )
    assert [(charger, data["command"], data["state"]) for _, charger, data in told] == [
        ("CP-1", accepted.pk, "accepted"),
        ("CP-2", rejected.pk, "rejected"),
        ("CP-1", refused.pk, "error"),
        ("CP-1", malformed.pk, "error"),
        ("CP-1", configuration.pk, "answered"),
        ("CP-2", changed.pk, "accepted"),
        ("CP-1", not_changed.pk, "rejected"),
        ("CP-1", resent.pk, "rejected"),
    ]


@pytest.mark.parametrize("count", [5, 50])
def test_answers_without_effects_are_one_statement_however_many(make_charger, count):
    chargers = [make_charger(f"CP-{n}", connected=True, ocpp_version="1.6") for n in range(5)]
    commands = [command(chargers[n % 5], state="sent", message_id=f"m-{n}") for n in range(count)]

    def reply(n: int) -> protocol.CallResult | protocol.CallError:
        if n % 3 == 2:
            return protocol.CallError(f"m-{n}", "InternalError", "broken", {})
        return protocol.CallResult(f"m-{n}", {"status": ["Accepted", "Rejected"][n % 3]})

    answers = [
        AnswerIn(c.pk, holder(chargers[n % 5]), "Reset", c.payload, f"m-{n}", "1.6", reply(n))
        for n, c in enumerate(commands)
    ]
    with CaptureQueriesContext(connection) as queries:
        results = command_services.command_answer_record_many(answers=answers)
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    if connection.vendor == "postgresql":
        assert statements == ["SAVEPOINT", "UPDATE", "RELEASE"]
    else:
        # Elsewhere each answer is written alone.
        assert statements.count("UPDATE") == count
    states = ["accepted", "rejected", "error"]
    assert results == [states[n % 3] for n in range(count)]
    assert list(
        Command.objects.order_by("pk").values_list("state", "response_status", "error_code")
    ) == [
        [
            ("accepted", "Accepted", ""),
            ("rejected", "Rejected", ""),
            ("error", "", "InternalError"),
        ][n % 3]
        for n in range(count)
    ]
    assert not Command.objects.filter(finished_at__isnull=True).exists()


@pytest.mark.parametrize("count", [5, 50])
def test_configuration_changes_together_are_two_statements_however_many(make_charger, count):
    chargers = [make_charger(f"CP-{n}", connected=True, ocpp_version="1.6") for n in range(count)]
    commands = [
        command(
            charger,
            state="sent",
            action="ChangeConfiguration",
            payload={"key": "HeartbeatInterval", "value": str(60 + n)},
            message_id=f"m-{n}",
        )
        for n, charger in enumerate(chargers)
    ]
    statuses = ["Accepted", "Rejected", "RebootRequired"]
    answers = [
        AnswerIn(
            c.pk,
            holder(chargers[n]),
            c.action,
            c.payload,
            f"m-{n}",
            "1.6",
            protocol.CallResult(f"m-{n}", {"status": statuses[n % 3]}),
        )
        for n, c in enumerate(commands)
    ]
    with CaptureQueriesContext(connection) as queries:
        results = command_services.command_answer_record_many(answers=answers)
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    if connection.vendor == "postgresql":
        # The commands' UPDATE, then the values the accepted ones set.
        assert statements == ["SAVEPOINT", "UPDATE", "INSERT", "RELEASE"]
    else:
        # Elsewhere each answer is written alone.
        assert statements.count("UPDATE") == count
    assert results == [["accepted", "rejected", "accepted"][n % 3] for n in range(count)]
    assert list(
        ChargerConfigurationKey.objects.order_by("charger").values_list(
            "charger", "value", "command"
        )
    ) == [(chargers[n].pk, str(60 + n), commands[n].pk) for n in range(count) if n % 3 != 1]


# --- Lock order ------------------------------------------------------------------------------------


def three_commands_stored_high_first(charger: Charger, **fields: Any) -> list[Command]:
    low, middle, high = (command(charger, **fields) for _ in range(3))
    # Rewritten low last: the table now holds the rows high first, as a plan that scans it would
    # meet them.
    Command.objects.filter(pk=middle.pk).update(system="rewritten")
    Command.objects.filter(pk=low.pk).update(system="rewritten")
    return [low, middle, high]


def waits_for_the_middle_holding_the_low_one(write: Callable[[], Any], middle: Command) -> Any:
    """Run ``write`` in another session while this one holds the middle row: it waits there,
    holding the row below, and none above (which another batch may hold, waiting for the
    middle one)."""
    with transaction.atomic():
        Command.objects.select_for_update(no_key=True).get(pk=middle.pk)
        writing = OtherConnection(write)
        writing.wait_until_blocked()
        held = locked_rows(
            Command._meta.db_table,
            list(Command.objects.exclude(pk=middle.pk).values_list("pk", flat=True)),
        )
    return held, writing.outcome()


@pytest.mark.django_db(transaction=True)
def test_claims_lock_their_rows_in_pk_order_whatever_order_they_come_in(make_charger):
    charger = make_charger("CP-1", connected=True, ocpp_version="1.6")
    low, middle, high = three_commands_stored_high_first(charger)
    claims = [ClaimIn(c.pk, holder(charger), "1.6", f"m-{c.pk}") for c in (high, middle, low)]
    if connection.vendor == "postgresql":
        held, claimed = waits_for_the_middle_holding_the_low_one(
            lambda: command_services.command_claim_many(claims=claims), middle
        )
        assert held == {low.pk}
    else:
        # One lock for the whole database: no order to keep.
        claimed = command_services.command_claim_many(claims=claims)
    assert [claim.command_pk for claim in claimed] == [high.pk, middle.pk, low.pk]
    assert set(Command.objects.values_list("state", flat=True)) == {"sent"}


@pytest.mark.django_db(transaction=True)
def test_answers_lock_their_rows_in_pk_order_whatever_order_they_come_in(make_charger):
    charger = make_charger("CP-1", connected=True, ocpp_version="1.6")
    low, middle, high = three_commands_stored_high_first(charger, state="sent", message_id="m")
    answers = [
        AnswerIn(
            c.pk,
            holder(charger),
            "Reset",
            c.payload,
            "m",
            "1.6",
            protocol.CallResult("m", {"status": "Accepted"}),
        )
        for c in (high, middle, low)
    ]
    if connection.vendor == "postgresql":
        held, states = waits_for_the_middle_holding_the_low_one(
            lambda: command_services.command_answer_record_many(answers=answers), middle
        )
        assert held == {low.pk}
    else:
        # One lock for the whole database: no order to keep.
        states = command_services.command_answer_record_many(answers=answers)
    assert states == ["accepted"] * 3
    assert set(Command.objects.values_list("state", flat=True)) == {"accepted"}


# --- Through the committers ------------------------------------------------------------------------


# Committed for real: the database hop closes a connection it finds inside a transaction.
@pytest.mark.django_db(transaction=True)
def test_claims_and_answers_of_many_connections_go_through_their_committers(make_charger):
    chargers = [make_charger(f"CP-{n}", connected=True, ocpp_version="1.6") for n in range(3)]
    commands = [command(charger) for charger in chargers]

    async def claim_then_answer() -> tuple[list[Any], list[str]]:
        claims = groupcommit.command_claims()
        claimed = await asyncio.gather(
            *(
                claims.submit(ClaimIn(c.pk, holder(charger), "1.6", f"m-{c.pk}"))
                for c, charger in zip(commands, chargers, strict=True)
            )
        )
        answers = groupcommit.command_answers()
        answered = await asyncio.gather(
            *(
                answers.submit(
                    AnswerIn(
                        c.pk,
                        holder(charger),
                        "Reset",
                        c.payload,
                        f"m-{c.pk}",
                        "1.6",
                        protocol.CallResult(f"m-{c.pk}", {"status": "Accepted"}),
                    )
                )
                for c, charger in zip(commands, chargers, strict=True)
            )
        )
        return claimed, answered

    claimed, answered = async_to_sync(claim_then_answer)()
    assert [claim.command_pk for claim in claimed] == [c.pk for c in commands]
    assert answered == ["accepted"] * 3
    assert list(Command.objects.order_by("pk").values_list("state", "message_id")) == [
        ("accepted", f"m-{c.pk}") for c in commands
    ]


class Consumer:
    """What a command sender uses of the consumer holding a charger's socket."""

    def __init__(self, charger: Charger):
        self.connection = type(
            "Connection",
            (),
            {"identity": charger.identity, "organization_pk": charger.organization_id},
        )()
        self.charger_identity = charger.identity
        self.channel_name = charger.channel_name
        self.dispatcher = type("Dispatcher", (), {"pending": {}})()
        self.sent: list[str] = []

    async def send(self, text_data: str) -> None:
        self.sent.append(text_data)

    def _journal(self, *args: Any) -> None:
        pass


# Committed for real: the database hop closes a connection it finds inside a transaction.
@pytest.mark.django_db(transaction=True)
def test_a_claim_the_close_interrupts_is_written_before_the_close_fails_its_command(
    make_charger, monkeypatch
):
    charger = make_charger("CP-1", connected=True, ocpp_version="1.6", channel_name="chan-1")
    # May wait for the charger: failed only as the CALL in flight when the connection closed.
    waiting = command(charger)
    Command.objects.filter(pk=waiting.pk).update(deliver_when_offline=True)
    monkeypatch.setattr(command_sender, "_ensure_poller", lambda: None)
    real = groupcommit.commit_sync_to_async

    def slow(function: Callable[..., Any]) -> Callable[..., Any]:
        # The batch reaches the database after the close's own call would.
        async def run(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0.3)
            return await real(function)(*args, **kwargs)

        return run

    monkeypatch.setattr(groupcommit, "commit_sync_to_async", slow)

    async def connect_then_close() -> list[str]:
        consumer = Consumer(charger)
        sender = command_sender.CommandSender(consumer, charger_pk=charger.pk, version="1.6")
        await sender.start((waiting.pk,))
        while sender.claiming is None:
            await asyncio.sleep(0)
        await sender.close()
        return consumer.sent

    assert async_to_sync(connect_then_close)() == []
    waiting.refresh_from_db()
    assert (waiting.state, waiting.error_code) == ("failed", "ConnectionClosed")
    assert waiting.message_id != ""


@pytest.mark.django_db(transaction=True)
def test_a_command_claimed_meanwhile_is_not_told_queued(make_charger, heard):
    # The connection marks two commands queued behind its CALL in flight while the group commit
    # claims one of them: only the other is queued, and only the other is told so.
    charger = make_charger("CP-1", connected=True, ocpp_version="1.6")
    claimed, waiting = command(charger), command(charger)

    def mark() -> int:
        return command_services.commands_mark_queued(
            command_pks=[claimed.pk, waiting.pk], charger=holder(charger)
        )

    if connection.vendor == "postgresql":
        with transaction.atomic():
            [result] = command_services.command_claim_many(
                claims=[ClaimIn(claimed.pk, holder(charger), "1.6", "m-1")]
            )
            marking = OtherConnection(mark)
            marking.wait_until_blocked()  # on the claimed row, until the claim commits
        assert marking.outcome() == 1
    else:
        # One writer at a time: the claim comes first or last, never between the read and the
        # UPDATE.
        [result] = command_services.command_claim_many(
            claims=[ClaimIn(claimed.pk, holder(charger), "1.6", "m-1")]
        )
        assert mark() == 1
    assert result is not None
    assert dict(Command.objects.values_list("pk", "state")) == {
        claimed.pk: "sent",
        waiting.pk: "queued",
    }
    told = [(data["command"], data["state"]) for _, _, data in heard]
    assert told == [(claimed.pk, "sent"), (waiting.pk, "queued")]
