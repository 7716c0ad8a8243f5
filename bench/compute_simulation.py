"""Scheduling simulation of the compute pool on a synthetic trace: no database, no network.

    .venv/bin/python bench/compute_simulation.py                  # seed 7, 3 days of arrivals
    .venv/bin/python bench/compute_simulation.py --seed 11 --days 2

A fixed cluster of 6 nodes (2 x 8 H100 80 GB, 2 x 4 A100 40 GB, 2 x 2 RTX A5000 24 GB: 28 GPUs)
receives a seeded trace from three institutions whose allocations are 50 %, 30 % and 20 % of the
pool; the one with 20 % floods the queue with sweeps. A job's time limit over-estimates its run:
the actual run is limit x U(0.3, 1.0). The platform's policy (scheduling.queue_order, then
scheduling.plan: fair share, best fit, EASY backfill) runs after every arrival and every end,
as the dispatcher does on submit and finish, and is compared with FIFO variants on the same trace.
Fair-share usage is charged when a job ends and decays with a half-life, as services._charge and
selectors.usage_decayed do. Prints a table and writes bench/results/compute-simulation-<date>.json.
"""

import argparse
import heapq
import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "platform")]

from apps.compute import scheduling  # noqa: E402
from apps.compute.scheduling import (  # noqa: E402
    Device,
    NodeCapacity,
    Placement,
    PriorityWeights,
    QueuedJob,
)

RESULTS = REPO / "bench" / "results"
EPOCH = datetime(2026, 1, 5, tzinfo=UTC)
# settings.COMPUTE_FAIR_SHARE_HALF_LIFE_HOURS and COMPUTE_PRIORITY_WEIGHTS, the platform's defaults.
HALF_LIFE_HOURS = 168.0
WEIGHTS = PriorityWeights(admin=10.0, fair_share=1000.0, age=100.0)

# (name, GPUs, GPU model, memory in GB, CPU slots)
NODE_TYPES = [
    ("h100", 8, "NVIDIA H100 80GB HBM3", 80, 16),
    ("a100", 4, "NVIDIA A100-SXM4-40GB", 40, 8),
    ("a5000", 2, "NVIDIA RTX A5000", 24, 4),
]
NODES_PER_TYPE = 2

# (institution id, name, allocation share, offered load as a fraction of the pool, sweep sizes)
INSTITUTIONS = [
    (1, "northbridge", 0.50, 0.60, (1, 1)),
    (2, "rheinau", 0.30, 0.40, (1, 3)),
    (3, "lakeshore", 0.20, 0.80, (10, 40)),
]
GPU_COUNTS = ([1, 2, 4, 8], [0.50, 0.25, 0.15, 0.10])
LIMIT_MINUTES = ([10, 30, 60, 120, 240, 480], [0.20, 0.20, 0.20, 0.20, 0.12, 0.08])
MEMORY_GB = ([16, 24, 40, 80], [0.40, 0.25, 0.20, 0.15])
ACTUAL_FRACTION = (0.3, 1.0)


@dataclass(frozen=True)
class TraceJob:
    id: int
    institution_id: int
    arrival: float  # seconds from the start of the trace
    gpu_count: int
    gpu_memory_gb: int
    limit: float  # seconds
    actual: float  # seconds


def cluster() -> list[NodeCapacity]:
    nodes = []
    for _name, gpus, model, memory_gb, cpu_slots in NODE_TYPES:
        for _copy in range(NODES_PER_TYPE):
            # What the worker reports: nvidia-smi's MiB, a little more than the marketed GB.
            memory = int(memory_gb * 1024**3 * 0.99)
            devices = [Device(f"gpu:{index}", model, memory) for index in range(gpus)]
            devices += [Device(f"cpu:{slot}") for slot in range(cpu_slots)]
            nodes.append(NodeCapacity(len(nodes) + 1, devices))
    return nodes


def total_gpus() -> int:
    return sum(gpus for _name, gpus, _model, _memory, _cpus in NODE_TYPES) * NODES_PER_TYPE


def _job_shape(rng: random.Random) -> tuple[int, int, float]:
    gpu_count = rng.choices(*GPU_COUNTS)[0]
    memory = rng.choices(*MEMORY_GB)[0]
    if gpu_count == 8:
        memory = max(memory, 40)  # whole-node jobs are large-model jobs
    limit = rng.choices(*LIMIT_MINUTES)[0] * 60.0
    return gpu_count, memory, limit


