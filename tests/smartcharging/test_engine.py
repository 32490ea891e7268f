"""The allocation engine, with no database: examples and properties over random trees."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartcharging.engine import (
    EPSILON,
    Demand,
    InvalidTree,
    Node,
    Problem,
    RateUnit,
    allocate,
    ancestors,
    node_loads,
    safe_shares,
    wanted,
)

THREE = (0, 1, 2)
TOLERANCE = 1e-6


def site(limit: float, *circuits: Node) -> tuple[Node, ...]:
    return (Node("site", None, (limit, limit, limit)), *circuits)


def limits(problem: Problem) -> dict[int, float]:
    return {key: a.limit_a for key, a in allocate(problem).items()}


def test_a_full_site_is_shared_evenly_and_a_third_car_reshares_it() -> None:
    nodes = site(63)
    two = Problem(nodes, (Demand(1, "site", THREE), Demand(2, "site", THREE)))
    assert limits(two) == {1: 31.5, 2: 31.5}
    three = Problem(nodes, (*two.demands, Demand(3, "site", THREE)))
    assert limits(three) == pytest.approx({1: 21.0, 2: 21.0, 3: 21.0})


def test_a_session_that_cannot_get_its_minimum_is_paused_lowest_priority_first() -> None:
    nodes = site(16)
    problem = Problem(
        nodes,
        (
            Demand(1, "site", THREE, priority=0),
            Demand(2, "site", THREE, priority=5),
            Demand(3, "site", THREE, priority=1),
        ),
    )
    result = allocate(problem)
    assert result[1].paused and result[1].limit_a == 0
    assert result[2].limit_a == pytest.approx(10.0)
    assert result[3].limit_a == pytest.approx(6.0)


def test_a_higher_priority_is_filled_before_a_lower_one() -> None:
    problem = Problem(
        site(40),
        (Demand(1, "site", THREE, priority=1), Demand(2, "site", THREE, priority=0)),
    )
    assert limits(problem) == pytest.approx({1: 32.0, 2: 8.0})


def test_what_a_full_ev_leaves_is_lent_to_the_others() -> None:
    problem = Problem(
        site(40),
        (Demand(1, "site", THREE, ev_max_a=8), Demand(2, "site", THREE)),
    )
    assert limits(problem) == pytest.approx({1: 8.0, 2: 32.0})


def test_a_session_with_a_deadline_gets_what_it_needs_first() -> None:
    problem = Problem(
        site(40),
        (Demand(1, "site", THREE, needed_a=28), Demand(2, "site", THREE)),
    )
    assert limits(problem) == pytest.approx({1: 28.0, 2: 12.0})


def test_circuits_limit_their_own_chargers_and_the_rest_goes_elsewhere() -> None:
    nodes = site(60, Node("garage", "site", (10, 10, 10)))
    problem = Problem(
        nodes,
        (
            Demand(1, "garage", THREE, min_a=0),
            Demand(2, "garage", THREE, min_a=0),
            Demand(3, "site", THREE),
        ),
    )
    assert limits(problem) == pytest.approx({1: 5.0, 2: 5.0, 3: 32.0})


def test_single_phase_chargers_on_different_phases_do_not_compete() -> None:
    problem = Problem(
        site(16),
        (Demand(1, "site", (0,)), Demand(2, "site", (1,)), Demand(3, "site", (1,))),
    )
    assert limits(problem) == pytest.approx({1: 16.0, 2: 8.0, 3: 8.0})


def test_watt_chargers_get_their_limit_in_watts_for_their_phase_count() -> None:
    problem = Problem(
        site(16),
        (
            Demand(1, "site", THREE, rate_unit=RateUnit.WATT, max_a=16),
            Demand(2, "site", (2,), rate_unit=RateUnit.WATT, max_a=16, min_a=0),
        ),
    )
    result = allocate(problem)
    # Phase L3 is shared by both; L1 and L2 only by the first.
    assert result[1].limit_a == pytest.approx(8.0)
    assert result[1].limit == pytest.approx(8 * 230 * 3)
    assert result[1].number_phases == 3
    assert result[2].limit == pytest.approx(8 * 230)
    assert result[2].number_phases == 1


def test_a_charger_that_cannot_be_steered_is_counted_at_its_maximum() -> None:
    problem = Problem(
        site(40),
        (Demand(1, "site", THREE, max_a=32, controllable=False), Demand(2, "site", THREE)),
    )
    assert limits(problem) == pytest.approx({1: 32.0, 2: 8.0})


def test_sessions_that_may_not_pause_keep_their_minimum_before_the_others() -> None:
    problem = Problem(
        site(10),
        (
            Demand(1, "site", THREE, priority=9),
            Demand(2, "site", THREE, pause_allowed=False),
        ),
    )
    assert limits(problem) == pytest.approx({1: 0.0, 2: 10.0})


def test_a_broken_tree_is_refused() -> None:
    with pytest.raises(InvalidTree):
        ancestors([Node("a", "b", (1, 1, 1)), Node("b", "a", (1, 1, 1))])
    with pytest.raises(InvalidTree):
        allocate(Problem(site(10), (Demand(1, "nowhere", THREE),)))


def test_safe_shares_split_every_node_between_the_outlets_below_it() -> None:
    nodes = site(63, Node("a", "site", (20, 20, 20)))
    outlets = [(1, "a", THREE), (2, "a", THREE), (3, "site", THREE), (4, "site", (0,))]
    shares = safe_shares(nodes, outlets)
    # L1 carries four outlets: 63 / 4 = 15.75; circuit a splits 20 in two.
    assert shares == {1: 10.0, 2: 10.0, 3: 15.7, 4: 15.7}


# --- Properties -----------------------------------------------------------------------------------


@st.composite
def problems(draw: Any) -> Problem:
    count = draw(st.integers(min_value=1, max_value=7))
    nodes = [Node("n0", None, tuple(draw(st.floats(0, 120)) for _ in range(3)))]  # type: ignore[arg-type]
    for index in range(1, count):
        parent = nodes[draw(st.integers(0, index - 1))].key
        nodes.append(
            Node(f"n{index}", parent, tuple(draw(st.floats(0, 80)) for _ in range(3)))  # type: ignore[arg-type]
        )
    demands = []
    for key in range(draw(st.integers(0, 14))):
        phases = draw(st.sampled_from([(0,), (1,), (2,), THREE, (1, 2, 0), (2, 0, 1), (0, 1)]))
        max_a = draw(st.floats(0, 63))
        demands.append(
            Demand(
                key=key,
                node=draw(st.sampled_from(nodes)).key,
                phases=phases,
                min_a=draw(st.sampled_from([0.0, 6.0, 8.0, 10.0])),
                max_a=max_a,
                priority=draw(st.integers(0, 3)),
                pause_allowed=draw(st.booleans()),
                ev_max_a=draw(st.none() | st.floats(0, 63)),
                needed_a=draw(st.none() | st.floats(0, 63)),
                rate_unit=draw(st.sampled_from(list(RateUnit))),
                age=key,
            )
        )
    return Problem(tuple(nodes), tuple(demands))


def slack(problem: Problem, loads: dict[str, list[float]], demand: Demand) -> float:
    """The least room left on the path of a session, over its phases."""
    path = ancestors(problem.nodes)[demand.node]
    by_key = {n.key: n for n in problem.nodes}
    return min(by_key[k].limit_a[p] - loads[k][p] for k in path for p in set(demand.phases))


@settings(max_examples=400, deadline=None)
@given(problems())
def test_no_node_is_over_its_limit_on_any_phase(problem: Problem) -> None:
    loads = node_loads(problem, allocate(problem))
    for node in problem.nodes:
        for phase in range(3):
            assert loads[node.key][phase] <= node.limit_a[phase] + TOLERANCE


@settings(max_examples=400, deadline=None)
@given(problems())
def test_every_session_gets_its_minimum_or_is_paused_and_never_more_than_it_takes(
    problem: Problem,
) -> None:
    result = allocate(problem)
    for demand in problem.demands:
        amount = result[demand.key].limit_a
        minimum = min(demand.min_a, demand.max_a)
        assert amount == 0 or amount >= minimum - TOLERANCE
        assert amount <= wanted(demand) + TOLERANCE
        assert result[demand.key].paused == (amount < EPSILON)
        # The limit in the charger's unit never exceeds the current it stands for.
        factor = demand.voltage * len(set(demand.phases)) if demand.rate_unit == "W" else 1
        assert result[demand.key].limit <= amount * factor + TOLERANCE


@settings(max_examples=400, deadline=None)
@given(problems())
def test_no_capacity_is_idle_while_a_session_wants_more(problem: Problem) -> None:
    result = allocate(problem)
    loads = node_loads(problem, result)
    for demand in problem.demands:
        amount = result[demand.key].limit_a
        if amount > 0 and amount < wanted(demand) - 1e-6:
            # It could take more only if every node on its path had room on its phases.
            assert slack(problem, loads, demand) <= 1e-6


@settings(max_examples=400, deadline=None)
@given(problems())
def test_a_paused_session_did_not_fit_beside_those_ranked_above_it(problem: Problem) -> None:
    """Pausing goes lowest priority first: a session is paused only if its minimum did not fit
    next to the minimums of the sessions ranked above it (higher priority, or that may not pause)."""
    result = allocate(problem)
    by_key = {n.key: n for n in problem.nodes}
    paths = ancestors(problem.nodes)
    for paused in problem.demands:
        minimum = min(paused.min_a, paused.max_a)
        if not result[paused.key].paused or wanted(paused) < EPSILON or minimum < EPSILON:
            continue
        above = [
            d
            for d in problem.demands
            if d.key != paused.key
            and result[d.key].limit_a > 0
            and (
                (not d.pause_allowed and paused.pause_allowed)
                or (d.pause_allowed == paused.pause_allowed and d.priority >= paused.priority)
            )
        ]
        room = []
        for key in paths[paused.node]:
            for phase in set(paused.phases):
                taken = sum(
                    min(d.min_a, d.max_a)
                    for d in above
                    if key in paths[d.node] and phase in d.phases
                )
                room.append(by_key[key].limit_a[phase] - taken)
        assert min(room) < minimum + 1e-6


@settings(max_examples=300, deadline=None)
@given(problems())
def test_sessions_of_one_priority_on_the_same_circuit_and_phases_share_evenly(
    problem: Problem,
) -> None:
    result = allocate(problem)
    groups: dict[tuple[str, frozenset[int], int], list[Demand]] = {}
    for demand in problem.demands:
        if demand.needed_a is None and result[demand.key].limit_a > 0:
            groups.setdefault((demand.node, frozenset(demand.phases), demand.priority), []).append(
                demand
            )
    for members in groups.values():
        for a in members:
            for b in members:
                # One gets less than the other only when it wants no more, or its minimum lifts
                # the other.
                if result[a.key].limit_a < result[b.key].limit_a - 1e-6:
                    assert (
                        result[a.key].limit_a >= wanted(a) - 1e-6
                        or result[b.key].limit_a <= min(b.min_a, b.max_a) + 1e-6
                    )


@settings(max_examples=200, deadline=None)
@given(problems())
def test_higher_priorities_are_not_held_back_for_lower_ones(problem: Problem) -> None:
    """On a single node and phase set, a session below what it wants sees no lower-priority
    session above its minimum."""
    result = allocate(problem)
    for a in problem.demands:
        amount = result[a.key].limit_a
        if amount <= 0 or amount >= wanted(a) - 1e-6:
            continue
        for b in problem.demands:
            if (
                b.priority < a.priority
                and b.node == a.node
                and set(b.phases) == set(a.phases)
                and b.needed_a is None
                and a.needed_a is None
            ):
                assert result[b.key].limit_a <= min(b.min_a, b.max_a) + 1e-6
