"""``python -m bench <scenario>...``: run scenarios against the baseline and the full stack side
by side, print the table, write the JSON record, and end with a one-line summary.

    python -m bench all                 every scenario at full size, 3 runs each
    python -m bench s2 s4 --quick       small and fast
    python -m bench s1 --chargers 2000 --duration 30 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from cpms.serve import cores, keepalive_arguments

from . import report
from .database import ROOT, BenchDatabase, bench_database
from .dialects import PROTOCOLS
from .fleet import raise_open_files_limit
from .profile import describe, py_spy
from .scenarios import QUICK, SCENARIOS, Run, RunOptions, Scenario
from .servers import BASELINE, OURS, Server, stack_env

RESULTS_DIR = ROOT / "bench" / "results"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the full stack against a raw websockets baseline, side by side.",
        epilog="Scenarios: "
        + "; ".join(f"{s.key} {s.title} ({s.sizes()})" for s in SCENARIOS.values()),
    )
    parser.add_argument("scenarios", nargs="+", metavar="scenario", help="s1 .. s7, or all")
    parser.add_argument(
        "--quick", action="store_true", help="small, short runs (sizes in the output)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        help="runs per scenario and server; the median is shown (default 3, 1 with --quick)",
    )
    parser.add_argument(
        "--servers",
        default="baseline,ours",
        help="which servers to run: baseline,ours (default both)",
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, default="ocpp1.6")
    sizes = parser.add_argument_group("sizes and rates (override every selected scenario)")
    sizes.add_argument("--chargers", type=int, help="fleet size")
    sizes.add_argument("--duration", type=float, help="measured window, in seconds")
    sizes.add_argument(
        "--heartbeat-interval", type=float, help="seconds between heartbeats (s1-s3)"
    )
    sizes.add_argument(
        "--meter-interval", type=float, help="seconds between meter values while charging (s2, s3)"
    )
    sizes.add_argument(
        "--charging-share", type=float, help="share of the fleet charging at any time (s2, s3)"
    )
    sizes.add_argument("--session-seconds", type=float, help="mean session length (s2, s3)")
    sizes.add_argument(
        "--time-scale",
        type=float,
        help="divide every interval and the storm window by this (--quick: keep the full scenario's rates)",
    )
    sizes.add_argument(
        "--storm-window", type=float, help="seconds within which the storm's chargers connect (s5)"
    )
    sizes.add_argument("--command-rate", type=float, help="commands created per second (s6)")
    pacing = parser.add_argument_group("pacing and limits")
    pacing.add_argument(
        "--connect-rate",
        type=float,
        default=200.0,
        help="chargers started per second while a fleet connects (s1-s4, s6)",
    )
    pacing.add_argument(
        "--connect-retries",
        type=int,
        default=20,
        help="tries again after a refused handshake while a fleet connects, with backoff up to "
        "10 s, as chargers keep trying (each refusal is counted; the storm never retries)",
    )
    pacing.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds between the fleet being up and the measured window",
    )
    pacing.add_argument(
        "--ramp-timeout",
        type=float,
        default=900.0,
        help="longest wait for a fleet to connect, in seconds",
    )
    pacing.add_argument(
        "--open-timeout", type=float, default=30.0, help="handshake timeout, in seconds"
    )
    pacing.add_argument(
        "--call-timeout", type=float, default=30.0, help="seconds to wait for a reply"
    )
    pacing.add_argument("--backlog", type=int, default=2048, help="listen backlog of both servers")
    pacing.add_argument(
        "--processes",
        type=int,
        default=0,
        help="server processes of both servers on one port (0: one per core, as python -m "
        "cpms.serve runs ours; one without Redis)",
    )
    where = parser.add_argument_group("the full stack's services")
    where.add_argument(
        "--database-url",
        help="default: cpms_bench on the PostgreSQL server of DATABASE_URL, or var/bench.sqlite3 "
        "(embedded default) when DATABASE_URL is unset; a URL given here must name a database "
        "with 'bench' in its name, as it is dropped and recreated",
    )
    where.add_argument(
        "--redis-url", help="default: REDIS_URL; none means the in-memory channel layer"
    )
    where.add_argument(
        "--drop-database", action="store_true", help="drop the benchmark databases at the end"
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--json",
        type=Path,
        help=f"where to write the JSON record (default: {RESULTS_DIR.relative_to(ROOT)}/<time>-<scenarios>.json)",
    )
    out.add_argument("--markdown", type=Path, help="also write the tables as Markdown to this file")
    out.add_argument("--keep-logs", action="store_true", help="keep the server logs under var/")
    out.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the full stack with py-spy during each measured window; "
        "collapsed stacks go to DIR, a summary to the output",
    )
    return parser


def select(args: argparse.Namespace) -> list[Scenario]:
    keys: list[str] = []
    for name in args.scenarios:
        name = name.lower()
        if name == "all":
            keys += list(SCENARIOS)
        elif name in SCENARIOS:
            keys.append(name)
        else:
            raise SystemExit(
                f"unknown scenario {name!r}: choose from {', '.join(SCENARIOS)} or all"
            )
    chosen = []
    for key in dict.fromkeys(keys):
        scenario = SCENARIOS[key]
        if args.quick:
            scenario = replace(scenario, **QUICK[key])
        overrides: dict[str, Any] = {}
        for name in ("chargers", "duration", "storm_window", "command_rate"):
            if getattr(args, name) is not None:
                overrides[name] = getattr(args, name)
        scenario = replace(scenario, **overrides)
        plan_overrides = {
            name: getattr(args, name)
            for name in (
                "heartbeat_interval",
                "meter_interval",
                "charging_share",
                "session_seconds",
            )
            if getattr(args, name) is not None
        }
        if plan_overrides:
            scenario = replace(scenario, plan=replace(scenario.plan, **plan_overrides))
        if args.time_scale is not None:
            scenario = replace(scenario, time_scale=args.time_scale)
        elif args.quick and keeps_rate(scenario):
            scenario = replace(scenario, time_scale=SCENARIOS[key].chargers / scenario.chargers)
        chosen.append(scenario)
    return chosen


def keeps_rate(scenario: Scenario) -> bool:
    """Whether a quick run of the scenario shrinks its intervals with the fleet, so that it still
    offers the full scenario's calls or connections per second."""
    return scenario.kind == "storm" or (
        scenario.kind == "steady" and scenario.plan.charging_share > 0
    )


