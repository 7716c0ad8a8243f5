"""Compute pool throughput: no-op jobs through the real pool against raw Celery no-op tasks.

    .venv/bin/python bench/compute_throughput.py                 # about 6.5 minutes here
    .venv/bin/python bench/compute_throughput.py --jobs 2000 --latency-samples 50  # about 2 minutes

Everything runs on 127.0.0.1, on the bench database and on scratch Redis databases 9 (broker)
and 10 (cache), which it flushes. In one run:

1. baseline: N no-op tasks sent to a fresh queue of a Django-free Celery app (bench/
   noop_celery_app.py), consumed by one Celery worker with the pool worker's settings (threads
   pool, the same concurrency, acks_late, prefetch 1); tasks/s from the first send to the last
   completion;
2. the pool: N no-op jobs (the smoke evaluator over a one-file model and a one-file dataset, no
   GPU, hold 0 s) submitted through services.job_submit, placed by a control-plane Celery worker
   (`celery -A config worker`, as docker-compose runs it), run by one `python -m worker run`
   against the node's worker endpoints served by gunicorn; jobs/s from the first submission to
   the last success, and the submission loop alone;
3. latency on an idle pool: one job at a time, submitted_at -> started_at and -> finished_at.

It plays beat's dispatcher schedule (a jobs_dispatch_task every 10 s) as production runs it.
Other pending jobs of the bench database (bench/compute_dispatch.py's queue) would run on this
node, so they are parked (state cancelled, marked) for the run and put back afterwards, also
after a run that was killed. Everything it starts it stops by pid. Prints a table and writes
bench/results/compute-throughput-<date>.json.
"""

import argparse
import json
import os
import signal
import struct
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "platform")]
BROKER_URL = "redis://127.0.0.1:6379/9"
CACHE_URL = "redis://127.0.0.1:6379/10"
CONTROL_QUEUE = "bench-throughput-control"
NOOP_QUEUE = "bench-throughput-noop"
# The artifact files live outside the repository, where every process of the run finds them.
MEDIA_ROOT = Path(tempfile.gettempdir()) / "research-exchange-bench-throughput" / "media"
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
os.environ["CELERY_BROKER_URL"] = BROKER_URL
os.environ["CACHE_URL"] = CACHE_URL
os.environ["CELERY_CONTROL_QUEUE"] = CONTROL_QUEUE
os.environ["MEDIA_ROOT"] = str(MEDIA_ROOT)
os.environ["BENCH_NOOP_BROKER_URL"] = BROKER_URL

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402
from django.db.models import Count, Max, Min  # noqa: E402

from apps.accounts.models import Institution, User  # noqa: E402
from apps.catalog import services as catalog_services  # noqa: E402
from apps.catalog.models import Benchmark, ModelVersion  # noqa: E402
from apps.compute import services  # noqa: E402
from apps.compute.models import Job  # noqa: E402
from bench.catalog_load import percentile  # noqa: E402
from bench.noop_celery_app import DONE_KEY, LAST_KEY, NOOP_TASK  # noqa: E402
from bench.pool import (  # noqa: E402
    Processes,
    base_env,
    beat,
    check_no_strangers,
    cpu_snapshot,
    cpu_used,
    log_offsets,
    logs_read,
    mean_ms,
    namespace_clear,
    namespace_people,
    others_park,
    others_unpark,
    pool_setup_facts,
    pool_start,
    pool_teardown,
    process_groups,
    report_head,
    stored_artifact,
)

RESULTS = REPO / "bench" / "results"
INSTITUTION = "bench-throughput"
ADMIN = "bench-throughput-admin"
SUBMITTER = "bench-throughput-submitter"
NODE_NAME = "bench-throughput-node"
STALL_SECONDS = 120


def safetensors_bytes(values: int) -> bytes:
    header = json.dumps(
        {"weight": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}
    ).encode()
    return struct.pack("<Q", len(header)) + header + struct.pack(f"<{values}f", *range(values))


