"""The local list's pure parts: the entries a list should hold, full and differential updates
split by the charger's limits, what a charger holds after each, and the payloads of 1.6 and 2.x."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from chargers.locallist import (
    TokenRow,
    Update,
    applied,
    desired_entries,
    payload,
    plan_differential,
    plan_full,
    too_long,
)
from chargers.protocol import CALL, validate

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def row(token: str, **fields: object) -> TokenRow:
    values: dict[str, object] = {
        "type": "ISO14443",
        "status": "Accepted",
        "expires_at": None,
        "group_token": "",
    }
    values.update(fields)
    return TokenRow(token=token, **values)  # type: ignore[arg-type]


def test_an_expired_token_goes_as_expired_and_long_tokens_stay_out_of_1_6_lists():
    tokens = [
        row("OLD", expires_at=NOW - timedelta(seconds=1)),
        row("NEW", expires_at=NOW + timedelta(days=1), group_token="G" * 21),
        row("X" * 21),
    ]
    v16 = desired_entries(tokens, version="1.6", now=NOW)
    v201 = desired_entries(tokens, version="2.0.1", now=NOW)
    assert set(v16) == {"OLD", "NEW"}
    assert v16["OLD"]["status"] == "Expired"
    assert v16["NEW"] == {
        "status": "Accepted",
        "expiry": "2026-11-22T12:00:00+00:00",
        "group": "",
        "type": "ISO14443",
    }
    assert set(v201) == {"OLD", "NEW", "X" * 21}
    assert v201["NEW"]["group"] == "G" * 21


def test_a_full_list_longer_than_a_message_goes_as_a_full_and_differentials():
    entries = {f"T{n}": {"status": "Accepted"} for n in range(5)}
    updates = plan_full(entries, version=4, per_message=2)
    assert [(u.update_type, u.version, sorted(u.entries)) for u in updates] == [
        ("Full", 4, ["T0", "T1"]),
        ("Differential", 5, ["T2", "T3"]),
        ("Differential", 6, ["T4"]),
    ]
    assert plan_full({}, version=1, per_message=2) == [Update("Full", 1, {})]


def test_a_differential_adds_changes_and_deletes():
    confirmed = {"A": {"status": "Accepted"}, "B": {"status": "Accepted"}}
    desired = {"A": {"status": "Blocked"}, "C": {"status": "Accepted"}}
    (update,) = plan_differential(confirmed, desired, version=3, per_message=10)
    assert update == Update(
        "Differential", 3, {"A": {"status": "Blocked"}, "C": {"status": "Accepted"}, "B": None}
    )
    assert applied(confirmed, update) == desired
    assert plan_differential(desired, desired, version=4, per_message=10) == []


info = st.fixed_dictionaries({"status": st.sampled_from(["Accepted", "Blocked", "Expired"])})
lists = st.dictionaries(st.text("ABCDEFGH", min_size=1, max_size=3), info, max_size=12)


@given(confirmed=lists, desired=lists, per_message=st.integers(1, 5))
def test_updates_bring_any_list_to_the_desired_one(confirmed, desired, per_message):
    for updates in (
        plan_differential(confirmed, desired, version=1, per_message=per_message),
        plan_full(desired, version=1, per_message=per_message),
    ):
        held = confirmed
        for number, update in enumerate(updates):
            assert len(update.entries) <= per_message
            assert update.version == 1 + number
            held = applied(held, update)
        if updates:
            assert held == desired


def test_a_list_longer_than_the_charger_holds_says_why():
    assert too_long(3, 3) == ""
    assert too_long(3, None) == ""
    assert "4 entries" in too_long(4, 3) and "at most 3" in too_long(4, 3)


def test_payloads_match_the_schemas():
    entries = desired_entries(
        [row("A", group_token="G", expires_at=NOW + timedelta(hours=1)), row("B", type="KeyCode")],
        version="2.0.1",
        now=NOW,
    )
    update = Update("Differential", 2, {**entries, "GONE": None})
    v16 = payload("1.6", update)
    v201 = payload("2.0.1", update, {"G": "eMAID", "GONE": "KeyCode"})
    validate(CALL, "SendLocalList", v16, "1.6", "-")
    validate(CALL, "SendLocalList", v201, "2.0.1", "-")
    assert v16["localAuthorizationList"] == [
        {
            "idTag": "A",
            "idTagInfo": {
                "status": "Accepted",
                "expiryDate": "2026-11-21T13:00:00Z",
                "parentIdTag": "G",
            },
        },
        {"idTag": "B", "idTagInfo": {"status": "Accepted"}},
        {"idTag": "GONE"},
    ]
    assert v201["localAuthorizationList"] == [
        {
            "idToken": {"idToken": "A", "type": "ISO14443"},
            "idTokenInfo": {
                "status": "Accepted",
                "cacheExpiryDateTime": "2026-11-21T13:00:00Z",
                "groupIdToken": {"idToken": "G", "type": "eMAID"},
            },
        },
        {"idToken": {"idToken": "B", "type": "KeyCode"}, "idTokenInfo": {"status": "Accepted"}},
        {"idToken": {"idToken": "GONE", "type": "KeyCode"}},
    ]
    assert payload("1.6", Update("Full", 1, {})) == {"listVersion": 1, "updateType": "Full"}
