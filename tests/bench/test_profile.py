"""The profile summary tells a thread waiting for work from a thread busy inside a call."""

from __future__ import annotations

from bench.profile import _idle


def test_a_database_lane_waiting_for_its_next_call_is_idle() -> None:
    assert _idle(["_bootstrap (threading.py:1002)", "_run (chargers/dbpool.py:80)"])
    # As py-spy names a method now: with its class.
    assert _idle(["Thread._bootstrap (threading.py:1002)", "Lane._run (chargers/dbpool.py:117)"])


def test_a_database_lane_inside_a_call_is_busy() -> None:
    assert not _idle(
        [
            "_bootstrap (threading.py:1002)",
            "_run (chargers/dbpool.py:84)",
            "command_claim (chargers/command_services.py:380)",
            "wait (psycopg/connection.py:479)",
        ]
    )


def test_an_event_loop_in_select_is_idle() -> None:
    assert _idle(["run_forever (asyncio/base_events.py:608)", "Selector.select (selectors.py:468)"])
