"""Reads of the compute pool, with who-may-see-what applied.

Jobs: staff see every job; researchers see their institutions' jobs and their own, and anyone
(anonymous included) sees a succeeded job whose model and benchmark are both public: that is a
public result. Compute requests: the requester, the institution's admins, staff. Allocations and
usage: the institution's members, staff. Nodes: signed-in users (no node ever shows its token).
Credit (GPU-hours institutions gave each other): signed-in users, like the pool's occupancy.
"""

from collections import Counter, defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, TypeGuard

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db.models import F, Q, QuerySet, Sum
from django.http import Http404
from django.utils import timezone

from apps.accounts.models import Institution, Membership, User
from apps.catalog import selectors as catalog_selectors
from apps.catalog.models import Artifact, Visibility
from apps.compute import scheduling
from apps.compute.exceptions import JobConflict
from apps.compute.models import (
    Allocation,
    ComputeNode,
    ComputeRequest,
    InstitutionUsage,
    Job,
    JobLogChunk,
)

Viewer = User | AnonymousUser


def _signed_in(user: Viewer) -> TypeGuard[User]:
    return isinstance(user, User) and user.is_active


def _member_of(user: User) -> QuerySet:
    return Membership.objects.filter(user=user).values("institution_id")


def _admin_of(user: User) -> QuerySet:
    return Membership.objects.filter(user=user, role=Membership.Role.ADMIN).values("institution_id")


def usage_decayed(usage: InstitutionUsage, now: datetime) -> float:
    """GPU-seconds used, each halved for every half-life since it was used."""
    half_life = settings.COMPUTE_FAIR_SHARE_HALF_LIFE_HOURS * 3600
    elapsed = max((now - usage.updated_at).total_seconds(), 0.0)
    return float(usage.decayed_gpu_seconds * 0.5 ** (elapsed / half_life))


def fair_shares(*, now: datetime) -> dict[int, float]:
    """Each institution's fair-share factor, from its decayed usage and current allocations."""
    usage = {u.institution_id: usage_decayed(u, now) for u in InstitutionUsage.objects.all()}
    allocated: dict[int, float] = defaultdict(float)
    current = Allocation.objects.filter(
        starts_at__lte=now, ends_at__gt=now, origin_node=""
    ).values_list("institution_id", "budget_gpu_seconds")
    for institution_id, budget in current:
        allocated[institution_id] += budget
    return scheduling.fair_share_factors(decayed_usage=usage, allocations=allocated)


def priority_weights() -> scheduling.PriorityWeights:
    weights = settings.COMPUTE_PRIORITY_WEIGHTS
    return scheduling.PriorityWeights(
        admin=weights["admin"], fair_share=weights["fair_share"], age=weights["age"]
    )


def queued_jobs(queryset) -> list[scheduling.QueuedJob]:
    return [queued for queued, _benchmark_id in queued_jobs_with_benchmarks(queryset)]


def queued_jobs_with_benchmarks(queryset) -> list[tuple[scheduling.QueuedJob, int]]:
    """The jobs as the dispatcher orders and places them, each with its benchmark's id."""
    rows = queryset.order_by().values_list(
        "id",
        "institution_id",
        "priority",
        "submitted_at",
        "gpu_count",
        "gpu_memory_gb",
        "gpu_class",
        "time_limit_minutes",
        "benchmark__requires_full_isolation",
        "benchmark__visibility",
        "from_peer",
        "benchmark__institution_id",
        "benchmark_id",
    )
    return [
        (
            scheduling.QueuedJob(
                id=job_id,
                institution_id=institution_id,
                priority=priority,
                submitted_at=submitted_at,
                gpu_count=gpu_count,
                gpu_memory_gb=gpu_memory_gb,
                gpu_class=gpu_class,
                time_limit=timedelta(minutes=minutes),
                full_isolation=from_peer
                or (required if required is not None else visibility == Visibility.PUBLIC),
                benchmark_institution_id=benchmark_institution_id,
            ),
            benchmark_id,
        )
        for (
            job_id,
            institution_id,
            priority,
            submitted_at,
            gpu_count,
            gpu_memory_gb,
            gpu_class,
            minutes,
            required,
            visibility,
            from_peer,
            benchmark_institution_id,
            benchmark_id,
        ) in rows
    ]


