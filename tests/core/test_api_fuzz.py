"""Every operation of /api/schema/, fuzzed in-process through WSGI by schemathesis as each kind
of caller, each with a real token: no answer may be a 500, and every status code, content type,
header and body must be the one the schema documents.

The seed is fixed (API_FUZZ_SEED overrides it, API_FUZZ_EXAMPLES the examples per operation), so
a failure here is reproduced by running the test again."""

import os
import re
from datetime import date, timedelta
from decimal import Decimal

import hypothesis
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apps.catalog import services as catalog_services
from apps.catalog.models import Visibility
from apps.compute import services as compute_services
from apps.events import webhooks
from tests.catalog.conftest import store
from tests.catalog.samples import safetensors_bytes
from tests.factories import api_token_for, isolated

SEED = int(os.environ.get("API_FUZZ_SEED", "20261203"))
MAX_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "6"))

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

A100 = {"index": 0, "uuid": "GPU-fuzz-0", "name": "NVIDIA A100 80GB", "memory_bytes": 85 * 10**9}

WORKER_PATHS = "/api/v1/worker/"


@pytest.fixture
def fuzz_world(artifact_dir, institution, other_institution, member, institution_admin, staff):
    """A few public and hidden records of every kind, so that detail endpoints sometimes find
    what they ask for; returns the real values of each path parameter."""
    weights = store(member, safetensors_bytes(1), "model.safetensors")
    models = []
    for number, visibility in enumerate([Visibility.PUBLIC, Visibility.PRIVATE]):
        model = catalog_services.model_create(
            user=member, institution=institution, name=f"Fuzz model {number}",
            slug=f"fuzz-model-{number}", license="MIT", visibility=visibility,
        )  # fmt: skip
        catalog_services.version_create(
            user=member, model=model, label="1.0",
            files=[("model.safetensors", weights.sha256)], publish=True,
        )  # fmt: skip
        models.append(model)
    data = store(member, safetensors_bytes(2), "data.safetensors")
    datasets, benchmarks, papers = [], [], []
    for number, visibility in enumerate([Visibility.PUBLIC, Visibility.INSTITUTION]):
        dataset = catalog_services.dataset_create(
            user=member, institution=institution, name=f"Fuzz data {number}",
            slug=f"fuzz-data-{number}", license="CC-BY-4.0", visibility=visibility,
            files=[("data.safetensors", data.sha256)],
        )  # fmt: skip
        benchmark = catalog_services.benchmark_create(
            user=member, institution=institution, name=f"Fuzz bench {number}",
            slug=f"fuzz-bench-{number}", task_type="pool-check", dataset=dataset,
            metrics=[{"name": "files", "higher_is_better": True}], evaluator="smoke",
            evaluator_config={}, gpu_count=1, gpu_memory_gb=40, visibility=visibility,
        )  # fmt: skip
        paper = catalog_services.paper_create(
            user=member, institution=institution, title=f"Fuzz paper {number}",
            authors=[catalog_services.AuthorInput(name="Ada Lovelace")], year=2024,
            visibility=visibility,
        )  # fmt: skip
        datasets.append(dataset)
        benchmarks.append(benchmark)
        papers.append(paper)
    comment = catalog_services.comment_create(user=member, target=models[0], body="Nice work.")

    node, node_secret = compute_services.node_create(
        user=institution_admin, institution=institution, name="fuzz-01"
    )
    compute_services.node_register(node=node, gpus=[A100], cpu_slots=1, host_info=isolated())
    now = timezone.now()
    allocation = compute_services.allocation_create(
        user=staff, institution=institution, name="Fuzzing", gpu_hours=Decimal(100),
        starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=30),
    )  # fmt: skip
    compute_request = compute_services.compute_request_submit(
        user=member, institution=institution, purpose="Evaluate the fuzz models.",
        gpu_hours=Decimal(10), gpu_count=1, starts_on=date.today(),
        ends_on=date.today() + timedelta(days=30),
    )  # fmt: skip
    version = models[0].versions.get()
    jobs = [
        compute_services.job_submit(user=member, model_version=version, benchmark=benchmark)
        for benchmark in benchmarks
    ]
    compute_services.jobs_dispatch()
    endpoint = webhooks.webhook_endpoint_create(user=member, url="https://93.184.215.14/hooks/fuzz")
    return {
        "node_secret": node_secret,
        "path": {
            "model_id": [model.pk for model in models],
            "label": ["1.0"],
            "sha256": [weights.sha256, data.sha256],
            "paper_id": [paper.pk for paper in papers],
            "dataset_id": [dataset.pk for dataset in datasets],
            "benchmark_id": [benchmark.pk for benchmark in benchmarks],
            "comment_id": [comment.pk],
            "node_id": [node.pk],
            "allocation_id": [allocation.pk],
            "request_id": [compute_request.pk],
            "job_id": [job.pk for job in jobs],
            "slug": [institution.slug, other_institution.slug],
            "username": [member.username],
            "endpoint_id": [endpoint.pk],
        },
    }


