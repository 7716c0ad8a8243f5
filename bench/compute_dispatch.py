"""Dispatcher decision time: services.jobs_dispatch with 10,000 pending jobs and 50 nodes.

    .venv/bin/python bench/compute_dispatch.py                # seeds once, then about 25 s
    .venv/bin/python bench/compute_dispatch.py --runs 20

Creates and migrates the bench database if it is missing (as bench/seed_catalog.py does), then
seeds, once, its own namespace: three institutions (`bench-compute-*`) with current allocations
and usage rows, 50 registered nodes with mixed GPUs and CPU slots, and 10,000 pending jobs. Each
run calls jobs_dispatch inside a transaction that is rolled back afterwards, so every run sees
the same queue and on_commit (where the broker messages are sent) never fires. Scenarios: every
node free; every device busy; one GPU free on one node. Prints a table and writes
bench/results/compute-dispatch-<date>.json.
"""

import argparse
import hashlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "platform")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
# Nothing is committed, so nothing is sent; should that change, messages land in a scratch db.
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/9")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import QuerySet  # noqa: E402
from django.utils import timezone  # noqa: E402

from apps.accounts.models import Institution, Membership, User  # noqa: E402
from apps.catalog.models import (  # noqa: E402
    Benchmark,
    Dataset,
    ModelVersion,
    ResearchModel,
    Visibility,
)
from apps.compute import scheduling, selectors, services  # noqa: E402
from apps.compute.models import (  # noqa: E402
    Allocation,
    ComputeNode,
    DeviceAssignment,
    InstitutionUsage,
    Job,
    JobEvent,
)
from bench.seed_catalog import database_prepare  # noqa: E402

RESULTS = REPO / "bench" / "results"
STEPS = ("queued_jobs", "fair_shares", "queue_order", "plan", "bulk_update", "bulk_create")
SEED = 20261123
JOBS = 10_000
SUBMITTER = "bench-compute-submitter"
# (slug, name, allocated GPU-hours, decayed GPU-hours used)
INSTITUTIONS = [
    ("bench-compute-north", "Northbridge Compute Consortium", 50_000, 9_000),
    ("bench-compute-rhein", "Rheinau Compute Group", 30_000, 8_000),
    ("bench-compute-lake", "Lakeshore Compute Lab", 20_000, 6_000),
]
# (count, GPUs, GPU model, memory in bytes, CPU slots): 50 nodes, 200 GPUs, 400 CPU slots
NODE_TYPES = [
    (10, 8, "NVIDIA H100 80GB HBM3", 85_045_000_000, 16),
    (20, 4, "NVIDIA A100-SXM4-40GB", 42_505_000_000, 8),
    (20, 2, "NVIDIA RTX A5000", 25_757_000_000, 4),
]
GPU_COUNTS = ([0, 1, 2, 4, 8], [0.10, 0.45, 0.20, 0.15, 0.10])
MEMORY_GB = ([16, 24, 40, 80], [0.40, 0.25, 0.20, 0.15])
LIMIT_MINUTES = ([10, 30, 60, 120, 240, 480], [0.20, 0.20, 0.20, 0.20, 0.12, 0.08])


def _namespace_institutions() -> list[Institution]:
    return list(Institution.objects.filter(slug__in=[slug for slug, *_ in INSTITUTIONS]))


