"""``manage.py simulate``: a fleet of simulated 1.6 chargers against the real server process."""

from __future__ import annotations

import re
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from chargers import services
from chargers.models import Charger, Frame, MeterSample, Session, SessionState
from tests.conftest import CHARGER_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_simulate_runs_sessions_with_meter_values(server, make_charger, organization):
    for identity in ("SIM-001", "SIM-002"):
        make_charger(identity)
    for token in ("SIM-TAG-1", "SIM-TAG-2"):
        services.id_token_create(organization=organization, token=token, allow_concurrent=True)
    out = StringIO()
    call_command(
        "simulate",
        "--url",
        server.ocpp_url,
        "--protocol",
        "ocpp1.6",
        "--prefix",
        "SIM-",
        "--count",
        "2",
        "--connectors",
        "2",
        "--password",
        CHARGER_PASSWORD,
        "--id-tag",
        "SIM-TAG-1",
        "--id-tag",
        "SIM-TAG-2",
        "--sessions-per-hour",
        "36000",
        "--session-minutes",
        "0.02",
        "--meter-interval",
        "0.4",
        "--power-kw",
        "50",
        "--ramp",
        "0.2",
        "--duration",
        "6",
        "--seed",
        "7",
        stdout=out,
    )
    summary = out.getvalue()
    counts = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", summary)}
    assert counts["connects"] >= 2
    assert counts["refused"] == 0
    assert counts["errors"] == 0
    assert counts["timeouts"] == 0
    started, stopped = map(int, re.search(r"sessions=(\d+)/(\d+)", summary).groups())
    assert stopped >= 1

    # Sessions and their samples are persisted before the charger gets its answer.
    sessions = Session.objects.filter(charger__identity__startswith="SIM-")
    assert sessions.count() >= started  # a start answered as the run ended is in too
    completed = sessions.filter(state=SessionState.COMPLETED)
    assert completed.count() >= stopped
    for session in completed:
        assert session.energy_wh > 0
        assert session.energy_wh == session.meter_stop_wh - session.meter_start_wh
        assert session.auth_status == "Accepted"
    assert MeterSample.objects.filter(
        session__in=completed, measurand="Energy.Active.Import.Register"
    ).exists()
    assert MeterSample.objects.filter(
        session__in=completed, measurand="Current.Import", phase="L3"
    ).exists()
    for charger in Charger.objects.filter(identity__startswith="SIM-"):
        assert (charger.vendor, charger.ocpp_version) == ("Simulated", "1.6")

    # The journal is written in batches: wait for the frames of the last answers to arrive.
    deadline = time.monotonic() + 15
    while not Frame.objects.filter(
        charger_identity__startswith="SIM-", action="StopTransaction", direction="out"
    ).exists():
        assert time.monotonic() < deadline, "the simulated stops never reached the journal"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "0"], "at least 1"),
        (["--connectors", "0"], "at least 1"),
        (["--meter-interval", "0"], "positive"),
    ],
)
def test_simulate_refuses_bad_options(db, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("simulate", *args, "--duration", "1")
