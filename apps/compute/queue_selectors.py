"""Reads of the queue: pending jobs in the dispatcher's order, each one's position, estimated
start and the reasons for its wait.

Everything is read at one instant, in a fixed number of queries whatever the queue's length:
the pending jobs, the fair shares, the nodes, the running jobs and the benchmarks' recent run
times. queue_estimates does the rest without the database. Anyone who may see a job may see its
place: the explanation counts the jobs ahead and names institution-level reasons only.
"""

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from apps.compute import queue_estimates, scheduling
from apps.compute.models import ComputeNode, Job
from apps.compute.queue_estimates import (
    RUN_TIME_HISTORY,
    QueueSnapshot,
    RunningJob,
    WaitEstimate,
)
from apps.compute.selectors import (
    Viewer,
    fair_shares,
    job_list,
    node_devices,
    priority_weights,
    queued_jobs_with_benchmarks,
)


def benchmark_run_times(benchmark_ids: Collection[int]) -> dict[int, timedelta]:
    """Each benchmark's typical run time: the median of its latest succeeded runs (started to
    finished). Benchmarks that never succeeded are left out. One query."""
    if not benchmark_ids:
        return {}
    latest = (
        Job.objects.filter(
            benchmark_id__in=benchmark_ids,
            state=Job.State.SUCCEEDED,
            started_at__isnull=False,
            finished_at__isnull=False,
        )
        .annotate(
            recency=Window(
                RowNumber(), partition_by=[F("benchmark_id")], order_by=F("finished_at").desc()
            )
        )
        .filter(recency__lte=RUN_TIME_HISTORY)
        .order_by()
        .values_list("benchmark_id", "started_at", "finished_at")
    )
    runs: dict[int, list[timedelta]] = defaultdict(list)
    for benchmark_id, started_at, finished_at in latest:
        if started_at is not None and finished_at is not None:
            runs[benchmark_id].append(finished_at - started_at)
    return {
        benchmark_id: typical
        for benchmark_id, durations in runs.items()
        if (typical := queue_estimates.median_run_time(durations)) is not None
    }


def _capacity(node: ComputeNode) -> scheduling.NodeCapacity:
    return scheduling.NodeCapacity(
        node.pk,
        node_devices(node),
        isolation=node.isolation,
        trusted_institution_id=node.institution_id if node.trusted_only else None,
    )


def queue_snapshot(*, now: datetime | None = None) -> QueueSnapshot:
    """The queue and the pool as the dispatcher would see them now, with what the estimate
    needs besides: the running jobs' expected ends and the pending jobs' expected run times."""
    now = now or timezone.now()
    pending = queued_jobs_with_benchmarks(Job.objects.filter(state=Job.State.PENDING))
    shares = fair_shares(now=now)
    weights = priority_weights()
    ordered = scheduling.queue_order(
        [queued for queued, _benchmark in pending], now=now, fair_shares=shares, weights=weights
    )
    nodes = list(ComputeNode.objects.order_by("pk"))
    fresh = now - timedelta(seconds=settings.COMPUTE_NODE_OFFLINE_AFTER_SECONDS)
    online = [
        node
        for node in nodes
        if not node.draining and node.last_heartbeat_at and node.last_heartbeat_at >= fresh
    ]
    active = list(
        Job.objects.filter(
            state__in=(Job.State.DISPATCHED, Job.State.RUNNING), node__isnull=False
        ).values_list(
            "node_id", "devices", "dispatched_at", "started_at", "time_limit_minutes", "benchmark"
        )
    )
    typical = benchmark_run_times(
        {benchmark for _queued, benchmark in pending} | {row[-1] for row in active}
    )
    running = []
    for node_id, devices, dispatched_at, started_at, minutes, benchmark in active:
        limit = timedelta(minutes=minutes)
        began = started_at or dispatched_at or now
        running.append(
            RunningJob(
                node_id=node_id,
                devices=tuple(devices),
                # As the dispatcher reserves: from the dispatch, by the time limit.
                limit_end=(dispatched_at or now) + limit,
                expected_end=queue_estimates.expected_end(
                    started_at=began, now=now, time_limit=limit, typical=typical.get(benchmark)
                ),
            )
        )
    return QueueSnapshot(
        now=now,
        ordered=ordered,
        fair_shares=shares,
        weights=weights,
        nodes=[_capacity(node) for node in online],
        registered=[_capacity(node) for node in nodes],
        running=running,
        run_times={
            queued.id: queue_estimates.expected_run_time(
                time_limit=queued.time_limit, typical=typical.get(benchmark)
            )
            for queued, benchmark in pending
        },
    )


def job_queue_estimates(
    *, job_ids: Collection[int] | None = None, now: datetime | None = None
) -> dict[int, WaitEstimate]:
    """Position, estimated start and explanation of each pending job of `job_ids` (of the
    first ESTIMATE_LIMIT jobs of the queue when None), by job id. No query when none of the
    ids is given."""
    if job_ids is not None and not job_ids:
        return {}
    return queue_estimates.estimate(queue_snapshot(now=now), job_ids=job_ids)


def job_wait_estimate(*, job: Job) -> WaitEstimate | None:
    """Where the job stands in the queue; None unless it is pending."""
    if job.state != Job.State.PENDING:
        return None
    return job_queue_estimates(job_ids=[job.pk]).get(job.pk)


@dataclass(frozen=True)
class QueueEntry:
    position: int
    job_id: int
    institution_id: int
    gpu_count: int
    priority: int
    score: float
    submitted_at: datetime
    estimated_start: datetime | None
    job: Job | None  # None where the viewer may not see the job itself


def job_queue(*, user: Viewer, limit: int = 200) -> tuple[list[QueueEntry], int]:
    """Pending jobs in the order the dispatcher will consider them, each with its estimated
    start, and how many are pending. Jobs the viewer may not see show only their institution
    and size."""
    snapshot = queue_snapshot()
    head = snapshot.ordered[:limit]
    estimates = queue_estimates.estimate(snapshot, job_ids=None, limit=limit)
    visible = job_list(user=user).in_bulk([queued.id for queued in head])
    entries = [
        QueueEntry(
            position=position,
            job_id=queued.id,
            institution_id=queued.institution_id,
            gpu_count=queued.gpu_count,
            priority=queued.priority,
            score=scheduling.job_priority(
                queued,
                now=snapshot.now,
                fair_share=snapshot.fair_shares.get(queued.institution_id, 0.25),
                weights=snapshot.weights,
            ),
            submitted_at=queued.submitted_at,
            estimated_start=estimates[queued.id].estimated_start,
            job=visible.get(queued.id),
        )
        for position, queued in enumerate(head, start=1)
    ]
    return entries, len(snapshot.ordered)
