"""Id remapping between a charger and its upstreams: pure, no I/O."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from routing import remap
from routing.gateway import reconnect_delay


def test_fresh_message_ids_are_unique_and_never_the_same_across_legs() -> None:
    a, b = remap.MessageIds(), remap.MessageIds()
    ids = [a.fresh() for _ in range(1000)] + [b.fresh() for _ in range(1000)]
    assert len(set(ids)) == 2000
    assert all(len(message_id) <= 36 for message_id in ids)


def test_meter_values_wait_for_the_observers_transaction_id() -> None:
    ids = remap.TransactionIds()
    meter = {"connectorId": 1, "transactionId": 5000, "meterValue": []}
    assert remap.to_upstream("MeterValues", meter, "1.6", ids) == remap.Held(5000)
    ids.charger_assigned("start-1", 5000)
    assert remap.to_upstream("MeterValues", meter, "1.6", ids) == remap.Held(5000)
    ids.upstream_assigned("start-1", 7000)
    assert remap.to_upstream("MeterValues", meter, "1.6", ids) == {**meter, "transactionId": 7000}
    stop = {"transactionId": 5000, "meterStop": 10, "timestamp": "2026-01-01T00:00:00Z"}
    assert remap.to_upstream("StopTransaction", stop, "1.6", ids)["transactionId"] == 7000
    # The charger's frame is not changed in place.
    assert meter["transactionId"] == 5000


def test_the_upstream_answering_first_is_linked_when_the_primary_answers() -> None:
    ids = remap.TransactionIds()
    ids.upstream_assigned("start-1", 7)
    assert ids.to_upstream(1) is None
    ids.charger_assigned("start-1", 1)
    assert (ids.to_upstream(1), ids.to_charger(7)) == (7, 1)


def test_frames_without_transactions_and_2x_frames_pass_through() -> None:
    ids = remap.TransactionIds()
    meter = {"connectorId": 1, "meterValue": []}
    assert remap.to_upstream("MeterValues", meter, "1.6", ids) is meter
    event = {"eventType": "Updated", "transactionInfo": {"transactionId": "abc"}}
    assert remap.to_upstream("TransactionEvent", event, "2.0.1", ids) is event
    stop = {"transactionId": "abc"}
    assert remap.to_charger("RequestStopTransaction", stop, "2.0.1", ids) is stop


def test_upstream_calls_are_mapped_back_and_unknown_ids_refused() -> None:
    ids = remap.TransactionIds()
    ids.charger_assigned("s", 5000)
    ids.upstream_assigned("s", 9000)
    assert remap.to_charger("RemoteStopTransaction", {"transactionId": 9000}, "1.6", ids) == {
        "transactionId": 5000
    }
    assert remap.to_charger(
        "RemoteStopTransaction", {"transactionId": 1}, "1.6", ids
    ) == remap.Unknown(1)
    profile = {
        "connectorId": 1,
        "csChargingProfiles": {"chargingProfileId": 1, "transactionId": 9000},
    }
    mapped = remap.to_charger("SetChargingProfile", profile, "1.6", ids)
    assert isinstance(mapped, dict)
    assert mapped["csChargingProfiles"]["transactionId"] == 5000
    assert profile["csChargingProfiles"]["transactionId"] == 9000


def test_transactional_frames() -> None:
    assert remap.is_transactional("StartTransaction", {}, "1.6")
    assert remap.is_transactional("MeterValues", {"transactionId": 3}, "1.6")
    assert not remap.is_transactional("MeterValues", {"connectorId": 1}, "1.6")
    assert remap.is_transactional("TransactionEvent", {}, "2.0.1")
    assert not remap.is_transactional("StatusNotification", {}, "2.0.1")


def test_protected_keys() -> None:
    protected = frozenset({"CentralSystemUrl", "OCPPCommCtrlr.NetworkConfigurationPriority"})
    assert (
        remap.protected_key("ChangeConfiguration", {"key": "CentralSystemUrl"}, protected)
        == "CentralSystemUrl"
    )
    assert (
        remap.protected_key("ChangeConfiguration", {"key": "HeartbeatInterval"}, protected) is None
    )
    set_variables: dict[str, Any] = {
        "setVariableData": [
            {
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "NetworkConfigurationPriority"},
                "attributeValue": "2",
            }
        ]
    }
    assert remap.protected_key("SetVariables", set_variables, protected) == (
        "OCPPCommCtrlr.NetworkConfigurationPriority"
    )
    assert remap.protected_key("SetVariables", set_variables, frozenset()) is None


transaction_ids = st.integers(min_value=1, max_value=2**31 - 1)


@given(
    st.lists(
        st.tuples(transaction_ids, transaction_ids),
        min_size=1,
        max_size=30,
        unique_by=(
            lambda pair: pair[0],
            lambda pair: pair[1],
        ),
    ),
    st.data(),
)
def test_every_transaction_maps_there_and_back_and_nothing_goes_out_unmapped(
    pairs: list[tuple[int, int]], data: st.DataObject
) -> None:
    """Whatever order the primary's and the observer's answers come in, a frame goes out only
    with the observer's own id for its transaction, and that id maps back to the charger's."""
    ids = remap.TransactionIds()
    events = [("charger", n) for n in range(len(pairs))] + [
        ("upstream", n) for n in range(len(pairs))
    ]
    order = data.draw(st.permutations(events))
    known: set[int] = set()
    for side, n in order:
        charger_id, upstream_id = pairs[n]
        if side == "charger":
            ids.charger_assigned(f"start-{n}", charger_id)
        else:
            ids.upstream_assigned(f"start-{n}", upstream_id)
        for m, (c, u) in enumerate(pairs):
            out = remap.to_upstream("MeterValues", {"transactionId": c}, "1.6", ids)
            if isinstance(out, remap.Held):
                assert out.transaction_id == c
            else:
                assert out["transactionId"] == u
                known.add(m)
                back = remap.to_charger("RemoteStopTransaction", {"transactionId": u}, "1.6", ids)
                assert back == {"transactionId": c}
    assert known == set(range(len(pairs)))


@given(
    st.integers(min_value=0, max_value=10_000),
    st.floats(min_value=0.01, max_value=10),
    st.floats(min_value=0.01, max_value=600),
    st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_reconnect_delays_grow_with_jitter_and_stay_under_the_cap(
    attempt: int, base: float, cap: float, rand: float
) -> None:
    delay = reconnect_delay(attempt, base=base, cap=cap, rand=rand)
    ceiling = min(cap, base * 2 ** min(attempt, 32))
    assert ceiling / 2 <= delay <= ceiling
    assert delay <= cap
    later = reconnect_delay(attempt + 1, base=base, cap=cap, rand=rand)
    assert later >= delay
