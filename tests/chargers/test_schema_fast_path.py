"""The compiled schema check that lets valid payloads through quickly judges every payload of every
OCPP schema exactly as the ``ocpp`` package's validator does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ocpp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.messages import get_validator

from chargers import protocol

SCHEMAS = Path(ocpp.__file__).parent
# (kind, action, version) of every message schema of the three versions.
MESSAGES = sorted(
    message
    for message in {
        (protocol.CALLRESULT if name.endswith("Response") else protocol.CALL, action, version)
        for version, folder in (("1.6", "v16"), ("2.0.1", "v201"), ("2.1", "v21"))
        for name in (path.stem for path in (SCHEMAS / folder / "schemas").glob("*.json"))
        for action in [name.removesuffix("Response").removesuffix("Request")]
    }
    if protocol.has_schema(*message)
)

# Values of the wrong kind for any place: the cases the two checks could disagree on.
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just(1.0),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def near(
    schema: dict[str, Any], root: dict[str, Any], strict: bool, depth: int = 0
) -> st.SearchStrategy[Any]:
    """Instances of ``schema`` (``strict``), or instances that are sometimes just outside it."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return near(target, root, strict, depth)
    odd = st.nothing() if strict else ODD
    if depth > 6:
        return ODD
    if "enum" in schema:
        return st.one_of(
            st.sampled_from(schema["enum"]), odd, st.text(max_size=4) if not strict else odd
        )
    kind = schema.get("type")
    if kind == "object":
        return objects(schema, root, strict, depth)
    if kind == "array":
        low = schema.get("minItems", 0)
        high = min(schema.get("maxItems", low + 3), low + 3)
        item = near(schema.get("items", {}), root, strict, depth + 1)
        if strict:
            return st.lists(item, min_size=low, max_size=high)
        return st.one_of(st.lists(item, min_size=max(low - 1, 0), max_size=high + 1), ODD)
    if kind == "string":
        limit = schema.get("maxLength", 20)
        if strict:
            return st.one_of(st.text(max_size=min(limit, 30)), st.just("é" * limit))
        return st.one_of(
            st.text(max_size=min(limit, 30)),
            st.sampled_from(["é" * limit, "x" * (limit + 1)]),  # at the limit, just over it
            st.just("2024-03-01T12:00:00Z"),
            ODD,
        )
    if kind == "integer":
        low, high = int(schema.get("minimum", -(2**40))), int(schema.get("maximum", 2**40))
        if strict:
            return st.integers(min_value=low, max_value=high)
        return st.one_of(st.integers(min_value=low - 1, max_value=high + 1), ODD)
    if kind == "number":
        low, high = schema.get("minimum", -1e12), schema.get("maximum", 1e12)
        numbers = st.one_of(
            st.floats(min_value=low, max_value=high),
            st.integers(min_value=int(low), max_value=int(high)),
        )
        return numbers if strict else st.one_of(numbers, st.floats(allow_nan=False), ODD)
    if kind == "boolean":
        return st.one_of(st.booleans(), odd)
    return ODD


def objects(
    schema: dict[str, Any], root: dict[str, Any], strict: bool, depth: int
) -> st.SearchStrategy[Any]:
    properties = schema.get("properties", {})
    required = [name for name in schema.get("required", []) if name in properties]
    optional = [name for name in properties if name not in required]
    valid = st.fixed_dictionaries(
        {name: near(properties[name], root, strict, depth + 1) for name in required},
        optional={name: near(properties[name], root, strict, depth + 1) for name in optional},
    )
    if strict:
        return valid

    def spoil(instance: dict[str, Any], how: int, extra: str) -> dict[str, Any]:
        spoiled = dict(instance)
        if how == 0 and spoiled:
            spoiled.pop(sorted(spoiled)[0])  # a property left out
        elif how == 1:
            spoiled[extra or "x"] = 1  # a property the schema does not name
        return spoiled

    return st.one_of(
        valid,
        st.builds(spoil, valid, st.integers(min_value=0, max_value=1), st.text(max_size=3)),
        ODD,
    )


