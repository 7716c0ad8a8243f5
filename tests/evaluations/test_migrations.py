"""Results the compute pool kept before apps/evaluations existed move here, whole."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.compute import services as compute_services
from apps.evaluations.models import Result


def _migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return executor


@pytest.mark.django_db(transaction=True)
def test_a_result_the_pool_kept_moves_with_its_job_facts_and_date(
    member, institution, gpu_node, cpu_benchmark, make_model_version
):
    version = make_model_version(member, institution, name="Kept model")
    job = compute_services.job_submit(user=member, model_version=version, benchmark=cpu_benchmark)
    compute_services.jobs_dispatch()
    job.refresh_from_db()
    compute_services.job_claim(node=gpu_node, job_id=job.pk, attempt=job.attempt)
    posted_at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)

    executor = _migrate([("evaluations", None)])  # back to when compute kept JobResult
    try:
        old = executor.loader.project_state(("compute", "0001_initial")).apps
        JobResult = old.get_model("compute", "JobResult")
        kept = JobResult.objects.create(
            job_id=job.pk, attempt=1, metrics={"accuracy": 0.91}, provenance={"seed": 4}
        )
        JobResult.objects.filter(pk=kept.pk).update(created_at=posted_at)
    finally:
        _migrate(None)

    result = Result.objects.get(job_id=job.pk)
    assert (result.attempt, result.metrics, result.provenance) == (
        1,
        {"accuracy": 0.91},
        {"seed": 4},
    )
    assert (result.model_version, result.benchmark, result.institution, result.node) == (
        version,
        cpu_benchmark,
        institution,
        gpu_node,
    )
    assert result.created_at == posted_at
