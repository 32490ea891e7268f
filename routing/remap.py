"""Id remapping between a charger and its upstreams, sans I/O.

Every upstream leg has its own message-id sequence: a frame forwarded to a leg gets a fresh id,
and the answer is mapped back to the id its sender used. In OCPP 1.6 each upstream also issues its
own transaction ids: a leg keeps, per transaction of the charger (correlated by the charger's
StartTransaction message id), the id the charger uses and the one that upstream issued, rewrites
``transactionId`` in frames to the upstream, and maps ids in the upstream's CALLs back. A frame
whose transaction has no known id at that upstream yet is held, never sent with a wrong id.
OCPP 2.x transaction ids come from the charger and pass through unchanged.
"""

from __future__ import annotations

import copy
import itertools
import os
from dataclasses import dataclass, field
from typing import Any

# Charger CALLs (1.6) whose transactionId names a transaction the charger got from the primary.
_CHARGER_TRANSACTION_ACTIONS = frozenset({"MeterValues", "StopTransaction"})
# CSMS CALLs (1.6) that name a transaction by its id.
_CSMS_TRANSACTION_ACTIONS = frozenset({"RemoteStopTransaction"})

TRANSACTION_ACTIONS_16 = frozenset({"StartTransaction", "StopTransaction"})
TRANSACTION_ACTIONS_2X = frozenset({"TransactionEvent"})


class MessageIds:
    """Fresh message ids for one leg: unique within the process and across its restarts."""

    def __init__(self, prefix: str | None = None):
        self.prefix = prefix if prefix is not None else os.urandom(4).hex()
        self._counter = itertools.count(1)

    def fresh(self) -> str:
        return f"{self.prefix}-{next(self._counter)}"


@dataclass(slots=True)
class TransactionIds:
    """One leg's 1.6 transaction ids, keyed by the charger's StartTransaction message id."""

    # start message id -> (connector, charger's transaction id, upstream's transaction id)
    starts: dict[str, list[Any]] = field(default_factory=dict)
    _to_upstream: dict[int, int] = field(default_factory=dict)
    _to_charger: dict[int, int] = field(default_factory=dict)

    def _entry(self, start_message_id: str) -> list[Any]:
        return self.starts.setdefault(start_message_id, [0, None, None])

    def charger_assigned(self, start_message_id: str, transaction_id: int) -> None:
        """The primary answered the charger's StartTransaction with ``transaction_id``."""
        entry = self._entry(start_message_id)
        entry[1] = transaction_id
        self._link(entry)

    def upstream_assigned(self, start_message_id: str, transaction_id: int) -> None:
        """This leg's upstream answered its copy of the StartTransaction."""
        entry = self._entry(start_message_id)
        entry[2] = transaction_id
        self._link(entry)

    def _link(self, entry: list[Any]) -> None:
        if entry[1] is not None and entry[2] is not None:
            self._to_upstream[entry[1]] = entry[2]
            self._to_charger[entry[2]] = entry[1]

    def to_upstream(self, charger_transaction_id: int) -> int | None:
        return self._to_upstream.get(charger_transaction_id)

    def start_of(self, charger_transaction_id: int) -> str | None:
        """The charger's StartTransaction message id of a transaction, if this leg knows it."""
        for start_message_id, entry in self.starts.items():
            if entry[1] == charger_transaction_id:
                return start_message_id
        return None

    def to_charger(self, upstream_transaction_id: int) -> int | None:
        return self._to_charger.get(upstream_transaction_id)


@dataclass(frozen=True, slots=True)
class Held:
    """A frame that cannot go to the upstream yet: its transaction has no id there."""

    transaction_id: int


@dataclass(frozen=True, slots=True)
class Unknown:
    """An upstream CALL naming a transaction id that maps to none of the charger's."""

    transaction_id: int


def is_transactional(action: str, payload: dict[str, Any], version: str) -> bool:
    """Whether a charger CALL belongs to a transaction (and so is never dropped)."""
    if version == "1.6":
        return action in TRANSACTION_ACTIONS_16 or (
            action == "MeterValues" and payload.get("transactionId") is not None
        )
    return action in TRANSACTION_ACTIONS_2X


def to_upstream(
    action: str, payload: dict[str, Any], version: str, ids: TransactionIds
) -> dict[str, Any] | Held:
    """A charger CALL's payload as this leg's upstream must see it."""
    if version != "1.6" or action not in _CHARGER_TRANSACTION_ACTIONS:
        return payload
    charger_id = payload.get("transactionId")
    if not isinstance(charger_id, int) or isinstance(charger_id, bool):
        return payload
    upstream_id = ids.to_upstream(charger_id)
    if upstream_id is None:
        return Held(charger_id)
    if upstream_id == charger_id:
        return payload
    return {**payload, "transactionId": upstream_id}


def to_charger(
    action: str, payload: dict[str, Any], version: str, ids: TransactionIds
) -> dict[str, Any] | Unknown:
    """An upstream CALL's payload as the charger must see it (1.6 transaction ids mapped back)."""
    if version != "1.6":
        return payload
    if action in _CSMS_TRANSACTION_ACTIONS:
        upstream_id = payload.get("transactionId")
        if isinstance(upstream_id, int) and not isinstance(upstream_id, bool):
            charger_id = ids.to_charger(upstream_id)
            if charger_id is None:
                return Unknown(upstream_id)
            return {**payload, "transactionId": charger_id}
        return payload
    if action == "SetChargingProfile":
        profile = payload.get("csChargingProfiles")
        upstream_id = profile.get("transactionId") if isinstance(profile, dict) else None
        if isinstance(upstream_id, int) and not isinstance(upstream_id, bool):
            charger_id = ids.to_charger(upstream_id)
            if charger_id is None:
                return Unknown(upstream_id)
            rewritten = copy.deepcopy(payload)
            rewritten["csChargingProfiles"]["transactionId"] = charger_id
            return rewritten
    return payload


def start_transaction_id(payload: dict[str, Any]) -> int | None:
    """The transaction id in a 1.6 StartTransaction answer."""
    value = payload.get("transactionId")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def protected_key(action: str, payload: dict[str, Any], protected: frozenset[str]) -> str | None:
    """The protected configuration key (1.6) or variable (2.x) a CALL would change, if any."""
    if not protected:
        return None
    if action == "ChangeConfiguration":
        key = payload.get("key")
        return key if isinstance(key, str) and key in protected else None
    if action == "SetVariables":
        for item in payload.get("setVariableData") or ():
            if not isinstance(item, dict):
                continue
            variable = (item.get("variable") or {}).get("name")
            component = (item.get("component") or {}).get("name")
            for name in (variable, f"{component}.{variable}"):
                if name in protected:
                    return str(name)
    return None
