"""Which route applies to a charger, and what its legs dial with."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, transaction

from chargers.models import Charger, Site
from cpms.models import Organization
from routing.models import LOCAL, Route, RouteLeg, Upstream, UpstreamCredential
from routing.selectors import route_for_charger

pytestmark = pytest.mark.django_db


def upstream(name: str, **fields: Any) -> Upstream:
    return Upstream.objects.create(name=name, url=f"ws://{name}.example:9000/ocpp/", **fields)


def route(legs: list[tuple[Upstream, str]], **target: Any) -> Route:
    scope = next(iter(target), "global") if target else "global"
    made = Route.objects.create(scope=scope, **target)
    for up, role in legs:
        RouteLeg.objects.create(route=made, upstream=up, role=role)
    return made


def test_local_upstream_exists_from_the_migration() -> None:
    local = Upstream.objects.get(name=LOCAL)
    assert local.is_local and local.url == ""


def test_no_route_means_local_as_the_only_primary(charger: Charger) -> None:
    resolved = route_for_charger(charger=charger)
    assert resolved.primary.is_local
    assert resolved.observers == ()
    assert resolved.is_local_only
    assert resolved.scope == "default"


def test_most_specific_route_wins(charger: Charger, site: Site, organization: Organization) -> None:
    a, b, c, d = (upstream(n) for n in ("alpha", "beta", "gamma", "delta"))
    route([(a, "primary")])
    assert route_for_charger(charger=charger).primary.upstream == "alpha"
    route([(b, "primary")], organization=organization)
    assert route_for_charger(charger=charger).primary.upstream == "beta"
    route([(c, "primary")], site=site)
    assert route_for_charger(charger=charger).scope == "site"
    route([(d, "primary"), (Upstream.objects.get(name=LOCAL), "observer")], charger=charger)
    resolved = route_for_charger(charger=charger)
    assert resolved.scope == "charger"
    assert resolved.primary.upstream == "delta"
    assert [leg.upstream for leg in resolved.observers] == [LOCAL]
    assert not resolved.local_controls


def test_other_organizations_routes_do_not_apply(charger: Charger) -> None:
    other = Organization.objects.create(name="Other", slug="other")
    route([(upstream("theirs"), "primary")], organization=other)
    assert route_for_charger(charger=charger).primary.is_local


def test_leg_url_identity_and_override(charger: Charger) -> None:
    legacy = upstream("legacy", identity_template="ACME-{charger_id}")
    made = route([(legacy, "primary")], charger=charger)
    resolved = route_for_charger(charger=charger)
    assert resolved.primary.identity == "ACME-CP-1"
    assert resolved.primary.url == "ws://legacy.example:9000/ocpp/ACME-CP-1"
    RouteLeg.objects.filter(route=made).update(identity="legacy id/7")
    resolved = route_for_charger(charger=charger)
    assert resolved.primary.url == "ws://legacy.example:9000/ocpp/legacy%20id%2F7"


def test_credentials_per_upstream_per_charger_and_forward(charger: Charger) -> None:
    shared = upstream("shared", credentials="basic_upstream", password="up-secret")
    per = upstream("per", credentials="basic_charger")
    forward = upstream("fwd", credentials="forward")
    UpstreamCredential.objects.create(upstream=per, charger=charger, password="cp-secret")
    made = route([(forward, "primary"), (shared, "observer"), (per, "observer")], charger=charger)
    resolved = route_for_charger(charger=charger)
    assert resolved.primary.forwards_charger_password
    observers = {leg.upstream: leg for leg in resolved.observers}
    assert (observers["shared"].username, observers["shared"].password) == ("CP-1", "up-secret")
    assert (observers["per"].username, observers["per"].password) == ("CP-1", "cp-secret")
    assert "cp-secret" not in repr(observers["per"])
    # Forwarding the charger's own password is for the primary only.
    RouteLeg.objects.filter(route=made).delete()
    RouteLeg.objects.create(route=made, upstream=Upstream.objects.get(name=LOCAL), role="primary")
    RouteLeg.objects.create(route=made, upstream=forward, role="observer")
    observer = route_for_charger(charger=charger).observers[0]
    assert observer.credentials == "none" and not observer.forwards_charger_password


def test_policy_and_allowed_actions(charger: Charger) -> None:
    made = route(
        [(Upstream.objects.get(name=LOCAL), "primary")],
        charger=charger,
    )
    Route.objects.filter(pk=made.pk).update(
        primary_down="keep_open", primary_grace_seconds=3, protected_keys=["CentralSystemUrl"]
    )
    RouteLeg.objects.create(
        route=made, upstream=upstream("grid"), role="observer", allowed_actions=["TriggerMessage"]
    )
    resolved = route_for_charger(charger=charger)
    assert resolved.policy.primary_down == "keep_open"
    assert resolved.policy.primary_grace_seconds == 3
    assert resolved.policy.protected_keys == frozenset({"CentralSystemUrl"})
    assert resolved.observers[0].allowed_actions == frozenset({"TriggerMessage"})
    assert not resolved.is_local_only and resolved.local_controls


def test_a_route_has_one_primary_and_one_leg_per_upstream(charger: Charger) -> None:
    made = route([(upstream("one"), "primary")], charger=charger)
    with pytest.raises(IntegrityError), transaction.atomic():
        RouteLeg.objects.create(route=made, upstream=upstream("two"), role="primary")
    with pytest.raises(IntegrityError), transaction.atomic():
        RouteLeg.objects.create(
            route=made, upstream=Upstream.objects.get(name="one"), role="observer"
        )


def test_a_scope_names_exactly_its_target(charger: Charger, site: Site) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Route.objects.create(scope="charger", site=site)
    with pytest.raises(IntegrityError), transaction.atomic():
        Route.objects.create(scope="global", charger=charger)
    Route.objects.create(scope="global")
    with pytest.raises(IntegrityError), transaction.atomic():
        Route.objects.create(scope="global")


def test_a_route_without_primary_keeps_local_answering(charger: Charger) -> None:
    route([(upstream("watcher"), "observer")], charger=charger)
    resolved = route_for_charger(charger=charger)
    assert resolved.primary.is_local
    assert [leg.upstream for leg in resolved.observers] == ["watcher"]