def namespace_prepare() -> tuple[User, User, Institution, ModelVersion, Benchmark]:
    """The bench's institution, its admin and submitter, a one-file model version and a smoke
    benchmark over a one-file dataset; made through the services once, then reused."""
    institution, admin, submitter = namespace_people(
        slug=INSTITUTION, name="Throughput Bench Institute", admin=ADMIN, submitter=SUBMITTER
    )
    weights = stored_artifact(admin, safetensors_bytes(64), "model.safetensors")
    data = stored_artifact(admin, safetensors_bytes(96), "data.safetensors")
    version = ModelVersion.objects.filter(model__institution=institution).first()
    if version is None:
        model = catalog_services.model_create(
            user=admin, institution=institution, name="Throughput no-op model",
            slug="throughput-noop-model", license="MIT", summary="One tiny file.",
        )  # fmt: skip
        version = catalog_services.version_create(
            user=admin, model=model, label="1.0",
            files=[("model.safetensors", weights)], publish=True,
        )  # fmt: skip
    benchmark = Benchmark.objects.filter(institution=institution).first()
    if benchmark is None:
        dataset = catalog_services.dataset_create(
            user=admin, institution=institution, name="Throughput no-op data",
            slug="throughput-noop-data", license="CC-BY-4.0", files=[("data.safetensors", data)],
        )  # fmt: skip
        benchmark = catalog_services.benchmark_create(
            user=admin, institution=institution, name="Throughput no-op",
            slug="throughput-noop", task_type="pool-check", dataset=dataset,
            metrics=[{"name": "files", "higher_is_better": True}], evaluator="smoke",
            evaluator_config={"hold_seconds": 0}, gpu_count=0, time_limit_minutes=10,
        )  # fmt: skip
    return admin, submitter, institution, version, benchmark


def raw_baseline(processes: Processes, *, tasks: int, concurrency: int) -> dict:
    broker = redis.Redis.from_url(BROKER_URL)
    broker.delete(DONE_KEY, LAST_KEY, NOOP_QUEUE)
    env = {**base_env(), "BENCH_NOOP_BROKER_URL": BROKER_URL}
    processes.start(
        "noop-worker",
        [
            sys.executable, "-m", "celery", "-A", "bench.noop_celery_app", "worker",
            "--pool", "threads", "--concurrency", str(concurrency), "--queues", NOOP_QUEUE,
            "--hostname", f"bench-noop.{os.getpid()}@%h", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ],
        env,
    )  # fmt: skip
    processes.wait_log("noop-worker", " ready.")
    from config.celery_app import app

    groups = process_groups(processes, BROKER_URL)
    before = cpu_snapshot(groups())
    began = time.time()
    with app.producer_or_acquire() as producer:
        for number in range(tasks):
            app.send_task(NOOP_TASK, args=[number], queue=NOOP_QUEUE, producer=producer)
    sent = time.time()
    last_progress, done = time.monotonic(), 0
    while done < tasks:
        time.sleep(0.05)
        now_done = int(broker.get(DONE_KEY) or 0)
        if now_done != done:
            done, last_progress = now_done, time.monotonic()
        elif time.monotonic() - last_progress > STALL_SECONDS:
            raise SystemExit(f"raw baseline stalled at {done} of {tasks}")
    after = cpu_snapshot(groups())
    last = float(broker.get(LAST_KEY) or 0)
    processes.stop("noop-worker")
    seconds = last - began
    return {
        "tasks": tasks,
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "send_seconds": round(sent - began, 2),
        "tasks_per_second": round(tasks / seconds, 1),
        "cpu_seconds": cpu_used(before, after),
    }


def submit_many(count: int, submitter: User, version: ModelVersion, benchmark: Benchmark) -> None:
    for _number in range(count):
        services.job_submit(user=submitter, model_version=version, benchmark=benchmark)


def wait_done(institution: Institution, expected: int, interval: float) -> Counter:
    """Polls the namespace's job states until `expected` jobs have ended."""
    jobs = Job.objects.filter(institution=institution)
    last_progress, ended = time.monotonic(), -1
    while True:
        states = Counter(
            {row["state"]: row["n"] for row in jobs.values("state").annotate(n=Count("pk"))}
        )
        now_ended = sum(n for state, n in states.items() if state not in Job.ACTIVE_STATES)
        if now_ended >= expected:
            return states
        if now_ended != ended:
            ended, last_progress = now_ended, time.monotonic()
        elif time.monotonic() - last_progress > STALL_SECONDS:
            raise SystemExit(f"the pool stalled: {dict(states)}")
        time.sleep(interval)


def job_timings(jobs) -> dict:
    rows = list(jobs.values_list("submitted_at", "dispatched_at", "started_at", "finished_at"))
    parts: dict[str, list[float]] = defaultdict(list)
    for submitted, dispatched, started, finished in rows:
        parts["submitted -> dispatched"].append((dispatched - submitted).total_seconds())
        parts["dispatched -> started (message, claim)"].append(
            (started - dispatched).total_seconds()
        )
        parts["started -> finished (fetch, evaluate, logs, result)"].append(
            (finished - started).total_seconds()
        )
        parts["submitted -> started"].append((started - submitted).total_seconds())
        parts["submitted -> finished"].append((finished - submitted).total_seconds())
    return {
        name: {
            "mean_ms": mean_ms(values),
            "p50_ms": round(percentile(values, 50) * 1000, 1),
            "p99_ms": round(percentile(values, 99) * 1000, 1),
        }
        for name, values in parts.items()
    }


