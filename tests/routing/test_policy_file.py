"""The policy file format: both shapes parse, and every invalid file names what is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.policy_file import (
    LOCAL,
    Policy,
    PolicyInvalid,
    name_for_url,
    policy_document,
    policy_parse,
    url_problem,
)

NAMED = {
    "upstreams": {
        "legacy": {
            "url": "wss://legacy.example.com/ocpp",
            "ocpp_versions": ["1.6"],
            "credentials": "basic_upstream",
            "password": "s3cret-pass",
        },
        "analytics": {"url": "ws://analytics.example.com:9000/ocpp"},
    },
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
            "grace_seconds": 30,
            "protected_keys": ["CentralSystemUrl"],
        },
        {
            "scope": "site",
            "organization": "acme",
            "site": "Depot",
            "upstreams": [
                {"upstream": "local", "role": "primary"},
                {
                    "upstream": "analytics",
                    "role": "observer",
                    "allowed_actions": ["TriggerMessage"],
                },
            ],
        },
        {
            "charger_id": "CP-001",
            "upstreams": [
                {"upstream": "legacy", "role": "primary", "identity": "LEG-0001"},
                {"upstream": "local", "role": "observer"},
            ],
        },
    ],
}


def errors_of(data: Any, **kwargs: Any) -> str:
    with pytest.raises(PolicyInvalid) as caught:
        policy_parse(data, **kwargs)
    return str(caught.value)


def test_named_shape_parses_every_scope() -> None:
    policy = policy_parse(NAMED)
    assert {spec.name for spec in policy.upstreams} == {"legacy", "analytics"}
    legacy = policy.upstream("legacy")
    assert legacy is not None
    assert legacy.ocpp_versions == ("1.6",) and legacy.credentials == "basic_upstream"
    scopes = [(route.scope, route.organization, route.target) for route in policy.routes]
    assert scopes == [
        ("global", "", ""),
        ("organization", "", "acme"),
        ("site", "acme", "Depot"),
        ("charger", "", "CP-001"),
    ]
    org = policy.routes[1]
    assert org.primary == "legacy" and org.observers == (LOCAL,)
    assert org.primary_down == "keep_open" and org.grace_seconds == 30
    assert org.protected_keys == ("CentralSystemUrl",)
    assert policy.routes[2].legs[1].allowed_actions == ("TriggerMessage",)
    assert policy.routes[3].legs[0].identity == "LEG-0001"


def test_per_charger_shape_names_upstreams_by_url() -> None:
    policy = policy_parse(
        {
            "charger_id": "CP-001",
            "upstreams": [
                {"url": "wss://legacy.example.com/ocpp", "role": "primary"},
                {"url": "wss://analytics.example.com/ocpp", "role": "observer"},
            ],
        },
        known_upstreams={"legacy": "wss://legacy.example.com/ocpp"},
    )
    (route,) = policy.routes
    assert route.scope == "charger" and route.target == "CP-001"
    # The known URL reuses the known upstream; the new one is named after its host.
    assert route.primary == "legacy"
    assert route.observers == ("analytics.example.com",)
    (created,) = policy.upstreams
    assert created.name == "analytics.example.com" and created.implicit


def test_per_charger_list_and_local_by_name() -> None:
    policy = policy_parse(
        [
            {"charger_id": "CP-1", "upstreams": [{"upstream": "local", "role": "primary"}]},
            {
                "charger_id": "CP-2",
                "upstreams": [
                    {"url": "ws://10.0.0.5:8180/steve/websocket", "role": "primary"},
                    {"url": "local", "role": "observer"},
                ],
            },
        ]
    )
    assert [route.target for route in policy.routes] == ["CP-1", "CP-2"]
    assert policy.routes[1].primary == "10.0.0.5-8180"
    assert policy.routes[1].observers == (LOCAL,)


def test_same_url_twice_in_a_file_is_one_upstream() -> None:
    policy = policy_parse(
        [
            {
                "charger_id": f"CP-{n}",
                "upstreams": [{"url": "wss://a.example/x", "role": "primary"}],
            }
            for n in range(3)
        ]
    )
    assert [spec.name for spec in policy.upstreams] == ["a.example"]
    assert {route.primary for route in policy.routes} == {"a.example"}


@pytest.mark.parametrize(
    ("legs", "message"),
    [
        (
            [{"upstream": "nowhere", "role": "primary"}],
            "routes[0].upstreams[0].upstream: unknown upstream 'nowhere'",
        ),
        (
            [{"upstream": "local", "role": "primary"}, {"upstream": "legacy", "role": "primary"}],
            "routes[0].upstreams: two primaries (local, legacy)",
        ),
        (
            [{"upstream": "local", "role": "observer"}],
            "routes[0].upstreams: no primary",
        ),
        (
            [{"url": "http://legacy.example.com/ocpp", "role": "primary"}],
            "routes[0].upstreams[0].url: bad URL 'http://legacy.example.com/ocpp': the scheme must be ws or wss",
        ),
        (
            [{"url": "wss://user:pw@legacy.example.com/", "role": "primary"}],
            "credentials go in the upstream's credentials, not the URL",
        ),
        (
            [{"upstream": "local", "role": "boss"}],
            "routes[0].upstreams[0].role: must be 'primary' or 'observer'",
        ),
        (
            [{"upstream": "local", "role": "primary"}, {"upstream": "local", "role": "observer"}],
            "upstream(s) listed twice: local",
        ),
        (
            [{"upstream": "local", "role": "primary", "allowed_actions": ["Reset"]}],
            "only observers take allowed actions",
        ),
        ([], "a route needs a list of upstreams with exactly one primary"),
    ],
)
def test_invalid_routes_name_the_problem(legs: list[dict[str, Any]], message: str) -> None:
    data = {
        "upstreams": {"legacy": {"url": "wss://legacy.example.com/ocpp"}},
        "routes": [{"charger_id": "CP-001", "upstreams": legs}],
    }
    assert message in errors_of(data)


def test_every_error_is_reported_at_once() -> None:
    text = errors_of(
        {
            "upstreams": {"legacy": {"url": "ftp://x"}, "local": {"url": "ws://y"}},
            "routes": [
                {"scope": "site", "upstreams": [{"upstream": "ghost", "role": "primary"}]},
                {"scope": "planet", "upstreams": []},
            ],
        }
    )
    assert "upstreams.legacy.url: bad URL 'ftp://x'" in text
    assert "upstreams.local: 'local' is the built-in central system" in text
    assert "routes[0].site: the site's name" in text
    assert "routes[0].organization: the slug of the site's organization" in text
    assert "routes[0].upstreams[0].upstream: unknown upstream 'ghost'" in text
    assert "routes[1].scope: must be one of" in text


def test_forwarding_upstream_is_primary_only() -> None:
    data = {
        "upstreams": {"legacy": {"url": "wss://l.example/", "credentials": "forward"}},
        "routes": [
            {
                "charger_id": "CP-1",
                "upstreams": [
                    {"upstream": "local", "role": "primary"},
                    {"upstream": "legacy", "role": "observer"},
                ],
            }
        ],
    }
    assert "forwards the charger's own credentials: primary only" in errors_of(data)
    # The same holds for an upstream the database already has.
    known = {"routes": data["routes"]}
    message = errors_of(
        known, known_upstreams={"legacy": "wss://l.example/"}, forwarding_upstreams=["legacy"]
    )
    assert "primary only" in message


def test_credentials_and_route_knobs_are_checked() -> None:
    text = errors_of(
        {
            "upstreams": {
                "a": {"url": "wss://a.example/", "credentials": "basic_upstream"},
                "b": {"url": "wss://b.example/", "password": "x", "tls_verify": "no"},
                "c": {"url": "wss://c.example/", "ocpp_versions": ["1.5"], "ca_bundle": "nope"},
            },
            "routes": [
                {
                    "scope": "default",
                    "organization": "acme",
                    "upstreams": [{"upstream": "a", "role": "primary"}],
                    "primary_down": "panic",
                    "grace_seconds": -1,
                }
            ],
        }
    )
    assert "upstreams.a.password: Basic credentials per upstream need a password" in text
    assert "upstreams.b.password: a password is only used with credentials 'basic_upstream'" in text
    assert "upstreams.b.tls_verify: must be true or false" in text
    assert "upstreams.c.ocpp_versions" in text
    assert "upstreams.c.ca_bundle: must be PEM text" in text
    assert "routes[0].organization: does not belong to a global route" in text
    assert "routes[0].primary_down: must be one of close, keep_open" in text
    assert "routes[0].grace_seconds" in text


def test_duplicate_scope_and_unknown_fields() -> None:
    text = errors_of(
        {
            "routes": [
                {"charger_id": "CP-1", "upstreams": [{"upstream": "local", "role": "primary"}]},
                {"charger_id": "CP-1", "upstreams": [{"upstream": "local", "role": "primary"}]},
            ],
            "colour": "blue",
        }
    )
    assert "routes[1]: charger CP-1 is already given by routes[0]" in text
    assert "unknown field(s) colour" in text


@pytest.mark.parametrize("data", [None, 3, "x", [], [1], {}])
def test_not_a_policy(data: Any) -> None:
    assert errors_of(data)


def test_document_round_trips_without_passwords() -> None:
    policy = policy_parse(NAMED)
    document = policy_document(policy)
    assert "password" not in json.dumps(document)
    again = policy_parse(
        {**document, "upstreams": {**document["upstreams"], "legacy": NAMED["upstreams"]["legacy"]}}
    )
    assert again.routes == policy.routes


# -- properties --------------------------------------------------------------------------------

hosts = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){0,2}", fullmatch=True)
urls = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{f':{port}' if port else ''}{path}",
    st.sampled_from(["ws", "wss"]),
    hosts,
    st.one_of(st.none(), st.integers(1, 65535)),
    st.sampled_from(["", "/", "/ocpp", "/steve/websocket/CentralSystemService"]),
)


@settings(deadline=None)
@given(urls)
def test_any_ws_url_is_accepted(url: str) -> None:
    assert url_problem(url) is None


@settings(deadline=None)
@given(st.text(max_size=40))
def test_url_check_never_crashes_and_refuses_non_ws(text: str) -> None:
    problem = url_problem(text)
    if not text.startswith(("ws://", "wss://")):
        assert problem is not None


@settings(deadline=None)
@given(
    st.lists(urls, min_size=1, max_size=6, unique=True),
    st.sets(st.sampled_from(["a", "b", "local"])),
)
def test_url_names_are_unique_and_valid(url_list: list[str], taken: set[str]) -> None:
    names: list[str] = []
    for url in url_list:
        names.append(name_for_url(url, [*taken, *names]))
    assert len(set(names)) == len(names)
    assert not set(names) & (taken | {LOCAL})
    policy = policy_parse(
        {"upstreams": {n: {"url": u} for n, u in zip(names, url_list, strict=True)}}
    )
    assert isinstance(policy, Policy)


roles = st.lists(st.sampled_from(["primary", "observer"]), min_size=1, max_size=5)


@settings(deadline=None)
@given(roles)
def test_exactly_one_primary_or_a_clear_error(role_list: list[str]) -> None:
    upstreams = {f"u{i}": {"url": f"wss://u{i}.example/"} for i in range(len(role_list))}
    data = {
        "upstreams": upstreams,
        "routes": [
            {
                "charger_id": "CP-1",
                "upstreams": [
                    {"upstream": f"u{i}", "role": role} for i, role in enumerate(role_list)
                ],
            }
        ],
    }
    primaries = role_list.count("primary")
    if primaries == 1:
        (route,) = policy_parse(data).routes
        assert route.primary == f"u{role_list.index('primary')}"
        assert len(route.observers) == len(role_list) - 1
    else:
        text = errors_of(data)
        assert ("no primary" if primaries == 0 else "two primaries") in text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["upstreams", "routes", "charger_id", "url", "role", "upstream", "scope", "site"]
            )
            | st.text(max_size=6),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(deadline=None, max_examples=300)
@given(json_values)
def test_any_json_is_a_policy_or_a_clear_error(data: Any) -> None:
    try:
        policy = policy_parse(data)
    except PolicyInvalid as exc:
        assert exc.errors and all(error.message for error in exc.errors)
    else:
        assert all(
            len([leg for leg in r.legs if leg.role == "primary"]) == 1 for r in policy.routes
        )
