"""Jobs a peer node submits for one of its institutions, under a grant this node made to it
(an allocation of the peer's institution, mirrored here). They run in our own pool like any
other job (same dispatcher, fair share, sandbox and accounting) with two differences: their
code is untrusted by definition, so only nodes that fully isolate evaluations take them, and
nobody here submitted them, so a service account of the peer's institution stands in.

The federation app calls these in two steps: `peer_job_check` when the request arrives (so the
peer hears at once why not), then `peer_job_submit` once the model's files are here and checked.
"""

from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import Institution, User
from apps.catalog.models import Benchmark, ModelVersion
from apps.compute import queue_selectors, selectors
from apps.compute.models import Allocation, Job
from apps.compute.queue_estimates import WaitEstimate
from apps.compute.services import (
    check_allocation_holds,
    check_pool_holds,
    check_runnable,
    dispatch_soon,
    job_cancel,
    job_event,
)
from worker.evaluators import SAFE_MODEL_FORMATS, evaluator_specs


def peer_account(institution: Institution) -> User:
    """The account that stands in as the submitter of a peer institution's jobs: it cannot sign
    in and belongs to no institution here."""
    # A colon no one can register in a username: never a local account's name.
    username = f"peer:{institution.pk}"
    user, created = User.objects.get_or_create(
        username=username, defaults={"is_active": False, "first_name": institution.name[:150]}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _grant(*, institution: Institution, allocation_id: int, now: datetime) -> Allocation:
    allocation = (
        Allocation.objects.select_for_update()
        .filter(pk=allocation_id, institution=institution, origin_node="")
        .first()
    )
    if allocation is None:
        raise ValidationError(
            {"grant": f"This node made no grant {allocation_id} to {institution.name}."}
        )
    if not allocation.starts_at <= now < allocation.ends_at:
        raise ValidationError(
            {
                "grant": f"Grant '{allocation.name}' runs from {allocation.starts_at:%Y-%m-%d} "
                f"to {allocation.ends_at:%Y-%m-%d}."
            }
        )
    return allocation


def _new_job(*, institution: Institution, allocation: Allocation, benchmark: Benchmark) -> Job:
    return Job(
        benchmark=benchmark,
        institution=institution,
        allocation=allocation,
        gpu_class=allocation.gpu_class,
        gpu_count=benchmark.gpu_count,
        gpu_memory_gb=benchmark.gpu_memory_gb,
        time_limit_minutes=benchmark.time_limit_minutes,
        max_attempts=settings.COMPUTE_MAX_ATTEMPTS,
        from_peer=True,
    )


@transaction.atomic
def peer_job_check(
    *, institution: Institution, allocation_id: int, benchmark: Benchmark, formats: set[str]
) -> Allocation:
    """What can be checked before the model's files are here: the grant (its window and what
    is left of it), the evaluator and the formats the peer says its files have, and a node
    that could run the job fully isolated. Returns the grant."""
    allocation = _grant(institution=institution, allocation_id=allocation_id, now=timezone.now())
    spec = evaluator_specs().get(benchmark.evaluator)
    if spec is None:
        raise ValidationError(
            {"benchmark": f"Evaluator '{benchmark.evaluator}' is not installed on this node."}
        )
    accepted = set(spec.model_formats) & set(SAFE_MODEL_FORMATS)
    if not formats & accepted:
        raise ValidationError(
            {
                "model": f"The '{spec.name}' evaluator takes {', '.join(sorted(accepted))} "
                f"models; this version has {', '.join(sorted(formats)) or 'no files'}."
            }
        )
    job = _new_job(institution=institution, allocation=allocation, benchmark=benchmark)
    check_allocation_holds(job, allocation)
    check_pool_holds(job)
    return allocation


@transaction.atomic
def peer_job_submit(
    *,
    institution: Institution,
    allocation_id: int,
    model_version: ModelVersion,
    benchmark: Benchmark,
    requested_by: str,
) -> Job:
    """Queues the peer's job once its model files are stored here: every check again, now
    on the files as this node read them (formats, nothing pickle-based)."""
    allocation = _grant(institution=institution, allocation_id=allocation_id, now=timezone.now())
    check_runnable(version=model_version, benchmark=benchmark)
    job = _new_job(institution=institution, allocation=allocation, benchmark=benchmark)
    job.model_version = model_version
    check_allocation_holds(job, allocation)
    check_pool_holds(job)
    job.submitter = peer_account(institution)
    job.save()
    job_event(job, f"Submitted by {requested_by} at {institution.origin_node}, through federation.")
    dispatch_soon()
    return job


def peer_job_cancel(*, job: Job, reason: str) -> Job:
    """The peer's researcher cancels: as when a submitter cancels here, the run time so far is
    charged to the grant."""
    return job_cancel(user=job.submitter, job=job, reason=reason)


def peer_job_wait(job: Job) -> WaitEstimate | None:
    """The job's place in the dispatcher's order (1 = next), its estimated start and the
    reasons for its wait, as a local job's submitter sees them; None unless it is pending."""
    return queue_selectors.job_wait_estimate(job=job)


def peer_job_log_tail(job: Job, *, characters: int = 4000) -> str:
    """The end of the current attempt's output."""
    if job.attempt == 0:
        return ""
    return selectors.job_log(job=job, attempt=job.attempt)[-characters:]