def _mean_gpu_seconds() -> float:
    counts, count_weights = GPU_COUNTS
    limits, limit_weights = LIMIT_MINUTES
    mean_count = sum(c * w for c, w in zip(counts, count_weights, strict=True))
    mean_limit = sum(m * 60 * w for m, w in zip(limits, limit_weights, strict=True))
    return mean_count * mean_limit * sum(ACTUAL_FRACTION) / 2


def trace_build(*, seed: int, days: float) -> list[TraceJob]:
    """Poisson arrivals of single jobs or sweeps (a burst of identical jobs) per institution,
    at a rate that offers the institution's load over `days`."""
    rng = random.Random(seed)  # noqa: S311
    horizon = days * 86400
    jobs: list[TraceJob] = []
    for institution_id, _name, _share, load, (sweep_min, sweep_max) in INSTITUTIONS:
        jobs_per_second = load * total_gpus() / _mean_gpu_seconds()
        sweeps_per_second = jobs_per_second / ((sweep_min + sweep_max) / 2)
        now = rng.expovariate(sweeps_per_second)
        while now < horizon:
            gpu_count, memory, limit = _job_shape(rng)
            for _job in range(rng.randint(sweep_min, sweep_max)):
                actual = limit * rng.uniform(*ACTUAL_FRACTION)
                jobs.append(
                    TraceJob(0, institution_id, now, gpu_count, memory, limit, round(actual))
                )
            now += rng.expovariate(sweeps_per_second)
    jobs.sort(key=lambda job: (job.arrival, job.institution_id))
    return [
        TraceJob(
            number + 1, j.institution_id, j.arrival, j.gpu_count, j.gpu_memory_gb, j.limit, j.actual
        )
        for number, j in enumerate(jobs)
    ]


def _queued(job: TraceJob) -> QueuedJob:
    return QueuedJob(
        id=job.id,
        institution_id=job.institution_id,
        priority=0,
        submitted_at=EPOCH + timedelta(seconds=job.arrival),
        gpu_count=job.gpu_count,
        gpu_memory_gb=job.gpu_memory_gb,
        gpu_class="",
        time_limit=timedelta(seconds=job.limit),
    )


@dataclass
class Usage:
    """InstitutionUsage: decayed GPU-seconds as of `updated`."""

    decayed: float = 0.0
    updated: float = 0.0

    def at(self, now: float, half_life: float) -> float:
        return self.decayed * 0.5 ** (max(now - self.updated, 0.0) / half_life)


@dataclass
class PassContext:
    now: float
    pending: list[TraceJob]  # in submission order
    nodes: list[NodeCapacity]
    usage: dict[int, Usage]
    half_life: float
    running: list[tuple[int, int, float]]  # (institution id, GPUs, start) of running jobs


Policy = Callable[[PassContext], list[Placement]]


@dataclass
class Instant:
    """What an observer of the simulation sees after the events of one instant, before the
    dispatcher's pass: what arrived and ended, the queue and the pool."""

    now: float
    arrived: list[int]
    ended: list[int]
    pending: list[TraceJob]  # in submission order
    nodes: list[NodeCapacity]
    usage: dict[int, Usage]
    half_life: float
    running: dict[int, tuple[int, tuple[str, ...]]]  # job id: (node id, devices)
    start: dict[int, float]  # job id: when it started


Observer = Callable[[Instant], None]


def policy_platform(ctx: PassContext) -> list[Placement]:
    """What services.jobs_dispatch does: fair-share factors from decayed usage and allocations,
    queue_order, then plan."""
    now = EPOCH + timedelta(seconds=ctx.now)
    factors = scheduling.fair_share_factors(
        decayed_usage={i: u.at(ctx.now, ctx.half_life) for i, u in ctx.usage.items()},
        allocations={institution_id: share for institution_id, _n, share, _l, _s in INSTITUTIONS},
    )
    ordered = scheduling.queue_order(
        [_queued(job) for job in ctx.pending], now=now, fair_shares=factors, weights=WEIGHTS
    )
    return scheduling.plan(ordered, ctx.nodes, now=now)


