"""Configuration baselines against the database: which chargers a baseline covers, their drift,
the commands an apply sends, and the answers kept per value. Delivery to a real charger is
tested end to end in tests/e2e/test_baselines.py."""

from __future__ import annotations

import pytest

from chargers.commands import CommandState
from chargers.models import (
    ChargerConfigurationKey,
    Command,
    DeviceVariable,
    DeviceVariableAttribute,
)
from operations import baselines
from operations.baselines import SettingIn
from operations.forms import parse_settings
from operations.models import BaselineResult

pytestmark = pytest.mark.django_db


def report_states(charger, baseline) -> dict[str, str]:
    report = baselines.drift_report(charger=charger, baseline=baseline)
    return {row.ref: row.state.value for row in report.rows}


def test_a_baseline_covers_the_chargers_of_its_model_and_protocol(online, baseline16, make_charger):
    make_charger("CP-OTHER-MODEL", vendor="ACME", model="Pillar", ocpp_version="1.6")
    make_charger("CP-2X", vendor="ACME", model="Wallbox", ocpp_version="2.0.1")
    assert list(baselines.chargers_of(baseline16)) == [online]
    assert baselines.baseline_for(online) == baseline16


def test_before_any_read_every_value_is_unknown(online, baseline16):
    assert set(report_states(online, baseline16).values()) == {"unknown"}


def test_apply_sends_what_differs_and_skips_read_only_keys(online, baseline16):
    for key, value, readonly in [
        ("HeartbeatInterval", "300", False),
        ("MeterValueSampleInterval", "900", False),
        ("NumberOfConnectors", "1", True),
    ]:
        ChargerConfigurationKey.objects.create(
            charger=online, key=key, value=value, readonly=readonly
        )
    assert report_states(online, baseline16) == {
        "HeartbeatInterval": "matching",
        "MeterValueSampleInterval": "differing",
        "NumberOfConnectors": "differing",
    }
    [command] = baselines.baseline_apply(baseline=baseline16, charger=online)
    assert (command.action, command.payload, command.system) == (
        "ChangeConfiguration",
        {"key": "MeterValueSampleInterval", "value": "60"},
        "configuration baseline",
    )
    result = BaselineResult.objects.get()
    assert (result.ref, result.status, result.command) == ("MeterValueSampleInterval", "", command)


def test_answers_are_kept_per_value(online, baseline16):
    commands = baselines.baseline_apply(baseline=baseline16, charger=online)
    assert len(commands) == 3
    answers = {
        "HeartbeatInterval": (CommandState.ACCEPTED, "Accepted"),
        "MeterValueSampleInterval": (CommandState.ACCEPTED, "RebootRequired"),
        "NumberOfConnectors": (CommandState.REJECTED, "Rejected"),
    }
    for command in commands:
        state, status = answers[command.payload["key"]]
        Command.objects.filter(pk=command.pk).update(state=state, response_status=status)
        baselines.baseline_result_record(command_pk=command.pk)
    report = baselines.drift_report(charger=online, baseline=baseline16)
    applied = {row.ref: (row.applied.status, row.refused) for row in report.rows}
    assert applied == {
        "HeartbeatInterval": ("Accepted", False),
        "MeterValueSampleInterval": ("RebootRequired", False),
        "NumberOfConnectors": ("Rejected", True),
    }


def test_a_charger_in_line_gets_nothing(online, baseline16):
    for key, value in [
        ("HeartbeatInterval", "300"),
        ("MeterValueSampleInterval", "60.0"),
        ("NumberOfConnectors", "2"),
    ]:
        ChargerConfigurationKey.objects.create(charger=online, key=key, value=value)
    assert baselines.baseline_apply(baseline=baseline16, charger=online) == []
    assert not Command.objects.exists()


def test_an_offline_charger_refuses_and_nothing_is_half_sent(online, baseline16):
    online.connected = False
    online.save()
    from chargers.command_services import CommandRefused

    with pytest.raises(CommandRefused):
        baselines.baseline_apply(baseline=baseline16, charger=online)
    assert not Command.objects.exists()
    assert not BaselineResult.objects.exists()


