"""What a charger's answer says about a doubted transaction (no database)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operations.verdicts import (
    IN_TRANSACTION,
    Verdict,
    from_connector_status,
    from_transaction_status,
)


@pytest.mark.parametrize(
    ("ongoing", "queued", "verdict"),
    [
        (True, False, Verdict.ONGOING),
        (True, True, Verdict.ONGOING),
        (False, True, Verdict.WAIT),
        (None, True, Verdict.WAIT),
        (False, False, Verdict.CLOSE),
        (None, False, Verdict.REVIEW),
    ],
)
def test_a_transaction_status_answer(ongoing, queued, verdict):
    assert (
        from_transaction_status(ongoing_indicator=ongoing, messages_in_queue=queued).verdict
        == verdict
    )


@pytest.mark.parametrize("status", sorted(IN_TRANSACTION))
def test_a_status_inside_a_transaction_keeps_the_session(status):
    assert from_connector_status(status).verdict == Verdict.ONGOING


@pytest.mark.parametrize(
    "status", ["Available", "Preparing", "Finishing", "Faulted", "Unavailable"]
)
def test_a_status_outside_a_transaction_closes_it(status):
    finding = from_connector_status(status)
    assert finding.verdict == Verdict.CLOSE
    assert status in finding.reason


@pytest.mark.parametrize("status", ["", "Unknown"])
def test_an_unknown_status_goes_to_an_operator(status):
    assert from_connector_status(status).verdict == Verdict.REVIEW


@given(st.text(max_size=20))
def test_only_statuses_of_a_running_transaction_keep_it(status):
    verdict = from_connector_status(status).verdict
    assert (verdict == Verdict.ONGOING) == (status in IN_TRANSACTION)
