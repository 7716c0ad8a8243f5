"""Writes to the compute pool: nodes, requests and allocations, jobs and their lifecycle.

Refusals raise django.core.exceptions.ValidationError (naming the field), PermissionDenied, or
JobConflict (a worker speaking for an attempt that is no longer current). Broker messages are
sent in transaction.on_commit, never from inside an open transaction.
"""

import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import Length
from django.utils import timezone

from apps.accounts.models import Institution, Membership, User
from apps.accounts.selectors import user_can_manage_institution
from apps.accounts.services import api_token_hash
from apps.catalog import selectors as catalog_selectors
from apps.catalog.models import Benchmark, ModelVersion, Paper, ResearchModel
from apps.compute import notifications, scheduling, selectors
from apps.compute.exceptions import JobConflict
from apps.compute.models import (
    Allocation,
    ComputeNode,
    ComputeRequest,
    DeviceAssignment,
    InstitutionUsage,
    Job,
    JobEvent,
    JobLogChunk,
)
from apps.core.dates import validate_date_in_range
from apps.evaluations import services as evaluation_services
from apps.evaluations.models import Result
from worker.evaluation import MAX_METRIC_NAME_LENGTH, MAX_METRICS, finite_number
from worker.evaluators import SAFE_MODEL_FORMATS, evaluator_specs
from worker.protocol import RUN_JOB_TASK, run_job_task_id

# One answer for a record that is hidden from the caller and one that does not exist.
NO_VISIBLE_MODEL_VERSION = "No such model version that you can see."
NO_VISIBLE_BENCHMARK = "No such benchmark that you can see."
NODE_TOKEN_PREFIX = "rxn_"  # noqa: S105 - a prefix, not a secret
DISPATCH_PENDING_KEY = "compute:dispatch-queued"
NODE_MANAGERS_ONLY = "Only this institution's admins can manage its compute nodes."


def _require_staff(user: User) -> None:
    if not user.is_staff:
        raise PermissionDenied("Only platform admins can do this.")


def _require_manager(user: User, institution: Institution, message: str) -> None:
    """Compute nodes and the jobs of an institution are managed by whoever manages it: its
    admins and staff."""
    if not user_can_manage_institution(user=user, institution=institution):
        raise PermissionDenied(message)


def _new_node_secret() -> str:
    return NODE_TOKEN_PREFIX + secrets.token_urlsafe(32)


@transaction.atomic
def node_create(
    *,
    user: User,
    institution: Institution,
    name: str,
    pool: str = "default",
    labels: list[str] | None = None,
) -> tuple[ComputeNode, str]:
    """Returns the node and its token; only the token's hash is kept."""
    _require_manager(user, institution, "Only this institution's admins can add compute nodes.")
    secret = _new_node_secret()
    node = ComputeNode(
        institution=institution,
        name=name,
        pool=pool,
        labels=sorted(set(labels or [])),
        token_prefix=secret[:12],
        token_hash=api_token_hash(secret),
        created_by=user,
    )
    node.full_clean()
    node.save()
    return node, secret


@transaction.atomic
def node_token_rotate(*, user: User, node: ComputeNode) -> str:
    """A new token for the node; the old one stops working at once."""
    _require_manager(user, node.institution, NODE_MANAGERS_ONLY)
    secret = _new_node_secret()
    ComputeNode.objects.filter(pk=node.pk).update(
        token_prefix=secret[:12], token_hash=api_token_hash(secret)
    )
    return secret


def node_require_manager(*, user: User, node: ComputeNode) -> None:
    _require_manager(user, node.institution, NODE_MANAGERS_ONLY)


@transaction.atomic
def node_set_draining(*, user: User, node: ComputeNode, draining: bool) -> ComputeNode:
    """A draining node finishes its jobs and takes no new ones."""
    node_require_manager(user=user, node=node)
    node.draining = draining
    node.save(update_fields=["draining"])
    if not draining:
        dispatch_soon()
    return node


@transaction.atomic
def node_set_trusted_only(*, user: User, node: ComputeNode, trusted_only: bool) -> ComputeNode:
    """A trusted-only node runs only its own institution's benchmarks; in exchange, its worker
    may run them even where it cannot isolate evaluations."""
    node_require_manager(user=user, node=node)
    node.trusted_only = trusted_only
    node.save(update_fields=["trusted_only"])
    dispatch_soon()
    return node


def node_authenticate(*, secret: str) -> ComputeNode:
    # Node tokens are hashed as personal API tokens are: 256 random bits, one indexed lookup.
    node = (
        ComputeNode.objects.select_related("institution")
        .filter(token_hash=api_token_hash(secret))
        .first()
    )
    if node is None:
        raise PermissionDenied("Invalid node token.")
    return node