def seed(*, jobs: int) -> None:
    """Idempotent: leaves a complete namespace as it is, rebuilds an incomplete one."""
    now = timezone.now()
    institutions = _namespace_institutions()
    if (
        len(institutions) == len(INSTITUTIONS)
        and ComputeNode.objects.filter(institution__in=institutions).count() == 50
        and Job.objects.filter(institution__in=institutions, state=Job.State.PENDING).count()
        == jobs
        and not Job.objects.filter(institution__in=institutions)
        .exclude(state=Job.State.PENDING)
        .exists()
    ):
        return
    print("Seeding the compute namespace", flush=True)
    rng = random.Random(SEED)  # noqa: S311
    with transaction.atomic():
        if institutions:
            Job.objects.filter(institution__in=institutions).delete()
            ComputeNode.objects.filter(institution__in=institutions).delete()
            Allocation.objects.filter(institution__in=institutions).delete()
            InstitutionUsage.objects.filter(institution__in=institutions).delete()
        user, _created = User.objects.get_or_create(
            username=SUBMITTER,
            defaults={"email": "submitter@compute.bench.example", "password": make_password(None)},
        )
        by_slug = {}
        for slug, name, budget_hours, used_hours in INSTITUTIONS:
            institution, _created = Institution.objects.get_or_create(
                slug=slug, defaults={"name": name}
            )
            Membership.objects.get_or_create(user=user, institution=institution)
            Allocation.objects.create(
                institution=institution,
                name=f"{name} evaluations",
                budget_gpu_seconds=budget_hours * 3600,
                starts_at=now - timedelta(days=30),
                ends_at=now + timedelta(days=335),
                created_by=user,
            )
            InstitutionUsage.objects.create(
                institution=institution,
                decayed_gpu_seconds=used_hours * 3600,
                total_gpu_seconds=used_hours * 3600,
                updated_at=now,
            )
            by_slug[slug] = institution
        home = by_slug[INSTITUTIONS[0][0]]
        dataset, _created = Dataset.objects.get_or_create(
            institution=home,
            slug="compute-bench-data",
            defaults={
                "created_by": user,
                "name": "Compute bench data",
                "license": "CC-BY-4.0",
                "visibility": Visibility.PUBLIC,
            },
        )
        benchmark, _created = Benchmark.objects.get_or_create(
            institution=home,
            slug="compute-bench-smoke",
            defaults={
                "created_by": user,
                "name": "Compute bench smoke",
                "task_type": "pool-check",
                "dataset": dataset,
                "evaluator": "smoke",
                "visibility": Visibility.PUBLIC,
                "metrics": [{"name": "files", "higher_is_better": True}],
            },
        )
        model, _created = ResearchModel.objects.get_or_create(
            institution=home,
            slug="compute-bench-model",
            defaults={
                "created_by": user,
                "name": "Compute bench model",
                "license": "MIT",
                "visibility": Visibility.PUBLIC,
            },
        )
        version, _created = ModelVersion.objects.get_or_create(
            model=model, label="1.0", defaults={"created_by": user, "published_at": now}
        )
        nodes = []
        for count, gpus, gpu_name, memory, cpu_slots in NODE_TYPES:
            for _copy in range(count):
                number = len(nodes) + 1
                token = hashlib.sha256(f"compute-bench-node-{number}".encode()).hexdigest()
                nodes.append(
                    ComputeNode(
                        institution=home,
                        name=f"bench-node-{number:02d}",
                        gpus=[
                            {
                                "index": i,
                                "uuid": f"GPU-bench-{number}-{i}",
                                "name": gpu_name,
                                "memory_bytes": memory,
                            }
                            for i in range(gpus)
                        ],
                        cpu_slots=cpu_slots,
                        host_info={"hostname": f"bench-node-{number:02d}"},
                        token_prefix="rxn_bench",  # noqa: S106
                        token_hash=token,
                        created_by=user,
                        registered_at=now,
                        last_heartbeat_at=now,
                    )
                )
        ComputeNode.objects.bulk_create(nodes)
        allocations = {
            a.institution_id: a for a in Allocation.objects.filter(institution__in=by_slug.values())
        }
        institution_list = list(by_slug.values())
        rows = []
        for _number in range(jobs):
            institution = rng.choices(institution_list, weights=[0.3, 0.2, 0.5])[0]
            gpu_count = rng.choices(*GPU_COUNTS)[0]
            rows.append(
                Job(
                    model_version=version,
                    benchmark=benchmark,
                    submitter=user,
                    institution=institution,
                    allocation=allocations[institution.pk],
                    gpu_count=gpu_count,
                    gpu_memory_gb=rng.choices(*MEMORY_GB)[0] if gpu_count else 0,
                    time_limit_minutes=rng.choices(*LIMIT_MINUTES)[0],
                    priority=rng.choice([0] * 18 + [10, -10]),
                )
            )
        created = Job.objects.bulk_create(rows, batch_size=5_000)
        # submitted_at is auto_now_add: spread the queue over the last three days afterwards.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE compute_job SET submitted_at = %s - (id %% 4320) * interval '1 minute' "
                "WHERE id >= %s",
                [now, min(job.pk for job in created)],
            )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def nodes_heartbeat() -> None:
    ComputeNode.objects.filter(institution__in=_namespace_institutions()).update(
        last_heartbeat_at=timezone.now(), draining=False
    )


