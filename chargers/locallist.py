"""Local authorization lists, sans I/O: the entries a charger's list should hold, the updates
that bring a list from what the charger confirmed to that, split as the charger's limits ask, and
the SendLocalList payloads of each OCPP version.

An entry is a token with its info: ``{"status", "expiry" (ISO 8601 or None), "group", "type"}``.
An update maps tokens to their info, or to None for a token to delete (a differential entry
without idTagInfo / idTokenInfo).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

FULL = "Full"
DIFFERENTIAL = "Differential"
# When a charger has not reported how many entries one SendLocalList may carry.
DEFAULT_ITEMS_PER_MESSAGE = 50
# OCPP 1.6 idTag and parentIdTag are CiString20.
ID_TAG_16_MAX = 20

Info = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TokenRow:
    """An id token as the list needs it."""

    token: str
    type: str
    status: str
    expires_at: datetime | None
    group_token: str


@dataclass(frozen=True, slots=True)
class Update:
    """One SendLocalList: Full or Differential, the version it sets, and its entries."""

    update_type: str
    version: int
    entries: dict[str, Info | None]

    def as_json(self) -> dict[str, Any]:
        return {"update_type": self.update_type, "version": self.version, "entries": self.entries}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Update:
        return cls(
            update_type=str(data["update_type"]),
            version=int(data["version"]),
            entries=dict(data["entries"]),
        )


def desired_entries(tokens: Iterable[TokenRow], *, version: str, now: datetime) -> dict[str, Info]:
    """The entries a list should hold: a token whose expiry has passed goes as Expired; 1.6
    lists leave out tokens longer than an idTag may be."""
    entries: dict[str, Info] = {}
    for row in tokens:
        if version == "1.6" and len(row.token) > ID_TAG_16_MAX:
            continue
        status = row.status
        if status == "Accepted" and row.expires_at is not None and row.expires_at <= now:
            status = "Expired"
        group = row.group_token
        if version == "1.6" and len(group) > ID_TAG_16_MAX:
            group = ""
        entries[row.token] = {
            "status": status,
            "expiry": row.expires_at.isoformat() if row.expires_at is not None else None,
            "group": group,
            "type": row.type,
        }
    return entries


def _chunks(items: list[tuple[str, Info | None]], size: int) -> list[dict[str, Info | None]]:
    return [dict(items[start : start + size]) for start in range(0, len(items), size)]


def plan_full(entries: dict[str, Info], *, version: int, per_message: int) -> list[Update]:
    """A Full update with the first part of the list, and Differential updates with the rest,
    each one version higher."""
    per_message = max(1, per_message)
    items: list[tuple[str, Info | None]] = sorted(entries.items())
    parts = _chunks(items, per_message) or [{}]
    return [
        Update(FULL if number == 0 else DIFFERENTIAL, version + number, part)
        for number, part in enumerate(parts)
    ]


def plan_differential(
    confirmed: dict[str, Info], desired: dict[str, Info], *, version: int, per_message: int
) -> list[Update]:
    """Differential updates from ``confirmed`` to ``desired``: added and changed entries, and
    deleted ones (None); empty when nothing changed."""
    per_message = max(1, per_message)
    changes: list[tuple[str, Info | None]] = [
        (token, info) for token, info in sorted(desired.items()) if confirmed.get(token) != info
    ]
    changes += [(token, None) for token in sorted(confirmed) if token not in desired]
    return [
        Update(DIFFERENTIAL, version + number, part)
        for number, part in enumerate(_chunks(changes, per_message))
    ]


def applied(confirmed: dict[str, Info], update: Update) -> dict[str, Info]:
    """The list a charger holds after accepting ``update``."""
    entries = {} if update.update_type == FULL else dict(confirmed)
    for token, info in update.entries.items():
        if info is None:
            entries.pop(token, None)
        else:
            entries[token] = info
    return entries


def too_long(size: int, max_entries: int | None) -> str:
    """Why a list of ``size`` entries cannot go to the charger, or "" when it can."""
    if max_entries is None or size <= max_entries:
        return ""
    return (
        f"The list has {size} entries but the charger holds at most {max_entries}; "
        "nothing was sent. Unmark tokens for local lists or raise the charger's limit."
    )


def _expiry(info: Info) -> str | None:
    expiry = info.get("expiry")
    if not expiry:
        return None
    return str(expiry).replace("+00:00", "Z")


def payload(version: str, update: Update, types: dict[str, str] | None = None) -> dict[str, Any]:
    """The SendLocalList request of ``update`` in OCPP ``version``; ``types`` gives the 2.x
    idToken type of tokens the update does not carry (deleted ones, groups)."""
    types = types or {}
    items: list[dict[str, Any]] = []
    if version == "1.6":
        for token, info in update.entries.items():
            item: dict[str, Any] = {"idTag": token}
            if info is not None:
                tag_info: dict[str, Any] = {"status": info["status"]}
                if expiry := _expiry(info):
                    tag_info["expiryDate"] = expiry
                if info.get("group"):
                    tag_info["parentIdTag"] = info["group"]
                item["idTagInfo"] = tag_info
            items.append(item)
        request: dict[str, Any] = {"listVersion": update.version, "updateType": update.update_type}
    else:
        for token, info in update.entries.items():
            kind = (info or {}).get("type") or types.get(token) or "Central"
            item = {"idToken": {"idToken": token, "type": kind}}
            if info is not None:
                token_info: dict[str, Any] = {"status": info["status"]}
                if expiry := _expiry(info):
                    token_info["cacheExpiryDateTime"] = expiry
                if info.get("group"):
                    token_info["groupIdToken"] = {
                        "idToken": info["group"],
                        "type": types.get(info["group"], "Central"),
                    }
                item["idTokenInfo"] = token_info
            items.append(item)
        request = {"versionNumber": update.version, "updateType": update.update_type}
    if items:
        request["localAuthorizationList"] = items
    return request


def reported_version(version: str, answer: dict[str, Any]) -> int | None:
    """The list version in a GetLocalListVersion answer."""
    value = answer.get("listVersion" if version == "1.6" else "versionNumber")
    return value if isinstance(value, int) else None


def positive_int(value: Any) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