@pytest.fixture
def api_schema(db, settings, fuzz_world):
    """The node's own /api/schema/, loaded and called in-process through WSGI, unthrottled."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None},
    }
    config = SchemathesisConfig.from_dict(
        {"seed": SEED, "generation": {"with-security-parameters": False, "database": "none"}}
    )
    # Django's WSGI handler closes the database connection after each request; the test's
    # transaction must outlive them (Django's test client does the same).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application(), config=config)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _real_path_parameters(operation, known: dict[str, list]) -> list[dict]:
    """Path parameter values naming records that exist, public and hidden ones in turn."""
    names = [name for name in re.findall(r"\{(\w+)\}", operation.path) if known.get(name)]
    if not names:
        return []
    count = max(len(known[name]) for name in names)
    return [{name: known[name][i % len(known[name])] for name in names} for i in range(count)]


def _cases(operation, known: dict[str, list]) -> st.SearchStrategy:
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    if real := _real_path_parameters(operation, known):
        strategies.append(
            st.sampled_from(real).flatmap(
                lambda values: operation.as_strategy(
                    GenerationMode.POSITIVE, path_parameters=values
                )
            )
        )
    return st.one_of(strategies)


def fuzz(schema, *, headers: dict, known: dict[str, list], skip=lambda operation: False) -> dict:
    """Runs MAX_EXAMPLES cases of every operation; returns the failures by operation and the
    number of requests sent."""
    failures: dict[str, str] = {}
    sent = operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if skip(operation):
            continue
        operations += 1

        @hypothesis.seed(SEED)
        @hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            database=None,
            deadline=None,
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=_cases(operation, known))
        def run(case):
            nonlocal sent
            sent += 1
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as error:  # report every failing operation
            failures[operation.label] = str(error)
    return {"failures": failures, "sent": sent, "operations": operations}


def _report(role: str, outcome: dict) -> str:
    lines = [f"{len(outcome['failures'])} operations failed as {role}:"]
    lines += [f"\n## {label}\n{message}" for label, message in outcome["failures"].items()]
    return "\n".join(lines)


def _revokes_a_token(operation) -> bool:
    return operation.method.upper() == "DELETE" and operation.path == "/api/v1/tokens/{token_id}/"


def _adds_a_peer(operation) -> bool:
    """Adding a peer calls the address it is given: traffic to invented hosts must not leave
    this machine (tests/federation/ adds real peers on 127.0.0.1)."""
    return operation.method.upper() == "POST" and operation.path == "/api/v1/federation/peers/"


@pytest.mark.parametrize("role", ["anonymous", "outsider", "member", "institution_admin", "staff"])
def test_every_operation_answers_as_documented(role, actors, fuzz_world, api_schema):
    account = actors[role]
    known = dict(fuzz_world["path"])
    headers = {}
    if account is not None:
        headers = {"Authorization": f"Bearer {api_token_for(account)}"}
        known["token_id"] = list(account.api_tokens.values_list("pk", flat=True))

    def skip(operation) -> bool:
        # The worker protocol takes node tokens; revoking the run's own token would end it.
        return (
            operation.path.startswith(WORKER_PATHS)
            or (account is not None and _revokes_a_token(operation))
            or (role == "staff" and _adds_a_peer(operation))
        )

    outcome = fuzz(api_schema, headers=headers, known=known, skip=skip)
    print(f"{role}: {outcome['sent']} requests")
    assert not outcome["failures"], _report(role, outcome)
    assert outcome["sent"] >= outcome["operations"] > 50, "every operation ran at least once"


def test_every_worker_operation_answers_as_documented(fuzz_world, api_schema):
    headers = {"Authorization": f"Bearer {fuzz_world['node_secret']}"}
    outcome = fuzz(
        api_schema,
        headers=headers,
        known=fuzz_world["path"],
        skip=lambda operation: not operation.path.startswith(WORKER_PATHS),
    )
    print(f"node: {outcome['sent']} requests")
    assert not outcome["failures"], _report("a compute node", outcome)
    assert outcome["sent"] >= outcome["operations"] >= 7, "every operation ran at least once"