def pool_throughput(
    *, jobs: int, slots: int, institution: Institution, submitter: User,
    version: ModelVersion, benchmark: Benchmark, groups: Callable[[], dict[str, list[int]]],
    processes: Processes,
) -> dict:  # fmt: skip
    namespace = Job.objects.filter(institution=institution)
    first_id = (namespace.aggregate(last=Max("pk"))["last"] or 0) + 1
    offsets = log_offsets(processes)
    before = cpu_snapshot(groups())
    began = time.time()
    submit_many(jobs, submitter, version, benchmark)
    submitted = time.time()
    print(f"  {jobs:,} submitted in {submitted - began:.1f} s; waiting", flush=True)
    states = wait_done(institution, expected=namespace.filter(pk__lt=first_id).count() + jobs,
                       interval=0.5)  # fmt: skip
    seen_done = time.time()
    after = cpu_snapshot(groups())
    measured = namespace.filter(pk__gte=first_id)
    span = measured.aggregate(first=Min("submitted_at"), last=Max("finished_at"))
    seconds = (span["last"] - span["first"]).total_seconds()
    succeeded = measured.filter(state=Job.State.SUCCEEDED).count()
    busy = 0.0
    for dispatched, finished in measured.values_list("dispatched_at", "finished_at"):
        if dispatched and finished:
            busy += (finished - dispatched).total_seconds()
    return {
        "jobs": jobs,
        "succeeded": succeeded,
        "states": dict(states),
        "retried": measured.filter(attempt__gt=1).count(),
        "seconds": round(seconds, 2),
        "jobs_per_second": round(succeeded / seconds, 1),
        "submit_seconds": round(submitted - began, 2),
        "submits_per_second": round(jobs / (submitted - began), 1),
        "seconds_to_seen_done": round(seen_done - began, 1),
        # Share of the node's slot-seconds that held a job (from dispatch to finish).
        "slot_occupancy": round(busy / (slots * seconds), 2),
        "timings": job_timings(measured),
        "cpu_seconds": cpu_used(before, after),
        "logs": logs_read(processes, offsets),
    }


def idle_latency(
    *, samples: int, institution: Institution, submitter: User, version: ModelVersion,
    benchmark: Benchmark, processes: Processes,
) -> dict:  # fmt: skip
    offsets = log_offsets(processes)
    ids = []
    for _number in range(samples):
        job = services.job_submit(user=submitter, model_version=version, benchmark=benchmark)
        deadline = time.monotonic() + STALL_SECONDS
        while Job.objects.filter(pk=job.pk, state__in=Job.ACTIVE_STATES).exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"job {job.pk} did not finish on the idle pool")
            time.sleep(0.01)
        ids.append(job.pk)
    measured = Job.objects.filter(pk__in=ids)
    waits = [
        (started - submitted).total_seconds()
        for submitted, started in measured.values_list("submitted_at", "started_at")
        if started
    ]
    return {
        "samples": samples,
        "succeeded": measured.filter(state=Job.State.SUCCEEDED).count(),
        # Jobs that waited for beat's dispatch: no dispatcher pass placed them on submission.
        "started_after_1s": sum(1 for wait in waits if wait > 1),
        "timings": job_timings(measured),
        "logs": logs_read(processes, offsets),
    }


def percentiles_line(timings: dict, name: str) -> str:
    row = timings[name]
    return f"p50 {row['p50_ms']:,.1f} ms, p99 {row['p99_ms']:,.1f} ms"


