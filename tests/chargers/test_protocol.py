"""OCPP-J framing without I/O: parsing, schema validation and the error codes of each version."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargers import protocol
from chargers.protocol import Call, CallError, CallResult, FrameError


def test_parse_call():
    assert protocol.parse('[2,"m-1","Heartbeat",{}]') == Call("m-1", "Heartbeat", {})


def test_parse_call_result():
    assert protocol.parse('[3,"m-1",{"currentTime":"2024-01-01T00:00:00Z"}]') == CallResult(
        "m-1", {"currentTime": "2024-01-01T00:00:00Z"}
    )


def test_parse_call_error():
    assert protocol.parse('[4,"m-1","NotSupported","no",{"a":1}]') == CallError(
        "m-1", "NotSupported", "no", {"a": 1}
    )


@pytest.mark.parametrize(
    ("text", "code", "message_id"),
    [
        # Unreadable: no message id can be recovered.
        ("not json", "FormatViolation", "-1"),
        ('[2,"m-1","Heartbeat",{}', "FormatViolation", "-1"),
        ('{"id":"m-1"}', "FormatViolation", "-1"),
        ('"text"', "FormatViolation", "-1"),
        ("[]", "FormatViolation", "-1"),
        ("[2]", "FormatViolation", "-1"),
        ('[2,null,"Heartbeat",{}]', "FormatViolation", "-1"),
        # Readable id, wrong shape: the error carries the id.
        ('[2,"m-1","Heartbeat"]', "FormatViolation", "m-1"),
        ('[2,"m-1","Heartbeat",{},{}]', "FormatViolation", "m-1"),
        ('[2,"m-1","Heartbeat",[]]', "FormatViolation", "m-1"),
        ('[2,"m-1",7,{}]', "FormatViolation", "m-1"),
        ('[2,"m-1","",{}]', "FormatViolation", "m-1"),
        ('[3,"m-1"]', "FormatViolation", "m-1"),
        ('[3,"m-1",[]]', "FormatViolation", "m-1"),
        ('[4,"m-1","GenericError","x"]', "FormatViolation", "m-1"),
        ('["2","m-1","Heartbeat",{}]', "FormatViolation", "m-1"),
        ('[true,"m-1","Heartbeat",{}]', "FormatViolation", "m-1"),
        # Message ids must be strings of 1 to 36 characters.
        ('[2,17,"Heartbeat",{}]', "FormatViolation", "17"),
        ('[2,"","Heartbeat",{}]', "FormatViolation", ""),
        (json.dumps([2, "x" * 37, "Heartbeat", {}]), "FormatViolation", "x" * 37),
        # Unknown MessageTypeId.
        ('[5,"m-1","Heartbeat",{}]', "MessageTypeNotSupported", "m-1"),
        ('[0,"m-1"]', "MessageTypeNotSupported", "m-1"),
    ],
)
def test_parse_errors(text, code, message_id):
    with pytest.raises(FrameError) as caught:
        protocol.parse(text)
    assert caught.value.code == code
    assert caught.value.message_id == message_id
    assert caught.value.description


def test_a_36_character_message_id_is_fine():
    assert protocol.parse(json.dumps([2, "x" * 36, "Heartbeat", {}])).message_id == "x" * 36


@given(
    st.text(min_size=1, max_size=36),
    st.sampled_from(["Heartbeat", "BootNotification", "Authorize"]),
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
)
def test_call_frames_round_trip(message_id, action, payload):
    assert protocol.parse(protocol.call(message_id, action, payload)) == Call(
        message_id, action, payload
    )


@given(st.text(max_size=200))
def test_parse_never_fails_with_anything_but_a_frame_error(text):
    try:
        protocol.parse(text)
    except FrameError as exc:
        assert isinstance(exc.message_id, str)


# --- Schema validation ---------------------------------------------------------------------------

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


@pytest.mark.parametrize(
    ("payload", "code", "v16_code"),
    [
        ({**BOOT, "chargePointVendor": 5}, "TypeConstraintViolation", "TypeConstraintViolation"),
        (
            {"chargePointModel": "M"},
            "OccurrenceConstraintViolation",
            "OccurenceConstraintViolation",
        ),
        (
            {**BOOT, "chargePointVendor": "V" * 21},
            "PropertyConstraintViolation",
            "PropertyConstraintViolation",
        ),
        ({**BOOT, "colour": "red"}, "FormatViolation", "FormationViolation"),
    ],
)
def test_schema_errors_map_to_ocpp_codes(payload, code, v16_code):
    with pytest.raises(FrameError) as caught:
        protocol.validate(protocol.CALL, "BootNotification", payload, "1.6", "m-9")
    assert caught.value.code == code
    assert caught.value.message_id == "m-9"
    assert protocol.error_code(caught.value.code, "1.6") == v16_code


def test_an_enum_violation_is_a_property_constraint_violation():
    with pytest.raises(FrameError) as caught:
        protocol.validate(
            protocol.CALL,
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"},
            "1.6",
            "m-1",
        )
    assert caught.value.code == "PropertyConstraintViolation"
    assert "status" in caught.value.description


def test_an_empty_required_array_is_an_occurrence_violation():
    with pytest.raises(FrameError) as caught:
        protocol.validate(
            protocol.CALL, "MeterValues", {"connectorId": 1, "meterValue": []}, "1.6", "m-1"
        )
    assert caught.value.code == "OccurrenceConstraintViolation"


def test_valid_payloads_pass():
    protocol.validate(protocol.CALL, "BootNotification", BOOT, "1.6", "m-1")
    protocol.validate(
        protocol.CALLRESULT,
        "BootNotification",
        {"currentTime": "2024-01-01T00:00:00.000Z", "interval": 300, "status": "Accepted"},
        "1.6",
        "m-1",
    )


@pytest.mark.parametrize(
    ("code", "v16", "v201"),
    [
        ("FormatViolation", "FormationViolation", "FormatViolation"),
        (
            "OccurrenceConstraintViolation",
            "OccurenceConstraintViolation",
            "OccurrenceConstraintViolation",
        ),
        ("MessageTypeNotSupported", "ProtocolError", "MessageTypeNotSupported"),
        ("RpcFrameworkError", "ProtocolError", "RpcFrameworkError"),
        ("NotImplemented", "NotImplemented", "NotImplemented"),
        ("SecurityError", "SecurityError", "SecurityError"),
    ],
)
def test_error_code_spelling_per_version(code, v16, v201):
    assert protocol.error_code(code, "1.6") == v16
    assert protocol.error_code(code, "2.0.1") == v201


def test_has_schema():
    assert protocol.has_schema(protocol.CALL, "Heartbeat", "1.6")
    assert not protocol.has_schema(protocol.CALL, "NoSuchAction", "1.6")


def test_negotiate_prefers_our_order():
    assert protocol.negotiate(["ocpp2.0.1", "ocpp1.6"], ["ocpp1.6"]) == "ocpp1.6"
    assert protocol.negotiate(["ocpp1.6", "ocpp2.0.1"], ["ocpp2.0.1", "ocpp1.6"]) == "ocpp2.0.1"
    assert protocol.negotiate(["ocpp1.5"], ["ocpp1.6"]) is None
    assert protocol.negotiate([], ["ocpp1.6"]) is None


def test_frames_are_compact_json():
    assert protocol.call_result("m-1", {"status": "Accepted"}) == '[3,"m-1",{"status":"Accepted"}]'
    assert protocol.call_error("m-1", "NotSupported", "no") == '[4,"m-1","NotSupported","no",{}]'
    assert protocol.call("m-1", "Reset", {"type": "Soft"}) == '[2,"m-1","Reset",{"type":"Soft"}]'


async def test_nul_characters_in_a_call_are_refused_the_same_on_every_database():
    from chargers.dispatch import Dispatcher

    class Handlers:
        def accepts_requests(self) -> bool:
            return True

    dispatcher = Dispatcher(Handlers(), version="1.6", known_actions=frozenset({"Authorize"}))
    outcome = await dispatcher.handle_text('[2,"n1","Authorize",{"idTag":"A\\u0000B"}]')
    assert json.loads(outcome.reply) == [
        4,
        "n1",
        "PropertyConstraintViolation",
        "strings must not contain NUL characters",
        {},
    ]
