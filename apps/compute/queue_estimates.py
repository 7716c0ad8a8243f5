"""When a pending job is likely to start, and why it waits: pure functions, no database.

The estimate replays the dispatcher forward in time with its own machinery (queue_order's
order, then scheduling.plan with its best fit and EASY reservation): running jobs free their
devices at their expected end, pending jobs ahead take devices in their turn, and a job's
estimated start is the instant the replayed dispatcher places it. Only when devices come back
does the replay differ from the dispatcher: it uses a job's expected run time (its benchmark's
typical run time, capped by the job's time limit; the time limit where there is no history),
where the dispatcher, which cannot know better, reserves by the time limit. The order is the
one of the instant of the estimate: fair shares that move as jobs end are not foreseen.

queue_selectors.queue_snapshot feeds it the queue and the pool; the scheduling simulation in
bench/queue_estimates.py feeds it its synthetic trace, to measure how far off it is.
"""

import heapq
import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from apps.compute import scheduling
from apps.compute.scheduling import NodeCapacity, PriorityWeights, QueuedJob

# How many jobs from the head of the queue the replay places at most: a job further back gets
# its position and the reasons for it, but no estimated start.
ESTIMATE_LIMIT = 200
# How many of a benchmark's latest succeeded runs make its typical run time.
RUN_TIME_HISTORY = 20


@dataclass(frozen=True)
class RunningJob:
    """A dispatched or running job as the replay sees it."""

    node_id: int
    devices: tuple[str, ...]
    limit_end: datetime  # when its time limit ends: what the dispatcher reserves by
    expected_end: datetime  # when it is expected to give its devices back


@dataclass(frozen=True)
class QueueSnapshot:
    """The queue and the pool at one instant."""

    now: datetime
    ordered: Sequence[QueuedJob]  # every pending job, in the dispatcher's order
    fair_shares: Mapping[int, float]
    weights: PriorityWeights
    nodes: Sequence[NodeCapacity]  # nodes the dispatcher places jobs on now (busy_until unused)
    registered: Sequence[NodeCapacity]  # every registered node, online or not
    running: Sequence[RunningJob]
    run_times: Mapping[int, timedelta]  # each pending job's expected run time


@dataclass(frozen=True)
class WaitEstimate:
    job_id: int
    position: int  # 1 = the next job the dispatcher considers
    pending: int
    estimated_start: datetime | None
    explanation: str


def median_run_time(run_times: Sequence[timedelta]) -> timedelta | None:
    """A benchmark's typical run time: the median of its recent runs; None without any."""
    if not run_times:
        return None
    return timedelta(seconds=statistics.median(run.total_seconds() for run in run_times))


def expected_run_time(*, time_limit: timedelta, typical: timedelta | None) -> timedelta:
    """A run takes its benchmark's typical time, and never more than its time limit."""
    return time_limit if typical is None else min(typical, time_limit)


def expected_end(
    *, started_at: datetime, now: datetime, time_limit: timedelta, typical: timedelta | None
) -> datetime:
    """When a job that started at `started_at` is expected to end: after its expected run time,
    but never before now (a run past its typical time ends at the earliest now)."""
    return max(now, started_at + expected_run_time(time_limit=time_limit, typical=typical))


def replay_starts(
    ordered: Sequence[QueuedJob],
    nodes: Sequence[NodeCapacity],
    running: Sequence[RunningJob],
    *,
    now: datetime,
    run_times: Mapping[int, timedelta],
    until: int | None = None,
) -> dict[int, datetime]:
    """The instant each job of `ordered` would be placed, replaying the dispatcher at every
    expected end of a running or replayed job. Jobs that never fit are left out. Stops once
    job `until` is placed, when given."""
    busy = {node.id: dict[str, datetime]() for node in nodes}
    ends: list[tuple[datetime, int, int, tuple[str, ...]]] = []  # (end, tie, node, devices)
    for tie, holder in enumerate(running):
        if holder.node_id in busy:
            busy[holder.node_id].update(dict.fromkeys(holder.devices, holder.limit_end))
            ends.append((holder.expected_end, tie, holder.node_id, holder.devices))
    heapq.heapify(ends)
    by_id = {job.id: job for job in ordered}
    waiting = list(ordered)
    starts: dict[int, datetime] = {}
    tie = len(ends)
    instant = now
    while waiting:
        capacities = [
            NodeCapacity(
                node.id,
                node.devices,
                busy[node.id],
                isolation=node.isolation,
                trusted_institution_id=node.trusted_institution_id,
            )
            for node in nodes
        ]
        for placement in scheduling.plan(waiting, capacities, now=instant):
            job = by_id[placement.job_id]
            starts[job.id] = instant
            busy[placement.node_id].update(
                dict.fromkeys(placement.devices, instant + job.time_limit)
            )
            end = instant + run_times.get(job.id, job.time_limit)
            heapq.heappush(ends, (end, tie := tie + 1, placement.node_id, placement.devices))
        if until is not None and until in starts:
            break
        waiting = [job for job in waiting if job.id not in starts]
        if not waiting or not ends:
            break
        instant = ends[0][0]
        while ends and ends[0][0] <= instant:
            _end, _tie, node_id, devices = heapq.heappop(ends)
            for device in devices:
                busy[node_id].pop(device, None)
    return starts


