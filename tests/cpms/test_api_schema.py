"""The OpenAPI schema: valid, served with local interactive docs, and true to the running server
(schemathesis generates requests from it and the server never answers with a 5xx)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from django.core.management import call_command
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.test import APIClient
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from cpms.models import Organization, Role
from cpms.services import api_token_create
from tests.conftest import ServerProcess
from tests.cpms.api_world import build_world

# Examples per operation and generation mode: enough to reach every validation path, small
# enough that the whole run stays within a minute or two.
# Every check runs but positive_data_acceptance: a schema cannot say that a site name is already
# taken or that a cursor was never issued, and those are rightly 400s.
EXAMPLES_PER_OPERATION = 25


def test_the_schema_validates_without_warnings(db: Any, tmp_path: Path) -> None:
    target = tmp_path / "schema.yaml"
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(target), stdout=io.StringIO()
    )
    schema = yaml.safe_load(target.read_text())
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["apiToken"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "An API token of your organization, sent as `Token <key>`.",
    }
    paths = set(schema["paths"])
    for path in [
        "/api/v1/organizations/",
        "/api/v1/api-tokens/",
        "/api/v1/sites/{id}/",
        "/api/v1/chargers/{identity}/",
        "/api/v1/connectors/",
        "/api/v1/sessions/{id}/meter-samples/",
        "/api/v1/id-tokens/{id}/",
        "/api/v1/frames/",
        "/api/v1/frames/export.ndjson",
        "/api/v1/frames/export.csv",
    ]:
        assert path in paths
    error = schema["paths"]["/api/v1/id-tokens/"]["post"]["responses"]["400"]
    assert error["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_the_schema_is_served_without_credentials(db: Any) -> None:
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "CPMS API"


def test_the_docs_load_their_assets_from_this_server(db: Any) -> None:
    client = APIClient()
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/api/schema/" in page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        assert asset.startswith("/static/"), f"{asset} is not served locally"
        fetched = client.get(asset)
        assert fetched.status_code == 200, asset
        fetched.close()


# --- Schemathesis against the real server ---------------------------------------------------------


def fuzz(
    operation: Any, mode: GenerationMode, session: requests.Session, headers: dict[str, str]
) -> Any:
    """A hypothesis test that sends generated requests for one operation and checks the answers."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(
            session=session, headers=headers, excluded_checks=[positive_data_acceptance]
        )

    return run


@pytest.mark.e2e
# Every operation of the API in two modes: the run grows with the API, past the default bound.
@pytest.mark.timeout(1800)
def test_generated_requests_never_get_a_server_error(server: ServerProcess) -> None:
    build_world()
    organization = Organization.objects.get(slug="acme")
    schema = schemathesis.openapi.from_url(f"{server.http_url}/api/schema/?format=json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    session = requests.Session()
    failures: list[str] = []

    for operation in operations:
        # A fresh token per operation: the run stays within any one token's throttle budget.
        _, key = api_token_create(
            organization=organization, name=operation.label[:100], role=Role.OPERATOR_ADMIN
        )
        headers = {"Authorization": f"Token {key}"}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(operation, mode, session, headers)()
            except Unsatisfiable:
                # No request can break this operation's schema (e.g. a path parameter that takes
                # any string): nothing to try in this mode.
                continue
            except (Exception, BaseExceptionGroup) as exc:  # report every operation's failures
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert not failures, "\n\n".join(failures)