@st.composite
def payloads(draw: st.DrawFn) -> tuple[tuple[int, str, str], Any]:
    message = draw(st.sampled_from(MESSAGES))
    schema = get_validator(*message).schema
    return message, draw(near(schema, schema, strict=draw(st.booleans())))


def test_every_schema_compiles():
    assert len(MESSAGES) > 300
    skipped = [message for message in MESSAGES if protocol._compiled(*message) is protocol._never]
    # Only the 1.6 charging profile schemas, with their float multipleOf, go straight to the
    # validator; none of them is a message a charger sends.
    assert {action for _, action, _ in skipped} == {
        "GetCompositeSchedule",
        "RemoteStartTransaction",
        "SetChargingProfile",
    }
    for message in MESSAGES:
        if message not in skipped:
            assert protocol._compiled(*message)({}) == get_validator(*message).is_valid({})


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=payloads())
def test_the_fast_check_judges_as_the_schema_validator(drawn):
    message, payload = drawn
    check = protocol._compiled(*message)
    fast, valid = check(payload), get_validator(*message).is_valid(payload)
    where = (message, json.dumps(payload, default=str)[:500])
    # Never lets through what the validator refuses; and, where it is used, agrees with it.
    assert valid or not fast, where
    if check is not protocol._never:
        assert fast == valid, where


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_an_integer_sent_as_a_float_is_refused_by_both(version):
    # Draft 4 (the ocpp package's validator) has no integral floats; the 2.x schemas name
    # Draft 6, where 1.0 would be an integer.
    action = "StatusNotification"
    payload = (
        {"connectorId": 1.0, "errorCode": "NoError", "status": "Available"}
        if version == "1.6"
        else {
            "timestamp": "2024-03-01T12:00:00Z",
            "connectorStatus": "Available",
            "evseId": 1.0,
            "connectorId": 1,
        }
    )
    assert not get_validator(protocol.CALL, action, version).is_valid(payload)
    assert not protocol._compiled(protocol.CALL, action, version)(payload)
    with pytest.raises(protocol.FrameError) as refused:
        protocol.validate(protocol.CALL, action, payload, version, "m-1")
    assert refused.value.code == "TypeConstraintViolation"


def test_a_payload_is_judged_as_it_is_and_left_as_it_was():
    # The schemas name defaults (2.x); writing them into what the charger sent would change it.
    without_defaults = {
        "MeterValues": {
            "evseId": 1,
            "meterValue": [
                {
                    "timestamp": "2024-03-01T12:00:00Z",
                    "sampledValue": [{"value": 1.5, "unitOfMeasure": {}}],
                }
            ],
        },
        "NotifyEvent": {
            "generatedAt": "2024-03-01T12:00:00Z",
            "seqNo": 0,
            "eventData": [
                {
                    "eventId": 1,
                    "timestamp": "2024-03-01T12:00:00Z",
                    "trigger": "Alerting",
                    "actualValue": "1",
                    "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "Connector"},
                    "variable": {"name": "Problem"},
                }
            ],
        },
    }
    for action, payload in without_defaults.items():
        before = json.dumps(payload, sort_keys=True)
        assert protocol._compiled(protocol.CALL, action, "2.0.1")(payload), action
        assert json.dumps(payload, sort_keys=True) == before, action


def test_a_float_multiple_is_judged_by_the_schema_validator():
    payload = {
        "connectorId": 0,
        "csChargingProfiles": {
            "chargingProfileId": 0,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 1.9}],
            },
        },
    }
    valid = get_validator(protocol.CALL, "SetChargingProfile", "1.6").is_valid(payload)
    assert protocol._compiled(protocol.CALL, "SetChargingProfile", "1.6")(payload) is valid is False