def can_hold(node: NodeCapacity, job: QueuedJob) -> bool:
    """Whether the node, once idle, could ever run the job."""
    matching = sum(scheduling.device_matches(job, device) for device in node.devices)
    return node.accepts(job) and matching >= max(job.gpu_count, 1)


def first_free(
    job: QueuedJob,
    nodes: Sequence[NodeCapacity],
    running: Sequence[RunningJob],
    *,
    now: datetime,
) -> datetime | None:
    """The earliest instant a node that could run the job has enough matching devices free, by
    the running jobs' expected ends alone (the queue ahead not counted)."""
    frees = {
        (job_running.node_id, device): job_running.expected_end
        for job_running in running
        for device in job_running.devices
    }
    needed = max(job.gpu_count, 1)
    earliest = None
    for node in nodes:
        if not can_hold(node, job):
            continue
        matching = sorted(
            frees.get((node.id, device.key), now)
            for device in node.devices
            if scheduling.device_matches(job, device)
        )
        at = max(now, matching[needed - 1])
        earliest = at if earliest is None else min(earliest, at)
    return earliest


def fits_now(job: QueuedJob, nodes: Sequence[NodeCapacity], running: Sequence[RunningJob]) -> bool:
    """Whether a node that could run the job has enough matching devices that no running job
    holds (a run past its expected end holds its devices until it ends)."""
    held = {
        (job_running.node_id, device) for job_running in running for device in job_running.devices
    }
    needed = max(job.gpu_count, 1)
    return any(
        can_hold(node, job)
        and sum(
            scheduling.device_matches(job, device) and (node.id, device.key) not in held
            for device in node.devices
        )
        >= needed
        for node in nodes
    )


def approximately(delta: timedelta) -> str:
    """A wait in rounded words: '~12 min', '~1 h 35 min', '~7 h', '~3 days'."""
    minutes = delta.total_seconds() / 60
    if minutes < 1:
        return "less than a minute"
    if minutes < 60:
        return f"~{math.ceil(minutes)} min"
    if minutes < 10 * 60:
        hours, rest = divmod(5 * round(minutes / 5), 60)
        return f"~{hours} h" + (f" {rest} min" if rest else "")
    if minutes < 48 * 60:
        return f"~{round(minutes / 60)} h"
    return f"~{round(minutes / 1440)} days"


def need_words(job: QueuedJob) -> str:
    """What the job waits for on one node, e.g. '2 free GPUs of 40 GB'."""
    if not job.gpu_count:
        return "a free CPU slot"
    plural = "s" if job.gpu_count > 1 else ""
    kind = f" of class '{job.gpu_class}'" if job.gpu_class else ""
    return f"{job.gpu_count} free GPU{plural} of {job.gpu_memory_gb} GB{kind}"


AHEAD_REASONS = {
    "admin": "with a higher admin priority",
    "fair_share": "of institutions with a higher fair share",
    "age": "submitted earlier",
}


def priority_terms(
    job: QueuedJob, *, now: datetime, fair_shares: Mapping[int, float], weights: PriorityWeights
) -> dict[str, float]:
    """The three terms scheduling.job_priority adds up."""
    age = min(max((now - job.submitted_at) / weights.max_age, 0.0), 1.0)
    return {
        "admin": weights.admin * job.priority,
        "fair_share": weights.fair_share * fair_shares.get(job.institution_id, 0.25),
        "age": weights.age * age,
    }


def ahead_reason(ahead: Mapping[str, float], job: Mapping[str, float]) -> str:
    """Why a job comes first, from both jobs' priority terms: the term that puts it furthest
    ahead; a tie goes to the job submitted first."""
    gaps = {term: ahead[term] - job[term] for term in AHEAD_REASONS}
    reason = max(gaps, key=lambda term: gaps[term])
    return reason if gaps[reason] > 0 else "age"


