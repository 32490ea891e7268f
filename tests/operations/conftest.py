"""Fixtures of the operations tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chargers.models import Charger
from cpms.celery import app
from cpms.models import Organization
from operations import baselines
from operations.baselines import SettingIn
from operations.models import ConfigurationBaseline


@pytest.fixture
def celery_inline() -> Iterator[None]:
    """Tasks run where they are sent, as on the embedded default, also when the suite runs with
    a broker: these tests check what a task does; a real worker runs them in tests/e2e."""
    eager, propagates = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = eager, propagates


@pytest.fixture
def online(charger: Charger) -> Charger:
    """The test charger, connected over OCPP 1.6, an ACME Wallbox (the model the baselines of
    these tests cover)."""
    charger.connected = True
    charger.ocpp_version = "1.6"
    charger.channel_name = "specific.test!1"
    charger.vendor, charger.model = "ACME", "Wallbox"
    charger.save()
    return charger


@pytest.fixture
def baseline16(organization: Organization) -> ConfigurationBaseline:
    """A baseline of three keys for ACME Wallboxes on OCPP 1.6 (``online``)."""
    return baselines.baseline_create(
        organization=organization,
        name="Wallbox 1.6",
        vendor="acme",
        model="WALLBOX",
        protocol="1.6",
        settings=[
            SettingIn(key="HeartbeatInterval", value="300"),
            SettingIn(key="MeterValueSampleInterval", value="60"),
            SettingIn(key="NumberOfConnectors", value="2"),
        ],
    )
