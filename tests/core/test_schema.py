import io
import re

import pytest
import yaml
from django.core.management import call_command


@pytest.mark.django_db
def test_openapi_schema_is_valid_and_generates_without_warnings():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = yaml.safe_load(out.getvalue())
    assert schema["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"
    operations = [
        operation
        for path in schema["paths"].values()
        for method, operation in path.items()
        if method in {"get", "post", "patch", "put", "delete"}
    ]
    assert all(operation.get("summary") for operation in operations), (
        "every operation says what it does"
    )


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker):
    out = io.StringIO()
    with django_db_blocker.unblock():
        call_command("spectacular", stdout=out)
    return yaml.safe_load(out.getvalue())


def _operation(schema, method: str, path: str) -> dict:
    return schema["paths"][f"/api/v1/{path}"][method]


def _error_ref(response: dict) -> str:
    return response["content"]["application/json"]["schema"]["$ref"]


def test_every_operation_documents_its_client_errors_in_the_one_error_format(schema):
    error = schema["components"]["schemas"]["ErrorOutput"]
    assert error["required"] == ["error"]
    assert set(schema["components"]["schemas"]["ErrorDetailOutput"]["required"]) == {
        "status",
        "code",
        "message",
        "fields",
    }
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            writes = method in {"post", "patch", "put", "delete"}
            expected = {"400", "401"}
            if "{" in path:
                expected.add("404")
            if writes:
                expected |= {"403", "409"}
            if "requestBody" in operation:
                expected |= {"413", "415"}
            if not path.startswith("/api/v1/worker/"):
                expected.add("429")
            assert expected <= set(responses), f"{method.upper()} {path}: {sorted(responses)}"
            for status in expected - {"400"}:
                assert _error_ref(responses[status]) == "#/components/schemas/ErrorOutput"


def test_throttled_answers_document_retry_after_and_the_worker_protocol_is_not_throttled(schema):
    too_many = _operation(schema, "get", "models/")["responses"]["429"]
    assert "Retry-After" in too_many["headers"]
    assert "429" not in _operation(schema, "post", "worker/heartbeat")["responses"]
    # A stale attempt is a conflict even when the worker only reads.
    assert "409" in _operation(schema, "get", "worker/jobs/{job_id}/files/{sha256}")["responses"]


def test_anonymous_access_is_declared_exactly_where_the_permissions_allow_it(schema):
    def anonymous(method: str, path: str) -> bool:
        return {} in _operation(schema, method, path)["security"]

    assert anonymous("get", "institutions/")  # IsStaffOrReadOnly lets anyone read
    assert anonymous("get", "models/{model_id}/")
    assert not anonymous("post", "institutions/")
    assert not anonymous("get", "me/")
    assert not anonymous("get", "jobs/queue/")
    assert not anonymous("post", "worker/heartbeat")


def test_fields_that_render_null_are_declared_nullable(schema):
    components = schema["components"]["schemas"]
    assert components["JobOutput"]["properties"]["node"]["nullable"] is True
    assert components["JobDetailOutput"]["properties"]["node"]["nullable"] is True
    assert components["ComputeRequestOutput"]["properties"]["reviewer"]["nullable"] is True
    assert "nullable" not in components["JobOutput"]["properties"]["state"]


def test_bibtex_import_documents_both_bodies_of_its_400(schema):
    refused = _operation(schema, "post", "papers/import-bibtex/")["responses"]["400"]
    body = refused["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    variants = schema["components"]["schemas"][body]["oneOf"]
    assert {variant["$ref"].rsplit("/", 1)[-1] for variant in variants} == {
        "BibtexImportOutput",
        "ErrorOutput",
    }
    entry = schema["components"]["schemas"]["BibtexEntryErrorOutput"]
    assert set(entry["required"]) == {"key", "line", "message"}


def test_inputs_that_refuse_unknown_fields_say_so(schema):
    components = schema["components"]["schemas"]
    for name in ["ModelCreateInputRequest", "MeInputRequest", "HeartbeatInputRequest"]:
        assert components[name]["additionalProperties"] is False, name


def test_a_patch_body_requires_what_the_endpoint_requires(schema):
    body = _operation(schema, "patch", "nodes/{node_id}/")["requestBody"]
    component = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert schema["components"]["schemas"][component]["required"] == ["draining"]


def _parameters(schema, method: str, path: str) -> dict:
    return {p["name"]: p["schema"] for p in _operation(schema, method, path)["parameters"]}


def test_query_parameters_carry_the_rules_the_endpoint_applies(schema):
    assert _parameters(schema, "get", "jobs/")["model"]["type"] == "integer"
    assert _parameters(schema, "get", "results/")["benchmark"]["type"] == "integer"
    search = _parameters(schema, "get", "search/")
    assert search["year"]["minimum"] == 1000
    assert search["page"]["maximum"] == 25
    assert search["institution"]["pattern"] == "^[-a-zA-Z0-9_]+$"
    assert search["type"]["items"]["enum"] == ["model", "paper", "dataset", "benchmark"]
    assert _parameters(schema, "get", "jobs/{job_id}/logs/")["offset"]["minimum"] == 0


def test_string_inputs_carry_the_patterns_the_endpoint_applies(schema):
    components = schema["components"]["schemas"]
    gpu_hours = re.compile(
        components["ComputeRequestInputRequest"]["properties"]["gpu_hours"]["pattern"]
    )
    assert gpu_hours.match("12.5")
    assert not any(gpu_hours.match(text) for text in ["", "-", ".", "-1"])
    label = components["VersionCreateInputRequest"]["properties"]["label"]
    assert label["pattern"] == r"^[\w.+-]+$"
    orcid = components["MeInputRequest"]["properties"]["orcid"]["oneOf"][0]["pattern"]
    assert re.match(orcid, "https://orcid.org/0000-0002-1825-0097")
    assert not re.match(orcid, "date")
