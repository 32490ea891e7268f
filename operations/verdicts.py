"""What a charger's answer says about a doubted transaction: pure, with no database.

1.6 has no question for "is this transaction running": we trigger a StatusNotification for the
connector and read the status it reports. 2.x answers GetTransactionStatus directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# 1.6 connector statuses that exist only inside a transaction.
IN_TRANSACTION = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE"})


class Verdict(StrEnum):
    CLOSE = "close"  # the charger no longer runs the transaction: close the session
    ONGOING = "ongoing"  # the charger runs it: the session stays open
    WAIT = "wait"  # the charger still holds messages for it: ask again later
    REVIEW = "review"  # no answer to go by: an operator decides


@dataclass(frozen=True, slots=True)
class Finding:
    verdict: Verdict
    reason: str


def from_transaction_status(*, ongoing_indicator: bool | None, messages_in_queue: bool) -> Finding:
    """A 2.x GetTransactionStatus answer for the session's transaction id."""
    if ongoing_indicator:
        return Finding(Verdict.ONGOING, "The charger reports the transaction as ongoing.")
    if messages_in_queue:
        return Finding(
            Verdict.WAIT,
            "The charger still has queued messages for the transaction; they may close it.",
        )
    if ongoing_indicator is None:
        return Finding(
            Verdict.REVIEW, "The charger did not say whether the transaction is ongoing."
        )
    return Finding(
        Verdict.CLOSE,
        "The charger reports the transaction as not ongoing, with no messages left to send.",
    )


def from_connector_status(status: str) -> Finding:
    """The status a 1.6 connector reported after we asked (or its last one, if it would not say)."""
    if status in IN_TRANSACTION:
        return Finding(Verdict.ONGOING, f"The connector reports {status}: the session runs.")
    if not status or status == "Unknown":
        return Finding(Verdict.REVIEW, "The connector's status is not known.")
    return Finding(
        Verdict.CLOSE, f"The connector reports {status}, which no running transaction has."
    )
