"""The server takes the open-file limit the operating system allows: every charger is a socket."""

from __future__ import annotations

import resource

import psutil
import pytest

from tests.conftest import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_server_raises_its_soft_open_file_limit_to_the_hard_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard > 512, "this machine's hard limit leaves nothing to raise"

    def started_with_a_low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    server = ServerProcess(preexec_fn=started_with_a_low_soft_limit)
    try:
        soft_now, hard_now = psutil.Process(server.process.pid).rlimit(psutil.RLIMIT_NOFILE)
    finally:
        server.stop()
    assert (soft_now, hard_now) == (hard, hard)
