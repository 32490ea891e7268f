"""Routing policy files: parse and validate a policy document into frozen dataclasses.

Pure: no database. What the file names that lives in the database (organizations, sites, chargers,
upstreams defined earlier) is checked by the service that applies it. Two shapes are accepted:

* named upstreams with routes per charger, site, organization and a default::

    {"upstreams": {"legacy": {"url": "wss://legacy.example.com/ocpp", "credentials": "basic_upstream",
                              "password": "..."}},
     "routes": [{"scope": "default", "upstreams": [{"upstream": "local", "role": "primary"}]},
                {"scope": "site", "organization": "acme", "site": "Depot",
                 "upstreams": [{"upstream": "legacy", "role": "primary"},
                               {"upstream": "local", "role": "observer"}]}]}

* per charger, one object or a list of them::

    {"charger_id": "CP-001", "upstreams": [{"url": "wss://a.example/ocpp", "role": "primary"},
                                           {"url": "wss://b.example/ocpp", "role": "observer"}]}

  A URL names the upstream with that base URL, or a new upstream named after its host.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

LOCAL = "local"
ROLES = ("primary", "observer")
SCOPES = ("charger", "site", "organization", "global")
# "default" reads better in a file for the route everyone gets without another.
SCOPE_ALIASES = {"default": "global"}
CREDENTIALS = ("none", "basic_upstream", "basic_charger", "forward")
PRIMARY_DOWN = ("close", "keep_open")
OCPP_VERSIONS = ("1.6", "2.0.1", "2.1")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
IDENTITY_RE = re.compile(r"^[^/]{1,48}$")
ACTION_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")
DEFAULT_GRACE_SECONDS = 15


@dataclass(frozen=True, slots=True)
class PolicyError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class PolicyInvalid(ValueError):
    """The file does not describe a valid policy; nothing was changed."""

    def __init__(self, errors: Iterable[PolicyError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    name: str
    url: str
    ocpp_versions: tuple[str, ...] = OCPP_VERSIONS
    identity_template: str = "{charger_id}"
    credentials: str = "none"
    username: str = ""
    password: str = ""
    tls_verify: bool = True
    ca_bundle: str = ""
    # The slug of the organization that owns it; empty: shared.
    organization: str = ""
    # True when the file only names the upstream by URL: an existing one is left as it is.
    implicit: bool = False


@dataclass(frozen=True, slots=True)
class LegSpec:
    upstream: str
    role: str
    identity: str = ""
    allowed_actions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteSpec:
    scope: str
    # charger: the identity; site: the site name; organization: its slug; global: "".
    target: str = ""
    organization: str = ""
    legs: tuple[LegSpec, ...] = ()
    primary_down: str = "close"
    grace_seconds: int = DEFAULT_GRACE_SECONDS
    protected_keys: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.scope, self.organization, self.target)

    @property
    def primary(self) -> str:
        return next(leg.upstream for leg in self.legs if leg.role == "primary")

    @property
    def observers(self) -> tuple[str, ...]:
        return tuple(leg.upstream for leg in self.legs if leg.role == "observer")

    def describe(self) -> str:
        if self.scope == "global":
            return "global default route"
        if self.scope == "site":
            return f"site {self.organization}/{self.target}"
        return f"{self.scope} {self.target}"


@dataclass(frozen=True, slots=True)
class Policy:
    upstreams: tuple[UpstreamSpec, ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    # When true, routes the file does not mention are removed (within what the applier may touch).
    replace: bool = False

    def upstream(self, name: str) -> UpstreamSpec | None:
        return next((spec for spec in self.upstreams if spec.name == name), None)


@dataclass
class _Parser:
    known: Mapping[str, str]  # upstream name -> base URL, as the database has them
    forwarding: frozenset[str] = frozenset()  # known upstreams that forward the charger's password
    errors: list[PolicyError] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.errors.append(PolicyError(path, message))


def url_problem(url: Any) -> str | None:
    """Why ``url`` cannot be an upstream's base URL, or None when it can."""
    if not isinstance(url, str) or not url.strip():
        return "must be a ws:// or wss:// URL"
    if url != url.strip() or any(c.isspace() for c in url):
        return f"bad URL {url!r}: contains whitespace"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"bad URL {url!r}: {exc}"
    if parts.scheme not in ("ws", "wss"):
        return f"bad URL {url!r}: the scheme must be ws or wss"
    if not parts.hostname:
        return f"bad URL {url!r}: no host"
    if parts.username is not None or parts.password is not None:
        return f"bad URL {url!r}: credentials go in the upstream's credentials, not the URL"
    if parts.query or parts.fragment:
        return f"bad URL {url!r}: no query or fragment allowed"
    if port == 0:
        return f"bad URL {url!r}: port 0"
    return None


