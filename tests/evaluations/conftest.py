"""Fixtures of evaluation results: results are made the way the pool makes them, by a job that a
node claims and posts metrics for."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.catalog.models import Visibility
from apps.compute import services as compute_services
from apps.evaluations.models import Result
from tests.compute.conftest import (  # noqa: F401 - shared fixtures
    gpu_node,
    make_benchmark,
    make_model_version,
)
from tests.factories import isolated

METRICS = [
    {"name": "accuracy", "higher_is_better": True},
    {"name": "loss", "higher_is_better": False},
]


@pytest.fixture(autouse=True)
def _artifacts_in_tmp(artifact_dir):
    """Every test here stores artifacts in a folder of its own."""


@pytest.fixture
def make_cpu_benchmark(make_benchmark):  # noqa: F811 - the imported fixture, requested
    """make_cpu_benchmark(user, institution, visibility=...): a CPU benchmark that reports
    accuracy (higher is better) and loss (lower is better)."""

    def _make(user, institution, visibility=Visibility.PUBLIC, name: str | None = None):
        return make_benchmark(
            user, institution, name=name, gpu_count=0, metrics=METRICS, visibility=visibility
        )

    return _make


@pytest.fixture
def cpu_benchmark(member, institution, make_cpu_benchmark):
    return make_cpu_benchmark(member, institution, name="Digits held out")


@pytest.fixture
def post_result(gpu_node):  # noqa: F811 - the imported fixture, requested
    """post_result(user, version, benchmark, metrics, days_ago=0): a job of `user` run on the
    node, whose result is posted with `metrics` and recorded `days_ago` days back."""

    def _post(
        user, version, benchmark, metrics, *, days_ago: float = 0, log: str = "", provenance=None
    ) -> Result:
        job = compute_services.job_submit(user=user, model_version=version, benchmark=benchmark)
        assert job.pk in compute_services.jobs_dispatch()
        job.refresh_from_db()
        compute_services.job_claim(node=gpu_node, job_id=job.pk, attempt=job.attempt)
        if log:
            compute_services.job_log_append(
                node=gpu_node, job_id=job.pk, attempt=job.attempt, offset=0, text=log
            )
        result, created = compute_services.job_result_post(
            node=gpu_node,
            job_id=job.pk,
            attempt=job.attempt,
            metrics=metrics,
            provenance=isolated(
                **(
                    provenance
                    or {
                        "evaluator": "smoke",
                        "evaluator_version": "0.1.0",
                        "gpus": "cpu",
                        "seed": 0,
                        "batch_size": 64,
                        "model_files": {"model.safetensors": "ab" * 32},
                    }
                )
            ),
        )
        assert created
        when = timezone.now() - timedelta(days=days_ago)
        Result.objects.filter(pk=result.pk).update(created_at=when, finished_at=when)
        result.refresh_from_db()
        return result

    return _post
