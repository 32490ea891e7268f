"""``make run``: serve the CPMS with daphne and connect a small simulated fleet to it.

The server is ``daphne cpms.asgi:application`` in its own process; the fleet talks to it over
real OCPP WebSockets, exactly as field chargers would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

from chargers.simulator import FleetConfig, run_fleet


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server did not open {host}:{port} within {timeout:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--chargers", type=int, default=5)
    args = parser.parse_args()

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            args.host,
            "-p",
            str(args.port),
            "cpms.asgi:application",
        ]
    )
    # Stopped by a supervisor or `kill` (SIGTERM) as by Ctrl-C: stop the server too, never orphan it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        wait_for_port(args.host, args.port)
        host = f"[{args.host}]" if ":" in args.host else args.host
        config = FleetConfig(
            url=f"ws://{host}:{args.port}/ocpp/",
            count=args.chargers,
            prefix="DEMO-",
            password="demo-charger-secret",
            connectors=2,
            meter_interval=10.0,
            sessions_per_hour=20.0,
            session_minutes=3.0,
            id_tags=["DEMO-TAG-1", "DEMO-TAG-2", "DEMO-TAG-3"],
        )
        print(f"demo fleet of {args.chargers} chargers connecting; Ctrl-C stops", flush=True)
        asyncio.run(run_fleet(config))
    except KeyboardInterrupt:
        pass
    finally:
        # SIGTERM, not SIGINT: a shell starting `make run` in the background makes children ignore SIGINT.
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