def test_the_model_wide_apply_queues_offline_chargers(
    online, baseline16, make_charger, django_capture_on_commit_callbacks, celery_inline
):
    offline = make_charger("CP-2", vendor="Acme", model="Wallbox", ocpp_version="1.6")
    with django_capture_on_commit_callbacks(execute=True):
        assert baselines.baseline_apply_model(baseline=baseline16) == 2
    states = dict(Command.objects.values_list("charger__identity", "state").distinct())
    assert states == {online.identity: "requested", offline.identity: "queued"}
    assert Command.objects.filter(charger=offline, deliver_when_offline=True).count() == 3


@pytest.fixture
def baseline2x(organization):
    return baselines.baseline_create(
        organization=organization,
        name="Wallbox 2.x",
        vendor="ACME",
        model="Wallbox",
        protocol="2.x",
        settings=parse_settings(
            "SampledDataCtrlr/TxUpdatedInterval = 60\nEVSE@1/Power#MaxSet = 11000", "2.x"
        ),
    )


def test_a_2x_baseline_compares_attributes_and_sets_variables(online, baseline2x):
    online.ocpp_version = "2.0.1"
    online.save()
    variable = DeviceVariable.objects.create(
        charger=online,
        key="SampledDataCtrlr////TxUpdatedInterval/",
        component_name="SampledDataCtrlr",
        variable_name="TxUpdatedInterval",
    )
    DeviceVariableAttribute.objects.create(variable=variable, type="Actual", value="300")
    assert report_states(online, baseline2x) == {
        "SampledDataCtrlr////TxUpdatedInterval//Actual": "differing",
        "EVSE//1//Power//MaxSet": "missing",
    }
    [command] = baselines.baseline_apply(baseline=baseline2x, charger=online)
    assert command.action == "SetVariables"
    assert command.payload["setVariableData"] == [
        {
            "attributeType": "MaxSet",
            "attributeValue": "11000",
            "component": {"name": "EVSE", "evse": {"id": 1}},
            "variable": {"name": "Power"},
        },
        {
            "attributeType": "Actual",
            "attributeValue": "60",
            "component": {"name": "SampledDataCtrlr"},
            "variable": {"name": "TxUpdatedInterval"},
        },
    ]
    Command.objects.filter(pk=command.pk).update(
        state=CommandState.ANSWERED,
        response={
            "setVariableResult": [
                {
                    "attributeType": "MaxSet",
                    "attributeStatus": "Rejected",
                    "attributeStatusInfo": {"reasonCode": "OutOfRange"},
                    "component": {"name": "EVSE", "evse": {"id": 1}},
                    "variable": {"name": "Power"},
                },
                {
                    "attributeStatus": "Accepted",
                    "component": {"name": "SampledDataCtrlr"},
                    "variable": {"name": "TxUpdatedInterval"},
                },
            ]
        },
    )
    assert baselines.baseline_result_record(command_pk=command.pk) == 2
    statuses = dict(BaselineResult.objects.values_list("ref", "status"))
    assert statuses == {
        "EVSE//1//Power//MaxSet": "Rejected",
        "SampledDataCtrlr////TxUpdatedInterval//Actual": "Accepted",
    }
    assert BaselineResult.objects.get(status="Rejected").detail == "OutOfRange"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("HeartbeatInterval 300", "name = value"),
        ("Heartbeat Interval = 300", "not a configuration key"),
        ("A = 1\nA = 2", "set twice"),
        ("", "at least one"),
    ],
)
def test_bad_16_lines_are_named(text: str, message: str):
    from django import forms

    with pytest.raises(forms.ValidationError) as caught:
        parse_settings(text, "1.6")
    assert message in " ".join(caught.value.messages)


def test_2x_lines_name_components_and_variables_fully():
    [item] = parse_settings("Connector[x]@1:2/ConnectorType[main]#Target = cType2", "2.x")
    assert item == SettingIn(
        value="cType2",
        component_name="Connector",
        component_instance="x",
        evse_id=1,
        connector_id=2,
        variable_name="ConnectorType",
        variable_instance="main",
        attribute_type="Target",
    )
    from django import forms

    with pytest.raises(forms.ValidationError):
        parse_settings("JustAName = 1", "2.x")
    with pytest.raises(forms.ValidationError):
        parse_settings("A/B#Bogus = 1", "2.x")
