"""Fixtures of the compute pool: a registered node, an allocation, a runnable model version and
benchmark, all made through the services."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.catalog import services as catalog_services
from apps.catalog.models import Visibility
from apps.compute import services
from tests.catalog.conftest import store
from tests.catalog.samples import safetensors_bytes
from tests.factories import isolated

A100 = {
    "index": 0,
    "uuid": "GPU-a100-0",
    "name": "NVIDIA A100 80GB",
    "memory_bytes": 85_000_000_000,
}


@pytest.fixture(autouse=True)
def _artifacts_in_tmp(artifact_dir):
    """Every test here stores artifacts in a folder of its own."""


@pytest.fixture
def gpu_node(institution_admin, institution):
    """A node of the institution that registered one A100 and one CPU slot."""
    node, _secret = services.node_create(
        user=institution_admin, institution=institution, name="gpu-01"
    )
    return services.node_register(node=node, gpus=[A100], cpu_slots=1, host_info=isolated())


@pytest.fixture
def allocation(staff, institution):
    now = timezone.now()
    return services.allocation_create(
        user=staff,
        institution=institution,
        name="Spring evaluations",
        gpu_hours=Decimal(100),
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=30),
    )


@pytest.fixture
def make_model_version(db):
    """make_model_version(user, institution, name=..., visibility=...): a published version
    holding one safetensors file."""
    counter = iter(range(1000))

    def _make(user, institution, name: str | None = None, visibility=Visibility.PUBLIC):
        number = next(counter)
        model = catalog_services.model_create(
            user=user,
            institution=institution,
            name=name or f"Model {number}",
            slug=f"compute-model-{number}",
            license="MIT",
            summary="A model to evaluate.",
            visibility=visibility,
        )
        weights = store(user, safetensors_bytes(number + 1), "model.safetensors")
        return catalog_services.version_create(
            user=user,
            model=model,
            label="1.0",
            files=[("model.safetensors", weights.sha256)],
            publish=True,
        )

    return _make


@pytest.fixture
def make_benchmark(db):
    """make_benchmark(user, institution, gpu_count=1, metrics=..., visibility=...): a benchmark
    run by the smoke evaluator over a one-file dataset."""
    counter = iter(range(1000))

    def _make(
        user,
        institution,
        name: str | None = None,
        gpu_count: int = 1,
        metrics: list | None = None,
        **fields,
    ):
        number = next(counter)
        data = store(user, safetensors_bytes(100 + number), "data.safetensors")
        dataset = catalog_services.dataset_create(
            user=user,
            institution=institution,
            name=f"Dataset {number}",
            slug=f"compute-data-{number}",
            license="CC-BY-4.0",
            files=[("data.safetensors", data.sha256)],
        )
        return catalog_services.benchmark_create(
            user=user,
            institution=institution,
            name=name or f"Smoke {number}",
            slug=f"compute-smoke-{number}",
            task_type="pool-check",
            dataset=dataset,
            metrics=metrics or [{"name": "files", "higher_is_better": True}],
            evaluator="smoke",
            evaluator_config={},
            gpu_count=gpu_count,
            gpu_memory_gb=40 if gpu_count else 0,
            time_limit_minutes=30,
            **fields,
        )

    return _make


@pytest.fixture
def model_version(member, institution, make_model_version):
    return make_model_version(member, institution, name="Aurora Classifier")


@pytest.fixture
def benchmark(member, institution, make_benchmark):
    return make_benchmark(member, institution, name="Pool Smoke")


@pytest.fixture
def submit_job(gpu_node, allocation, model_version, benchmark):
    """submit_job(user, **overrides): a job queued through the service."""

    def _submit(user, **kwargs):
        values = {"model_version": model_version, "benchmark": benchmark, **kwargs}
        return services.job_submit(user=user, **values)

    return _submit
