"""The allocation engine: shares a site's capacity between its charging sessions.

Pure: frozen dataclasses in (the circuit tree with per-phase limits, the sessions), a limit per
session out, no database and no clock. Currents are amperes per phase; each session draws the same
current on every grid phase it is wired to (after the charger's phase rotation).

How capacity is shared, in this order:

1. Sessions the system cannot steer (their charger refused its profile) are assumed to draw their
   maximum, and that is reserved first.
2. Admission: sessions are taken by rank (sessions that may not pause first, then priority, then
   urgency, then age) and each gets its minimum if that fits under every node above it on each
   of its phases; one that does not fit is paused (0 A). So when capacity runs out the lowest
   priority pauses first.
3. Filling, one priority at a time, highest first: within a priority, first the current that
   sessions with a deadline need to finish in time, then everyone's wanted current, each by
   max-min water-filling (every session's level rises together until it reaches what it wants or
   a node above it is full on one of its phases). A session wants the smaller of its charger's
   maximum and what its EV takes (``ev_max_a``): what an EV does not take is lent to the others.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

PHASES = 3
EPSILON = 1e-9


class RateUnit(StrEnum):
    AMPERE = "A"
    WATT = "W"


@dataclass(frozen=True, slots=True)
class Node:
    """A site's grid connection (no parent) or a circuit below it, with its limit per phase.

    ``limit_a`` holds L1, L2, L3; a single-phase node carries 0 on the phases it lacks.
    """

    key: str
    parent: str | None
    limit_a: tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class Demand:
    """One charging session as the engine sees it.

    ``phases`` are the grid phases (0, 1, 2 for L1, L2, L3) the charger draws from, after its
    rotation; ``min_a``/``max_a`` are the charger's per-phase bounds for the connector;
    ``needed_a`` is the current that would deliver the energy still needed before the departure
    time (None: no deadline); ``voltage`` converts amperes to watts for chargers that take W.
    """

    key: int
    node: str
    phases: tuple[int, ...]
    min_a: float = 6.0
    max_a: float = 32.0
    priority: int = 0
    pause_allowed: bool = True
    ev_max_a: float | None = None
    needed_a: float | None = None
    controllable: bool = True
    rate_unit: RateUnit = RateUnit.AMPERE
    voltage: float = 230.0
    age: int = 0  # smaller is older; breaks ties so older sessions keep their place


@dataclass(frozen=True, slots=True)
class Allocation:
    key: int
    limit_a: float
    # The limit in the charger's rate unit, rounded down to 0.1 (A or W).
    limit: float
    rate_unit: RateUnit
    paused: bool
    number_phases: int


@dataclass(frozen=True, slots=True)
class Problem:
    nodes: tuple[Node, ...]
    demands: tuple[Demand, ...]


@dataclass(slots=True)
class _Slot:
    """Mutable bookkeeping for one node and phase while allocating."""

    limit: float
    used: float = 0.0
    rising: int = 0
    members: list[int] = field(default_factory=list)

    @property
    def slack(self) -> float:
        return self.limit - self.used


class InvalidTree(ValueError):
    pass


def wanted(demand: Demand) -> float:
    """The most a session can use: its charger's maximum, or less when its EV takes less."""
    top = max(demand.max_a, 0.0)
    if demand.ev_max_a is not None:
        # Never below the minimum: a session runs at its minimum or not at all.
        top = min(top, max(demand.ev_max_a, floor_minimum(demand)))
    return top


def floor_minimum(demand: Demand) -> float:
    """The minimum the charger can run at, never above the maximum."""
    return max(0.0, min(demand.min_a, demand.max_a))


def ancestors(nodes: Iterable[Node]) -> dict[str, tuple[str, ...]]:
    """Each node's path up to its root, itself first; refuses unknown parents and cycles."""
    by_key = {node.key: node for node in nodes}
    paths: dict[str, tuple[str, ...]] = {}
    for node in by_key.values():
        path: list[str] = []
        current: Node | None = node
        while current is not None:
            if current.key in path:
                raise InvalidTree(f"circuit {current.key} is its own ancestor")
            path.append(current.key)
            if current.parent is None:
                current = None
            elif current.parent not in by_key:
                raise InvalidTree(f"circuit {current.key} hangs under unknown {current.parent}")
            else:
                current = by_key[current.parent]
        paths[node.key] = tuple(path)
    return paths