def _clean_gpus(gpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cleaned = []
    for position, gpu in enumerate(gpus):
        try:
            cleaned.append(
                {
                    "index": int(gpu["index"]),
                    "uuid": str(gpu.get("uuid", "")),
                    "name": str(gpu["name"]),
                    "memory_bytes": int(gpu["memory_bytes"]),
                }
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValidationError(
                {"gpus": f"GPU {position}: needs index, name and memory_bytes ({error})."}
            ) from error
    indexes = [gpu["index"] for gpu in cleaned]
    if len(set(indexes)) != len(indexes):
        raise ValidationError({"gpus": "Each GPU index must appear once."})
    return cleaned


@transaction.atomic
def node_register(
    *,
    node: ComputeNode,
    gpus: list[dict[str, Any]],
    cpu_slots: int,
    host_info: dict[str, Any],
) -> ComputeNode:
    """The worker reports what its host offers. It counts as a first heartbeat."""
    now = timezone.now()
    node = ComputeNode.objects.select_for_update().get(pk=node.pk)
    node.gpus = _clean_gpus(gpus)
    node.cpu_slots = cpu_slots
    node.host_info = host_info
    # What the worker says it can isolate; the node refuses results below what it allows.
    isolation = host_info.get("isolation")
    level = isolation.get("level") if isinstance(isolation, dict) else None
    node.isolation = level if level in ("full", "partial", "none") else ""
    node.registered_at = now
    node.last_heartbeat_at = now
    node.save(
        update_fields=[
            "gpus", "cpu_slots", "host_info", "isolation", "registered_at", "last_heartbeat_at"
        ]
    )  # fmt: skip
    dispatch_soon()
    return node


@dataclass(frozen=True)
class HeartbeatReply:
    # Jobs the worker runs that it must stop: cancelled, requeued elsewhere, or unknown.
    stop: list[dict[str, int]]
    lease_seconds: int
    heartbeat_seconds: int


@transaction.atomic
def node_heartbeat(*, node: ComputeNode, running: list[dict[str, int]]) -> HeartbeatReply:
    """Records that the node is alive and renews the leases of the attempts it still runs."""
    now = timezone.now()
    was_offline = node.status_at(now, settings.COMPUTE_NODE_OFFLINE_AFTER_SECONDS) == "offline"
    reported = {(int(item["job"]), int(item["attempt"])) for item in running}
    current = set(
        Job.objects.filter(
            node=node,
            state__in=(Job.State.DISPATCHED, Job.State.RUNNING),
            id__in=[job_id for job_id, _attempt in reported],
        ).values_list("id", "attempt")
    )
    renewed = [job_id for job_id, attempt in reported & current]
    if renewed:
        Job.objects.filter(pk__in=renewed, state=Job.State.RUNNING).update(
            lease_expires_at=now + timedelta(seconds=settings.COMPUTE_LEASE_SECONDS)
        )
    # Jobs first, then the node: the order the worker calls and the dispatcher lock in.
    ComputeNode.objects.filter(pk=node.pk).update(last_heartbeat_at=now)
    if was_offline:
        dispatch_soon()
    return HeartbeatReply(
        stop=[{"job": job, "attempt": attempt} for job, attempt in sorted(reported - current)],
        lease_seconds=settings.COMPUTE_LEASE_SECONDS,
        heartbeat_seconds=settings.COMPUTE_HEARTBEAT_SECONDS,
    )


def _visible_or_error(
    user: User, model: type[ResearchModel | Paper | Benchmark], record_id: int | None, field: str
):
    if record_id is None:
        return None
    record = model.objects.filter(catalog_selectors.visible_to(user), pk=record_id).first()
    if record is None:
        raise ValidationError({field: f"No {field} with id {record_id} that you can see."})
    return record


@transaction.atomic
def compute_request_submit(
    *,
    user: User,
    institution: Institution,
    purpose: str,
    gpu_hours: Decimal,
    gpu_count: int,
    starts_on: date,
    ends_on: date,
    gpu_class: str = "",
    model_id: int | None = None,
    paper_id: int | None = None,
    benchmark_id: int | None = None,
) -> ComputeRequest:
    if not Membership.objects.filter(user=user, institution=institution).exists():
        raise ValidationError(
            {
                "institution": f"You are not a member of {institution.name}: ask on its behalf "
                "only as a member."
            }
        )
    _check_dates(starts_on=starts_on, ends_on=ends_on)
    if ends_on < starts_on:
        raise ValidationError({"ends_on": "The end of the window must not be before its start."})
    if ends_on < timezone.localdate():
        raise ValidationError({"ends_on": "The window has already ended."})
    request = ComputeRequest(
        requester=user,
        institution=institution,
        purpose=purpose.strip(),
        gpu_hours=gpu_hours,
        gpu_count=gpu_count,
        gpu_class=gpu_class.strip(),
        starts_on=starts_on,
        ends_on=ends_on,
        model=_visible_or_error(user, ResearchModel, model_id, "model"),
        paper=_visible_or_error(user, Paper, paper_id, "paper"),
        benchmark=_visible_or_error(user, Benchmark, benchmark_id, "benchmark"),
    )
    request.full_clean()
    request.save()
    return request


def _check_dates(**dates: date | datetime) -> None:
    errors = {}
    for field, value in dates.items():
        try:
            validate_date_in_range(value)
        except ValidationError as error:
            errors[field] = error.messages
    if errors:
        raise ValidationError(errors)


def _locked_submitted(request: ComputeRequest) -> ComputeRequest:
    request = (
        ComputeRequest.objects.select_for_update()
        .select_related("requester", "institution")
        .get(pk=request.pk)
    )
    if request.state != ComputeRequest.State.SUBMITTED:
        raise ValidationError(
            {"state": f"This request is already {request.get_state_display().lower()}."}
        )
    return request


def _decide(request: ComputeRequest, *, reviewer: User, state: str, comment: str) -> None:
    """Records a review (the request is locked by the caller) and tells the requester."""
    request.state = state
    request.reviewer = reviewer
    request.review_comment = comment.strip()
    request.reviewed_at = timezone.now()
    request.save(update_fields=["state", "reviewer", "review_comment", "reviewed_at"])
    notifications.compute_request_reviewed_emit(request)


def _window(starts_on: date, ends_on: date) -> tuple[datetime, datetime]:
    zone = timezone.get_current_timezone()
    starts_at = datetime.combine(starts_on, datetime.min.time(), tzinfo=zone)
    return starts_at, datetime.combine(
        ends_on + timedelta(days=1), datetime.min.time(), tzinfo=zone
    )


@transaction.atomic
def compute_request_approve(
    *,
    reviewer: User,
    request: ComputeRequest,
    comment: str = "",
    gpu_hours: Decimal | None = None,
) -> Allocation:
    """Approves the request and creates its allocation; `gpu_hours` grants less than asked."""
    _require_staff(reviewer)
    request = _locked_submitted(request)
    granted = request.gpu_hours if gpu_hours is None else gpu_hours
    if granted <= 0 or granted > request.gpu_hours:
        raise ValidationError(
            {"gpu_hours": f"Grant between 0.1 and the {request.gpu_hours} GPU-hours asked."}
        )
    # A request stored before dates were bounded at input may still hold one out of range.
    _check_dates(starts_on=request.starts_on, ends_on=request.ends_on)
    _decide(request, reviewer=reviewer, state=ComputeRequest.State.APPROVED, comment=comment)
    starts_at, ends_at = _window(request.starts_on, request.ends_on)
    allocation = Allocation.objects.create(
        institution=request.institution,
        request=request,
        name=f"Request {request.pk}: {request.purpose[:150]}",
        gpu_class=request.gpu_class,
        budget_gpu_seconds=int(granted * 3600),
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=reviewer,
    )
    notifications.grant_received_emit(allocation, granted_by="the platform admins")
    return allocation


@transaction.atomic
def compute_request_reject(
    *, reviewer: User, request: ComputeRequest, comment: str
) -> ComputeRequest:
    _require_staff(reviewer)
    if not comment.strip():
        raise ValidationError({"comment": "Say why the request is rejected."})
    request = _locked_submitted(request)
    _decide(request, reviewer=reviewer, state=ComputeRequest.State.REJECTED, comment=comment)
    return request


@transaction.atomic
def compute_request_withdraw(*, user: User, request: ComputeRequest) -> ComputeRequest:
    if request.requester_id != user.pk:
        raise PermissionDenied("Only the researcher who asked can withdraw a request.")
    request = _locked_submitted(request)
    request.state = ComputeRequest.State.WITHDRAWN
    request.save(update_fields=["state"])
    return request


@transaction.atomic
def allocation_create(
    *,
    user: User,
    institution: Institution,
    name: str,
    gpu_hours: Decimal,
    starts_at: datetime,
    ends_at: datetime,
    gpu_class: str = "",
) -> Allocation:
    """A grant made directly by the platform admins, without a request."""
    _require_staff(user)
    _check_dates(starts_at=starts_at, ends_at=ends_at)
    allocation = Allocation(
        institution=institution,
        name=name,
        gpu_class=gpu_class,
        budget_gpu_seconds=int(gpu_hours * 3600),
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=user,
    )
    allocation.full_clean()
    allocation.save()
    notifications.grant_received_emit(allocation, granted_by="the platform admins")
    return allocation


def _reserved_gpu_seconds(allocation: Allocation) -> int:
    """What the allocation's queued and running jobs may still cost, at their time limits."""
    active = Job.objects.filter(allocation=allocation, state__in=Job.ACTIVE_STATES).aggregate(
        total=Sum(F("gpu_count") * F("time_limit_minutes") * 60)
    )
    return int(active["total"] or 0)


def allocation_for(
    *, institution: Institution, allocation_id: int | None, now: datetime
) -> Allocation | None:
    # A grant a peer node made is spent on that node's pool (remote jobs), never on ours.
    allocations = Allocation.objects.select_for_update().filter(
        institution=institution, origin_node=""
    )
    if allocation_id is not None:
        allocation = allocations.filter(pk=allocation_id).first()
        if allocation is None:
            raise ValidationError(
                {"allocation": f"{institution.name} has no allocation {allocation_id}."}
            )
        if not allocation.starts_at <= now < allocation.ends_at:
            raise ValidationError(
                {
                    "allocation": f"Allocation '{allocation.name}' runs from "
                    f"{allocation.starts_at:%Y-%m-%d} to {allocation.ends_at:%Y-%m-%d}."
                }
            )
        return allocation
    current = allocations.filter(starts_at__lte=now, ends_at__gt=now).order_by(
        F("used_gpu_seconds") - F("budget_gpu_seconds"), "ends_at"
    )
    return current.first()


def _model_formats(version: ModelVersion) -> set[str]:
    return set(version.files.values_list("artifact__format", flat=True))


def check_runnable(*, version: ModelVersion, benchmark: Benchmark) -> None:
    if not version.is_published:
        raise ValidationError(
            {"model_version": f"Version {version.label} is a draft: publish it to evaluate it."}
        )
    if version.files.filter(artifact__storage_name="").exists():
        raise ValidationError(
            {
                "model_version": f"Version {version.label} is mirrored from another node and its "
                "files have not been fetched and checked here yet: download them once first."
            }
        )
    if version.files.filter(artifact__unsafe=True).exists():
        raise ValidationError(
            {
                "model_version": f"Version {version.label} holds pickle-based files, which run "
                "code when loaded: the pool never evaluates them. Publish a safetensors or ONNX "
                "version."
            }
        )
    spec = evaluator_specs().get(benchmark.evaluator)
    if spec is None:
        raise ValidationError(
            {"benchmark": f"Evaluator '{benchmark.evaluator}' is not installed on this node."}
        )
    formats = _model_formats(version)
    accepted = set(spec.model_formats) & set(SAFE_MODEL_FORMATS)
    if not formats & accepted:
        raise ValidationError(
            {
                "model_version": f"The '{spec.name}' evaluator takes {', '.join(sorted(accepted))} "
                f"models; version {version.label} has {', '.join(sorted(formats)) or 'no files'}."
            }
        )


def _device_fits(job: scheduling.QueuedJob, node: ComputeNode) -> bool:
    devices = selectors.node_devices(node)
    return sum(scheduling.device_matches(job, device) for device in devices) >= max(
        job.gpu_count, 1
    )


def _queued(job: Job) -> scheduling.QueuedJob:
    return scheduling.QueuedJob(
        id=job.pk or 0,
        institution_id=job.institution_id,
        priority=job.priority,
        submitted_at=job.submitted_at or timezone.now(),
        gpu_count=job.gpu_count,
        gpu_memory_gb=job.gpu_memory_gb,
        gpu_class=job.gpu_class,
        time_limit=timedelta(minutes=job.time_limit_minutes),
        full_isolation=job.from_peer or job.benchmark.full_isolation_required,
        benchmark_institution_id=job.benchmark.institution_id,
    )


def job_event(job: Job, message: str = "") -> None:
    JobEvent.objects.create(job=job, attempt=job.attempt, state=job.state, message=message)


@transaction.atomic
def job_submit(
    *,
    user: User,
    model_version: ModelVersion,
    benchmark: Benchmark,
    institution: Institution | None = None,
    allocation_id: int | None = None,
) -> Job:
    """Queues an evaluation of `model_version` on `benchmark`, paid from an allocation of the
    institution the submitter acts for."""
    now = timezone.now()
    # Read both again, as the submitter may see them: what the caller holds may be stale.
    visible_version = ModelVersion.objects.filter(
        catalog_selectors.visible_to(user, "model__"), pk=model_version.pk
    ).first()
    if visible_version is None:
        raise ValidationError({"model_version": NO_VISIBLE_MODEL_VERSION})
    visible_benchmark = Benchmark.objects.filter(
        catalog_selectors.visible_to(user), pk=benchmark.pk
    ).first()
    if visible_benchmark is None:
        raise ValidationError({"benchmark": NO_VISIBLE_BENCHMARK})
    model_version, benchmark = visible_version, visible_benchmark
    check_runnable(version=model_version, benchmark=benchmark)

    memberships = Institution.objects.filter(memberships__user=user)
    if institution is None:
        if memberships.count() != 1:
            raise ValidationError(
                {"institution": "Say which of your institutions this job is for."}
            )
        institution = memberships.get()
    elif not memberships.filter(pk=institution.pk).exists():
        raise ValidationError({"institution": f"You are not a member of {institution.name}."})

    job = Job(
        model_version=model_version,
        benchmark=benchmark,
        submitter=user,
        institution=institution,
        gpu_count=benchmark.gpu_count,
        gpu_memory_gb=benchmark.gpu_memory_gb,
        time_limit_minutes=benchmark.time_limit_minutes,
        max_attempts=settings.COMPUTE_MAX_ATTEMPTS,
    )
    allocation = (
        allocation_for(institution=institution, allocation_id=allocation_id, now=now)
        if job.gpu_count or allocation_id is not None
        else None
    )
    if job.gpu_count and allocation is None:
        raise ValidationError(
            {
                "allocation": f"{institution.name} has no current GPU-hour allocation: request "
                "compute first."
            }
        )
    if allocation is not None:
        job.allocation = allocation
        job.gpu_class = allocation.gpu_class
        check_allocation_holds(job, allocation)
    check_pool_holds(job)
    job.save()
    job_event(job, f"Submitted by {user.username}.")
    dispatch_soon()
    return job


def check_allocation_holds(job: Job, allocation: Allocation) -> None:
    """Refuses a job whose most possible cost is more than what is left of the allocation
    (locked by the caller), once its queued and running jobs are counted."""
    if not job.gpu_count:
        return
    left = allocation.budget_gpu_seconds - allocation.used_gpu_seconds
    reserved = _reserved_gpu_seconds(allocation)
    if job.max_gpu_seconds > left - reserved:
        raise ValidationError(
            {
                "allocation": f"This job may use up to {job.max_gpu_seconds / 3600:.2f} "
                f"GPU-hours ({job.gpu_count} GPU x {job.time_limit_minutes} min); allocation "
                f"'{allocation.name}' has {left / 3600:.2f} left, of which "
                f"{reserved / 3600:.2f} are held by queued and running jobs."
            }
        )


def check_pool_holds(job: Job) -> None:
    """Refuses a job no compute node of the pool could ever run: not enough devices, or none
    that isolates evaluations as the job requires."""
    queued = _queued(job)
    nodes = list(ComputeNode.objects.all())
    holding = [node for node in nodes if _device_fits(queued, node)]
    if not holding:
        need = (
            f"{job.gpu_count} GPU(s) with {job.gpu_memory_gb} GB"
            + (f" of class '{job.gpu_class}'" if job.gpu_class else "")
            if job.gpu_count
            else "a CPU slot"
        )
        raise ValidationError({"benchmark": f"No compute node in the pool has {need}."})
    # A node whose worker has not reported its isolation yet ("") may still take the job.
    capacities = _capacities(holding)
    if not any(
        node.isolation == "" or capacity.accepts(queued)
        for node, capacity in zip(holding, capacities, strict=True)
    ):
        terms = (
            "fully isolates evaluations, as this job requires"
            if queued.full_isolation
            else "isolates evaluations or is trusted-only for this benchmark's institution"
        )
        raise ValidationError(
            {"benchmark": f"No compute node in the pool that could hold this job {terms}."}
        )


def _release(job: Job) -> None:
    DeviceAssignment.objects.filter(job=job).delete()


def _charge(job: Job, now: datetime) -> None:
    """Debits what the attempt used: its GPUs for its run time."""
    if job.started_at is None or job.gpu_count == 0:
        return
    ran = int(job.gpu_count * max((now - job.started_at).total_seconds(), 0))
    # Never more than the job could cost: what submission held against the allocation.
    job.gpu_seconds = min(ran, job.max_gpu_seconds)
    job.charged = True
    if job.allocation_id:
        Allocation.objects.filter(pk=job.allocation_id).update(
            used_gpu_seconds=F("used_gpu_seconds") + job.gpu_seconds
        )
    usage, _created = InstitutionUsage.objects.select_for_update().get_or_create(
        institution_id=job.institution_id, defaults={"updated_at": now}
    )
    usage.decayed_gpu_seconds = selectors.usage_decayed(usage, now) + job.gpu_seconds
    usage.total_gpu_seconds += job.gpu_seconds
    usage.updated_at = now
    usage.save()


def _finish(
    job: Job,
    state: str,
    *,
    now: datetime,
    charge: bool,
    reason: str = "",
    metrics: dict[str, Any] | None = None,
) -> None:
    """Ends the job (locked by the caller): frees its devices, debits its run time when the
    researcher owes it, lets the dispatcher use the freed devices, and tells the submitter."""
    job.state = state
    job.finished_at = now
    job.lease_expires_at = None
    if reason:
        job.failure_reason = reason
    if charge:
        _charge(job, now)
    job.save()
    _release(job)
    job_event(job, reason)
    dispatch_soon()
    notifications.job_finished_emit(job, metrics=metrics)


def _requeue_or_fail(job: Job, *, now: datetime, reason: str) -> None:
    """The platform lost the attempt: run it again (free of charge), up to max_attempts."""
    _release(job)
    if job.attempt >= job.max_attempts:
        _finish(
            job,
            Job.State.FAILED,
            now=now,
            charge=False,
            reason=f"{reason} Gave up after {job.attempt} attempts.",
        )
        return
    job.state = Job.State.PENDING
    job.node = None
    job.devices = []
    job.dispatched_at = None
    job.started_at = None
    job.lease_expires_at = None
    job.save()
    job_event(job, f"{reason} Requeued.")
    dispatch_soon()


def _revoke(job: Job, attempt: int) -> None:
    from config.celery_app import app

    task_id = run_job_task_id(job.pk, attempt)
    transaction.on_commit(lambda: app.control.revoke(task_id))


def job_require_canceller(*, user: User, job: Job) -> None:
    if user.pk != job.submitter_id:
        _require_manager(
            user, job.institution, "Only the submitter or an admin can cancel this job."
        )


@transaction.atomic
def job_cancel(*, user: User, job: Job, reason: str = "") -> Job:
    """The submitter or an admin stops the job. A running job is told to stop and its devices
    are freed at once. An admin's cancellation costs the researcher nothing."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    job_require_canceller(user=user, job=job)
    by_admin = user.pk != job.submitter_id
    if not job.is_active:
        raise ValidationError({"state": f"The job is already {job.get_state_display().lower()}."})
    was_started = job.state != Job.State.PENDING
    job.cancel_requested_by = user
    who = "an admin" if by_admin else "its submitter"
    _finish(
        job,
        Job.State.CANCELLED,
        now=timezone.now(),
        charge=not by_admin,
        reason=f"Cancelled by {who} ({user.username})" + (f": {reason}" if reason else "."),
    )
    if was_started:
        _revoke(job, job.attempt)
    return job


@transaction.atomic
def job_withdraw(*, job: Job, reason: str) -> Job:
    """The platform stops a job nobody here can stop any more (the peer node that asked for it
    left the federation). Nothing is charged."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    if not job.is_active:
        return job
    was_started = job.state != Job.State.PENDING
    _finish(job, Job.State.CANCELLED, now=timezone.now(), charge=False, reason=reason)
    if was_started:
        _revoke(job, job.attempt)
    return job


@transaction.atomic
def job_set_priority(*, user: User, job: Job, priority: int) -> Job:
    _require_staff(user)
    if not -100 <= priority <= 100:
        raise ValidationError({"priority": "Priority runs from -100 to 100."})
    job = Job.objects.select_for_update().get(pk=job.pk)
    job.priority = priority
    job.save(update_fields=["priority"])
    dispatch_soon()
    return job


def dispatch_soon() -> None:
    """Asks for a dispatcher run after this transaction commits. Runs already queued absorb
    this one: many submissions in a burst cost one dispatcher run, not one each."""

    def enqueue() -> None:
        from apps.compute.tasks import jobs_dispatch_task

        if cache.add(DISPATCH_PENDING_KEY, 1, timeout=settings.COMPUTE_DISPATCH_COALESCE_SECONDS):
            jobs_dispatch_task.apply_async(queue=settings.CELERY_TASK_DEFAULT_QUEUE)

    # Robust: with the broker or cache down the request still answers what it committed (a
    # 500 would have the job submitted twice); the beat's dispatcher run catches up (logged).
    transaction.on_commit(enqueue, robust=True)


def _online_nodes(now: datetime):
    fresh = now - timedelta(seconds=settings.COMPUTE_NODE_OFFLINE_AFTER_SECONDS)
    return ComputeNode.objects.filter(draining=False, last_heartbeat_at__gte=fresh)


def _capacities(nodes: list[ComputeNode]) -> list[scheduling.NodeCapacity]:
    busy: dict[int, dict[str, datetime]] = defaultdict(dict)
    held = DeviceAssignment.objects.filter(node__in=nodes).values_list(
        "node_id", "device", "job__dispatched_at", "job__time_limit_minutes"
    )
    for node_id, device, dispatched_at, minutes in held:
        busy[node_id][device] = (dispatched_at or timezone.now()) + timedelta(minutes=minutes)
    return [
        scheduling.NodeCapacity(
            node.pk,
            selectors.node_devices(node),
            busy[node.pk],
            isolation=node.isolation,
            trusted_institution_id=node.institution_id if node.trusted_only else None,
        )
        for node in nodes
    ]


def jobs_dispatch(*, now: datetime | None = None) -> list[int]:
    """Places pending jobs on free devices and sends each its message. Returns their ids.

    Concurrent dispatchers take turns: each locks the online nodes (in id order, so two never
    deadlock) and waits for a pass in progress, then sees that pass's placements and whatever
    was submitted or freed meanwhile. (Skipping locked nodes would lose the request that came
    during the other pass: its job would wait for beat.) Jobs another pass took are skipped;
    the unique (node, device) constraint is the last line of defence.
    """
    cache.delete(DISPATCH_PENDING_KEY)
    with transaction.atomic():
        nodes = list(
            _online_nodes(now or timezone.now()).select_for_update(of=("self",)).order_by("pk")
        )
        now = now or timezone.now()  # after the wait for the node locks
        if not nodes:
            return []
        capacities = _capacities(nodes)
        if not any(capacity.free() for capacity in capacities):
            return []
        pending = selectors.queued_jobs(Job.objects.filter(state=Job.State.PENDING))
        ordered = scheduling.queue_order(
            pending,
            now=now,
            fair_shares=selectors.fair_shares(now=now),
            weights=selectors.priority_weights(),
        )
        placements = {
            placement.job_id: placement
            for placement in scheduling.plan(ordered, capacities, now=now)
        }
        if not placements:
            return []
        taken = list(
            Job.objects.select_for_update(skip_locked=True)
            .filter(pk__in=placements, state=Job.State.PENDING)
            .order_by("pk")
        )
        nodes_by_id = {node.pk: node for node in nodes}
        claim_deadline = now + timedelta(seconds=settings.COMPUTE_CLAIM_TIMEOUT_SECONDS)
        assignments = []
        messages = []
        for job in taken:
            placement = placements[job.pk]
            job.state = Job.State.DISPATCHED
            job.node = nodes_by_id[placement.node_id]
            job.devices = list(placement.devices)
            job.attempt += 1
            job.dispatched_at = now
            job.lease_expires_at = claim_deadline
            assignments += [
                DeviceAssignment(node_id=placement.node_id, device=device, job=job)
                for device in placement.devices
            ]
            messages.append((job.pk, job.attempt, job.node.queue))
        # One UPDATE for what every taken job shares; bulk_update (a CASE per row and field)
        # only for what differs.
        Job.objects.filter(pk__in=[job.pk for job in taken]).update(
            state=Job.State.DISPATCHED,
            attempt=F("attempt") + 1,
            dispatched_at=now,
            lease_expires_at=claim_deadline,
        )
        Job.objects.bulk_update(taken, ["node", "devices"])
        DeviceAssignment.objects.bulk_create(assignments)
        JobEvent.objects.bulk_create(
            JobEvent(
                job=job,
                attempt=job.attempt,
                state=job.state,
                message=f"Dispatched to {job.node} on {', '.join(job.devices)}.",
            )
            for job in taken
        )
        transaction.on_commit(lambda: _send_run_messages(messages))
    return [job.pk for job in taken]


def _send_run_messages(messages: list[tuple[int, int, str]]) -> None:
    from config.celery_app import app

    for job_id, attempt, queue in messages:
        app.send_task(
            RUN_JOB_TASK,
            kwargs={"job": job_id, "attempt": attempt},
            queue=queue,
            task_id=run_job_task_id(job_id, attempt),
        )


@dataclass(frozen=True)
class ReconcileReport:
    requeued: list[int]
    timed_out: list[int]
    failed: list[int]


@transaction.atomic
def jobs_reconcile(*, now: datetime | None = None) -> ReconcileReport:
    """Finds attempts the platform lost and puts their jobs back in the queue: a dispatched
    message nobody claimed (lost with a flushed broker), a running job whose worker stopped
    renewing its lease (killed, host lost). Jobs past their time limit end as timed out."""
    now = now or timezone.now()
    requeued: list[int] = []
    timed_out: list[int] = []
    failed: list[int] = []
    grace = timedelta(seconds=settings.COMPUTE_LEASE_SECONDS)
    expired = (
        Job.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(
            Q(state__in=(Job.State.DISPATCHED, Job.State.RUNNING), lease_expires_at__lt=now)
            | Q(state=Job.State.RUNNING, started_at__isnull=False)
        )
        .select_related("node")
        .order_by("pk")
    )
    for job in expired:
        limit_ends = (
            job.started_at + timedelta(minutes=job.time_limit_minutes) + grace
            if job.started_at
            else None
        )
        if job.state == Job.State.RUNNING and limit_ends and limit_ends < now:
            _finish(
                job,
                Job.State.TIMED_OUT,
                now=now,
                charge=True,
                reason=f"Ran past its {job.time_limit_minutes} minute limit and did not report.",
            )
            _revoke(job, job.attempt)
            timed_out.append(job.pk)
            continue
        if job.lease_expires_at is None or job.lease_expires_at >= now:
            continue
        reason = (
            f"Attempt {job.attempt} was never picked up by {job.node} (message lost)."
            if job.state == Job.State.DISPATCHED
            else f"Attempt {job.attempt} stopped reporting from {job.node} (lease expired)."
        )
        _revoke(job, job.attempt)
        _requeue_or_fail(job, now=now, reason=reason)
        (failed if job.state == Job.State.FAILED else requeued).append(job.pk)
    return ReconcileReport(requeued=requeued, timed_out=timed_out, failed=failed)


def _current_attempt(*, node: ComputeNode, job_id: int, attempt: int, states) -> Job:
    # of=self: locking the node row too would hide the node from the dispatcher (skip_locked)
    # during every worker call.
    job = (
        Job.objects.select_for_update(of=("self",))
        .select_related("node")
        .filter(pk=job_id, node=node)
        .first()
    )
    if job is None:
        raise JobConflict(f"Job {job_id} is not assigned to this node.")
    if job.attempt != attempt:
        raise JobConflict(
            f"Attempt {attempt} of job {job_id} was superseded by attempt {job.attempt}."
        )
    if job.state not in states:
        raise JobConflict(f"Job {job_id} is {job.state}: nothing to do for attempt {attempt}.")
    return job


@transaction.atomic
def job_claim(*, node: ComputeNode, job_id: int, attempt: int) -> Job:
    """The worker that received the message starts the attempt; its lease starts now. Claiming
    a running attempt again returns it unchanged, so a claim whose answer was lost can be
    retried (the worker itself never runs one attempt twice)."""
    job = _current_attempt(
        node=node,
        job_id=job_id,
        attempt=attempt,
        states=(Job.State.DISPATCHED, Job.State.RUNNING),
    )
    if job.state == Job.State.RUNNING:
        return job
    now = timezone.now()
    job.state = Job.State.RUNNING
    job.started_at = now
    job.lease_expires_at = now + timedelta(seconds=settings.COMPUTE_LEASE_SECONDS)
    job.save(update_fields=["state", "started_at", "lease_expires_at"])
    job_event(job, f"Started on {node}.")
    return job


@transaction.atomic
def job_log_append(*, node: ComputeNode, job_id: int, attempt: int, offset: int, text: str) -> int:
    """Stores a piece of output at `offset` (characters of this attempt's log so far).
    A piece sent twice is stored once. Returns the log's length."""
    job = _current_attempt(node=node, job_id=job_id, attempt=attempt, states=(Job.State.RUNNING,))
    chunks = JobLogChunk.objects.filter(job=job, attempt=attempt)
    length = chunks.aggregate(end=Sum(Length("text")))["end"] or 0
    if offset + len(text) <= length:
        return length  # already stored
    if offset < length:
        # A resend whose first part arrived before: keep the part that did not.
        text, offset = text[length - offset :], length
    if offset > length:
        raise ValidationError({"offset": f"The log has {length} characters; send from there."})
    room = settings.COMPUTE_LOG_MAX_CHARS - length
    if room <= 0:
        return length
    if len(text) > room:
        text = text[:room] + "\n[log truncated: the node keeps the first part only]\n"
    JobLogChunk.objects.create(job=job, attempt=attempt, offset=offset, text=text)
    return length + len(text)


@transaction.atomic
def job_report_failure(
    *, node: ComputeNode, job_id: int, attempt: int, state: str, reason: str
) -> Job:
    """The worker ends its attempt without a result: the evaluation failed or ran out of time.
    The run time is the researcher's: the job ran as asked."""
    if state not in (Job.State.FAILED, Job.State.TIMED_OUT):
        raise ValidationError({"state": "A worker reports 'failed' or 'timed_out'."})
    job = _current_attempt(node=node, job_id=job_id, attempt=attempt, states=(Job.State.RUNNING,))
    _finish(job, state, now=timezone.now(), charge=True, reason=reason.strip()[:4000])
    return job


@transaction.atomic
def job_result_post(
    *,
    node: ComputeNode,
    job_id: int,
    attempt: int,
    metrics: dict[str, Any],
    provenance: dict[str, Any],
) -> tuple[Result, bool]:
    """Stores the attempt's result and ends the job. Idempotent: posting the same attempt's
    result again returns the stored one (created=False); any other attempt is refused."""
    existing = Result.objects.filter(job_id=job_id, job__node=node).first()
    if existing is not None:
        if existing.attempt == attempt:
            return existing, False
        raise JobConflict(f"Job {job_id} already has a result, from attempt {existing.attempt}.")
    job = _current_attempt(node=node, job_id=job_id, attempt=attempt, states=(Job.State.RUNNING,))
    _check_metrics(job, metrics)
    _finish(job, Job.State.SUCCEEDED, now=timezone.now(), charge=True, metrics=metrics)
    result = evaluation_services.result_record(
        job=job, attempt=attempt, metrics=metrics, provenance=provenance
    )
    return result, True


def _check_metrics(job: Job, metrics: dict[str, Any]) -> None:
    if len(metrics) > MAX_METRICS:
        raise ValidationError({"metrics": f"At most {MAX_METRICS} metrics, not {len(metrics)}."})
    long_names = [name[:40] for name in metrics if len(name) > MAX_METRIC_NAME_LENGTH]
    if long_names:
        raise ValidationError(
            {
                "metrics": f"Metric names have at most {MAX_METRIC_NAME_LENGTH} characters: "
                f"{', '.join(long_names)}…"
            }
        )
    bad = [name for name, value in metrics.items() if not finite_number(value)]
    if bad:
        raise ValidationError(
            {"metrics": f"Metric values must be finite numbers: {', '.join(bad)}."}
        )
