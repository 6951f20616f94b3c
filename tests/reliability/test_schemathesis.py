"""Property-based testing of the HTTP API against its own OpenAPI document (schemathesis):
generated requests to every operation, bounded in number; no answer may be a 5xx, and every
answer must match what the document promises (status codes, content types, bodies), except
"schema-valid data must be accepted", which cannot hold for image uploads.

Driven through schemathesis' Python API with plain hypothesis (its pytest plugin does not run
under this pytest version)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from reliability_fixtures import ServeProcess
from schemathesis.specs.openapi.checks import positive_data_acceptance

EXAMPLES_PER_OPERATION = 40


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    srv = ServeProcess(tmp_path_factory.mktemp("schemathesis")).wait_ready()
    try:
        yield schemathesis.openapi.from_url(srv.url + "/openapi.json")
    finally:
        srv.stop()


def test_api_conforms_to_its_openapi_document(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /v1/detect", "POST /v1/detect/batch", "GET /v1/models", "GET /readyz"} <= labels, labels
    calls = []
    for operation in operations:
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(operation.as_strategy())
        def run(case):
            response = case.call(timeout=60)
            calls.append((operation.label, response.status_code))
            assert response.status_code < 500, (operation.label, response.status_code, response.text[:300])
            # Schema-valid is not image-valid: `format: binary` admits any bytes, which are rightly
            # refused with the documented 415/422, so that one check does not apply to uploads.
            case.validate_response(response, excluded_checks=[positive_data_acceptance])

        run()
    assert len(calls) >= len(operations)
    print(f"\nschemathesis: {len(calls)} generated requests over {len(operations)} operations, "
          f"statuses {sorted({s for _, s in calls})}")
