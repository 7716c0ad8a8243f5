"""How far a pending job's estimated start is from its actual start, on the scheduling
simulation's trace: no database, no network.

    .venv/bin/python bench/queue_estimates.py                  # seed 7, 3 days of arrivals
    .venv/bin/python bench/queue_estimates.py --seed 11 --days 2

The trace, the cluster and the platform's policy are compute_simulation's. At each job's
submission the estimate is made with the platform's estimator (queue_estimates.estimate on a
snapshot built as queue_selectors.queue_snapshot builds it: the queue in the dispatcher's order,
the running jobs ending at their expected ends, the pending jobs' expected run times), then
compared with the instant the simulated dispatcher actually started the job.

Typical run times are learned as the platform learns them from succeeded jobs: the median of the
last 20 runs of the same benchmark that finished so far in the simulation, capped by the time
limit. The trace has no benchmarks; a job's shape (GPUs, memory, time limit) stands for one, as
a sweep's jobs share it. Actual runs are limit x U(0.3, 1.0), so what can be learned is the
middle of that range, not each run. A second estimator that knows no history (time limits only)
shows what the learning is worth. Prints median and p90 absolute errors, in minutes and relative
to the actual wait, and writes bench/results/queue-estimates-<date>.json.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict, deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "platform")]

from apps.compute import scheduling  # noqa: E402
from apps.compute.queue_estimates import (  # noqa: E402
    RUN_TIME_HISTORY,
    QueueSnapshot,
    RunningJob,
    estimate,
    expected_end,
    expected_run_time,
    median_run_time,
)
from bench.compute_simulation import (  # noqa: E402
    EPOCH,
    HALF_LIFE_HOURS,
    INSTITUTIONS,
    WEIGHTS,
    Instant,
    TraceJob,
    _queued,
    percentile,
    policy_platform,
    simulate,
    trace_build,
)

RESULTS = REPO / "bench" / "results"
# A wait shorter than this is not a base for a relative error.
MIN_WAIT_FOR_RELATIVE = 10 * 60


def benchmark_of(job: TraceJob) -> tuple[int, int, float]:
    return (job.gpu_count, job.gpu_memory_gb, job.limit)


class Estimator:
    """Estimates, at each submission, the start of the jobs submitted then."""

    def __init__(self, *, learn: bool) -> None:
        self.learn = learn
        self.history: dict[tuple, deque[timedelta]] = defaultdict(
            lambda: deque(maxlen=RUN_TIME_HISTORY)
        )
        self.estimates: dict[int, float | None] = {}
        self.seconds = 0.0
        self.slowest = 0.0

    def typical(self, job: TraceJob) -> timedelta | None:
        return median_run_time(list(self.history[benchmark_of(job)])) if self.learn else None

    def __call__(self, instant: Instant) -> None:
        jobs = {job.id: job for job in instant.pending}
        for job_id in instant.ended:
            job = self._jobs[job_id]
            self.history[benchmark_of(job)].append(timedelta(seconds=job.actual))
        if not instant.arrived:
            return
        began = time.perf_counter()
        now = EPOCH + timedelta(seconds=instant.now)
        usage = {
            i: account.at(instant.now, instant.half_life) for i, account in instant.usage.items()
        }
        shares = scheduling.fair_share_factors(
            decayed_usage=usage,
            allocations={institution_id: share for institution_id, _n, share, *_ in INSTITUTIONS},
        )
        queued = [_queued(job) for job in instant.pending]
        running = []
        for job_id, (node_id, devices) in instant.running.items():
            job = self._jobs[job_id]
            started = EPOCH + timedelta(seconds=instant.start[job_id])
            limit = timedelta(seconds=job.limit)
            running.append(
                RunningJob(
                    node_id=node_id,
                    devices=devices,
                    limit_end=started + limit,
                    expected_end=expected_end(
                        started_at=started, now=now, time_limit=limit, typical=self.typical(job)
                    ),
                )
            )
        snapshot = QueueSnapshot(
            now=now,
            ordered=scheduling.queue_order(queued, now=now, fair_shares=shares, weights=WEIGHTS),
            fair_shares=shares,
            weights=WEIGHTS,
            nodes=instant.nodes,
            registered=instant.nodes,
            running=running,
            run_times={
                job.id: expected_run_time(
                    time_limit=timedelta(seconds=job.limit), typical=self.typical(job)
                )
                for job in jobs.values()
            },
        )
        for job_id, wait in estimate(snapshot, job_ids=instant.arrived).items():
            start = wait.estimated_start
            self.estimates[job_id] = None if start is None else (start - EPOCH).total_seconds()
        for job_id in instant.arrived:
            self.estimates.setdefault(job_id, None)
        spent = time.perf_counter() - began
        self.seconds += spent
        self.slowest = max(self.slowest, spent)

    def follow(self, trace: list[TraceJob]) -> "Estimator":
        self._jobs = {job.id: job for job in trace}
        return self


def errors_summary(trace: list[TraceJob], estimates: dict[int, float | None], start) -> dict:
    summary = _errors(trace, estimates, start)
    summary["by_institution"] = {
        name: _errors([job for job in trace if job.institution_id == iid], estimates, start)
        for iid, name, *_rest in INSTITUTIONS
    }
    return summary


def _errors(trace: list[TraceJob], estimates: dict[int, float | None], start) -> dict:
    absolute, signed, relative = [], [], []
    missing = 0
    for job in trace:
        estimated = estimates.get(job.id)
        if estimated is None:
            missing += 1
            continue
        actual = start[job.id]
        absolute.append(abs(estimated - actual) / 60)
        signed.append((estimated - actual) / 60)
        wait = actual - job.arrival
        if wait >= MIN_WAIT_FOR_RELATIVE:
            relative.append(abs(estimated - actual) / wait)
    waited = [job for job in trace if start[job.id] - job.arrival >= MIN_WAIT_FOR_RELATIVE]
    immediate = [job for job in trace if start[job.id] == job.arrival]
    return {
        "jobs": len(trace),
        "without_estimate": missing,
        "abs_error_minutes_median": round(statistics.median(absolute), 1),
        "abs_error_minutes_p90": round(percentile(absolute, 90), 1),
        "signed_error_minutes_median": round(statistics.median(signed), 1),
        "within_15_minutes": round(sum(error <= 15 for error in absolute) / len(absolute), 3),
        "jobs_that_waited": len(waited),
        "relative_error_median": round(statistics.median(relative), 3) if relative else None,
        "relative_error_p90": round(percentile(relative, 90), 3) if relative else None,
        "started_at_once": len(immediate),
        "started_at_once_and_estimated_so": sum(
            abs((estimates.get(job.id) or -1.0) - job.arrival) < 1 for job in immediate
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=float, default=3.0, help="days of arrivals")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    started = time.perf_counter()
    trace = trace_build(seed=args.seed, days=args.days)
    learned = Estimator(learn=True).follow(trace)
    limits = Estimator(learn=False).follow(trace)

    def both(instant: Instant) -> None:
        learned(instant)
        limits(instant)

    outcome = simulate(trace, policy_platform, half_life_hours=HALF_LIFE_HOURS, observe=both)
    waits = [(outcome.start[job.id] - job.arrival) / 60 for job in trace]
    results = {
        "typical run times (platform)": errors_summary(trace, learned.estimates, outcome.start),
        "time limits only": errors_summary(trace, limits.estimates, outcome.start),
    }
    print(
        f"trace: {len(trace)} jobs; actual wait median {statistics.median(waits):.0f} min, "
        f"p90 {percentile(waits, 90):.0f} min; {sum(w == 0 for w in waits)} started at once"
    )
    header = (
        f"{'estimator':<30} {'|error| median':>14} {'p90':>8} {'bias':>8} "
        f"{'relative median':>15} {'p90':>6}  {'none':>4}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(
            f"{name:<30} {r['abs_error_minutes_median']:>10.1f} min "
            f"{r['abs_error_minutes_p90']:>4.0f} min {r['signed_error_minutes_median']:>+4.0f} min "
            f"{r['relative_error_median']:>15.2f} {r['relative_error_p90']:>6.2f}  "
            f"{r['without_estimate']:>4}"
        )
        for institution, part in r["by_institution"].items():
            print(
                f"  {institution:<28} {part['abs_error_minutes_median']:>10.1f} min "
                f"{part['abs_error_minutes_p90']:>4.0f} min "
                f"{part['signed_error_minutes_median']:>+4.0f} min "
                f"{part['relative_error_median'] or 0:>15.2f} "
                f"{part['relative_error_p90'] or 0:>6.2f}"
            )
    print(
        f"(relative: |estimated - actual start| / actual wait, jobs that waited at least "
        f"{MIN_WAIT_FOR_RELATIVE // 60} min; bias: median of estimated - actual)"
    )
    elapsed = time.perf_counter() - started
    print(
        f"\nestimator: {learned.seconds:.1f} s for {len(trace)} submissions (slowest "
        f"{learned.slowest * 1000:.0f} ms); all: {elapsed:.1f} s"
    )
    if args.no_write:
        return
    stamp = datetime.now(UTC)
    report = {
        "date": stamp.isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "arguments": {"seed": args.seed, "days": args.days},
        "actual_wait_minutes": {
            "median": round(statistics.median(waits), 1),
            "p90": round(percentile(waits, 90), 1),
        },
        "results": results,
        "estimator_seconds": round(learned.seconds, 1),
        "slowest_estimate_seconds": round(learned.slowest, 3),
        "seconds": round(elapsed, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"queue-estimates-{stamp:%Y-%m-%dT%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
