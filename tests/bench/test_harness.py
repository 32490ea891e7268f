"""Smoke test of the benchmark harness: a few chargers for a few seconds against both servers.

It checks that the harness produces its table, its JSON record and its summary line with sane
figures. It asserts no speed: benchmarks are not tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bench.cli import prepare_arguments
from bench.stack import build_parser
from chargers import models as charger_models

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def bench_database_url(tmp_path: Path) -> str:
    """A database of the harness's own, beside the suite's: PostgreSQL when DATABASE_URL is set,
    else a SQLite file (the embedded default)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url or url.startswith("sqlite:"):
        return f"sqlite:///{tmp_path / 'bench.sqlite3'}"
    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/')}_bench{os.getpid()}"[:60]
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


@pytest.fixture(scope="module")
def harness_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp_path = tmp_path_factory.mktemp("bench")
    json_path = tmp_path / "record.json"
    markdown_path = tmp_path / "tables.md"
    # Small and fast, with intervals short enough that heartbeats, meter values and sessions all
    # fall inside the window.
    command = [
        sys.executable, "-m", "bench", "s2", "s4", "s6",
        "--repeat", "1",
        "--chargers", "6",
        "--duration", "3",
        "--settle", "0.5",
        "--heartbeat-interval", "1",
        "--meter-interval", "0.5",
        "--charging-share", "0.5",
        "--session-seconds", "3",
        "--command-rate", "20",
        "--database-url", bench_database_url(tmp_path),
        "--drop-database",
        "--json", str(json_path),
        "--markdown", str(markdown_path),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    return {
        "stdout": completed.stdout,
        "record": json.loads(json_path.read_text()),
        "markdown": markdown_path.read_text(),
    }


def test_prints_a_table_per_scenario_and_ends_with_the_summary(harness_run):
    stdout = harness_run["stdout"]
    assert "S2 fleet, typical: 6 chargers" in stdout
    assert "S6 commands: 6 chargers" in stdout
    assert "ours ÷ baseline" in stdout
    assert "reply p99 (ms)" in stdout
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("SUMMARY S2 ")
    assert "| S6 " in last
    assert "#### S2 fleet, typical" in harness_run["markdown"]


def test_says_which_stack_it_measured(harness_run):
    record = harness_run["record"]
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        assert record["full_stack"].startswith("PostgreSQL ")
    else:
        assert "embedded default" in record["full_stack"]
    assert "ocpp1.6" in record["features"]["protocols"]
    assert record["machine"]["nproc"] >= 1
    # Both servers run one process per core on Redis, as python -m cpms.serve does; one without.
    expected = len(os.sched_getaffinity(0)) if os.environ.get("REDIS_URL") else 1
    assert record["server_processes"] == expected
    assert f"server processes: {expected} each" in harness_run["stdout"]
    # Both servers ping an idle socket as python -m cpms.serve has daphne do.
    assert record["keepalive"] == {"ping_interval_s": 300, "ping_timeout_s": 30}


@pytest.mark.parametrize("server", ["baseline", "ours"])
def test_fleet_figures_are_sane_on_both_servers(harness_run, server):
    figures = harness_run["record"]["scenarios"]["s2"]["median"][server]
    assert figures["connected"] == 6
    assert figures["replies"] > 0
    assert figures["calls_per_s"] > 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert figures["errors"] == 0, figures["error_samples"]
    assert figures["refused"] == 0, figures["refused_by"]
    assert figures["dropped"] == 0, figures["dropped_by"]
    assert figures["server_cpu_pct"] > 0
    assert figures["rss_after_mb"] > 0
    assert figures["server_log_errors"] == 0
    assert {"Heartbeat", "MeterValues", "StatusNotification"} <= set(figures["by_action"])


def test_ratios_compare_ours_with_the_baseline(harness_run):
    summary = harness_run["record"]["scenarios"]["s2"]
    medians = summary["median"]
    expected = round(medians["ours"]["p99_ms"] / medians["baseline"]["p99_ms"], 2)
    assert summary["ratios"]["p99_ms"] == expected
    assert [t["target"] for t in summary["targets"]] == ["p99 reply under 100 ms", "zero errors"]


@pytest.mark.parametrize("server", ["baseline", "ours"])
def test_the_closed_loop_runs_flat_out_then_at_the_set_pace(harness_run, server):
    summary = harness_run["record"]["scenarios"]["s4"]
    figures = summary["median"][server]
    assert figures["connected"] == 6
    assert figures["errors"] == 0, figures["error_samples"]
    # Six chargers, each calling every 0.5 s: 12 calls/s offered. Paced, the fleet waits for its
    # slots, so it cannot send more than its slots in the window (a few late calls caught up
    # aside); flat out it sends as fast as replies come back.
    assert figures["paced_offered_per_s"] == 12
    assert 0 < figures["paced_calls_per_s"] <= 12 + 6 / figures["paced_window_seconds"]
    assert figures["paced_calls_per_s"] < figures["calls_per_s"]
    assert 0 < figures["paced_p50_ms"] <= figures["paced_p99_ms"] <= figures["paced_max_ms"]
    assert figures["paced_errors"] == 0
    assert {"Heartbeat", "MeterValues"} == set(figures["paced_by_action"])
    assert "then paced, each charger calling every 0.5 s (~12 calls/s offered)" in summary["sizes"]
    target = summary["targets"][0]
    assert target["target"].endswith("(paced window)")


def test_commands_run_on_the_baseline_and_say_when_ours_has_no_command_path(harness_run):
    summary = harness_run["record"]["scenarios"]["s6"]
    baseline = summary["median"]["baseline"]
    assert baseline["commands_sent"] > 0
    assert baseline["commands_received"] == baseline["commands_sent"]
    assert baseline["command_p50_ms"] > 0
    ours = summary["median"]["ours"]
    if hasattr(charger_models, "Command"):
        assert "not_available" not in ours
        assert ours["commands_received"] > 0
    else:
        assert ours["not_available"].startswith(
            "not available: the command path does not exist yet"
        )
        assert "S6 ours n/a, baseline " in harness_run["stdout"].strip().splitlines()[-1]


def test_a_password_that_begins_with_a_dash_reaches_the_stack_helper():
    args = build_parser().parse_args(prepare_arguments(12, "BENCH-", "-Xy_9"))
    assert (args.command, args.count, args.prefix, args.password) == (
        "prepare",
        12,
        "BENCH-",
        "-Xy_9",
    )