def _ahead_words(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    noun = "job" if total == 1 else "jobs"
    present = [(reason, count) for reason, count in counts.items() if count]
    if len(present) == 1:
        return f"Behind {total} {noun} {AHEAD_REASONS[present[0][0]]}."
    parts = [f"{count} {AHEAD_REASONS[reason]}" for reason, count in present]
    return f"Behind {total} {noun}: " + ", ".join(parts) + "."


def _no_node_words(job: QueuedJob) -> str:
    isolating = " that fully isolates evaluations" if job.full_isolation else ""
    if not job.gpu_count:
        return f"No registered compute node{isolating} may run it"
    plural = "s" if job.gpu_count > 1 else ""
    kind = f" of class '{job.gpu_class}'" if job.gpu_class else ""
    return (
        f"No registered compute node{isolating} has {job.gpu_count} GPU{plural} of "
        f"{job.gpu_memory_gb} GB{kind} it may use"
    )


@dataclass(frozen=True)
class WaitFacts:
    """What the explanation of one job is made of."""

    job: QueuedJob
    position: int
    ahead: Mapping[str, int]  # jobs ahead, per reason
    start: datetime | None
    simulated: bool  # within the replayed head of the queue
    registered: bool  # some registered node could ever run it
    online: bool  # some node the dispatcher uses now could run it
    free_at: datetime | None  # when enough devices of a node free up, the queue not counted
    free_now: bool  # a node has enough matching devices that no running job holds
    overtaken: int  # jobs ahead it starts before (backfill)


def explain(facts: WaitFacts, *, now: datetime) -> str:
    """The estimate in words: how many jobs are ahead and why, what the job waits for, and when
    it is estimated to start. Counts and reasons only: nothing of the jobs ahead themselves."""
    job = facts.job
    words = [_ahead_words(facts.ahead) if facts.position > 1 else "First in line."]
    if not facts.registered:
        words.append(f"{_no_node_words(job)}: it cannot start until such a node joins the pool.")
        return " ".join(words)
    if not facts.online:
        words.append(
            "Every node that can run it is offline or draining: it waits for one to come back, "
            "so no start can be estimated."
        )
        return " ".join(words)
    if not facts.simulated:
        words.append(
            f"Only the first {ESTIMATE_LIMIT} jobs of the queue get an estimated start; this "
            "one is further back."
        )
        return " ".join(words)
    if facts.free_at is not None and facts.free_at > now:
        words.append(
            f"Waiting for a node with {need_words(job)}: the earliest frees up in "
            f"{approximately(facts.free_at - now)}."
        )
    elif not facts.free_now:
        words.append(
            f"Waiting for a node with {need_words(job)}: the earliest is held by a run that has "
            "gone past its benchmark's typical run time."
        )
    elif facts.start is not None and facts.start > now:
        words.append(f"A node with {need_words(job)} is free now, but it goes to jobs ahead first.")
    if facts.overtaken:
        words.append(
            f"It may start before {facts.overtaken} of the jobs ahead, in a gap they leave "
            "(backfill)."
        )
    if facts.start is None:
        words.append("No start can be estimated.")
    elif facts.start <= now and not facts.free_now:
        words.append("Estimated to start as soon as that run ends.")
    elif facts.start <= now:
        words.append("Estimated to start now: the dispatcher places it in its next pass.")
    else:
        words.append(
            f"Estimated start in {approximately(facts.start - now)}, from the running jobs' "
            "elapsed times and the benchmarks' typical run times."
        )
    return " ".join(words)


def estimate(
    snapshot: QueueSnapshot,
    *,
    job_ids: Collection[int] | None = None,
    limit: int = ESTIMATE_LIMIT,
) -> dict[int, WaitEstimate]:
    """The position, estimated start and explanation of each pending job of `job_ids` (every
    job of the first `limit` when None; ids that are not pending are left out). The replay
    covers the first `limit` jobs at most, and stops early when one job is asked for."""
    now = snapshot.now
    ordered = snapshot.ordered
    positions = {job.id: place for place, job in enumerate(ordered, start=1)}
    if job_ids is None:
        wanted = [job.id for job in ordered[:limit]]
    else:
        wanted = sorted(
            {job_id for job_id in job_ids if job_id in positions}, key=positions.__getitem__
        )
    if not wanted:
        return {}
    last = positions[wanted[-1]]
    head = ordered[: min(last, limit)]
    until = wanted[0] if len(wanted) == 1 and last <= limit else None
    starts = replay_starts(
        head, snapshot.nodes, snapshot.running, now=now, run_times=snapshot.run_times, until=until
    )
    terms = [
        priority_terms(job, now=now, fair_shares=snapshot.fair_shares, weights=snapshot.weights)
        for job in ordered[:last]
    ]
    online = [any(can_hold(node, job) for node in snapshot.nodes) for job in head]
    estimates = {}
    for job_id in wanted:
        position = positions[job_id]
        job = ordered[position - 1]
        simulated = position <= limit
        start = starts.get(job_id) if simulated else None
        counts = dict.fromkeys(AHEAD_REASONS, 0)
        for ahead_terms in terms[: position - 1]:
            counts[ahead_reason(ahead_terms, terms[position - 1])] += 1
        overtaken = 0
        if start is not None:
            overtaken = sum(
                1
                for place, other in enumerate(head[: position - 1])
                if online[place] and (other.id not in starts or starts[other.id] > start)
            )
        facts = WaitFacts(
            job=job,
            position=position,
            ahead=counts,
            start=start,
            simulated=simulated,
            registered=any(can_hold(node, job) for node in snapshot.registered),
            online=any(can_hold(node, job) for node in snapshot.nodes),
            free_at=first_free(job, snapshot.nodes, snapshot.running, now=now)
            if simulated
            else None,
            free_now=simulated and fits_now(job, snapshot.nodes, snapshot.running),
            overtaken=overtaken,
        )
        estimates[job_id] = WaitEstimate(
            job_id=job_id,
            position=position,
            pending=len(ordered),
            estimated_start=start,
            explanation=explain(facts, now=now),
        )
    return estimates
