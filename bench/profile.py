"""Sampling profiles of the full stack during a measured window, with py-spy.

``--profile DIR`` records every thread of the daphne process, idle time included (a thread waiting
on PostgreSQL or Redis is the point), as collapsed stacks: ``DIR/<scenario>-<run>.txt``, readable
by flamegraph.pl and speedscope. The harness reads them back into a short summary: how busy each
thread was, and where the time went, inclusive and by leaf frame.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# Frames of the project's own code (the rest is Django, Channels, daphne, drivers, the stdlib).
_OURS = re.compile(r"\((?:cpms|chargers|billing|routing|smartcharging)/")
_LINE = re.compile(r":\d+\)$")


def _idle(frames: list[str]) -> bool:
    """An event loop waiting in select, or an executor thread waiting for work (a thread waiting
    inside a call, on PostgreSQL or on the event loop, is busy: it cannot take other work)."""
    if "Selector.select (selectors.py" in frames[-1]:
        return True
    # A database lane waiting for its next call (a C-level queue get, so its own frame is the leaf;
    # py-spy names it with its class, or without in older versions).
    if re.match(r"(?:Lane\.)?_run \(chargers/dbpool\.py", frames[-1]):
        return True
    for frame, following in itertools.pairwise(frames):
        if frame.startswith("_worker (concurrent/futures/thread.py"):
            return "(queue.py" in following
    return False


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return found


class Profiler:
    def __init__(self, pid: int, seconds: float, path: Path, rate: int = 100) -> None:
        self.pid, self.seconds, self.path, self.rate = pid, seconds, path, rate
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            py_spy(),
            "record",
            "--pid",
            str(self.pid),
            "--idle",
            "--threads",
            "--format",
            "raw",
            "--rate",
            str(self.rate),
            "--duration",
            str(max(1, round(self.seconds))),
            "--output",
            str(self.path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )

    async def finish(self) -> dict[str, Any]:
        if self.process is None:
            return {}
        _, stderr = await self.process.communicate()
        if self.process.returncode != 0 or not self.path.exists():
            return {"error": stderr.decode(errors="replace")[-500:]}
        return {"file": str(self.path), **summarize(self.path)}


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    """Per thread, the share of samples not parked idle; then, over all busy samples, the heaviest
    frames of our code (inclusive) and the heaviest leaf frames of any code."""
    threads: Counter[str] = Counter()
    busy: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total_busy = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = re.sub(r"^thread \(\d+\): ", "", frames[0])
        threads[thread] += count
        leaf = frames[-1]
        if _idle(frames):
            continue
        busy[thread] += count
        total_busy += count
        leaves[_LINE.sub(")", leaf)] += count
        for frame in {_LINE.sub(")", f) for f in frames[1:] if _OURS.search(f)}:
            inclusive[frame] += count

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[frame, round(100 * n / total_busy, 1)] for frame, n in counter.most_common(top)]

    return {
        "threads_busy_pct": {t: round(100 * busy[t] / n, 1) for t, n in threads.most_common()},
        "busy_samples": total_busy,
        "ours_inclusive_pct": share(inclusive) if total_busy else [],
        "leaf_pct": share(leaves) if total_busy else [],
    }


def describe(summary: dict[str, Any], lines: int = 8) -> str:
    if not summary:
        return ""
    if "error" in summary:
        return f"  profile failed: {summary['error']}"
    out = [f"  profile: {summary['file']}"]
    threads = ", ".join(f"{t} {p}% busy" for t, p in summary["threads_busy_pct"].items())
    out.append(f"    threads: {threads}")
    out.append("    our code, inclusive (% of busy samples):")
    out += [f"      {pct:5.1f}%  {frame}" for frame, pct in summary["ours_inclusive_pct"][:lines]]
    out.append("    leaf frames:")
    out += [f"      {pct:5.1f}%  {frame}" for frame, pct in summary["leaf_pct"][:lines]]
    return "\n".join(out)
