"""Allocation time of the load-management engine for a large site, with no database.

``python -m bench.allocation`` builds a site of 1,000 connectors under a three-level tree (grid
connection, 10 feeders, 5 sub-panels per feeder, 20 connectors per sub-panel), with a mix of
three-phase and rotated single-phase chargers, priorities, deadlines and EVs that take less than
their maximum, and times ``smartcharging.engine.allocate`` over several runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from smartcharging.engine import Demand, Node, Problem, RateUnit, allocate, node_loads

PHASE_SETS = [(0, 1, 2), (1, 2, 0), (2, 0, 1), (0,), (1,), (2,)]


def site_problem(
    connectors: int = 1000, feeders: int = 10, panels: int = 5, seed: int = 1
) -> Problem:
    rng = random.Random(seed)
    nodes = [Node("site", None, (1600.0, 1600.0, 1600.0))]
    leaves: list[str] = []
    for f in range(feeders):
        nodes.append(Node(f"f{f}", "site", (250.0, 250.0, 250.0)))
        for p in range(panels):
            key = f"f{f}p{p}"
            nodes.append(Node(key, f"f{f}", (80.0, 80.0, 80.0)))
            leaves.append(key)
    demands = []
    for index in range(connectors):
        demands.append(
            Demand(
                key=index,
                node=leaves[index % len(leaves)],
                phases=rng.choice(PHASE_SETS),
                min_a=6.0,
                max_a=rng.choice([16.0, 32.0]),
                priority=rng.choice([0, 0, 0, 1, 2]),
                pause_allowed=rng.random() > 0.1,
                ev_max_a=rng.choice([None, None, rng.uniform(6, 32)]),
                needed_a=rng.choice([None, None, None, rng.uniform(6, 32)]),
                rate_unit=rng.choice(list(RateUnit)),
                age=index,
            )
        )
    return Problem(tuple(nodes), tuple(demands))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connectors", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    problem = site_problem(args.connectors)
    timings = []
    for _ in range(args.runs):
        started = time.perf_counter()
        result = allocate(problem)
        timings.append(time.perf_counter() - started)
    loads = node_loads(problem, result)
    over = [
        (node.key, phase)
        for node in problem.nodes
        for phase in range(3)
        if loads[node.key][phase] > node.limit_a[phase] + 1e-6
    ]
    paused = sum(1 for a in result.values() if a.paused)
    print(
        f"{args.connectors} connectors, {len(problem.nodes)} nodes (3 levels): "
        f"median {statistics.median(timings) * 1000:.1f} ms, "
        f"max {max(timings) * 1000:.1f} ms over {args.runs} runs; "
        f"{paused} paused; nodes over their limit: {len(over)}"
    )
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
