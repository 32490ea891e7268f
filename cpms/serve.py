"""``python -m cpms.serve``: the server, one daphne process per core on one port.

One daphne process runs one event loop on one core, and a gateway's work (handshakes, frames,
events) is the event loop's. This command binds the port itself, once per process, with
``SO_REUSEPORT``, so the kernel spreads new connections evenly over the processes, and starts one
daphne on each socket (``python -m cpms.daphneserver``: daphne, sweeping its connections every
``CPMS_WS_SWEEP_INTERVAL`` seconds). It restarts a process that dies (the socket stays
open, so connections waiting in its backlog are served by the new one) and stops them all on
SIGTERM or SIGINT.

More than one process needs the Redis channel layer: a command for a charger, the dashboard's
live updates and routing changes reach the process that holds the socket over it. On the
embedded default (in-memory channel layer) it serves with one process. With several, the
processes share one Prometheus directory, so any of them answers ``/metrics`` for all.

    python -m cpms.serve --host 0.0.0.0 --port 8000                 # one process per core
    python -m cpms.serve --processes 1 --access-log                 # as plain daphne
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from types import FrameType

logger = logging.getLogger("cpms.serve")

# A process that dies this soon after it started, this many times in a row, is not restarted:
# something is wrong that restarting will not mend (settings, database, port).
QUICK_DEATH_SECONDS = 10.0
QUICK_DEATHS = 5
STOP_GRACE_SECONDS = 10.0


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def channel_layer_spans_processes() -> bool:
    """Whether the configured channel layer reaches other processes (Redis does, memory does not)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpms.settings")
    from django.conf import settings

    backend = str(settings.CHANNEL_LAYERS["default"]["BACKEND"])
    return "InMemory" not in backend


def keepalive_arguments() -> list[str]:
    """daphne's keepalive options from the settings (CPMS_WS_PING_INTERVAL, CPMS_WS_PING_TIMEOUT)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpms.settings")
    from django.conf import settings

    return [
        "--ping-interval",
        str(settings.CPMS_WS_PING_INTERVAL),
        "--ping-timeout",
        str(settings.CPMS_WS_PING_TIMEOUT),
    ]


def process_count(asked: int | None, *, shared_layer: bool) -> int:
    """``asked`` processes (None: the setting, or one per core), or one if the layer is local."""
    if asked is None:
        configured = os.environ.get("CPMS_SERVER_PROCESSES", "").strip()
        asked = int(configured) if configured else 0
    if asked < 0:
        raise SystemExit(f"--processes must be 0 (one per core) or more, not {asked}")
    count = asked or cores()
    if count > 1 and not shared_layer:
        if asked:
            raise SystemExit(
                f"{count} server processes need the Redis channel layer (set REDIS_URL): with the "
                "in-memory layer a command or a live update cannot reach a charger held by "
                "another process"
            )
        return 1
    return count


def listening_sockets(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """``count`` sockets listening on one address. Port 0 picks a free port for all of them."""
    if ":" in host:
        # daphne adopts a socket through Twisted's ``fd:`` endpoint, which takes IPv4 only.
        raise SystemExit(
            f"python -m cpms.serve binds IPv4 addresses, not {host}: put a proxy in front, or "
            "run daphne -b itself"
        )
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if count > 1:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(backlog)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


@dataclass
class Worker:
    """One daphne process and the listening socket it serves."""

    index: int
    sock: socket.socket
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_deaths: int = 0


@dataclass
class Supervisor:
    workers: list[Worker]
    daphne_arguments: list[str]
    env: dict[str, str]
    metrics_dir: str | None = None
    stopping: bool = False
    exit_code: int = 0

    def start(self, worker: Worker) -> None:
        fd = worker.sock.fileno()
        command = [
            sys.executable,
            "-m",
            "cpms.daphneserver",
            "-e",
            f"fd:fileno={fd}",
            *self.daphne_arguments,
            "cpms.asgi:application",
        ]
        env = {**self.env, "CPMS_SERVER_PROCESS": str(worker.index)}
        worker.process = subprocess.Popen(command, env=env, pass_fds=(fd,))
        worker.started = time.monotonic()
        logger.info("server process %d started (pid %d)", worker.index, worker.process.pid)

    def reap(self, worker: Worker) -> None:
        """A process that ended without being asked: restart it, unless it keeps dying at once."""
        assert worker.process is not None
        code = worker.process.returncode
        pid = worker.process.pid
        if self.metrics_dir:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self.metrics_dir)
        lived = time.monotonic() - worker.started
        worker.quick_deaths = worker.quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
        if worker.quick_deaths >= QUICK_DEATHS:
            logger.error(
                "server process %d (pid %d) exited with %s %d times within %.0f s of starting; "
                "stopping",
                worker.index,
                pid,
                code,
                QUICK_DEATHS,
                QUICK_DEATH_SECONDS,
            )
            self.exit_code = 1
            self.stop()
            return
        logger.warning(
            "server process %d (pid %d) exited with %s after %.0f s; starting it again",
            worker.index,
            pid,
            code,
            lived,
        )
        if worker.quick_deaths:
            time.sleep(min(5.0, 0.5 * 2**worker.quick_deaths))
        self.start(worker)

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for worker in self.workers:
            self.start(worker)
        try:
            while not self.stopping:
                for worker in self.workers:
                    if worker.process is not None and worker.process.poll() is not None:
                        self.reap(worker)
                        if self.stopping:
                            break
                time.sleep(0.2)
        finally:
            self.terminate_all()
        return self.exit_code

    def terminate_all(self) -> None:
        running = [w.process for w in self.workers if w.process and w.process.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for worker in self.workers:
            worker.sock.close()
        if self.metrics_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cpms.serve",
        description="Serve the CPMS with one daphne process per core on one port.",
    )
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument(
        "--processes",
        type=int,
        help="daphne processes (default: CPMS_SERVER_PROCESSES, else one per core; 0 is one "
        "per core); more than one needs the Redis channel layer",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=2048,
        help="listen backlog of each process's socket (a reconnect storm needs more than 50)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log every HTTP request and WebSocket handshake to stdout (off by default: it costs "
        "the event loop about a seventh of a handshake)",
    )
    parser.add_argument(
        "daphne_arguments",
        nargs=argparse.REMAINDER,
        help="after --, more options for daphne (e.g. -- --proxy-headers)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parser().parse_args(argv)
    count = process_count(args.processes, shared_layer=channel_layer_spans_processes())
    extra = [a for a in args.daphne_arguments if a != "--"]
    # No maximum WebSocket lifetime: a charger keeps its connection until it or we close it.
    # Options after -- come last, so they win over these.
    daphne_arguments = ["--websocket_timeout", "-1", *keepalive_arguments(), *extra]
    if not args.access_log:
        # Verbosity 0 turns daphne's access log off; the project's own logging is set by
        # LOGGING (LOG_LEVEL), which daphne's level does not change.
        daphne_arguments = ["-v", "0", *daphne_arguments]
    sockets = listening_sockets(args.host, args.port, count, args.backlog)
    env = dict(os.environ)
    metrics_dir = None
    if count > 1 and "PROMETHEUS_MULTIPROC_DIR" not in env:
        metrics_dir = tempfile.mkdtemp(prefix="cpms-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    port = sockets[0].getsockname()[1]
    logger.info("serving on %s:%d with %d daphne process(es)", args.host, port, count)
    supervisor = Supervisor(
        workers=[Worker(index, sock) for index, sock in enumerate(sockets)],
        daphne_arguments=daphne_arguments,
        env=env,
        metrics_dir=metrics_dir,
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
