"""The harness reads a server's CPU time exactly enough for a few frames' work to show."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from bench.servers import process_cpu_seconds

# Burns CPU in a thread that then ends, prints the process's own CPU time, and waits to be read.
CHILD = """
import sys, threading, time

def burn(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass

worker = threading.Thread(target=burn, args=(float(sys.argv[1]),))
worker.start()
worker.join()
print(time.process_time(), flush=True)
sys.stdin.readline()
"""


def _child(seconds: float) -> tuple[subprocess.Popen[str], float]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    return child, float(child.stdout.readline())


@pytest.mark.parametrize("seconds", [0.003, 0.2])
def test_counts_the_cpu_of_an_ended_thread(seconds: float) -> None:
    child, own = _child(seconds)
    try:
        read = process_cpu_seconds(psutil.Process(child.pid))
        # The child reported its own CPU time before it was read; reading it back costs the
        # child nothing more than waiting on stdin, so the two agree to within a tick.
        assert own >= seconds
        assert own <= read < own + 0.01
    finally:
        child.communicate("\n", timeout=10)


def test_a_gone_process_raises_no_such_process() -> None:
    child, _ = _child(0.0)
    process = psutil.Process(child.pid)
    child.communicate("\n", timeout=10)
    with pytest.raises(psutil.NoSuchProcess):
        process_cpu_seconds(process)