def _devices(node: ComputeNode) -> list[str]:
    return [f"gpu:{gpu['index']}" for gpu in node.gpus] + [
        f"cpu:{slot}" for slot in range(node.cpu_slots)
    ]


def pool_fill(*, leave_free: int) -> None:
    """Every device of the namespace's nodes held by a running job, except `leave_free` GPUs of
    the last node (an RTX A5000 node). Called inside the run's rolled-back transaction."""
    now = timezone.now()
    template = Job.objects.filter(institution__in=_namespace_institutions()).first()
    assert template is not None  # noqa: S101
    nodes = list(
        ComputeNode.objects.filter(institution__in=_namespace_institutions()).order_by("pk")
    )
    holders = Job.objects.bulk_create(
        Job(
            model_version_id=template.model_version_id,
            benchmark_id=template.benchmark_id,
            submitter_id=template.submitter_id,
            institution_id=template.institution_id,
            allocation_id=template.allocation_id,
            gpu_count=len(node.gpus),
            gpu_memory_gb=16,
            time_limit_minutes=240,
            state=Job.State.RUNNING,
            attempt=1,
            node=node,
            devices=_devices(node),
            dispatched_at=now - timedelta(minutes=30),
            started_at=now - timedelta(minutes=29),
        )
        for node in nodes
    )
    assignments = []
    for node, holder in zip(nodes, holders, strict=True):
        devices = _devices(node)
        if node is nodes[-1]:
            devices = devices[leave_free:]
        assignments += [DeviceAssignment(node=node, device=d, job=holder) for d in devices]
    DeviceAssignment.objects.bulk_create(assignments)


