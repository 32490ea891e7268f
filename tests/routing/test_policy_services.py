"""Applying policies: all or nothing, recorded with who and what, limited to the applier's reach;
``routing_apply`` and ``routing_show`` on the command line."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from chargers.models import Charger, Site
from cpms.models import Organization
from routing.models import LOCAL, LegStatus, OutboxEntry, Route, RoutingChange, Upstream
from routing.policy_file import PolicyInvalid
from routing.policy_services import policy_apply, policy_from_data, policy_plan
from routing.selectors import route_for_charger

pytestmark = pytest.mark.django_db

LEGACY = "ws://legacy.example.com:9000/ocpp"
ANALYTICS = "wss://analytics.example.com/ocpp"


def apply(
    data: Any, organization_id: int | None = None, **kwargs: Any
) -> tuple[RoutingChange, ...]:
    plan = policy_plan(
        policy=policy_from_data(data, organization_id=organization_id),
        organization_id=organization_id,
    )
    return policy_apply(plan=plan, source=kwargs.pop("source", "command"), **kwargs)


def named(**routes: Any) -> dict[str, Any]:
    return {
        "upstreams": {
            "legacy": {"url": LEGACY, "credentials": "basic_upstream", "password": "legacy-pass"},
            "analytics": {"url": ANALYTICS},
        },
        "routes": list(routes.values()),
    }


def legacy_primary(charger_id: str = "CP-1") -> dict[str, Any]:
    return {
        "charger_id": charger_id,
        "upstreams": [
            {"upstream": "legacy", "role": "primary"},
            {"upstream": "local", "role": "observer"},
        ],
    }


def test_apply_creates_upstreams_and_routes(charger: Charger) -> None:
    records = apply(named(cp=legacy_primary()), actor="ops@example.com")
    # The charger's route is its organization's change; the shared upstreams a change of their own.
    record, shared = records
    assert shared.organization is None and set(shared.after["upstreams"]) == {"legacy", "analytics"}
    legacy = Upstream.objects.get(name="legacy")
    assert legacy.url == LEGACY and legacy.password == "legacy-pass"
    resolved = route_for_charger(charger=charger)
    assert resolved.primary.upstream == "legacy"
    assert [leg.upstream for leg in resolved.observers] == [LOCAL]
    assert record.actor == "ops@example.com" and record.source == "command"
    assert record.organization_id == charger.organization_id
    assert record.before["routes"] == []
    assert record.after["routes"][0]["upstreams"][0] == {"upstream": "legacy", "role": "primary"}
    assert "cut-over from local" in record.summary
    # Passwords never go into the record.
    assert "legacy-pass" not in json.dumps([record.before, record.after])


def test_reapplying_the_same_policy_changes_nothing(charger: Charger) -> None:
    apply(named(cp=legacy_primary()))
    assert apply(named(cp=legacy_primary())) == ()
    assert RoutingChange.objects.count() == 2


def test_an_invalid_reference_changes_nothing(charger: Charger) -> None:
    data = named(cp=legacy_primary(), ghost=legacy_primary("CP-GHOST"))
    with pytest.raises(PolicyInvalid) as caught:
        apply(data)
    assert "routes[1].charger_id: no charger 'CP-GHOST'" in str(caught.value)
    assert not Upstream.objects.filter(name="legacy").exists()
    assert not Route.objects.exists() and not RoutingChange.objects.exists()


def test_cut_over_and_roll_back_are_recorded_from_and_to(charger: Charger) -> None:
    apply(named(cp=legacy_primary()))
    cutover = {
        "charger_id": "CP-1",
        "upstreams": [
            {"upstream": "local", "role": "primary"},
            {"upstream": "legacy", "role": "observer"},
        ],
    }
    plan = policy_plan(
        policy=policy_from_data({"routes": [cutover]}, organization_id=None), organization_id=None
    )
    (change,) = plan.cutovers
    assert (change.primary_before, change.primary_after) == ("legacy", LOCAL)
    (record,) = policy_apply(plan=plan, source="api")
    assert record.before["routes"][0]["upstreams"][0]["upstream"] == "legacy"
    assert record.after["routes"][0]["upstreams"][0]["upstream"] == LOCAL
    assert route_for_charger(charger=charger).local_controls
    (back,) = apply({"routes": [legacy_primary()]})
    assert (
        back.before == record.after | {"removed": []}
        or back.before["routes"] == record.after["routes"]
    )
    assert route_for_charger(charger=charger).primary.upstream == "legacy"
    assert RoutingChange.objects.filter(organization__isnull=False).count() == 3


def test_per_charger_shape_with_urls(charger: Charger) -> None:
    apply(
        {
            "charger_id": "CP-1",
            "upstreams": [
                {"url": LEGACY, "role": "primary"},
                {"url": ANALYTICS, "role": "observer"},
            ],
        }
    )
    resolved = route_for_charger(charger=charger)
    assert resolved.primary.url == f"{LEGACY}/CP-1"
    assert [leg.url for leg in resolved.observers] == [f"{ANALYTICS}/CP-1"]
    # The same URL again reuses the upstream that was created for it.
    apply({"charger_id": "CP-1", "upstreams": [{"url": ANALYTICS, "role": "primary"}]})
    assert Upstream.objects.filter(url=ANALYTICS).count() == 1


def test_scopes_and_knobs(charger: Charger, site: Site, organization: Organization) -> None:
    apply(
        {
            "upstreams": {"legacy": {"url": LEGACY}},
            "routes": [
                {"scope": "default", "upstreams": [{"upstream": "local", "role": "primary"}]},
                {
                    "scope": "organization",
                    "organization": "acme",
                    "upstreams": [
                        {"upstream": "legacy", "role": "primary"},
                        {"upstream": "local", "role": "observer"},
                    ],
                    "primary_down": "keep_open",
                    "grace_seconds": 40,
                    "protected_keys": ["CentralSystemUrl"],
                },
                {
                    "scope": "site",
                    "organization": "acme",
                    "site": "Depot",
                    "upstreams": [
                        {"upstream": "local", "role": "primary"},
                        {
                            "upstream": "legacy",
                            "role": "observer",
                            "allowed_actions": ["TriggerMessage"],
                        },
                    ],
                },
            ],
        }
    )
    resolved = route_for_charger(charger=charger)
    assert resolved.scope == "site"
    assert resolved.observers[0].allowed_actions == frozenset({"TriggerMessage"})
    other_site = Site.objects.create(organization=organization, name="Elsewhere")
    Charger.objects.filter(pk=charger.pk).update(site=other_site)
    charger.refresh_from_db()
    resolved = route_for_charger(charger=charger)
    assert resolved.scope == "organization" and resolved.primary.upstream == "legacy"
    assert resolved.policy.primary_down == "keep_open"
    assert resolved.policy.primary_grace_seconds == 40
    assert resolved.policy.protected_keys == frozenset({"CentralSystemUrl"})
    # One record for the organization's routes, one for the global route and shared upstream.
    assert sorted((r.organization_id or 0) for r in RoutingChange.objects.all()) == [
        0,
        organization.pk,
    ]


def test_replace_removes_routes_the_file_leaves_out(charger: Charger, site: Site) -> None:
    apply(
        named(
            cp=legacy_primary(),
            site={
                "scope": "site",
                "organization": "acme",
                "site": "Depot",
                "upstreams": [{"upstream": "analytics", "role": "primary"}],
            },
        )
    )
    (record,) = apply({"replace": True, "routes": [legacy_primary()]})
    assert record.organization_id == site.organization_id
    assert not Route.objects.filter(scope="site").exists()
    assert record.after["removed"][0]["site"] == "Depot"
    assert "site acme/Depot: removed" in record.summary


def test_an_operator_reaches_only_their_organization(
    charger: Charger, organization: Organization
) -> None:
    other = Organization.objects.create(name="Other", slug="other")
    Charger.objects.create(identity="CP-OTHER", organization=other)
    Upstream.objects.create(name="theirs", url="ws://theirs.example/", organization=other)
    data = {
        "upstreams": {"mine": {"url": "ws://mine.example/"}},
        "routes": [
            {"scope": "default", "upstreams": [{"upstream": "local", "role": "primary"}]},
            {"charger_id": "CP-OTHER", "upstreams": [{"upstream": "mine", "role": "primary"}]},
            {"charger_id": "CP-1", "upstreams": [{"upstream": "theirs", "role": "primary"}]},
            {
                "scope": "organization",
                "organization": "other",
                "upstreams": [{"upstream": "local", "role": "primary"}],
            },
        ],
    }
    with pytest.raises(PolicyInvalid) as caught:
        policy_plan(
            policy=policy_from_data(data, organization_id=organization.pk),
            organization_id=organization.pk,
        )
    text = str(caught.value)
    assert "unknown upstream 'theirs'" in text
    with pytest.raises(PolicyInvalid) as caught:
        data["routes"] = data["routes"][:2] + data["routes"][3:]
        policy_plan(
            policy=policy_from_data(data, organization_id=organization.pk),
            organization_id=organization.pk,
        )
    text = str(caught.value)
    assert "routes[0]: the global route is set by an administrator" in text
    assert "routes[1].charger_id: no charger 'CP-OTHER'" in text
    assert "routes[2].organization: must be your organization" in text
    # Within its reach, the operator's new upstream belongs to its organization.
    (record,) = apply(
        {
            "upstreams": {"mine": {"url": "ws://mine.example/"}},
            "routes": [
                {"charger_id": "CP-1", "upstreams": [{"upstream": "mine", "role": "primary"}]}
            ],
        },
        organization_id=organization.pk,
        source="api",
    )
    assert Upstream.objects.get(name="mine").organization == organization
    assert record.organization == organization


def test_a_known_upstream_keeps_its_password(charger: Charger) -> None:
    apply(named(cp=legacy_primary()))
    policy = {"upstreams": {"legacy": {"url": LEGACY + "/v2", "credentials": "basic_upstream"}}}
    apply(policy)
    legacy = Upstream.objects.get(name="legacy")
    assert legacy.url == LEGACY + "/v2" and legacy.password == "legacy-pass"


# -- management commands ----------------------------------------------------------------------


def write(tmp_path: Path, data: Any) -> str:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_routing_apply_and_show(tmp_path: Path, charger: Charger) -> None:
    out = run("routing_apply", write(tmp_path, named(cp=legacy_primary())), "--actor", "alice")
    assert "applied (change" in out and "charger CP-1: primary legacy, observers local" in out
    assert {r.actor for r in RoutingChange.objects.all()} == {"alice"}
    shown = run("routing_show")
    assert "legacy  ws://legacy.example.com:9000/ocpp" in shown
    assert "charger CP-1: primary legacy, observers local" in shown
    assert "alice via command" in shown
    assert "legacy-pass" not in shown
    # What --json prints applies back as "nothing changed" (its passwords are kept).
    printed = run("routing_show", "--json")
    assert "legacy-pass" not in printed
    again = run("routing_apply", write(tmp_path, printed))
    assert "already live: nothing changed" in again


def test_routing_show_lists_legs_with_their_health(charger: Charger) -> None:
    apply(named(cp=legacy_primary()))
    Charger.objects.filter(pk=charger.pk).update(connected=True)
    legacy = Upstream.objects.get(name="legacy")
    LegStatus.objects.create(
        charger=charger,
        upstream=legacy,
        role="primary",
        connected=True,
        latency_ms=12.4,
        reconnects=2,
    )
    OutboxEntry.objects.create(
        charger=charger, upstream=legacy, message_id="m1", action="Heartbeat", payload={}
    )
    shown = run("routing_show")
    assert (
        "CP-1 (connected, charger route): primary legacy backlog (12 ms, outbox 1, reconnects 2); observer local up"
        in shown
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON: Expecting property name enclosed in double quotes at line 1"),
        (
            {"charger_id": "CP-1", "upstreams": [{"upstream": "nowhere", "role": "primary"}]},
            "unknown upstream 'nowhere'",
        ),
        (
            {"charger_id": "CP-1", "upstreams": [{"upstream": "local", "role": "observer"}]},
            "no primary",
        ),
        (
            {"charger_id": "CP-1", "upstreams": [{"url": "https://x.example/", "role": "primary"}]},
            "the scheme must be ws or wss",
        ),
    ],
)
def test_routing_apply_refuses_bad_files(
    tmp_path: Path, charger: Charger, content: Any, message: str
) -> None:
    with pytest.raises(CommandError) as caught:
        run("routing_apply", write(tmp_path, content))
    assert message in str(caught.value)
    assert not Route.objects.exists() and not RoutingChange.objects.exists()


def test_routing_apply_dry_run_and_missing_file(tmp_path: Path, charger: Charger) -> None:
    out = run("routing_apply", write(tmp_path, named(cp=legacy_primary())), "--dry-run")
    assert "dry run" in out and "cut-over from local" in out
    assert not Route.objects.exists()
    with pytest.raises(CommandError, match="cannot read"):
        run("routing_apply", str(tmp_path / "missing.json"))


def test_changes_remember_the_user(charger: Charger) -> None:
    user = get_user_model().objects.create_user("bob", password="x" * 12)
    record, _shared = apply(named(cp=legacy_primary()), changed_by=user, source="dashboard")
    assert record.changed_by == user and record.actor == "bob"