def policy_running_charged(ctx: PassContext) -> list[Placement]:
    """The platform's policy, except that running jobs count towards usage for the GPU-seconds
    they have used so far (as Slurm accrues them), not only once they end."""
    now = EPOCH + timedelta(seconds=ctx.now)
    usage = {i: u.at(ctx.now, ctx.half_life) for i, u in ctx.usage.items()}
    for institution_id, gpu_count, start in ctx.running:
        usage[institution_id] += gpu_count * (ctx.now - start)
    factors = scheduling.fair_share_factors(
        decayed_usage=usage,
        allocations={institution_id: share for institution_id, _n, share, _l, _s in INSTITUTIONS},
    )
    ordered = scheduling.queue_order(
        [_queued(job) for job in ctx.pending], now=now, fair_shares=factors, weights=WEIGHTS
    )
    return scheduling.plan(ordered, ctx.nodes, now=now)


def policy_fifo_easy(ctx: PassContext) -> list[Placement]:
    """Submission order, then the platform's plan (best fit, EASY backfill)."""
    now = EPOCH + timedelta(seconds=ctx.now)
    return scheduling.plan([_queued(job) for job in ctx.pending], ctx.nodes, now=now)


def _first_fit(ctx: PassContext, backfill: bool) -> list[Placement]:
    free = {node.id: node.free() for node in ctx.nodes}
    placements = []
    for job in ctx.pending:
        queued = _queued(job)
        placed = False
        for node in ctx.nodes:
            usable = [d for d in free[node.id] if scheduling.device_matches(queued, d)]
            if len(usable) >= job.gpu_count:
                chosen = {d.key for d in usable[: job.gpu_count]}
                free[node.id] = [d for d in free[node.id] if d.key not in chosen]
                placements.append(Placement(job.id, node.id, tuple(sorted(chosen))))
                placed = True
                break
        if not placed and not backfill:
            break
    return placements


def policy_fifo_strict(ctx: PassContext) -> list[Placement]:
    """Submission order, first node that fits; the first job that fits nowhere blocks the rest."""
    return _first_fit(ctx, backfill=False)


def policy_fifo_first_fit(ctx: PassContext) -> list[Placement]:
    """Submission order, first node that fits; jobs that fit nowhere are skipped (no
    reservation, so wide jobs can wait behind a stream of narrow ones)."""
    return _first_fit(ctx, backfill=True)


POLICIES: dict[str, Policy] = {
    "fair share + EASY (platform)": policy_platform,
    "FIFO + EASY": policy_fifo_easy,
    "FIFO strict": policy_fifo_strict,
    "FIFO + first-fit backfill": policy_fifo_first_fit,
}
# Not the platform: a change to selectors.fair_shares, measured on the same trace.
VARIANTS: dict[str, Policy] = {"what-if: running jobs charged": policy_running_charged}


@dataclass
class Outcome:
    start: dict[int, float] = field(default_factory=dict)
    end: dict[int, float] = field(default_factory=dict)
    contended_seconds: float = 0.0
    contended_gpu_seconds: dict[int, float] = field(default_factory=dict)
    passes: int = 0
    policy_seconds: float = 0.0
    max_pending: int = 0


