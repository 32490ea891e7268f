"""``python -m cpms.daphneserver``: daphne, with its sweeps of every connection spaced out.

daphne walks all of a process's connections once a second, to reap application instances that
ended, and every two seconds, for handshake deadlines and keepalive pings. With thousands of
idle chargers on a process those walks are most of what it does (bench/RESULTS.md, finding 16).
Here each walk runs at most every ``CPMS_WS_SWEEP_INTERVAL`` seconds, and at least as often as
the keepalive ping interval, so pings still go out on time. daphne's own timers keep their
cadence; a tick that comes early does nothing.

What waits longer for a sweep: killing an application that outlives its socket by more than
daphne's close timeout, closing a socket whose application crashed, and refusing a handshake
that overran daphne's connect timeout (the project's admission has its own deadline). A
consumer that closes its socket, and a charger that disconnects, are handled at once as before.

Everything else is daphne: same options, same server. ``python -m cpms.serve`` runs this.
"""

from __future__ import annotations

import time

from daphne.cli import CommandLineInterface
from daphne.server import Server
from twisted.internet import reactor


class Sweeper:
    """When the next sweep of one kind is due."""

    def __init__(self) -> None:
        self.due = 0.0

    def now_due(self, interval: float) -> bool:
        now = time.monotonic()
        if now < self.due:
            return False
        self.due = now + interval
        return True


def sweep_interval(ping_interval: float) -> float:
    """Seconds between sweeps: the setting, but no longer than the keepalive ping interval."""
    from django.conf import settings

    return float(min(settings.CPMS_WS_SWEEP_INTERVAL, max(ping_interval, 0.0) or float("inf")))


class SweepingServer(Server):  # type: ignore[misc]
    """daphne's server, sweeping its connections every ``sweep_interval`` seconds."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._applications = Sweeper()
        self._timeouts = Sweeper()

    def application_checker(self) -> None:
        if self._applications.now_due(sweep_interval(self.ping_interval)):
            super().application_checker()  # sweeps, and calls back in a second
        else:
            reactor.callLater(1, self.application_checker)  # type: ignore[arg-type]

    def timeout_checker(self) -> None:
        if self._timeouts.now_due(sweep_interval(self.ping_interval)):
            super().timeout_checker()  # sweeps, and calls back in two seconds
        else:
            reactor.callLater(2, self.timeout_checker)  # type: ignore[arg-type]


class SweepingCommandLine(CommandLineInterface):  # type: ignore[misc]
    server_class = SweepingServer


if __name__ == "__main__":
    SweepingCommandLine.entrypoint()
