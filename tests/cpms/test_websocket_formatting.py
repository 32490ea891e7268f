"""autobahn's debug lines per connection and per frame cost nothing until they are written, and
read the same when they are."""

from __future__ import annotations

import logging
import pprint

from autobahn import util
from autobahn.twisted import websocket as twisted_websocket
from autobahn.websocket import protocol

import cpms.asgi  # noqa: F401 - the server's entry point sets it up
from cpms.runtime import defer_websocket_debug_formatting


def test_the_settings_are_formatted_only_when_the_line_is_written():
    class Counting(list):
        formatted = 0

        def __repr__(self):
            Counting.formatted += 1
            return super().__repr__()

    settings = Counting([("openHandshakeTimeout", 5, "WebSocketServerFactory")])
    deferred = protocol.pformat(settings)
    assert Counting.formatted == 0
    assert f"\n{deferred}" == "\n" + pprint.pformat(settings)
    assert str(deferred) == pprint.pformat(settings)
    assert Counting.formatted > 0


def test_timings_still_print_as_text_and_a_second_call_changes_nothing():
    wrappers = (protocol.pformat, protocol.hltype, twisted_websocket.hlval)
    defer_websocket_debug_formatting()
    assert (protocol.pformat, protocol.hltype, twisted_websocket.hlval) == wrappers
    timings = protocol.Timings()
    timings.track("onOpen")
    assert str(timings).startswith("{'onOpen': ")


def test_a_debug_line_shows_the_settings(caplog):
    caplog.set_level(logging.DEBUG)
    deferred = protocol.pformat([("a", 1)])
    logging.getLogger("autobahn.test").debug("\n%s", deferred)
    assert caplog.records[-1].getMessage() == "\n[('a', 1)]"


def test_names_and_values_of_every_frame_are_coloured_only_when_the_line_is_written(monkeypatch):
    calls = []
    colour = util.hl
    monkeypatch.setattr(util, "hl", lambda *a, **k: calls.append(a) or colour(*a, **k))
    for module in (protocol, twisted_websocket):
        peer = module.hlval("tcp:127.0.0.1:5000", color="green")
        name = module.hltype(
            test_names_and_values_of_every_frame_are_coloured_only_when_the_line_is_written
        )
        assert calls == []
        assert f"{peer}" == util.hlval("tcp:127.0.0.1:5000", color="green")
        assert str(name) == util.hltype(
            test_names_and_values_of_every_frame_are_coloured_only_when_the_line_is_written
        )
        assert calls
        calls.clear()
