"""Figures into words: medians of repeated runs with their spread, ours ÷ baseline, the targets,
a table for the terminal (or Markdown), the JSON record, and a one-line summary."""

from __future__ import annotations

import os
import platform
import statistics
from datetime import UTC, datetime
from typing import Any

import psutil

from .scenarios import Scenario
from .servers import BASELINE, OURS

LABELS: dict[str, str] = {
    "connected": "chargers connected (in the loop: S4, S6)",
    "booted": "chargers booted",
    "rss_per_conn_kb": "server RSS per connection (KiB)",
    "rss_after_mb": "server RSS with the fleet (MiB)",
    "server_cpu_pct": "server CPU (% of one core)",
    "client_cpu_pct": "load generator CPU (% of one core)",
    "calls_per_s": "replies per second",
    "p50_ms": "reply p50 (ms)",
    "p99_ms": "reply p99 (ms)",
    "max_ms": "reply max (ms)",
    "errors": "errors (CALLERROR + no reply)",
    "refused": "refused handshakes",
    "ramp_refused": "refused handshakes while connecting (retried)",
    "dropped": "dropped connections",
    "connect_p99_ms": "handshake p99 (ms)",
    "boot_p50_ms": "BootNotification p50 (ms)",
    "boot_p99_ms": "BootNotification p99 (ms)",
    "boot_max_ms": "BootNotification max (ms)",
    "storm_seconds": "storm over after (s)",
    "ramp_seconds": "fleet connected after (s)",
    "drain_seconds": "then busy with the connects' work for (s)",
    "drain_server_cpu_pct": "server CPU meanwhile (% of one core)",
    "commands_created_per_s": "commands created per second (of those offered)",
    "commands_per_s": "commands answered per second",
    "command_p50_ms": "command p50, created to charger (ms)",
    "command_p99_ms": "command p99 (ms)",
    "command_max_ms": "command max (ms)",
    "commands_lost": "commands not delivered",
    "paced_offered_per_s": "paced: calls per second offered",
    "paced_calls_per_s": "paced: replies per second",
    "paced_p50_ms": "paced: reply p50 (ms)",
    "paced_p99_ms": "paced: reply p99 (ms)",
    "paced_max_ms": "paced: reply max (ms)",
    "paced_errors": "paced: errors (CALLERROR + no reply)",
    "paced_server_cpu_pct": "paced: server CPU (% of one core)",
}

SERVERS = (BASELINE, OURS)


def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": model,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }


def aggregate(runs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]]]:
    """The median of every numeric figure over the runs, and its (min, max)."""
    median: dict[str, Any] = {}
    spread: dict[str, tuple[Any, Any]] = {}
    if not runs:
        return median, spread
    for key in runs[0]:
        values = [run[key] for run in runs if key in run]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values) and values:
            median[key] = round(statistics.median(values), 3)
            spread[key] = (min(values), max(values))
        else:
            median[key] = values[-1] if values else None
    return median, spread


def summarize_scenario(
    scenario: Scenario, runs: dict[str, list[dict[str, Any]]], notes: dict[str, str]
) -> dict[str, Any]:
    medians: dict[str, dict[str, Any]] = {}
    spreads: dict[str, dict[str, tuple[Any, Any]]] = {}
    for server, server_runs in runs.items():
        medians[server], spreads[server] = aggregate(server_runs)
    for server, note in notes.items():
        medians.setdefault(server, {})["not_available"] = note
    ratios: dict[str, float | None] = {}
    base, ours = medians.get(BASELINE), medians.get(OURS)
    if base and ours:
        for key in scenario.headline:
            b, o = base.get(key), ours.get(key)
            ratios[key] = (
                round(o / b, 2)
                if isinstance(b, int | float) and isinstance(o, int | float) and b
                else None
            )
    targets = []
    for target in scenario.targets:
        met = None
        if ours and "not_available" not in ours:
            met = target.check(ours, base)
        targets.append({"target": target.text, "met": met})
    return {
        "title": scenario.title,
        "sizes": scenario.sizes(),
        "headline": list(scenario.headline),
        "runs": runs,
        "median": medians,
        "spread": {server: {k: list(v) for k, v in s.items()} for server, s in spreads.items()},
        "ratios": ratios,
        "targets": targets,
    }


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == int(value) and abs(value) >= 100:
            return f"{int(value):,}"
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def _cell(summary: dict[str, Any], server: str, key: str) -> str:
    median = summary["median"].get(server)
    if median is None:
        return "not run"
    if "not_available" in median:
        return "n/a"
    value = median.get(key)
    low_high = summary["spread"].get(server, {}).get(key)
    text = _number(value)
    if low_high and low_high[0] != low_high[1]:
        text += f" ({_number(low_high[0])}-{_number(low_high[1])})"
    return text


