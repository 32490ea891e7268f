"""The admin pages of the central system render, a charger's password is set hashed, and selected
chargers are accepted or rejected together."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chargers import services
from chargers.models import Charger, Frame, MeterSample, Session
from chargers.passwords import verify_password
from tests.chargers.rowlocks import OtherConnection, locked_rows

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


def test_selected_chargers_are_accepted_or_rejected_together(staff_client, make_charger):
    one, two, other = make_charger("CP-1"), make_charger("CP-2"), make_charger("CP-3")
    Charger.objects.update(registration_status="Pending")
    url = reverse("admin:chargers_charger_changelist")
    selected = [str(one.pk), str(two.pk)]
    response = staff_client.post(
        url, {"action": "accept_registration", "_selected_action": selected}, follow=True
    )
    assert "2 charger(s) accepted." in [str(m) for m in response.context["messages"]]
    staff_client.post(url, {"action": "reject_registration", "_selected_action": [other.pk]})
    assert dict(Charger.objects.values_list("identity", "registration_status")) == {
        "CP-1": "Accepted",
        "CP-2": "Accepted",
        "CP-3": "Rejected",
    }


@pytest.mark.django_db(transaction=True)
def test_chargers_accepted_together_are_locked_in_pk_order(make_charger):
    low, middle, high = make_charger("CP-1"), make_charger("CP-2"), make_charger("CP-3")
    # Rewritten low last: the table now holds the rows high first, as a plan that scans it
    # would meet them.
    Charger.objects.filter(pk=middle.pk).update(registration_status="Pending")
    Charger.objects.filter(pk=low.pk).update(registration_status="Pending")

    def accept() -> int:
        return services.chargers_registration_set(
            charger_pks=[high.pk, middle.pk, low.pk], status="Accepted"
        )

    if connection.vendor == "postgresql":
        with transaction.atomic():
            # A boot holds the middle row: the operator's write waits for it holding the row
            # below, and none above (which another batch may hold, waiting for the middle one).
            Charger.objects.select_for_update(no_key=True).get(pk=middle.pk)
            accepting = OtherConnection(accept)
            accepting.wait_until_blocked()
            assert locked_rows(Charger._meta.db_table, [low.pk, high.pk]) == {low.pk}
        assert accepting.outcome() == 3
    else:
        # One lock for the whole database: what is left to see is the rows taken in pk order.
        with CaptureQueriesContext(connection) as queries:
            assert accept() == 3
        [update] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
        [named] = re.findall(r" IN \(([\d, ]+)\)", update)
        assert [int(pk) for pk in named.split(", ")] == [low.pk, middle.pk, high.pk]
    assert set(Charger.objects.values_list("registration_status", flat=True)) == {"Accepted"}