def simulate(
    trace: list[TraceJob],
    policy: Policy,
    *,
    half_life_hours: float,
    observe: Observer | None = None,
) -> Outcome:
    """Discrete events: arrivals and actual ends. After all events at one instant, one dispatcher
    pass. The dispatcher knows start + time limit (busy_until); devices come back at the actual
    end. `observe` sees each instant where something arrived or ended, before the pass."""
    half_life = half_life_hours * 3600
    nodes = cluster()
    by_node = {node.id: node for node in nodes}
    jobs = {job.id: job for job in trace}
    institutions = [institution_id for institution_id, *_rest in INSTITUTIONS]
    usage = {institution_id: Usage() for institution_id in institutions}
    outcome = Outcome(contended_gpu_seconds=dict.fromkeys(institutions, 0.0))
    # (time, kind, job id): kind 0 = end, 1 = arrival, so devices free before the same-instant pass
    events: list[tuple[float, int, int]] = [(job.arrival, 1, job.id) for job in trace]
    heapq.heapify(events)
    pending: dict[int, TraceJob] = {}  # insertion order = submission order
    running: dict[int, tuple[int, tuple[str, ...]]] = {}
    running_gpus = dict.fromkeys(institutions, 0)
    pending_count = dict.fromkeys(institutions, 0)
    last = 0.0
    while events:
        now = events[0][0]
        if all(pending_count.values()):
            outcome.contended_seconds += now - last
            for institution_id in institutions:
                outcome.contended_gpu_seconds[institution_id] += running_gpus[institution_id] * (
                    now - last
                )
        last = now
        arrived, ended = [], []
        while events and events[0][0] == now:
            _time, kind, job_id = heapq.heappop(events)
            job = jobs[job_id]
            if kind == 1:
                pending[job_id] = job
                pending_count[job.institution_id] += 1
                arrived.append(job_id)
                continue
            ended.append(job_id)
            node_id, devices = running.pop(job_id)
            for device in devices:
                del by_node[node_id].busy_until[device]
            running_gpus[job.institution_id] -= job.gpu_count
            outcome.end[job_id] = now
            account = usage[job.institution_id]
            account.decayed = account.at(now, half_life) + job.gpu_count * job.actual
            account.updated = now
        outcome.max_pending = max(outcome.max_pending, len(pending))
        if observe is not None:
            observe(
                Instant(
                    now, arrived, ended, list(pending.values()), nodes, usage, half_life,
                    running, outcome.start,
                )
            )  # fmt: skip
        if not pending or not any(node.free() for node in nodes):
            continue
        began = time.perf_counter()
        running_now = [
            (jobs[job_id].institution_id, jobs[job_id].gpu_count, outcome.start[job_id])
            for job_id in running
        ]
        placements = policy(
            PassContext(now, list(pending.values()), nodes, usage, half_life, running_now)
        )
        outcome.policy_seconds += time.perf_counter() - began
        outcome.passes += 1
        limit_end = EPOCH + timedelta(seconds=now)
        for placement in placements:
            job = pending.pop(placement.job_id)
            pending_count[job.institution_id] -= 1
            node = by_node[placement.node_id]
            for device in placement.devices:
                assert device not in node.busy_until, "double booking"  # noqa: S101
                node.busy_until[device] = limit_end + timedelta(seconds=job.limit)
            running[job.id] = (node.id, placement.devices)
            running_gpus[job.institution_id] += job.gpu_count
            outcome.start[job.id] = now
            heapq.heappush(events, (now + job.actual, 0, job.id))
    if pending or running:
        raise RuntimeError(f"{len(pending)} jobs never started, {len(running)} never ended")
    return outcome


