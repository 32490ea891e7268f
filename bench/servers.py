"""The two servers under test, each a subprocess on a free port: the baseline (``bench.baseline``)
and the full stack (``python -m cpms.serve``: daphne processes on the benchmark's database and
Redis). Their resident memory is read with psutil; their CPU time from the kernel's per-process
CPU clock where there is one (Linux), which counts nanoseconds, not 10 ms ticks."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from cpms.serve import keepalive_arguments

from .database import ROOT, BenchDatabase

BASELINE = "baseline"
OURS = "ours"

# The scheduler's runtime clock of a process CPU clock id (include/linux/posix-timers.h).
_CPUCLOCK_SCHED = 2

_ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|^Traceback")


def process_cpu_seconds(process: psutil.Process) -> float:
    """CPU time of every thread the process has run, ended threads included.

    On Linux this reads the process's CPU clock (what ``clock_getcpuclockid`` returns: the pid,
    complemented and shifted, with the scheduler clock's id), exact to the nanosecond. psutil's
    ``cpu_times`` counts in clock ticks (10 ms): a server that answers a handful of frames can
    read as zero, and a low idle figure is coarse. Elsewhere psutil's figure is used.
    Raises ``psutil.NoSuchProcess`` when the process is gone."""
    if sys.platform == "linux":
        try:
            return time.clock_gettime((~process.pid << 3) | _CPUCLOCK_SCHED)
        except OSError as error:
            raise psutil.NoSuchProcess(process.pid) from error
    times = process.cpu_times()
    return times.user + times.system


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_env(
    database: BenchDatabase, redis_url: str | None, *, url: str | None = None
) -> dict[str, str]:
    """The environment of a full-stack process: the benchmark database, Redis when given, and the
    production defaults for everything else."""
    env = {
        key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "DATABASE_URL")
    }
    env["DATABASE_URL"] = url or database.url
    env["DJANGO_SETTINGS_MODULE"] = "cpms.settings"
    env["PYTHONUNBUFFERED"] = "1"
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


class Server:
    """One server process; ``kind`` is ``baseline`` or ``ours``."""

    def __init__(
        self, kind: str, *, backlog: int, processes: int = 1, env: dict[str, str] | None = None
    ) -> None:
        self.kind = kind
        self.processes = processes
        self.port = free_port()
        self.log_path = ROOT / "var" / f"bench-{kind}-{self.port}.log"
        self.log_path.parent.mkdir(exist_ok=True)
        if kind == BASELINE:
            command = [
                sys.executable,
                "-m",
                "bench.baseline",
                "--port",
                str(self.port),
                "--backlog",
                str(backlog),
                "--processes",
                str(processes),
                # The keepalive python -m cpms.serve gives daphne (CPMS_WS_PING_INTERVAL, ...).
                *keepalive_arguments(),
            ]
        else:
            # As docker-compose runs it: daphne processes on one port (cpms.serve), each with
            # the listen backlog a reconnect storm needs (Twisted's default is 50).
            command = [
                sys.executable,
                "-m",
                "cpms.serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--processes",
                str(processes),
                "--backlog",
                str(backlog),
            ]
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env or {**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.ps = psutil.Process(self.process.pid)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp/"

    @property
    def control_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/control"

    def wait_listening(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited early:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(
            f"{self.kind} server did not listen within {timeout}s:\n{self.log_tail()}"
        )

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """CPU time of the server and every process it started (cpms.serve's daphnes)."""
        total = 0.0
        for process in self._tree():
            try:
                total += process_cpu_seconds(process)
            except psutil.NoSuchProcess:
                continue
        return total

    def rss_bytes(self) -> int:
        total = 0
        for process in self._tree():
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def profile_pid(self) -> int:
        """The process to profile: the first daphne of ours (they do the same work), else the
        server itself."""
        children = self._tree()[1:]
        return children[0].pid if children else self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_errors(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if _ERROR_LINE.search(line)]

    def stop(self, *, keep_log: bool = False) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        if not keep_log:
            self.log_path.unlink(missing_ok=True)
