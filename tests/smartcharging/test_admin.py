"""The admin pages of load management render."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from chargers.models import Site
from smartcharging.models import (
    ChargerLoad,
    Circuit,
    LimitEvent,
    LimitSchedule,
    LoadSnapshot,
    ProfileViolation,
    SessionLimit,
    SiteCapacity,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client: Client) -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-1")
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "model",
    [SiteCapacity, Circuit, ChargerLoad, LimitSchedule, LimitEvent, SessionLimit,
     ProfileViolation, LoadSnapshot],
)  # fmt: skip
def test_changelists_render(staff_client: Client, site: Site, model: Any) -> None:
    SiteCapacity.objects.create(site=site, limit=Decimal("63"))
    Circuit.objects.create(site=site, name="Garage", limit_a=Decimal("16"))
    url = reverse(f"admin:smartcharging_{model._meta.model_name}_changelist")
    response = staff_client.get(url)
    assert response.status_code == 200
    if model in (SiteCapacity, Circuit):
        assert site.name.encode() in response.content
