"""One error format for every 4xx and 5xx of the REST API, per-token throttling and pagination."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from rest_framework import exceptions

from cpms.errors import exception_handler
from cpms.models import Role
from tests.cpms.api_world import World, build_world, token_client


@pytest.fixture
def world(db: Any) -> World:
    return build_world()


def error(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


def test_a_validation_error_lists_each_field(world: World) -> None:
    response = world.client(Role.OPERATOR).post(
        "/api/v1/sites/", {"time_zone": "Mars/Olympus", "country": "nl"}, format="json"
    )
    assert response.status_code == 400
    body = error(response)
    assert body["code"] == "invalid"
    assert body["details"]["name"] == [{"message": "This field is required.", "code": "required"}]
    assert body["details"]["time_zone"][0]["message"] == "'Mars/Olympus' is not an IANA time zone."
    assert body["details"]["country"][0]["code"] == "invalid"


def test_an_unknown_api_path_is_a_json_404(world: World) -> None:
    response = world.client(Role.OPERATOR).get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert error(response)["code"] == "not_found"


def test_an_unknown_id_is_a_404(world: World) -> None:
    response = world.client(Role.OPERATOR).get("/api/v1/sessions/999999/")
    assert response.status_code == 404
    assert error(response) == {"code": "not_found", "message": "Not found.", "details": None}


def test_a_wrong_method_is_a_405(world: World) -> None:
    response = world.client(Role.OPERATOR).delete("/api/v1/chargers/ACME-1/")
    assert response.status_code == 405
    assert error(response)["code"] == "method_not_allowed"


def test_a_role_without_the_right_is_a_403(world: World) -> None:
    response = world.client(Role.INTEGRATOR).post("/api/v1/sites/", {"name": "X"}, format="json")
    assert response.status_code == 403
    assert error(response) == {
        "code": "permission_denied",
        "message": "Your role does not allow this.",
        "details": None,
    }


def test_malformed_json_is_a_400(world: World) -> None:
    response = world.client(Role.OPERATOR).generic(
        "POST", "/api/v1/sites/", b'{"name": ', content_type="application/json"
    )
    assert response.status_code == 400
    assert error(response)["code"] == "parse_error"


def test_a_lone_surrogate_is_a_400_not_a_database_error(world: World) -> None:
    response = world.client(Role.OPERATOR).generic(
        "POST", "/api/v1/sites/", b'{"name": "Depot \\ud800"}', content_type="application/json"
    )
    assert response.status_code == 400
    assert error(response)["code"] == "parse_error"


def test_an_unsupported_media_type_is_a_415(world: World) -> None:
    response = world.client(Role.OPERATOR).generic(
        "POST", "/api/v1/sites/", b"name=Depot", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415
    assert error(response)["code"] == "unsupported_media_type"


def test_a_bad_filter_value_is_a_400(world: World) -> None:
    response = world.client(Role.OPERATOR).get("/api/v1/frames/?since=yesterday")
    assert response.status_code == 400
    assert "since" in error(response)["details"]


@pytest.mark.parametrize("query", ["cursor=garbage", "page_size=0", "page_size=many"])
def test_bad_pagination_parameters_are_a_400(world: World, query: str) -> None:
    response = world.client(Role.OPERATOR).get(f"/api/v1/frames/?{query}")
    assert response.status_code == 400
    assert error(response)["code"] == "invalid"


def test_an_unexpected_exception_becomes_a_500_in_the_format() -> None:
    response = exception_handler(RuntimeError("boom"), {"view": None})
    assert response.status_code == 500
    assert response.data == {
        "error": {
            "code": "server_error",
            "message": "The server could not process the request.",
            "details": None,
        }
    }


def test_throttled_requests_get_a_429_with_retry_after(world: World) -> None:
    client = world.client(Role.INTEGRATOR)
    with override_settings(CPMS_API_THROTTLE_RATE="3/min"):
        statuses = [client.get("/api/v1/organizations/").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        response = client.get("/api/v1/organizations/")
        body = error(response)
        assert body["code"] == "throttled"
        assert 0 < body["details"]["retry_after"] <= 60
        assert int(response["Retry-After"]) == body["details"]["retry_after"]
        # The budget is per token: another client of the same organization is not held back.
        assert world.client(Role.OPERATOR).get("/api/v1/organizations/").status_code == 200


def test_the_handler_keeps_the_challenge_of_an_auth_failure() -> None:
    exc = exceptions.NotAuthenticated()
    exc.auth_header = "Token"  # type: ignore[attr-defined]
    response = exception_handler(exc, {"view": None})
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_cursor_pages_cover_every_item_once(world: World) -> None:
    client = world.client(Role.OPERATOR)
    seen: list[int] = []
    url: str | None = "/api/v1/frames/?page_size=2"
    pages = 0
    while url:
        body = client.get(url).json()
        assert len(body["results"]) <= 2
        seen.extend(item["id"] for item in body["results"])
        url = body["next"]
        pages += 1
    expected = [f.pk for i in ["ACME-1", "ACME-2"] for f in world.acme.frames[i]]
    assert sorted(seen) == sorted(expected)
    assert len(seen) == len(set(seen))
    assert pages == 3


def test_lists_are_newest_first_where_time_matters(world: World) -> None:
    client = token_client(world.acme.keys[Role.OPERATOR])
    frames = client.get("/api/v1/frames/?charger=ACME-1").json()["results"]
    assert [f["action"] for f in frames] == ["Heartbeat", "StatusNotification", "BootNotification"]