def public_results() -> Q:
    return Q(
        state=Job.State.SUCCEEDED,
        model_version__model__visibility=Visibility.PUBLIC,
        benchmark__visibility=Visibility.PUBLIC,
    )


def _records_visible(user: Viewer) -> Q:
    """The job's model and benchmark are both records the viewer may see: being in the paying
    institution does not open another institution's private model."""
    return catalog_selectors.visible_to(user, "model_version__model__") & (
        catalog_selectors.visible_to(user, "benchmark__")
    )


def _own_jobs(user: User) -> Q:
    """Jobs of the viewer's institutions, and their own, whose records they may see."""
    return (Q(institution_id__in=_member_of(user)) | Q(submitter=user)) & _records_visible(user)


def jobs_visible_to(user: Viewer) -> Q:
    if not _signed_in(user):
        return public_results()
    if user.is_staff:
        return Q()
    return _own_jobs(user) | public_results()


def job_list(*, user: Viewer) -> QuerySet[Job]:
    return (
        Job.objects.filter(jobs_visible_to(user))
        .select_related(
            "model_version__model__institution",
            "benchmark__institution",
            "submitter",
            "institution",
            "node__institution",
            "allocation",
        )
        .order_by("-submitted_at", "-id")
    )


def job_get(*, user: Viewer, job_id: int) -> Job:
    job = job_list(user=user).select_related("result").filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job.")
    return job


def job_log(*, job: Job, attempt: int, offset: int = 0) -> str:
    """The attempt's output from `offset` characters on."""
    chunks = JobLogChunk.objects.filter(job=job, attempt=attempt).values_list("offset", "text")
    text = "".join(chunk for _offset, chunk in chunks)
    return text[offset:]


def node_list(*, user: Viewer) -> QuerySet[ComputeNode]:
    if not _signed_in(user):
        return ComputeNode.objects.none()
    return ComputeNode.objects.select_related("institution").order_by("institution__name", "name")


def node_get(*, user: Viewer, node_id: int) -> ComputeNode:
    node = node_list(user=user).filter(pk=node_id).first()
    if node is None:
        raise Http404("No such compute node.")
    return node


def node_devices(node: ComputeNode) -> list[scheduling.Device]:
    """What the node's worker registered, as the dispatcher places jobs on it: its GPUs, then
    its CPU slots."""
    gpus = [
        scheduling.Device(f"gpu:{gpu['index']}", gpu["name"], gpu["memory_bytes"])
        for gpu in node.gpus
    ]
    return gpus + [scheduling.Device(f"cpu:{slot}") for slot in range(node.cpu_slots)]


def node_status(node: ComputeNode, now: datetime | None = None) -> str:
    return node.status_at(now or timezone.now(), settings.COMPUTE_NODE_OFFLINE_AFTER_SECONDS)


class DeviceSlot(NamedTuple):
    device: str
    job: Job | None  # None: free
    visible: bool  # whether the viewer may see which job holds it


class NodeRow(NamedTuple):
    node: ComputeNode
    status: str
    slots: list[DeviceSlot]


def running_by_node(*, user: Viewer) -> list[NodeRow]:
    """Each node, its status, and which job holds each of its devices."""
    nodes = list(node_list(user=user))
    active = list(
        Job.objects.filter(
            state__in=(Job.State.DISPATCHED, Job.State.RUNNING), node__in=nodes
        ).select_related("model_version__model", "benchmark", "institution")
    )
    visible = set(
        Job.objects.filter(jobs_visible_to(user), pk__in=[job.pk for job in active]).values_list(
            "pk", flat=True
        )
    )
    holders = {(job.node_id, device): job for job in active for device in job.devices}
    now = timezone.now()
    rows = []
    for node in nodes:
        slots = []
        for device in (device.key for device in node_devices(node)):
            holder = holders.get((node.pk, device))
            slots.append(DeviceSlot(device, holder, holder is not None and holder.pk in visible))
        rows.append(NodeRow(node, node_status(node, now), slots))
    return rows


def compute_request_list(*, user: Viewer) -> QuerySet[ComputeRequest]:
    if not _signed_in(user):
        return ComputeRequest.objects.none()
    requests = ComputeRequest.objects.select_related(
        "requester", "institution", "reviewer", "model", "paper", "benchmark"
    )
    if user.is_staff:
        return requests
    return requests.filter(Q(requester=user) | Q(institution_id__in=_admin_of(user)))