def report_print(report: dict) -> None:
    raw, pool, latency = report["raw_celery"], report["pool"], report["idle_latency"]
    print()
    print(f"{'path':<44}{'items':>8}{'seconds':>9}{'per s':>9}{'x raw':>7}")
    print(
        f"{'raw Celery no-op tasks':<44}{raw['tasks']:>8,}{raw['seconds']:>9.1f}"
        f"{raw['tasks_per_second']:>9.1f}{1:>7.2f}"
    )
    print(
        f"{'pool no-op jobs (submit -> succeeded)':<44}{pool['succeeded']:>8,}"
        f"{pool['seconds']:>9.1f}{pool['jobs_per_second']:>9.1f}"
        f"{pool['jobs_per_second'] / raw['tasks_per_second']:>7.2f}"
    )
    print(
        f"{'  submission loop alone (job_submit)':<44}{pool['jobs']:>8,}"
        f"{pool['submit_seconds']:>9.1f}{pool['submits_per_second']:>9.1f}"
    )
    print(f"slot occupancy {pool['slot_occupancy']:.2f}; retried {pool['retried']}")
    logs = pool["logs"]
    print(
        f"dispatcher: {logs['dispatch_passes']:,} passes "
        f"({logs['dispatch_passes_placing_nothing']:,} placed nothing), "
        f"mean {logs['dispatch_pass_ms_mean']} ms, p99 "
        f"{logs['dispatch_pass_ms_p99']} ms, {logs['placements_per_placing_pass']} jobs per "
        f"placing pass; node task mean {logs['node_task_ms_mean']} ms"
    )
    print("worker endpoints (gunicorn, server time):")
    for name, row in logs["endpoints"].items():
        print(
            f"  {name:<28}{row['requests']:>8,} req  mean {row['ms_mean']:>6.1f} ms  "
            f"p99 {row['ms_p99']:>7.1f} ms  total {row['seconds_total']:>6.1f} s"
        )
    print("CPU seconds during the pool run:")
    print("  " + ", ".join(f"{k} {v}" for k, v in pool["cpu_seconds"].items()))
    print("CPU seconds during the raw baseline:")
    print("  " + ", ".join(f"{k} {v}" for k, v in raw["cpu_seconds"].items()))
    print(
        f"idle pool, {latency['samples']} jobs one at a time "
        f"({latency['started_after_1s']} started more than 1 s after submission):"
    )
    for name in latency["timings"]:
        print(f"  {name:<52} {percentiles_line(latency['timings'], name)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="raw Celery no-op tasks")
    parser.add_argument(
        "--pool-jobs", type=int, help="no-op jobs through the pool (default: --jobs, at most 5,000)"
    )
    parser.add_argument("--slots", type=int, default=4, help="the node worker's CPU slots")
    parser.add_argument("--latency-samples", type=int, default=200, help="idle-pool jobs")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = parser.parse_args()
    pool_jobs = args.pool_jobs or min(args.jobs, 5_000)

    started = time.perf_counter()
    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        raise SystemExit("The bench database lacks migrations: bench/seed_catalog.py applies them.")
    restored = others_unpark()
    if restored:
        print(f"Put back {restored:,} jobs parked by an earlier run that did not finish")
    admin, submitter, institution, version, benchmark = namespace_prepare()
    print(f"Cleared {namespace_clear(institution):,} jobs of an earlier run", flush=True)
    broker, cache_db = redis.Redis.from_url(BROKER_URL), redis.Redis.from_url(CACHE_URL)
    broker.flushdb()
    cache_db.flushdb()
    folder = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    processes = Processes(folder)
    processes.started.clear()
    load_before = os.getloadavg()
    parked = 0
    beat_stop, beat_sent = threading.Event(), [0]
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        parked = others_park(institution)
        print(f"Parked {parked:,} pending jobs of other namespaces", flush=True)
        print(f"raw Celery: {args.jobs:,} no-op tasks, {args.slots} threads", flush=True)
        raw = raw_baseline(processes, tasks=args.jobs, concurrency=args.slots)
        print(f"  {raw['tasks_per_second']} tasks/s", flush=True)

        node, token = services.node_create(user=admin, institution=institution, name=NODE_NAME)
        connection.close()
        pool_start(
            processes, node_token=token, slots=args.slots, folder=folder,
            broker_url=BROKER_URL, control_queue=CONTROL_QUEUE,
        )  # fmt: skip
        groups = process_groups(processes, BROKER_URL)
        threading.Thread(
            target=beat, args=(beat_stop, beat_sent, CONTROL_QUEUE), daemon=True
        ).start()
        print("warm-up: 2 x slots jobs (the first fetch fills the file cache)", flush=True)
        submit_many(2 * args.slots, submitter, version, benchmark)
        wait_done(institution, expected=2 * args.slots, interval=0.1)
        print(f"pool: {pool_jobs:,} no-op jobs", flush=True)
        pool = pool_throughput(
            jobs=pool_jobs, slots=args.slots, institution=institution, submitter=submitter,
            version=version, benchmark=benchmark, groups=groups, processes=processes,
        )  # fmt: skip
        print(f"  {pool['jobs_per_second']} jobs/s", flush=True)
        print(f"idle pool: {args.latency_samples} jobs one at a time", flush=True)
        latency = idle_latency(
            samples=args.latency_samples, institution=institution, submitter=submitter,
            version=version, benchmark=benchmark, processes=processes,
        )  # fmt: skip
        check_no_strangers(node.pk, institution)
    finally:
        pool_teardown(
            beat_stop=beat_stop, processes=processes, parked=parked, institution=institution,
            flushed=[broker, cache_db], folder=folder, keep_logs=args.keep_logs,
        )  # fmt: skip

    stamp = datetime.now(UTC)
    report = {
        **report_head(load_before),
        "setup": pool_setup_facts(slots=args.slots, beat_sent=beat_sent[0], parked=parked),
        "raw_celery": raw,
        "pool": pool,
        "pool_over_raw": round(pool["jobs_per_second"] / raw["tasks_per_second"], 3),
        "idle_latency": latency,
        "seconds": round(time.perf_counter() - started, 1),
    }
    report_print(report)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"compute-throughput-{stamp:%Y-%m-%dT%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nWrote {path.relative_to(REPO)} ({report['seconds']} s)")


if __name__ == "__main__":
    main()