def _rank(demand: Demand) -> tuple[bool, int, float, int, int]:
    urgency = demand.needed_a / demand.max_a if demand.needed_a and demand.max_a > 0 else 0.0
    return (demand.pause_allowed, -demand.priority, -urgency, demand.age, demand.key)


def allocate(problem: Problem) -> dict[int, Allocation]:
    """A limit for every session such that no node is over its limit on any phase."""
    paths = ancestors(problem.nodes)
    by_key = {node.key: node for node in problem.nodes}
    slots: dict[tuple[str, int], _Slot] = {}
    for node in problem.nodes:
        for phase in range(PHASES):
            slots[(node.key, phase)] = _Slot(limit=max(0.0, node.limit_a[phase]))
    demands = {demand.key: demand for demand in problem.demands}
    touched: dict[int, list[_Slot]] = {}
    for demand in problem.demands:
        if demand.node not in by_key:
            raise InvalidTree(f"session {demand.key} is on unknown circuit {demand.node}")
        touched[demand.key] = [
            slots[(key, phase)] for key in paths[demand.node] for phase in set(demand.phases)
        ]
    current: dict[int, float] = {key: 0.0 for key in demands}

    def fits(key: int, amount: float) -> bool:
        return all(slot.slack + EPSILON >= amount for slot in touched[key])

    def take(key: int, amount: float) -> None:
        current[key] += amount
        for slot in touched[key]:
            slot.used += amount

    # 1. What cannot be steered is assumed to draw its maximum.
    for demand in problem.demands:
        if not demand.controllable:
            amount = demand.max_a
            if fits(demand.key, amount):
                take(demand.key, amount)
            else:
                # Reserve what is left: the rest is over the limit whatever we do.
                take(demand.key, max(0.0, min(slot.slack for slot in touched[demand.key])))

    # 2. Admission at the minimum, by rank.
    admitted: list[Demand] = []
    for demand in sorted((d for d in problem.demands if d.controllable), key=_rank):
        minimum = floor_minimum(demand)
        if wanted(demand) < EPSILON:
            continue
        if fits(demand.key, minimum):
            take(demand.key, minimum)
            admitted.append(demand)

    # 3. Filling, priority by priority: deadlines first, then everyone.
    for priority in sorted({d.priority for d in admitted}, reverse=True):
        level = [d for d in admitted if d.priority == priority]
        needs = {
            d.key: min(wanted(d), d.needed_a)
            for d in level
            if d.needed_a is not None and d.needed_a > current[d.key]
        }
        if needs:
            _water_fill(needs, current, touched)
        _water_fill({d.key: wanted(d) for d in level}, current, touched)

    return {key: _allocation(demands[key], amount) for key, amount in current.items()}