def compute_request_links(*, user: Viewer, request: ComputeRequest) -> dict:
    """The model, paper and benchmark a request names, where the viewer may see them."""
    links = {}
    for field in ("model", "paper", "benchmark"):
        record = getattr(request, field)
        if record is not None and (
            type(record).objects.filter(catalog_selectors.visible_to(user), pk=record.pk).exists()
        ):
            links[field] = record
    return links


def compute_request_get(*, user: Viewer, request_id: int) -> ComputeRequest:
    request = compute_request_list(user=user).filter(pk=request_id).first()
    if request is None:
        raise Http404("No such compute request.")
    return request


def allocation_list(*, user: Viewer) -> QuerySet[Allocation]:
    if not _signed_in(user):
        return Allocation.objects.none()
    allocations = Allocation.objects.select_related("institution", "request")
    if user.is_staff:
        return allocations
    return allocations.filter(institution_id__in=_member_of(user))


def allocation_get(*, user: Viewer, allocation_id: int) -> Allocation:
    allocation = allocation_list(user=user).filter(pk=allocation_id).first()
    if allocation is None:
        raise Http404("No such allocation.")
    return allocation


@dataclass(frozen=True)
class InstitutionUsageSummary:
    institution: Institution
    budget_gpu_hours: float
    used_gpu_hours: float
    decayed_gpu_hours: float
    fair_share: float


def usage_summary(*, user: Viewer) -> list[InstitutionUsageSummary]:
    """Each institution the viewer may see: its current allocations against their use."""
    now = timezone.now()
    # Our pool's allocations: grants peers made to our institutions are spent on theirs.
    current = allocation_list(user=user).filter(starts_at__lte=now, ends_at__gt=now, origin_node="")
    totals = (
        current.values("institution_id")
        .annotate(budget=Sum("budget_gpu_seconds"), used=Sum("used_gpu_seconds"))
        .order_by()
    )
    by_institution = {row["institution_id"]: row for row in totals}
    institutions = Institution.objects.filter(pk__in=by_institution).order_by("name")
    decayed = {
        usage.institution_id: usage_decayed(usage, now)
        for usage in InstitutionUsage.objects.filter(institution__in=institutions)
    }
    shares = fair_shares(now=now)
    return [
        InstitutionUsageSummary(
            institution=institution,
            budget_gpu_hours=by_institution[institution.pk]["budget"] / 3600,
            used_gpu_hours=by_institution[institution.pk]["used"] / 3600,
            decayed_gpu_hours=decayed.get(institution.pk, 0.0) / 3600,
            fair_share=shares.get(institution.pk, 0.25),
        )
        for institution in institutions
    ]


def job_details_visible_to(user: Viewer) -> Q:
    """Logs, failure reasons, history and the host: staff, and the job's institution and
    submitter when they may see its model and benchmark (a public result alone shows its
    metrics only)."""
    if not _signed_in(user):
        return Q(pk__in=[])
    if user.is_staff:
        return Q()
    return _own_jobs(user)


def user_can_see_job_details(*, user: Viewer, job: Job) -> bool:
    return Job.objects.filter(job_details_visible_to(user), pk=job.pk).exists()


def job_artifact(*, node: ComputeNode, job_id: int, attempt: int, sha256: str) -> Artifact:
    """A file of the attempt `node` runs now: its model version's or its benchmark dataset's.
    A node token reads nothing else."""
    job = Job.objects.filter(pk=job_id, node=node).first()
    if job is None or job.attempt != attempt or job.state not in Job.ACTIVE_STATES:
        raise JobConflict(f"Attempt {attempt} of job {job_id} is not this node's to run.")
    artifact = Artifact.objects.filter(
        Q(model_files__version_id=job.model_version_id)
        | Q(dataset_files__dataset__benchmarks=job.benchmark_id),
        sha256=sha256,
    ).first()
    if artifact is None:
        raise Http404("This job has no such file.")
    return artifact


def job_isolation_terms(*, job: Job, node: ComputeNode) -> dict[str, object]:
    """What the worker is told with a claimed attempt: whether the benchmark requires full
    isolation, and whether the attempt is trusted (its benchmark is of the node's own
    institution and an admin marked the node trusted-only), so a worker that cannot isolate
    may run it."""
    benchmark = job.benchmark
    full = job.from_peer or benchmark.full_isolation_required
    return {
        "isolation_required": "full" if full else "any",
        "trusted": not job.from_peer
        and node.trusted_only
        and benchmark.institution_id == node.institution_id,
    }


