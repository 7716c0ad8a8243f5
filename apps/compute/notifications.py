"""What the compute pool tells people, as events (apps.events): a job that ended, a compute
request reviewed, GPU-hours granted. Each is recorded in the transaction of the change."""

from typing import Any

from django.urls import reverse

from apps.accounts.models import Institution, Membership, User
from apps.compute.models import Allocation, ComputeRequest, Job
from apps.events.models import EventType
from apps.events.services import event_emit

JOB_EVENT_TYPES: dict[str, EventType] = {
    Job.State.SUCCEEDED: EventType.JOB_SUCCEEDED,
    Job.State.FAILED: EventType.JOB_FAILED,
    Job.State.TIMED_OUT: EventType.JOB_TIMED_OUT,
    Job.State.CANCELLED: EventType.JOB_CANCELLED,
}
JOB_STATE_WORDS: dict[str, str] = {
    Job.State.SUCCEEDED: "succeeded",
    Job.State.FAILED: "failed",
    Job.State.TIMED_OUT: "timed out",
    Job.State.CANCELLED: "was cancelled",
}
# Metrics a summary line names; the event's data holds them all.
SUMMARY_METRICS = 2


def metrics_text(metrics: dict[str, Any], declared: list[Any]) -> str:
    """ "accuracy 0.97": the benchmark's declared metrics first, at most two."""
    order = [m.get("name") for m in declared if isinstance(m, dict)] + sorted(metrics)
    names = [name for name in dict.fromkeys(order) if name in metrics][:SUMMARY_METRICS]
    return ", ".join(f"{name} {metrics[name]:.4g}" for name in names)


def evaluation_summary(
    *,
    what: str,
    state_words: str,
    model: str,
    benchmark: str,
    metrics: dict[str, Any] | None,
    declared: list[Any],
) -> str:
    summary = f"{what} {state_words}: {model} on {benchmark}"
    shown = metrics_text(metrics or {}, declared)
    return f"{summary} ({shown})" if shown else summary


def job_finished_emit(job: Job, *, metrics: dict[str, Any] | None = None) -> None:
    """Tells the submitter (and the institution's webhooks) that the job ended. A peer's job is
    reported to that peer by the federation protocol: nobody here is told."""
    if job.from_peer or job.state not in JOB_EVENT_TYPES:
        return
    version = job.model_version
    benchmark = job.benchmark
    model = f"{version.model.name} {version.label}" if version else "a model"
    data: dict[str, Any] = {
        "job": job.pk,
        "state": job.state,
        "model": {
            "id": version.model_id if version else None,
            "name": version.model.name if version else "",
            "version": version.label if version else "",
        },
        "benchmark": {"id": benchmark.pk, "name": benchmark.name},
        "failure_reason": "" if job.state == Job.State.SUCCEEDED else job.failure_reason,
        "metrics": metrics or {},
        "gpu_hours": round(job.gpu_seconds / 3600, 4),
    }
    event_emit(
        type=JOB_EVENT_TYPES[job.state],
        summary=evaluation_summary(
            what=f"Job {job.pk}",
            state_words=JOB_STATE_WORDS[job.state],
            model=model,
            benchmark=benchmark.name,
            metrics=metrics,
            declared=benchmark.metrics,
        ),
        data=data,
        users=[job.submitter] if job.submitter else [],
        institution=job.institution,
        url=reverse("compute:job-detail", args=[job.pk]),
    )


def compute_request_reviewed_emit(request: ComputeRequest) -> None:
    """Tells the requester (by the event's mail, as they chose) that the request was decided."""
    summary = (
        f"Your compute request {request.pk} for {request.gpu_hours} GPU-hours for "
        f"{request.institution.name} was {request.state}"
    )
    event_emit(
        type=EventType.COMPUTE_REQUEST_REVIEWED,
        summary=summary + (f": {request.review_comment}" if request.review_comment else ""),
        data={
            "compute_request": request.pk,
            "state": request.state,
            "gpu_hours": str(request.gpu_hours),
            "institution": {"id": request.institution_id, "name": request.institution.name},
            "comment": request.review_comment,
        },
        users=[request.requester],
        institution=request.institution,
        url=reverse("compute:request-detail", args=[request.pk]),
    )


def institution_admins(institution: Institution) -> list[User]:
    return list(
        User.objects.filter(
            memberships__institution=institution, memberships__role=Membership.Role.ADMIN
        )
    )


def grant_received_emit(allocation: Allocation, *, granted_by: str) -> None:
    """Tells the institution's admins that it was granted GPU-hours (here or by a peer)."""
    institution = allocation.institution
    hours = allocation.budget_gpu_seconds / 3600
    event_emit(
        type=EventType.GRANT_RECEIVED,
        summary=f"{institution.name} was granted {hours:g} GPU-hours by {granted_by}: "
        f"{allocation.name}",
        data={
            "allocation": allocation.pk,
            "name": allocation.name,
            "gpu_hours": hours,
            "gpu_class": allocation.gpu_class,
            "starts_at": allocation.starts_at.isoformat(),
            "ends_at": allocation.ends_at.isoformat(),
            "granted_by": granted_by,
            "origin_node": allocation.origin_node,
            "institution": {"id": institution.pk, "name": institution.name},
        },
        users=institution_admins(institution),
        institution=institution,
        url=reverse("accounts:institution-detail", args=[institution.slug]),
    )