def _verdict(met: bool | None) -> str:
    return "met" if met else "n/a" if met is None else "MISSED"


def table(key: str, summary: dict[str, Any], *, markdown: bool = False) -> str:
    header = ["figure", "baseline", "ours", "ours ÷ baseline"]
    rows = [
        [
            LABELS.get(k, k),
            _cell(summary, BASELINE, k),
            _cell(summary, OURS, k),
            _number(summary["ratios"].get(k)),
        ]
        for k in summary["headline"]
    ]
    title = f"{key.upper()} {summary['title']}: {summary['sizes']}"
    lines: list[str] = []
    if markdown:
        lines += [f"#### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    else:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines.append(title)
        for row in [header, *rows]:
            lines.append(
                "  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
            )
    for server in SERVERS:
        note = summary["median"].get(server, {}).get("not_available")
        if note:
            lines.append(f"  {server}: {note}" if not markdown else f"- {server}: {note}")
    for target in summary["targets"]:
        line = f"target ({'ours' if not markdown else 'full stack'}): {target['target']}: {_verdict(target['met'])}"
        lines.append(f"  {line}" if not markdown else f"- {line}")
    for server in SERVERS:
        median = summary["median"].get(server) or {}
        extras = []
        if median.get("refused_by"):
            extras.append(f"refused {median['refused_by']}")
        if median.get("dropped_by"):
            extras.append(f"dropped {median['dropped_by']}")
        if median.get("error_samples"):
            extras.append(f"errors e.g. {median['error_samples'][:2]}")
        if median.get("server_log_errors"):
            extras.append(f"{median['server_log_errors']} error lines in the server log")
        if median.get("ramp_complete") is False:
            extras.append("the fleet did not finish connecting within the ramp timeout")
        if extras:
            text = f"{server}: " + "; ".join(extras)
            lines.append(f"  {text}" if not markdown else f"- {text}")
    return "\n".join(lines)


def _figures_text(key: str, f: dict[str, Any], ratio: dict[str, float | None]) -> str:
    """The few figures that sum up one scenario on one server."""
    if key == "s1":
        text = f"{_number(f.get('rss_per_conn_kb'))} KiB/conn"
        if ratio.get("rss_per_conn_kb"):
            text += f" ({_number(ratio['rss_per_conn_kb'])}x)"
        return text + f", idle CPU {_number(f.get('server_cpu_pct'))}%"
    if key in ("s2", "s3"):
        return (
            f"p99 {_number(f.get('p99_ms'))} ms at {_number(f.get('calls_per_s'))}/s, "
            f"{f.get('errors', 0)} errors"
        )
    if key == "s4":
        text = f"{_number(f.get('calls_per_s'))} calls/s"
        if ratio.get("calls_per_s"):
            text += f" ({_number(ratio['calls_per_s'])}x)"
        text += f", p99 {_number(f.get('p99_ms'))} ms"
        if f.get("paced_calls_per_s") is not None:
            text += (
                f"; paced {_number(f.get('paced_calls_per_s'))}/s,"
                f" p99 {_number(f.get('paced_p99_ms'))} ms"
            )
        return text
    if key == "s5":
        return (
            f"{f.get('booted', 0)} booted, {f.get('refused', 0)} refused, "
            f"boot p99 {_number(f.get('boot_p99_ms'))} ms"
        )
    return f"{_number(f.get('commands_per_s'))} cmd/s, p99 {_number(f.get('command_p99_ms'))} ms"


def summary_line(results: dict[str, dict[str, Any]]) -> str:
    """One line for the whole invocation: per scenario, our figures and how many targets were met;
    the baseline's figures where ours are not available or were not run."""
    parts = []
    for key, summary in results.items():
        ours = summary["median"].get(OURS) or {}
        base = summary["median"].get(BASELINE) or {}
        ratio = summary["ratios"]
        if ours and "not_available" not in ours:
            text = _figures_text(key, ours, ratio)
        else:
            text = "ours n/a" if ours else ""
            if base:
                text += ", baseline " if text else "(baseline) "
                text += _figures_text(key, base, ratio)
        verdicts = [t["met"] for t in summary["targets"] if t["met"] is not None]
        if verdicts:
            text += f" [{sum(bool(v) for v in verdicts)}/{len(verdicts)} targets]"
        parts.append(f"{key.upper()} {text}")
    return "SUMMARY " + " | ".join(parts)


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