def name_for_url(url: str, taken: Iterable[str]) -> str:
    """A readable upstream name for a URL given only by address: its host, made unique."""
    parts = urlsplit(url)
    base = (parts.hostname or "upstream").lower()
    if parts.port:
        base = f"{base}-{parts.port}"
    base = re.sub(r"[^a-z0-9._-]", "-", base)[:56].strip("-.") or "upstream"
    if not base[0].isalnum():
        base = f"u{base}"
    used = set(taken)
    name, n = base, 2
    while name in used or name == LOCAL:
        name, n = f"{base}-{n}", n + 1
    return name


def _strings(p: _Parser, value: Any, path: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        p.error(path, "must be a list of strings")
        return ()
    bad = [v for v in value if not pattern.match(v)]
    if bad:
        p.error(path, f"invalid entries {bad!r}")
    if len(set(value)) != len(value):
        p.error(path, "lists an entry twice")
    return tuple(value)


def _only(p: _Parser, data: Mapping[str, Any], allowed: Iterable[str], path: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        p.error(path, f"unknown field(s) {', '.join(unknown)}")


_UPSTREAM_FIELDS = (
    "url",
    "ocpp_versions",
    "identity",
    "credentials",
    "username",
    "password",
    "organization",
    "tls_verify",
    "ca_bundle",
)


def _upstream(p: _Parser, name: Any, data: Any, path: str) -> UpstreamSpec | None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        p.error(path, "an upstream name is 1-64 lowercase letters, digits, '.', '_' or '-'")
        return None
    if name == LOCAL:
        p.error(path, "'local' is the built-in central system and cannot be redefined")
        return None
    if not isinstance(data, dict):
        p.error(path, "must be an object with at least a url")
        return None
    _only(p, data, _UPSTREAM_FIELDS, path)
    problem = url_problem(data.get("url"))
    if problem:
        p.error(f"{path}.url", problem)
    versions = data.get("ocpp_versions", list(OCPP_VERSIONS))
    if (
        not isinstance(versions, list)
        or not versions
        or any(v not in OCPP_VERSIONS for v in versions)
    ):
        p.error(f"{path}.ocpp_versions", f"must be a non-empty list of {', '.join(OCPP_VERSIONS)}")
        versions = list(OCPP_VERSIONS)
    identity = data.get("identity", "{charger_id}")
    if not isinstance(identity, str) or not identity or "/" in identity.replace("{charger_id}", ""):
        p.error(f"{path}.identity", "must be a non-empty identity without '/', e.g. {charger_id}")
        identity = "{charger_id}"
    credentials = data.get("credentials", "none")
    if credentials not in CREDENTIALS:
        p.error(f"{path}.credentials", f"must be one of {', '.join(CREDENTIALS)}")
        credentials = "none"
    password = data.get("password", "")
    if not isinstance(password, str):
        p.error(f"{path}.password", "must be a string")
        password = ""
    if credentials == "basic_upstream" and not password and name not in p.known:
        # An upstream already defined keeps its password when the file leaves it out.
        p.error(f"{path}.password", "Basic credentials per upstream need a password")
    if credentials != "basic_upstream" and password:
        p.error(
            f"{path}.password",
            f"a password is only used with credentials 'basic_upstream', not {credentials!r}",
        )
    username = data.get("username", "")
    if not isinstance(username, str) or ":" in username:
        p.error(f"{path}.username", "must be a string without ':'")
        username = ""
    organization = data.get("organization", "")
    if not isinstance(organization, str):
        p.error(f"{path}.organization", "the slug of the organization that owns it")
        organization = ""
    tls_verify = data.get("tls_verify", True)
    if not isinstance(tls_verify, bool):
        p.error(f"{path}.tls_verify", "must be true or false")
        tls_verify = True
    ca_bundle = data.get("ca_bundle", "")
    if not isinstance(ca_bundle, str) or (
        ca_bundle and "-----BEGIN CERTIFICATE-----" not in ca_bundle
    ):
        p.error(f"{path}.ca_bundle", "must be PEM text with at least one CERTIFICATE block")
        ca_bundle = ""
    return UpstreamSpec(
        name=name,
        url=str(data.get("url", "")),
        ocpp_versions=tuple(sorted(set(versions), key=OCPP_VERSIONS.index)),
        identity_template=identity,
        credentials=credentials,
        username=username,
        password=password,
        tls_verify=tls_verify,
        ca_bundle=ca_bundle,
        organization=organization,
    )


class _Upstreams:
    """Upstreams of the file, by name, plus those created for legs given only by URL."""

    def __init__(self, p: _Parser, specs: list[UpstreamSpec]) -> None:
        self.p = p
        self.by_name = {spec.name: spec for spec in specs}

    def for_url(self, url: str) -> str:
        for spec in self.by_name.values():
            if spec.url == url:
                return spec.name
        for name, known_url in self.p.known.items():
            if known_url == url:
                return name
        name = name_for_url(url, [*self.by_name, *self.p.known])
        self.by_name[name] = UpstreamSpec(name=name, url=url, implicit=True)
        return name

    def exists(self, name: str) -> bool:
        return name == LOCAL or name in self.by_name or name in self.p.known

    def credentials(self, name: str) -> str:
        spec = self.by_name.get(name)
        if spec is not None:
            return spec.credentials
        return "forward" if name in self.p.forwarding else ""


_LEG_FIELDS = ("upstream", "url", "role", "identity", "allowed_actions")


def _leg(p: _Parser, ups: _Upstreams, data: Any, path: str) -> LegSpec | None:
    if not isinstance(data, dict):
        p.error(path, "must be an object with an upstream (or url) and a role")
        return None
    _only(p, data, _LEG_FIELDS, path)
    role = data.get("role")
    if role not in ROLES:
        p.error(f"{path}.role", "must be 'primary' or 'observer'")
    name = data.get("upstream")
    url = data.get("url")
    if name is not None and url is not None:
        p.error(path, "give an upstream's name or a url, not both")
        return None
    if url is not None:
        if url == LOCAL:
            name = LOCAL
        else:
            problem = url_problem(url)
            if problem:
                p.error(f"{path}.url", problem)
                return None
            name = ups.for_url(url)
    if not isinstance(name, str) or not name:
        p.error(path, "needs an upstream (a name) or a url")
        return None
    if not ups.exists(name):
        p.error(f"{path}.upstream", f"unknown upstream {name!r}")
    identity = data.get("identity", "")
    if not isinstance(identity, str) or (identity and not IDENTITY_RE.match(identity)):
        p.error(f"{path}.identity", "must be 1-48 characters without '/'")
        identity = ""
    actions = _strings(p, data.get("allowed_actions"), f"{path}.allowed_actions", ACTION_RE)
    if actions and role == "primary":
        p.error(
            f"{path}.allowed_actions",
            "only observers take allowed actions; the primary may send any",
        )
    if role == "observer" and ups.credentials(name) == "forward":
        p.error(path, f"upstream {name!r} forwards the charger's own credentials: primary only")
    if role == "observer" and name == LOCAL and actions:
        p.error(f"{path}.allowed_actions", "'local' as an observer sends no CALLs to the charger")
    return LegSpec(
        upstream=name, role=str(role), identity=identity, allowed_actions=tuple(sorted(actions))
    )


def canonical_legs(legs: Iterable[LegSpec]) -> tuple[LegSpec, ...]:
    """Legs in one order (the primary, then observers by name), so equal routes compare equal."""
    return tuple(sorted(legs, key=lambda leg: (leg.role != "primary", leg.upstream)))


_ROUTE_FIELDS = (
    "scope",
    "charger_id",
    "site",
    "organization",
    "upstreams",
    "primary_down",
    "grace_seconds",
    "protected_keys",
)


def _route(p: _Parser, ups: _Upstreams, data: Any, path: str) -> RouteSpec | None:
    if not isinstance(data, dict):
        p.error(path, "must be an object")
        return None
    _only(p, data, _ROUTE_FIELDS, path)
    scope = data.get("scope") or ("charger" if "charger_id" in data else None)
    scope = SCOPE_ALIASES.get(scope, scope) if isinstance(scope, str) else scope
    if scope not in SCOPES:
        p.error(f"{path}.scope", f"must be one of {', '.join(SCOPES)} (or default)")
        return None
    target, organization = "", ""
    if scope == "charger":
        target = data.get("charger_id", "")
        if not isinstance(target, str) or not IDENTITY_RE.match(target):
            p.error(f"{path}.charger_id", "a charger id of 1-48 characters without '/'")
    elif scope == "site":
        target = data.get("site", "")
        organization = data.get("organization", "")
        if not isinstance(target, str) or not target:
            p.error(f"{path}.site", "the site's name")
        if not isinstance(organization, str) or not organization:
            p.error(f"{path}.organization", "the slug of the site's organization")
    elif scope == "organization":
        target = data.get("organization", "")
        if not isinstance(target, str) or not target:
            p.error(f"{path}.organization", "the organization's slug")
    needed = {
        "charger": {"charger_id"},
        "site": {"site", "organization"},
        "organization": {"organization"},
        "global": set(),
    }[scope]
    for extra in sorted(({"charger_id", "site", "organization"} & set(data)) - needed):
        p.error(f"{path}.{extra}", f"does not belong to a {scope} route")
    legs_data = data.get("upstreams")
    if not isinstance(legs_data, list) or not legs_data:
        p.error(f"{path}.upstreams", "a route needs a list of upstreams with exactly one primary")
        return None
    legs = [_leg(p, ups, leg, f"{path}.upstreams[{i}]") for i, leg in enumerate(legs_data)]
    valid = [leg for leg in legs if leg is not None]
    primaries = [leg.upstream for leg in valid if leg.role == "primary"]
    if len(valid) == len(legs):
        if not primaries:
            p.error(f"{path}.upstreams", "no primary: exactly one upstream must be primary")
        elif len(primaries) > 1:
            p.error(
                f"{path}.upstreams",
                f"two primaries ({', '.join(primaries)}): exactly one upstream may be primary",
            )
    names = [leg.upstream for leg in valid]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        p.error(f"{path}.upstreams", f"upstream(s) listed twice: {', '.join(twice)}")
    primary_down = data.get("primary_down", "close")
    if primary_down not in PRIMARY_DOWN:
        p.error(f"{path}.primary_down", f"must be one of {', '.join(PRIMARY_DOWN)}")
    grace = data.get("grace_seconds", DEFAULT_GRACE_SECONDS)
    if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= 3600:
        p.error(f"{path}.grace_seconds", "must be a whole number of seconds from 0 to 3600")
        grace = DEFAULT_GRACE_SECONDS
    keys = _strings(
        p, data.get("protected_keys"), f"{path}.protected_keys", re.compile(r"^\S{1,100}$")
    )
    return RouteSpec(
        scope=str(scope),
        target=str(target),
        organization=str(organization),
        legs=canonical_legs(valid),
        primary_down=str(primary_down),
        grace_seconds=grace,
        protected_keys=keys,
    )


def policy_parse(
    data: Any,
    *,
    known_upstreams: Mapping[str, str] | None = None,
    forwarding_upstreams: Iterable[str] = (),
) -> Policy:
    """The policy ``data`` (a decoded JSON document) describes; raises ``PolicyInvalid``.

    ``known_upstreams`` maps the names of upstreams already defined to their base URLs: legs may
    name them, and a leg given by URL reuses the one with that URL. ``forwarding_upstreams`` are
    the known ones that forward the charger's own password: they may only be primaries.
    """
    p = _Parser(known=dict(known_upstreams or {}), forwarding=frozenset(forwarding_upstreams))
    if (
        isinstance(data, list)
        and data
        and all(isinstance(d, dict) and "charger_id" in d for d in data)
    ):
        data = {"routes": data}
    elif isinstance(data, dict) and "charger_id" in data:
        data = {"routes": [data]}
    if not isinstance(data, dict):
        raise PolicyInvalid(
            [
                PolicyError(
                    "",
                    "a policy is an object with upstreams and routes, or a charger_id with upstreams",
                )
            ]
        )
    _only(p, data, ("upstreams", "routes", "replace"), "")
    specs: list[UpstreamSpec] = []
    upstreams_data = data.get("upstreams", {})
    if not isinstance(upstreams_data, dict):
        p.error("upstreams", "must be an object mapping upstream names to their settings")
        upstreams_data = {}
    for name, spec_data in upstreams_data.items():
        spec = _upstream(p, name, spec_data, f"upstreams.{name}")
        if spec is not None:
            specs.append(spec)
    urls = [spec.url for spec in specs]
    for url in sorted({u for u in urls if urls.count(u) > 1}):
        p.error("upstreams", f"two upstreams share the URL {url}")
    ups = _Upstreams(p, specs)
    routes_data = data.get("routes", [])
    if not isinstance(routes_data, list):
        p.error("routes", "must be a list of routes")
        routes_data = []
    routes: list[RouteSpec] = []
    seen: dict[tuple[str, str, str], int] = {}
    for i, route_data in enumerate(routes_data):
        route = _route(p, ups, route_data, f"routes[{i}]")
        if route is None:
            continue
        if route.key in seen:
            p.error(
                f"routes[{i}]", f"{route.describe()} is already given by routes[{seen[route.key]}]"
            )
            continue
        seen[route.key] = i
        routes.append(route)
    replace = data.get("replace", False)
    if not isinstance(replace, bool):
        p.error("replace", "must be true or false")
    if not specs and not routes and not p.errors:
        p.error("", "the policy is empty: give upstreams or routes")
    if p.errors:
        raise PolicyInvalid(p.errors)
    return Policy(
        upstreams=tuple(ups.by_name.values()), routes=tuple(routes), replace=bool(replace)
    )


def policy_document(policy: Policy) -> dict[str, Any]:
    """The file form of ``policy`` (named shape); passwords are left out."""
    upstreams: dict[str, Any] = {}
    for spec in policy.upstreams:
        upstreams[spec.name] = {
            "url": spec.url,
            "ocpp_versions": list(spec.ocpp_versions),
            "identity": spec.identity_template,
            "credentials": spec.credentials,
            **({"username": spec.username} if spec.username else {}),
            **({"organization": spec.organization} if spec.organization else {}),
            "tls_verify": spec.tls_verify,
            **({"ca_bundle": spec.ca_bundle} if spec.ca_bundle else {}),
        }
    return {
        "upstreams": upstreams,
        "routes": [route_document(route) for route in policy.routes],
    }


def route_document(route: RouteSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {"scope": route.scope}
    if route.scope == "charger":
        doc["charger_id"] = route.target
    elif route.scope == "site":
        doc["organization"] = route.organization
        doc["site"] = route.target
    elif route.scope == "organization":
        doc["organization"] = route.target
    legs: list[dict[str, Any]] = []
    for leg in route.legs:
        item: dict[str, Any] = {"upstream": leg.upstream, "role": leg.role}
        if leg.identity:
            item["identity"] = leg.identity
        if leg.allowed_actions:
            item["allowed_actions"] = list(leg.allowed_actions)
        legs.append(item)
    doc["upstreams"] = legs
    doc["primary_down"] = route.primary_down
    doc["grace_seconds"] = route.grace_seconds
    if route.protected_keys:
        doc["protected_keys"] = list(route.protected_keys)
    return doc
