"""The admin pages of the central system render, and a charger's password is set hashed."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from chargers.models import Charger, Frame, MeterSample, Session
from chargers.passwords import verify_password

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-1")
    client.force_login(user)
    return client


@pytest.mark.parametrize("model", [Charger, Session, MeterSample, Frame])
def test_changelists_render(staff_client, charger, model):
    url = reverse(f"admin:chargers_{model._meta.model_name}_changelist")
    assert staff_client.get(url).status_code == 200


def test_charger_change_page_sets_a_new_password_hashed(staff_client, charger):
    url = reverse("admin:chargers_charger_change", args=[charger.pk])
    page = staff_client.get(url)
    assert page.status_code == 200
    assert b"password_hash" not in page.content
    form = page.context["adminform"].form
    data = {name: form[name].value() or "" for name in form.fields}
    data.update(
        {
            "new_password": "a-new-charger-secret",
            "connectors-TOTAL_FORMS": "0",
            "connectors-INITIAL_FORMS": "0",
        }
    )
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.content[:2000]
    charger.refresh_from_db()
    assert charger.password_hash.startswith("pbkdf2_sha256$")
    assert verify_password(charger.identity, "a-new-charger-secret", charger.password_hash)