@dataclass(frozen=True)
class InstitutionCredit:
    """GPU-seconds an institution's compute gave others and what it took from others, from
    charged jobs that ran on one institution's nodes for another."""

    institution: Institution
    # Its nodes ran jobs of other institutions of this node, and of peers' institutions.
    contributed_local_gpu_seconds: int = 0
    contributed_peers_gpu_seconds: int = 0
    # Its jobs ran on other institutions' nodes here, and on peers' pools (remote jobs, as
    # the peers charged them: the federation app reads those).
    consumed_local_gpu_seconds: int = 0
    consumed_peers_gpu_seconds: int = 0

    @property
    def exchanged(self) -> bool:
        return any(
            (
                self.contributed_local_gpu_seconds,
                self.contributed_peers_gpu_seconds,
                self.consumed_local_gpu_seconds,
                self.consumed_peers_gpu_seconds,
            )
        )

    @property
    def contributed_local_gpu_hours(self) -> float:
        return self.contributed_local_gpu_seconds / 3600

    @property
    def contributed_peers_gpu_hours(self) -> float:
        return self.contributed_peers_gpu_seconds / 3600

    @property
    def consumed_local_gpu_hours(self) -> float:
        return self.consumed_local_gpu_seconds / 3600

    @property
    def consumed_peers_gpu_hours(self) -> float:
        return self.consumed_peers_gpu_seconds / 3600


def _credit_totals(institution_ids: Collection[int] | None) -> dict[int, Counter[str]]:
    """Charged GPU-seconds of jobs that ran on another institution's node, per institution:
    as the nodes' owner (contributed) and as the job's institution (consumed). One query."""
    jobs = Job.objects.filter(charged=True, gpu_seconds__gt=0, node__isnull=False).exclude(
        institution_id=F("node__institution_id")
    )
    if institution_ids is not None:
        jobs = jobs.filter(
            Q(institution_id__in=institution_ids) | Q(node__institution_id__in=institution_ids)
        )
    flows = (
        jobs.values_list("node__institution_id", "institution_id", "institution__origin_node")
        .annotate(total=Sum("gpu_seconds"))
        .order_by()
    )
    totals: dict[int, Counter[str]] = defaultdict(Counter)
    for host_id, payer_id, payer_origin, seconds in flows:
        # A job's institution mirrored from a peer: the peer submitted it for one of its own.
        totals[host_id]["contributed_peers" if payer_origin else "contributed_local"] += seconds
        totals[payer_id]["consumed_local"] += seconds
    return totals


def _credit(
    institution: Institution, totals: Counter[str], consumed_peers_gpu_seconds: int
) -> InstitutionCredit:
    return InstitutionCredit(
        institution=institution,
        contributed_local_gpu_seconds=totals["contributed_local"],
        contributed_peers_gpu_seconds=totals["contributed_peers"],
        consumed_local_gpu_seconds=totals["consumed_local"],
        consumed_peers_gpu_seconds=consumed_peers_gpu_seconds,
    )


def institution_credit(
    *, user: Viewer, institution: Institution, consumed_peers_gpu_seconds: int = 0
) -> InstitutionCredit | None:
    """What the institution contributed to others and consumed from others; None for viewers
    who may not see it. `consumed_peers_gpu_seconds`: its remote jobs' charges."""
    if not _signed_in(user):
        return None
    totals = _credit_totals([institution.pk]).get(institution.pk, Counter())
    return _credit(institution, totals, consumed_peers_gpu_seconds)


def credit_summary(
    *, user: Viewer, consumed_peers: Mapping[int, int] | None = None
) -> list[InstitutionCredit]:
    """Every institution that contributed or consumed GPU time across institutions, by name.
    `consumed_peers`: remote jobs' charges per institution id."""
    if not _signed_in(user):
        return []
    consumed_peers = {pk: seconds for pk, seconds in (consumed_peers or {}).items() if seconds}
    totals = _credit_totals(None)
    institutions = Institution.objects.filter(pk__in={*totals, *consumed_peers}).order_by("name")
    return [
        _credit(
            institution,
            totals.get(institution.pk, Counter()),
            consumed_peers.get(institution.pk, 0),
        )
        for institution in institutions
    ]
