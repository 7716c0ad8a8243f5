"""Writes of evaluation results. The compute pool calls `result_record` when a worker posts the
metrics of an attempt; nothing else creates results."""

from typing import Any

from apps.compute.models import Job
from apps.evaluations.models import Result


def result_record(
    *, job: Job, attempt: int, metrics: dict[str, Any], provenance: dict[str, Any]
) -> Result:
    """Stores the result of the job's successful attempt, which the caller has locked and
    finished. The worker's provenance is kept as it came; what the node knows for certain
    (node, paying institution, GPU-seconds, start and end) lives in the result's own columns."""
    return Result.objects.create(
        job=job,
        attempt=attempt,
        model_version_id=job.model_version_id,
        benchmark_id=job.benchmark_id,
        institution_id=job.institution_id,
        node_id=job.node_id,
        metrics=metrics,
        provenance=provenance,
        gpu_seconds=job.gpu_seconds,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )
