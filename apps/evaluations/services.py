"""Writes of evaluation results. The compute pool calls `result_record` when a worker posts the
metrics of an attempt; results of a peer's (mirrors.py, remote_results.py) are the only other
ones, and every new result is announced to its benchmark's watchers (`result_announce`)."""

from typing import Any

from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.compute.models import Job
from apps.evaluations import selectors
from apps.evaluations.models import Result
from apps.events import selectors as event_selectors
from apps.events import services as event_services
from apps.events.models import EventType

ISOLATION_LEVELS = ("full", "partial", "none")


def result_isolation(provenance: dict[str, Any]) -> str:
    """The isolation level the worker recorded ("" for a worker that records none)."""
    isolation = provenance.get("isolation")
    level = isolation.get("level") if isinstance(isolation, dict) else None
    return level if level in ISOLATION_LEVELS else ""


def result_record(
    *, job: Job, attempt: int, metrics: dict[str, Any], provenance: dict[str, Any]
) -> Result:
    """Stores the result of the job's successful attempt, which the caller has locked and
    finished. The worker's provenance is kept as it came; what the node knows for certain
    (node, paying institution, GPU-seconds, start and end) lives in the result's own columns.
    A result is refused when the isolation the worker recorded is less than the benchmark
    requires (a worker that records none fails closed there), or partial or none on a node
    that is not trusted-only for its own institution's benchmark; on a benchmark that does not
    require full isolation, a result without the record is kept as "not recorded"."""
    isolation = result_isolation(provenance)
    benchmark = job.benchmark
    if (job.from_peer or benchmark.full_isolation_required) and isolation != "full":
        ran_with = f"with {isolation} isolation" if isolation else "without recording its isolation"
        what = "job (a peer node's)" if job.from_peer else "benchmark"
        raise ValidationError(
            {
                "provenance": f"The {what} requires full isolation; the worker ran the "
                f"evaluation {ran_with}."
            }
        )
    node = job.node
    trusted = (
        not job.from_peer
        and node is not None
        and node.trusted_only
        and node.institution_id == benchmark.institution_id
    )
    if isolation in ("partial", "none") and not trusted:
        raise ValidationError(
            {
                "provenance": f"The evaluation ran with {isolation} isolation on a node that is "
                "not trusted-only for this benchmark's institution."
            }
        )
    result = Result.objects.create(
        job=job,
        attempt=attempt,
        model_version_id=job.model_version_id,
        benchmark_id=job.benchmark_id,
        institution_id=job.institution_id,
        node_id=job.node_id,
        metrics=metrics,
        provenance=provenance,
        isolation=isolation,
        gpu_seconds=job.gpu_seconds,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )
    result_announce(result=result)
    return result


def result_announce(*, result: Result) -> None:
    """Tells the benchmark's watchers who may see the result (a private model's result is
    never announced to those who may not see that model) that it was published. Call it in the
    transaction that stores the result."""
    watchers = event_selectors.benchmark_watchers(benchmark_id=result.benchmark_id)
    audience = selectors.result_viewers(result=result, users=watchers)
    if not audience:
        return
    version = result.model_version
    model = version.model
    benchmark = result.benchmark
    event_services.event_emit(
        type=EventType.RESULT_PUBLISHED,
        summary=f"New result on {benchmark.name}: {model.name} {version.label}",
        data={
            "result_id": result.pk,
            "model": {"id": model.pk, "name": model.name, "version": version.label},
            "benchmark": {"id": benchmark.pk, "name": benchmark.name},
            "metrics": result.metrics,
        },
        users=audience,
        url=reverse("evaluations:result-detail", kwargs={"result_id": result.pk}),
    )