def percentile(values: list[float], pct: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def trace_summary(trace: list[TraceJob]) -> dict:
    gpu_seconds = sum(job.gpu_count * job.actual for job in trace)
    bound = max(
        gpu_seconds / total_gpus(),
        max(job.actual for job in trace),
        max(job.arrival + job.actual for job in trace),
    )
    return {
        "jobs": len(trace),
        "gpu_hours": round(gpu_seconds / 3600, 1),
        "last_arrival_hours": round(max(job.arrival for job in trace) / 3600, 2),
        "makespan_lower_bound_hours": round(bound / 3600, 2),
        "jobs_per_institution": {
            name: sum(job.institution_id == iid for job in trace)
            for iid, name, *_rest in INSTITUTIONS
        },
        "gpu_hours_per_institution": {
            name: round(
                sum(j.gpu_count * j.actual for j in trace if j.institution_id == iid) / 3600, 1
            )
            for iid, name, *_rest in INSTITUTIONS
        },
        "_bound_seconds": bound,
    }


def outcome_summary(trace: list[TraceJob], outcome: Outcome, bound: float) -> dict:
    makespan = max(outcome.end.values())
    busy = sum(job.gpu_count * job.actual for job in trace)
    waits = [(outcome.start[job.id] - job.arrival) / 60 for job in trace]
    by_width = {
        str(width): [(outcome.start[j.id] - j.arrival) / 60 for j in trace if j.gpu_count == width]
        for width in GPU_COUNTS[0]
    }
    contended_total = sum(outcome.contended_gpu_seconds.values())
    shares = {}
    for institution_id, name, allocation, _load, _sweep in INSTITUTIONS:
        delivered = (
            outcome.contended_gpu_seconds[institution_id] / contended_total
            if contended_total
            else 0.0
        )
        shares[name] = {
            "allocation": allocation,
            "delivered": round(delivered, 3),
            "deviation": round(abs(delivered - allocation), 3),
            "mean_wait_minutes": round(
                sum(
                    (outcome.start[j.id] - j.arrival) / 60
                    for j in trace
                    if j.institution_id == institution_id
                )
                / max(1, sum(j.institution_id == institution_id for j in trace)),
                1,
            ),
        }
    return {
        "makespan_hours": round(makespan / 3600, 2),
        "makespan_over_bound": round(makespan / bound, 3),
        "utilisation": round(busy / (total_gpus() * makespan), 3),
        "wait_mean_minutes": round(sum(waits) / len(waits), 1),
        "wait_p95_minutes": round(percentile(waits, 95), 1),
        "wait_max_minutes": round(max(waits), 1),
        "wait_mean_minutes_by_gpu_count": {
            width: round(sum(values) / len(values), 1)
            for width, values in by_width.items()
            if values
        },
        "wait_p95_minutes_by_gpu_count": {
            width: round(percentile(values, 95), 1) for width, values in by_width.items() if values
        },
        "contended_hours": round(outcome.contended_seconds / 3600, 2),
        "contended_shares": shares,
        "max_share_deviation": max(s["deviation"] for s in shares.values()),
        "dispatcher_passes": outcome.passes,
        "policy_seconds": round(outcome.policy_seconds, 2),
        "max_pending": outcome.max_pending,
    }


def table_print(trace_info: dict, results: dict[str, dict]) -> None:
    names = [name for _iid, name, *_rest in INSTITUTIONS]
    print(
        f"trace: {trace_info['jobs']} jobs, {trace_info['gpu_hours']:,} GPU-hours on "
        f"{total_gpus()} GPUs; last arrival {trace_info['last_arrival_hours']} h; "
        f"makespan lower bound {trace_info['makespan_lower_bound_hours']} h"
    )
    header = (
        f"{'policy':<29} {'makespan/LB':>11} {'util':>5} {'wait mean':>9} {'p95':>7} "
        f"{'8-GPU p95':>9} {'contended':>9}  share vs fair ({' / '.join(names)})  max dev"
    )
    print(header)
    print("-" * len(header))
    for policy, r in results.items():
        shares = " / ".join(f"{r['contended_shares'][n]['delivered']:.2f}" for n in names)
        print(
            f"{policy:<29} {r['makespan_over_bound']:>11.3f} {r['utilisation']:>5.2f} "
            f"{r['wait_mean_minutes']:>7.0f} m {r['wait_p95_minutes']:>5.0f} m "
            f"{r['wait_p95_minutes_by_gpu_count'].get('8', 0):>7.0f} m "
            f"{r['contended_hours']:>7.1f} h  {shares:<30}  {r['max_share_deviation']:.3f}"
        )
    fair = " / ".join(f"{share:.2f}" for _i, _n, share, *_rest in INSTITUTIONS)
    print(f"(fair shares: {fair}; waits in minutes; 'contended' = all three had jobs waiting)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=float, default=3.0, help="days of arrivals")
    parser.add_argument(
        "--half-life-hours", type=float, default=HALF_LIFE_HOURS, help="fair-share usage decay"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    started = time.perf_counter()
    trace = trace_build(seed=args.seed, days=args.days)
    trace_info = trace_summary(trace)
    bound = trace_info.pop("_bound_seconds")
    results = {}
    for name, policy in {**POLICIES, **VARIANTS}.items():
        outcome = simulate(trace, policy, half_life_hours=args.half_life_hours)
        results[name] = outcome_summary(trace, outcome, bound)
    print()
    table_print(trace_info, results)
    elapsed = time.perf_counter() - started
    print(f"\n{elapsed:.1f} s")
    if args.no_write:
        return
    stamp = datetime.now(UTC)
    report = {
        "date": stamp.isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "arguments": {
            "seed": args.seed,
            "days": args.days,
            "half_life_hours": args.half_life_hours,
        },
        "cluster": [
            {
                "gpus": gpus,
                "model": model,
                "memory_gb": memory,
                "cpu_slots": cpus,
                "nodes": NODES_PER_TYPE,
            }
            for _name, gpus, model, memory, cpus in NODE_TYPES
        ],
        "institutions": [
            {
                "id": iid,
                "name": name,
                "allocation_share": share,
                "offered_load": load,
                "sweep_sizes": list(sweep),
            }
            for iid, name, share, load, sweep in INSTITUTIONS
        ],
        "weights": {"admin": WEIGHTS.admin, "fair_share": WEIGHTS.fair_share, "age": WEIGHTS.age},
        "trace": trace_info,
        "results": results,
        "seconds": round(elapsed, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"compute-simulation-{stamp:%Y-%m-%dT%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