def _water_fill(
    caps: dict[int, float], current: dict[int, float], touched: dict[int, list[_Slot]]
) -> None:
    """Raise the sessions of ``caps`` together (max-min fair) until each reaches its cap or a
    node above it is full on one of its phases."""
    active = {key for key, cap in caps.items() if cap > current[key] + EPSILON}
    active = {key for key in active if all(slot.slack > EPSILON for slot in touched[key])}
    if not active:
        return
    # Sessions join the rising group when the level reaches their current allocation.
    waiting = sorted((current[key], key) for key in active)
    level = waiting[0][0]
    rising: set[int] = set()
    joined = 0
    slot_ids: dict[int, _Slot] = {}
    # Rising sessions freeze when they reach their cap.
    cap_heap: list[tuple[float, int]] = []

    def join(key: int) -> None:
        rising.add(key)
        heapq.heappush(cap_heap, (caps[key], key))
        for slot in touched[key]:
            slot.rising += 1
            slot.members.append(key)
            slot_ids[id(slot)] = slot

    def freeze(key: int) -> None:
        rising.discard(key)
        current[key] = min(level, caps[key])
        for slot in touched[key]:
            slot.rising -= 1

    while True:
        while joined < len(waiting) and waiting[joined][0] <= level + EPSILON:
            key = waiting[joined][1]
            joined += 1
            if key in active:
                join(key)
        if not rising:
            if joined >= len(waiting):
                break
            level = waiting[joined][0]
            continue
        while cap_heap and cap_heap[0][1] not in rising:
            heapq.heappop(cap_heap)
        step = math.inf
        if cap_heap:
            step = cap_heap[0][0] - level
        if joined < len(waiting):
            step = min(step, waiting[joined][0] - level)
        for slot in slot_ids.values():
            if slot.rising > 0:
                step = min(step, slot.slack / slot.rising)
        step = max(step, 0.0)
        if step == math.inf:  # pragma: no cover - every session has a finite cap
            break
        level += step
        for slot in slot_ids.values():
            if slot.rising > 0:
                slot.used += step * slot.rising
        # Who can rise no further: at their cap, or under a full node on one of their phases.
        while cap_heap and (cap_heap[0][1] not in rising or cap_heap[0][0] <= level + EPSILON):
            _, key = heapq.heappop(cap_heap)
            if key in rising:
                freeze(key)
        for slot in list(slot_ids.values()):
            if slot.rising > 0 and slot.slack <= EPSILON:
                for key in slot.members:
                    if key in rising:
                        freeze(key)
                    active.discard(key)
        for key in list(rising):
            current[key] = level
    for key in rising:
        current[key] = min(level, caps[key])
    for slot in slot_ids.values():
        slot.rising = 0
        slot.members.clear()


def _allocation(demand: Demand, amount: float) -> Allocation:
    amount = max(0.0, amount)
    phases = max(1, len(set(demand.phases)))
    if demand.rate_unit == RateUnit.WATT:
        limit = math.floor(amount * demand.voltage * phases * 10 + EPSILON) / 10
    else:
        limit = math.floor(amount * 10 + EPSILON) / 10
    return Allocation(
        key=demand.key,
        limit_a=amount,
        limit=limit,
        rate_unit=demand.rate_unit,
        paused=amount < EPSILON,
        number_phases=phases,
    )


def node_loads(problem: Problem, allocations: dict[int, Allocation]) -> dict[str, list[float]]:
    """The current each node carries per phase under the given allocations."""
    paths = ancestors(problem.nodes)
    loads = {node.key: [0.0] * PHASES for node in problem.nodes}
    for demand in problem.demands:
        amount = allocations[demand.key].limit_a
        for key in paths[demand.node]:
            for phase in set(demand.phases):
                loads[key][phase] += amount
    return loads


def safe_shares(
    nodes: Sequence[Node], outlets: Sequence[tuple[int, str, tuple[int, ...]]]
) -> dict[int, float]:
    """The per-phase current each outlet may draw when no one steers it.

    ``outlets`` are (key, circuit, phases). Each node's limit on a phase is split evenly between
    the outlets below it that draw on that phase, and an outlet gets the smallest split on its
    path: all of them drawing that at once keeps every node under its limit on every phase.
    """
    paths = ancestors(nodes)
    by_key = {node.key: node for node in nodes}
    below: dict[tuple[str, int], int] = {}
    for _, circuit, phases in outlets:
        for ancestor in paths[circuit]:
            for phase in set(phases):
                below[(ancestor, phase)] = below.get((ancestor, phase), 0) + 1
    shares: dict[int, float] = {}
    for key, circuit, phases in outlets:
        share = math.inf
        for ancestor in paths[circuit]:
            for phase in set(phases):
                limit = max(0.0, by_key[ancestor].limit_a[phase])
                share = min(share, limit / below[(ancestor, phase)])
        shares[key] = 0.0 if share == math.inf else math.floor(share * 10 + EPSILON) / 10
    return shares