def server_processes(asked: int, *, redis: bool) -> int:
    """How many processes each server runs: ``asked``, or one per core; one without Redis, whose
    in-memory channel layer cannot reach another process."""
    if asked < 0:
        raise SystemExit(f"--processes must be 0 (one per core) or more, not {asked}")
    if not redis:
        if asked > 1:
            raise SystemExit(f"--processes {asked} needs Redis (--redis-url or REDIS_URL)")
        return 1
    return asked or cores()


def prepare_arguments(count: int, prefix: str, password: str) -> list[str]:
    """``bench.stack prepare``'s arguments; the password as one argument, since a generated
    one may begin with "-"."""
    return ["prepare", "--count", str(count), "--prefix", prefix, f"--password={password}"]


def run_stack_helper(env: dict[str, str], *arguments: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.stack", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise SystemExit(f"bench.stack {arguments[0]} failed:\n{completed.stderr[-4000:]}")
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    scenarios = select(args)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not servers or set(servers) - {BASELINE, OURS}:
        raise SystemExit("--servers takes baseline, ours or both")
    repeat = args.repeat or (1 if args.quick else 3)
    largest = max(s.chargers for s in scenarios)
    raise_open_files_limit(largest + 200)

    explicit = args.database_url is not None
    database = bench_database(
        args.database_url or os.environ.get("DATABASE_URL"), explicit=explicit
    )
    redis_url = args.redis_url if args.redis_url is not None else os.environ.get("REDIS_URL", "")
    args.processes = server_processes(args.processes, redis=bool(redis_url))
    options = RunOptions(
        protocol=args.protocol,
        connect_rate=args.connect_rate,
        connect_retries=args.connect_retries,
        settle=args.settle,
        ramp_timeout=args.ramp_timeout,
        open_timeout=args.open_timeout,
        call_timeout=args.call_timeout,
        stack_env=stack_env(database, redis_url),
        profile_dir=args.profile.resolve() if args.profile else None,
    )
    if args.profile:
        py_spy()
    stack_note = (
        f"{database.describe()}, "
        + (f"Redis channel layer {redis_url}" if redis_url else "in-memory channel layer")
        + ("" if redis_url or not database.embedded else "; DATABASE_URL unset")
    )
    if OURS in servers:
        print(f"full stack: python -m cpms.serve (daphne) on {stack_note}", flush=True)
    print(f"server processes: {args.processes} each", flush=True)
    keepalive = keepalive_arguments()
    print(f"keepalive ping after {keepalive[1]} s idle, {keepalive[3]} s timeout: both", flush=True)

    features: dict[str, Any] = {}
    if OURS in servers:
        database.reset_template()
        prepared = run_stack_helper(
            stack_env(database, redis_url, url=database.template_url),
            *prepare_arguments(largest, options.prefix, options.password),
        )
        features = run_stack_helper(options.stack_env, "features")
        print(
            f"registered {prepared['chargers']:,} chargers and {prepared['id_tokens']:,} id tokens "
            f"in {prepared['seconds']} s; the full stack speaks {', '.join(features['protocols'])}",
            flush=True,
        )

    record: dict[str, Any] = {
        "started_at": report.now_iso(),
        "machine": report.machine(),
        "quick": args.quick,
        "repeat": repeat,
        "protocol": args.protocol,
        "full_stack": stack_note,
        "server_processes": args.processes,
        "keepalive": {"ping_interval_s": int(keepalive[1]), "ping_timeout_s": int(keepalive[3])},
        "features": features,
        "scenarios": {},
    }
    run_number = 0
    try:
        for scenario in scenarios:
            print(f"\n== {scenario.key.upper()} {scenario.title}: {scenario.sizes()}", flush=True)
            runs: dict[str, list[dict[str, Any]]] = {server: [] for server in servers}
            notes = unavailable(scenario, servers, features, args.protocol)
            for attempt in range(repeat):
                for server_kind in servers:
                    if server_kind in notes:
                        continue
                    run_number += 1
                    figures = run_once(
                        scenario, server_kind, options, database, args, run_number, attempt + 1
                    )
                    runs[server_kind].append(figures)
                    print(
                        f"   run {attempt + 1}/{repeat} {server_kind}: {brief(scenario, figures)}",
                        flush=True,
                    )
                    if figures.get("profile"):
                        print(describe(figures["profile"]), flush=True)
            for server_kind in notes:
                runs.pop(server_kind, None)
            summary = report.summarize_scenario(scenario, runs, notes)
            record["scenarios"][scenario.key] = summary
            print(report.table(scenario.key, summary), flush=True)
    finally:
        if args.drop_database and OURS in servers:
            database.drop()
    record["finished_at"] = report.now_iso()
    record["summary"] = report.summary_line(record["scenarios"])
    write_outputs(record, args, scenarios)
    print(record["summary"], flush=True)
    return 0


def unavailable(
    scenario: Scenario, servers: list[str], features: dict[str, Any], protocol: str
) -> dict[str, str]:
    notes: dict[str, str] = {}
    if OURS not in servers:
        return notes
    if scenario.kind == "routing":
        # The baseline server is the upstream of this scenario, not a server under test.
        notes[BASELINE] = "not run: here it is the upstream that chargers reach directly"
    if protocol not in features.get("protocols", []):
        notes[OURS] = f"not available: the full stack does not speak {protocol} yet"
    elif scenario.kind == "commands" and not features.get("command_path"):
        notes[OURS] = (
            features.get("command_detail") or "not available: the command path does not exist yet"
        )
    return notes


def run_once(
    scenario: Scenario,
    server_kind: str,
    options: RunOptions,
    database: BenchDatabase,
    args: argparse.Namespace,
    run_number: int,
    seed: int,
) -> dict[str, Any]:
    """One run of ``scenario`` on a fresh server (and, for ours, a fresh copy of the database).
    Both servers get the same ``seed``, so they face the same fleet behaviour."""
    env = None
    if server_kind == OURS:
        database.clone()
        if scenario.kind == "storm":
            run_stack_helper(options.stack_env, "mark-connected", "--prefix", options.prefix)
        env = options.stack_env
    server = Server(server_kind, backlog=args.backlog, processes=args.processes, env=env)
    keep = args.keep_logs
    try:
        server.wait_listening()
        figures = asyncio.run(
            Run(scenario, server, options, run_number=run_number, seed=seed).execute()
        )
        if figures.get("server_log_errors") or not figures.get("server_alive", True):
            keep = True
            figures["server_log"] = str(server.log_path.relative_to(ROOT))
        return figures
    except BaseException:
        keep = True
        print(f"   {server_kind} server log: {server.log_path}", file=sys.stderr)
        raise
    finally:
        server.stop(keep_log=keep)


def brief(scenario: Scenario, figures: dict[str, Any]) -> str:
    keys = [k for k in scenario.headline if k in figures]
    return ", ".join(f"{k}={figures[k]}" for k in keys)


def write_outputs(
    record: dict[str, Any], args: argparse.Namespace, scenarios: list[Scenario]
) -> None:
    path = args.json
    if path is None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        names = "-".join(s.key for s in scenarios)
        path = RESULTS_DIR / f"{report.now_stamp()}-{names}{'-quick' if args.quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"\nJSON: {path}", flush=True)
    if args.markdown:
        tables = [
            report.table(key, summary, markdown=True)
            for key, summary in record["scenarios"].items()
        ]
        args.markdown.write_text("\n\n".join(tables) + "\n")
        print(f"Markdown: {args.markdown}", flush=True)
