"""The command state machine, the catalogue of commands per OCPP version and what an answer
means: pure, no database and no I/O."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargers.commands import (
    CSMS_ACTIONS,
    FINISHED,
    CommandState,
    IllegalTransition,
    UnknownAction,
    check_action,
    outcome,
    sources,
    transition,
)

S = CommandState

# The machine, spelled out: every move a command may make, and no other.
ALLOWED = {
    (S.REQUESTED, S.QUEUED),
    (S.REQUESTED, S.SENT),
    (S.REQUESTED, S.TIMEOUT),
    (S.REQUESTED, S.FAILED),
    (S.QUEUED, S.SENT),
    (S.QUEUED, S.TIMEOUT),
    (S.QUEUED, S.FAILED),
    (S.SENT, S.ACCEPTED),
    (S.SENT, S.REJECTED),
    (S.SENT, S.ANSWERED),
    (S.SENT, S.ERROR),
    (S.SENT, S.TIMEOUT),
    (S.SENT, S.FAILED),
}


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_each_allowed_move_is_made(current, target):
    assert transition(current, target) is target
    assert transition(current.value, target.value) is target  # as stored: plain strings


@pytest.mark.parametrize(
    ("current", "target"),
    sorted(set(itertools.product(CommandState, CommandState)) - ALLOWED),
)
def test_every_other_move_is_refused(current, target):
    with pytest.raises(IllegalTransition) as refused:
        transition(current, target)
    assert str(refused.value) == f"a command that is {current.value} cannot become {target.value}"


def test_a_finished_command_never_moves_again():
    assert {
        S.ACCEPTED,
        S.REJECTED,
        S.ANSWERED,
        S.ERROR,
        S.TIMEOUT,
        S.FAILED,
    } == FINISHED
    for state, target in itertools.product(FINISHED, CommandState):
        with pytest.raises(IllegalTransition):
            transition(state, target)


def test_an_unknown_state_is_refused():
    with pytest.raises(ValueError):
        transition("delivered", "sent")


def test_sources_are_the_states_a_move_starts_from():
    assert sources(S.SENT) == {S.REQUESTED, S.QUEUED}
    assert sources(S.TIMEOUT) == {S.REQUESTED, S.QUEUED, S.SENT}
    assert sources(S.ACCEPTED) == {S.SENT}
    assert sources(S.REQUESTED) == frozenset()


@given(st.lists(st.sampled_from(list(CommandState)), max_size=12))
def test_any_walk_goes_forward_and_stops_at_a_finished_state(targets):
    order = [S.REQUESTED, S.QUEUED, S.SENT]
    state = S.REQUESTED
    for target in targets:
        try:
            moved = transition(state, target)
        except IllegalTransition:
            continue
        assert state not in FINISHED
        # Never back: a command does not become requested again, or queued once sent.
        if moved in order:
            assert order.index(moved) > order.index(state)
        state = moved


# --- The catalogue -------------------------------------------------------------------------------


def test_each_version_has_its_commands():
    assert len(CSMS_ACTIONS["1.6"]) == 26
    assert {
        "RemoteStartTransaction",
        "GetConfiguration",
        "ExtendedTriggerMessage",
        "SignedUpdateFirmware",
    } <= CSMS_ACTIONS["1.6"]
    assert {
        "RequestStartTransaction",
        "GetVariables",
        "CostUpdated",
        "SetNetworkProfile",
    } <= CSMS_ACTIONS["2.0.1"]
    assert CSMS_ACTIONS["2.0.1"] < CSMS_ACTIONS["2.1"]
    assert {"UsePriorityCharging", "SetDefaultTariff"} <= CSMS_ACTIONS["2.1"] - CSMS_ACTIONS[
        "2.0.1"
    ]
    # What chargers send is never a command.
    for actions in CSMS_ACTIONS.values():
        assert (
            not {"BootNotification", "Heartbeat", "StatusNotification", "TransactionEvent"}
            & actions
        )


def test_a_command_of_another_version_is_refused_with_the_choices():
    check_action("GetConfiguration", "1.6")
    with pytest.raises(
        UnknownAction,
        match=r"'GetConfiguration' is not a command a CSMS sends in OCPP 2\.0\.1; one of: CancelReservation, CertificateSigned",
    ):
        check_action("GetConfiguration", "2.0.1")
    with pytest.raises(UnknownAction, match="'Heartbeat' is not a command"):
        check_action("Heartbeat", "1.6")
    with pytest.raises(UnknownAction, match=r"OCPP \(unknown\) is not a version"):
        check_action("Reset", "")


# --- Answers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"status": "Accepted"}, (S.ACCEPTED, "Accepted")),
        ({"status": "Scheduled"}, (S.ACCEPTED, "Scheduled")),
        ({"status": "Unlocked"}, (S.ACCEPTED, "Unlocked")),
        ({"status": "RebootRequired"}, (S.ACCEPTED, "RebootRequired")),
        (
            {"status": "AcceptedCanceled", "statusInfo": {"reasonCode": "x"}},
            (S.ACCEPTED, "AcceptedCanceled"),
        ),
        ({"status": "Rejected"}, (S.REJECTED, "Rejected")),
        ({"status": "NotSupported"}, (S.REJECTED, "NotSupported")),
        ({"status": "UnlockFailed"}, (S.REJECTED, "UnlockFailed")),
        ({"status": "Occupied"}, (S.REJECTED, "Occupied")),
        ({"configurationKey": []}, (S.ANSWERED, "")),
        ({}, (S.ANSWERED, "")),
        # A status that is not text is no status.
        ({"status": {"code": 1}}, (S.ANSWERED, "")),
    ],
)
def test_an_answer_gives_the_state(payload, expected):
    assert outcome(payload) == expected