class Timers:
    """Wraps the dispatcher's steps to time them inside the real call."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.originals: list[tuple[object, str, Callable]] = []

    def wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - began

        self.originals.append((owner, name, original))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original in reversed(self.originals):
            setattr(owner, name, original)
        self.originals.clear()


def dispatch_once(*, setup: Callable[[], None] | None) -> dict[str, float]:
    timers = Timers()
    timers.wrap(selectors, "queued_jobs", "queued_jobs")
    timers.wrap(selectors, "fair_shares", "fair_shares")
    timers.wrap(scheduling, "queue_order", "queue_order")
    timers.wrap(scheduling, "plan", "plan")
    timers.wrap(QuerySet, "bulk_update", "bulk_update")
    timers.wrap(QuerySet, "bulk_create", "bulk_create")
    try:
        with transaction.atomic():
            if setup:
                setup()
            timers.seconds.clear()
            began = time.perf_counter()
            placed = services.jobs_dispatch(now=timezone.now())
            total = time.perf_counter() - began
            transaction.set_rollback(True)
    finally:
        timers.restore()
    return {"total": total, **timers.seconds, "placements": len(placed)}


def baseline_once(kind: str) -> float:
    with connection.cursor() as cursor:
        began = time.perf_counter()
        if kind == "count":
            cursor.execute("SELECT count(*) FROM compute_job WHERE state = 'pending'")
            cursor.fetchone()
        else:
            cursor.execute(
                "SELECT id, institution_id, priority, submitted_at, gpu_count, gpu_memory_gb, "
                "gpu_class, time_limit_minutes FROM compute_job WHERE state = 'pending'"
            )
            cursor.fetchall()
        return time.perf_counter() - began


def percentile(values: list[float], pct: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def ms(values: list[float], pct: float) -> float:
    return round(percentile(values, pct) * 1000, 1)


def code_version() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain"],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit}+changes" if changes else commit


def broker_messages() -> int | None:
    """Messages waiting in the broker's database: the bench must leave it as it found it."""
    try:
        import redis
    except ImportError:
        return None
    return int(redis.Redis.from_url(settings.CELERY_BROKER_URL).dbsize())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="measured runs per scenario")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured runs per scenario")
    parser.add_argument("--jobs", type=int, default=JOBS, help="pending jobs to seed")
    args = parser.parse_args()

    started = time.perf_counter()
    database_prepare(reset=False)
    seed(jobs=args.jobs)
    nodes_heartbeat()
    pending = Job.objects.filter(state=Job.State.PENDING).count()
    online = services._online_nodes(timezone.now()).count()
    others = (
        pending
        - Job.objects.filter(
            institution__in=_namespace_institutions(), state=Job.State.PENDING
        ).count()
    )
    if DeviceAssignment.objects.exists() or others:
        raise SystemExit("The bench database holds other pending jobs or busy devices.")
    events_before = JobEvent.objects.count()
    broker_before = broker_messages()

    scenarios: dict[str, Callable[[], None] | None] = {
        "all 50 nodes free": None,
        "every device busy": lambda: pool_fill(leave_free=0),
        "one GPU free (RTX A5000)": lambda: pool_fill(leave_free=1),
    }
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in scenarios}
    baselines: dict[str, list[float]] = {"count": [], "fetch": []}
    for _warm in range(args.warmup):
        for setup in scenarios.values():
            dispatch_once(setup=setup)
        for kind in baselines:
            baseline_once(kind)
    # Interleaved rounds: drift on the machine touches every scenario alike.
    for round_number in range(args.runs):
        print(f"round {round_number + 1}/{args.runs}", end="\r", flush=True)
        for name, setup in scenarios.items():
            samples[name].append(dispatch_once(setup=setup))
        for kind in baselines:
            baselines[kind].append(baseline_once(kind))
    print()
    nodes_heartbeat()
    if JobEvent.objects.count() != events_before or DeviceAssignment.objects.exists():
        raise SystemExit("A run was not rolled back.")
    broker_after = broker_messages()
    if broker_after != broker_before:
        raise SystemExit(f"The broker's database changed: {broker_before} -> {broker_after} keys.")

    fetch_p50 = percentile(baselines["fetch"], 50)
    rows = []
    for name, runs in samples.items():
        totals = [run["total"] for run in runs]
        parts = {
            part: round(sum(run.get(part, 0.0) for run in runs) / len(runs) * 1000, 1)
            for part in STEPS
        }
        parts["rest"] = round(sum(totals) / len(totals) * 1000 - sum(parts.values()), 1)
        rows.append(
            {
                "scenario": name,
                "runs": len(runs),
                "placements": sorted({int(run["placements"]) for run in runs}),
                "p50_ms": ms(totals, 50),
                "p99_ms": ms(totals, 99),
                "max_ms": ms(totals, 100),
                "mean_ms_by_step": parts,
                "p50_over_fetch": round(percentile(totals, 50) / fetch_p50, 1),
            }
        )
    baseline_rows = {
        kind: {"p50_ms": ms(values, 50), "p99_ms": ms(values, 99)}
        for kind, values in baselines.items()
    }
    print(
        f"{pending:,} pending jobs, {online} online nodes; baselines p50 / p99: "
        f"count(*) {baseline_rows['count']['p50_ms']} / {baseline_rows['count']['p99_ms']} ms, "
        f"fetch of the 8 columns {baseline_rows['fetch']['p50_ms']} / "
        f"{baseline_rows['fetch']['p99_ms']} ms"
    )
    header = (
        f"{'scenario':<26} {'placed':>6} {'p50 ms':>8} {'p99 ms':>8} {'x fetch':>7}  "
        "mean ms: fetch / fair shares / order / plan / bulk_update / bulk_create / rest"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        parts = row["mean_ms_by_step"]
        placed = "/".join(str(n) for n in row["placements"])
        print(
            f"{row['scenario']:<26} {placed:>6} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} "
            f"{row['p50_over_fetch']:>7.1f}  {parts['queued_jobs']} / {parts['fair_shares']} / "
            f"{parts['queue_order']} / {parts['plan']} / {parts['bulk_update']} / "
            f"{parts['bulk_create']} / {parts['rest']}"
        )
    print(f"broker messages before / after: {broker_before} / {broker_after}")
    stamp = datetime.now(UTC)
    report = {
        "date": stamp.isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_after": [round(value, 2) for value in os.getloadavg()],
        },
        "code": code_version(),
        "database": settings.DATABASES["default"]["NAME"],
        "pending_jobs": pending,
        "online_nodes": online,
        "nodes": [
            {"count": count, "gpus": gpus, "model": model, "cpu_slots": cpus}
            for count, gpus, model, _memory, cpus in NODE_TYPES
        ],
        "job_mix": {"gpu_counts": GPU_COUNTS, "memory_gb": MEMORY_GB, "limits": LIMIT_MINUTES},
        "runs": args.runs,
        "warmup": args.warmup,
        "baselines": baseline_rows,
        "results": rows,
        "broker_messages": {"before": broker_before, "after": broker_after},
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"compute-dispatch-{stamp:%Y-%m-%dT%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
