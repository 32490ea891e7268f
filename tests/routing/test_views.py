"""The routing page: operators only; review shows the changes or the errors; a cut-over is applied
only once confirmed; the page's chargers part is served alone to htmx."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chargers.models import Charger
from cpms.models import Membership, Organization, Role
from routing.models import Route, RoutingChange, Upstream
from routing.selectors import route_for_charger

pytestmark = pytest.mark.django_db

LEGACY_ROUTE = {
    "upstreams": {"legacy": {"url": "ws://legacy.example.com/ocpp"}},
    "routes": [
        {
            "charger_id": "CP-1",
            "upstreams": [
                {"upstream": "legacy", "role": "primary"},
                {"upstream": "local", "role": "observer"},
            ],
        }
    ],
}


def signed_in(organization: Organization, role: str) -> Client:
    user = User.objects.create_user(f"user-{role}", password="a-long-password")
    Membership.objects.create(user=user, organization=organization, role=role)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator(organization: Organization) -> Client:
    return signed_in(organization, Role.OPERATOR)


def test_page_lists_chargers_with_their_route(operator: Client, charger: Charger) -> None:
    response = operator.get("/routing/")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'data-charger="CP-1"' in text and 'data-upstream="local"' in text
    # The policy editor starts from the live policy.
    assert "&quot;routes&quot;: []" in text
    part = operator.get("/routing/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="routing-chargers")
    assert part.content.decode().startswith('<div id="routing-chargers"')


@pytest.mark.parametrize("role", [Role.SITE_HOST])
def test_site_hosts_may_not_see_routing(organization: Organization, role: str) -> None:
    client = signed_in(organization, role)
    assert client.get("/routing/").status_code == 403
    assert client.post("/routing/policy/apply", {"policy": "{}"}).status_code == 403


def test_review_names_the_errors_and_changes_nothing(operator: Client, charger: Charger) -> None:
    bad = {"charger_id": "CP-1", "upstreams": [{"upstream": "ghost", "role": "observer"}]}
    response = operator.post("/routing/policy/review", {"policy": json.dumps(bad)})
    assert response.status_code == 400
    text = response.content.decode()
    assert "routes[0].upstreams[0].upstream: unknown upstream &#x27;ghost&#x27;" in text
    assert "routes[0].upstreams: no primary" in text
    response = operator.post("/routing/policy/review", {"policy": "{oops"})
    assert (
        "Not JSON: Expecting property name enclosed in double quotes" in response.content.decode()
    )
    assert not Route.objects.exists() and not Upstream.objects.filter(name="legacy").exists()


def test_a_cutover_is_applied_once_confirmed(operator: Client, charger: Charger) -> None:
    policy = json.dumps(LEGACY_ROUTE)
    review = operator.post("/routing/policy/review", {"policy": policy})
    text = review.content.decode()
    assert review.status_code == 200
    assert "cut-over" in text and 'name="confirm_cutover"' in text
    unconfirmed = operator.post("/routing/policy/apply", {"policy": policy})
    assert unconfirmed.status_code == 400
    assert "Tick this box to confirm the cut-over." in unconfirmed.content.decode()
    assert not Route.objects.exists()

    applied = operator.post("/routing/policy/apply", {"policy": policy, "confirm_cutover": "on"})
    assert applied.status_code == 302 and applied["Location"] == "/routing/"
    assert route_for_charger(charger=charger).primary.upstream == "legacy"
    record = RoutingChange.objects.get(organization=charger.organization)
    assert record.source == "dashboard" and record.actor == "user-operator"
    page = operator.get("/routing/").content.decode()
    assert "controlled by legacy" in page
    assert "charger CP-1: primary legacy, observers local (cut-over from local)" in page

    # The same policy again is no change; adding an observer needs no confirmation.
    assert (
        "applying it changes nothing"
        in operator.post("/routing/policy/review", {"policy": policy}).content.decode()
    )
    more: dict[str, Any] = json.loads(policy)
    more["routes"][0]["upstreams"].append(
        {"url": "ws://analytics.example.com/", "role": "observer"}
    )
    assert operator.post("/routing/policy/apply", {"policy": json.dumps(more)}).status_code == 302
    observers = [leg.upstream for leg in route_for_charger(charger=charger).observers]
    assert observers == ["analytics.example.com", "local"]
