"""Configuration drift, pure: desired against reported, and the last apply's answers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from operations.drift import Applied, Desired, DriftState, Reported, report, same


def test_each_state_of_a_value():
    result = report(
        [
            Desired("HeartbeatInterval", "HeartbeatInterval", "300"),
            Desired("MeterValueSampleInterval", "MeterValueSampleInterval", "60"),
            Desired("AuthorizeRemoteTxRequests", "AuthorizeRemoteTxRequests", "true"),
            Desired("LocalAuthListEnabled", "LocalAuthListEnabled", "true"),
        ],
        {
            "HeartbeatInterval": Reported("300"),
            "MeterValueSampleInterval": Reported("900"),
            "AuthorizeRemoteTxRequests": Reported("TRUE", readonly=True),
        },
        {"MeterValueSampleInterval": Applied("60", "Rejected")},
        ever_reported=True,
    )
    states = {row.ref: row.state for row in result.rows}
    assert states == {
        "HeartbeatInterval": DriftState.MATCHING,
        "MeterValueSampleInterval": DriftState.DIFFERING,
        "AuthorizeRemoteTxRequests": DriftState.MATCHING,
        "LocalAuthListEnabled": DriftState.MISSING,
    }
    assert [row.ref for row in result.to_apply] == [
        "MeterValueSampleInterval",
        "LocalAuthListEnabled",
    ]
    assert [row.ref for row in result.rows if row.refused] == ["MeterValueSampleInterval"]
    assert result.counts == {"matching": 2, "differing": 1, "missing": 1, "unknown": 0}
    assert not result.in_line


def test_a_charger_that_never_reported_is_unknown_not_missing():
    result = report([Desired("A", "A", "1")], {}, ever_reported=False)
    assert [row.state for row in result.rows] == [DriftState.UNKNOWN]
    assert [row.ref for row in result.to_apply] == ["A"]


def test_a_read_only_value_that_differs_is_not_sent():
    result = report(
        [Desired("NumberOfConnectors", "NumberOfConnectors", "2")],
        {"NumberOfConnectors": Reported("1", readonly=True)},
        ever_reported=True,
    )
    assert result.rows[0].state == DriftState.DIFFERING
    assert result.to_apply == ()


def test_a_value_left_out_counts_as_missing():
    result = report(
        [Desired("A", "A", "1")], {"A": Reported("", has_value=False)}, ever_reported=True
    )
    assert result.rows[0].state == DriftState.MISSING


def test_values_compare_as_a_charger_means_them():
    assert same("60", "60.0")
    assert same("true", "True")
    assert not same("60", "61")
    assert not same("abc", "ABC")


values = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.sampled_from(["true", "false", "True"]),
    st.text(max_size=8),
)


@given(values, values)
def test_sameness_is_symmetric(a, b):
    assert same(a, b) == same(b, a)


@given(
    st.dictionaries(st.text(min_size=1, max_size=5), values, max_size=8),
    st.dictionaries(st.text(min_size=1, max_size=5), st.tuples(values, st.booleans()), max_size=8),
    st.booleans(),
)
def test_every_desired_value_has_one_row_and_matching_ones_are_never_sent(desired, seen, ever):
    result = report(
        [Desired(k, k, v) for k, v in desired.items()],
        {k: Reported(v, readonly=ro) for k, (v, ro) in seen.items()},
        ever_reported=ever,
    )
    assert [row.ref for row in result.rows] == list(desired)
    assert sum(result.counts.values()) == len(desired)
    for row in result.to_apply:
        assert row.state != DriftState.MATCHING and not row.readonly
    if not ever:
        assert all(row.state == DriftState.UNKNOWN for row in result.rows if row.ref not in seen)
