"""The real compute pool on 127.0.0.1, for the benchmarks that run jobs through it: gunicorn
serving the node, a control-plane Celery worker, one `python -m worker run`, a thread that plays
beat's dispatcher schedule, and a namespace of catalogue records made through the services.

Import it after django.setup(). Each benchmark first sets its bench database, its broker and
cache databases, its control queue and its media folder in the environment, and every process
started here inherits them.
"""

import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import redis
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.utils import timezone

from apps.accounts.models import Institution, Membership, User
from apps.catalog import services as catalog_services
from apps.catalog.uploads import uploaded_file_from_bytes
from apps.compute import services
from apps.compute.models import DeviceAssignment, Job
from apps.compute.tasks import jobs_dispatch_task
from bench.catalog_load import (
    _children,
    _cpu_seconds,
    _database_backends,
    _machine_busy_seconds,
    code_version,
    free_port,
    percentile,
)

REPO = Path(__file__).resolve().parent.parent
PARKED = "bench: parked for the run, put back afterwards"
BEAT_SECONDS = 10


def stored_artifact(user: User, content: bytes, name: str) -> str:
    """The artifact's digest; its file is stored again when an earlier run's folder is gone."""
    artifact = catalog_services.artifact_store(
        user=user, upload=uploaded_file_from_bytes(content, name)
    )
    storage = catalog_services.artifact_storage()
    if not storage.exists(artifact.storage_name):
        storage.save(artifact.storage_name, uploaded_file_from_bytes(content, name))
    return artifact.sha256


def namespace_people(
    *, slug: str, name: str, admin: str, submitter: str
) -> tuple[Institution, User, User]:
    """A benchmark's institution with its admin and a plain member who submits the jobs."""
    institution, _created = Institution.objects.get_or_create(slug=slug, defaults={"name": name})
    people = []
    for username, role in ((admin, Membership.Role.ADMIN), (submitter, Membership.Role.MEMBER)):
        user, _created = User.objects.get_or_create(
            username=username,
            defaults={"email": f"{username}@bench.example", "password": make_password(None)},
        )
        Membership.objects.get_or_create(
            user=user, institution=institution, defaults={"role": role}
        )
        people.append(user)
    return institution, people[0], people[1]


def namespace_clear(institution: Institution) -> int:
    """Deletes the namespace's jobs (with their events, logs, results) and its nodes."""
    jobs = "SELECT id FROM compute_job WHERE institution_id = %s"
    with transaction.atomic(), connection.cursor() as cursor:
        for table in (
            "evaluations_result", "compute_jobevent", "compute_joblogchunk",
            "compute_deviceassignment",
        ):  # fmt: skip
            cursor.execute(f"DELETE FROM {table} WHERE job_id IN ({jobs})", [institution.pk])  # noqa: S608
        cursor.execute("DELETE FROM compute_job WHERE institution_id = %s", [institution.pk])
        deleted = cursor.rowcount
        cursor.execute(
            "DELETE FROM compute_computenode WHERE institution_id = %s", [institution.pk]
        )
    return deleted


def others_unpark() -> int:
    return Job.objects.filter(state=Job.State.CANCELLED, failure_reason=PARKED).update(
        state=Job.State.PENDING, failure_reason=""
    )


def others_park(institution: Institution) -> int:
    """Other pending jobs would be placed on this node (any CPU job fits a CPU slot)."""
    busy = Job.objects.filter(state__in=(Job.State.DISPATCHED, Job.State.RUNNING)).exclude(
        institution=institution
    )
    if busy.exists() or DeviceAssignment.objects.exclude(job__institution=institution).exists():
        raise SystemExit("Other jobs are running on the bench database: not measuring beside them.")
    online = services._online_nodes(timezone.now()).exclude(institution=institution)
    if online.exists():
        raise SystemExit(
            f"{online.count()} other nodes are online (another bench script running?): "
            f"wait {settings.COMPUTE_NODE_OFFLINE_AFTER_SECONDS} s after it."
        )
    return (
        Job.objects.filter(state=Job.State.PENDING)
        .exclude(institution=institution)
        .update(state=Job.State.CANCELLED, failure_reason=PARKED)
    )


class Processes:
    """The processes this run started, stopped by pid (their own sessions: Ctrl-C reaches this
    script only)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        with (self.folder / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(  # noqa: S603
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.started[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def wait_log(self, name: str, marker: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.log(name):
            if self.started[name].poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start:\n{self.log(name)[-3000:]}")
            time.sleep(0.1)

    def stop(self, name: str) -> None:
        process = self.started.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for name in reversed(list(self.started)):
            self.stop(name)


def base_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("WORKER_")}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{REPO / 'platform'}"
    return env


def pool_start(
    processes: Processes, *, node_token: str, slots: int, folder: Path, broker_url: str,
    control_queue: str,
) -> int:  # fmt: skip
    """gunicorn, the control worker and the node worker; returns gunicorn's port."""
    (folder / "access.log").touch()
    env = {**base_env(), "DJANGO_SETTINGS_MODULE": "bench.settings"}
    port = free_port()
    processes.start(
        "gunicorn",
        [
            sys.executable, "-m", "gunicorn", "--pythonpath", f"{REPO},{REPO / 'platform'}",
            "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
            "--worker-class", "gthread", "--no-control-socket", "--graceful-timeout", "5",
            "--access-logfile", str(folder / "access.log"),
            "--access-logformat", "%(m)s %(U)s %(s)s %(D)s",
            "config.wsgi:application",
        ],
        env,
    )  # fmt: skip
    processes.wait_log("gunicorn", "Booting worker with pid")
    processes.start(
        "control-worker",
        [
            sys.executable, "-m", "celery", "-A", "config", "worker", "--queues", control_queue,
            "--concurrency", "2", "--hostname", f"bench-control.{os.getpid()}@%h",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ],
        env,
    )  # fmt: skip
    processes.wait_log("control-worker", " ready.")
    worker_env = {
        **base_env(),
        "WORKER_BROKER_URL": broker_url,
        "WORKER_NODE_URL": f"http://127.0.0.1:{port}",
        "WORKER_NODE_TOKEN": node_token,
    }
    worker_env.pop("DJANGO_SETTINGS_MODULE", None)
    processes.start(
        "node-worker",
        [
            sys.executable, "-m", "worker", "run", "--cpu-slots", str(slots),
            "--cache-dir", str(folder / "cache"), "--scratch-dir", str(folder / "scratch"),
        ],
        worker_env,
    )  # fmt: skip
    processes.wait_log("node-worker", " ready.")
    return port


def beat(stop: threading.Event, sent: list[int], queue: str) -> None:
    """What celery beat's "dispatch-jobs" entry does in production."""
    while not stop.wait(BEAT_SECONDS):
        jobs_dispatch_task.apply_async(queue=queue)
        sent[0] += 1


def process_groups(processes: Processes, broker_url: str) -> Callable[[], dict[str, list[int]]]:
    def groups() -> dict[str, list[int]]:
        found = {}
        for name, process in processes.started.items():
            found[name] = [process.pid, *_children(process.pid)]
        redis_pid = int(redis.Redis.from_url(broker_url).info("server")["process_id"])
        found["redis"] = [redis_pid]
        return found

    return groups


def cpu_snapshot(groups: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    """CPU seconds so far per process of each group (children counted when listed)."""
    snapshot = {name: _cpu_seconds(pids) for name, pids in groups.items()}
    snapshot["postgres"] = _cpu_seconds(_database_backends(settings.DATABASES["default"]["NAME"]))
    snapshot["bench client"] = {0: time.process_time()}
    snapshot["machine"] = {0: _machine_busy_seconds()}
    return snapshot


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    used = {
        group: sum(value - before.get(group, {}).get(pid, 0.0) for pid, value in pids.items())
        for group, pids in after.items()
    }
    used["other"] = used["machine"] - sum(v for k, v in used.items() if k != "machine")
    return {group: round(value, 1) for group, value in used.items()}


DISPATCH_LINE = re.compile(
    r"Task apps\.compute\.tasks\.jobs_dispatch_task\[[^\]]+\] succeeded in ([\d.]+)s: \[([^\]]*)\]"
)
RUN_LINE = re.compile(r"Task worker\.run_job\[[^\]]+\] succeeded in ([\d.]+)s: '(\w+)'")
ENDPOINT = re.compile(r"/api/v1/worker/(?:jobs/\d+/)?([a-z]+)")


def mean_ms(values: list[float]) -> float:
    return round(sum(values) / len(values) * 1000, 1) if values else 0.0


def log_offsets(processes: Processes) -> dict[str, int]:
    return {name: len(processes.log(name)) for name in ("control-worker", "node-worker", "access")}


def logs_read(processes: Processes, offsets: dict[str, int]) -> dict:
    """What the processes logged since `offsets`: dispatcher passes, node task times, and the
    node's worker endpoints as gunicorn's access log timed them."""
    text = {name: processes.log(name)[offset:] for name, offset in offsets.items()}
    passes = [
        (float(seconds), len([i for i in ids.split(",") if i.strip()]))
        for seconds, ids in DISPATCH_LINE.findall(text["control-worker"])
    ]
    runs = [float(seconds) for seconds, _outcome in RUN_LINE.findall(text["node-worker"])]
    outcomes = Counter(outcome for _seconds, outcome in RUN_LINE.findall(text["node-worker"]))
    endpoints: dict[str, list[float]] = defaultdict(list)
    for line in text["access"].splitlines():
        method, path, status, micros = line.split()[:4]
        found = ENDPOINT.search(path)
        name = found.group(1) if found else path
        endpoints[f"{method} {name} {status}"].append(int(micros) / 1e6)
    return {
        "dispatch_passes": len(passes),
        "dispatch_passes_placing_nothing": sum(1 for _s, placed in passes if placed == 0),
        "dispatch_pass_ms_mean": mean_ms([s for s, _placed in passes]),
        "dispatch_pass_ms_p99": round(percentile([s for s, _p in passes], 99) * 1000, 1)
        if passes
        else 0.0,
        "dispatch_seconds_total": round(sum(s for s, _placed in passes), 1),
        "placements_per_placing_pass": round(
            sum(p for _s, p in passes) / max(1, sum(1 for _s, p in passes if p)), 2
        ),
        "node_task_ms_mean": mean_ms(runs),
        "node_task_outcomes": dict(outcomes),
        "endpoints": {
            name: {
                "requests": len(times),
                "ms_mean": mean_ms(times),
                "ms_p99": round(percentile(times, 99) * 1000, 1),
                "seconds_total": round(sum(times), 1),
            }
            for name, times in sorted(endpoints.items())
        },
    }


def pool_teardown(
    *,
    beat_stop: threading.Event,
    processes: Processes,
    parked: int,
    institution: Institution,
    flushed: list[redis.Redis],
    folder: Path,
    keep_logs: bool,
) -> None:
    """Stops what the run started (by pid), puts back the other namespaces' parked jobs, and
    clears the run's jobs, Redis databases and logs."""
    beat_stop.set()
    processes.stop_all()
    unparked = others_unpark()
    if parked or unparked:
        print(f"Put back {unparked:,} parked jobs")
    namespace_clear(institution)
    for database in flushed:
        database.flushdb()
    if keep_logs:
        print(f"Logs kept in {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


def report_head(load_before: tuple[float, ...], **versions: str) -> dict:
    """The part of a result file every pool bench writes: when, on what, with which code."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            **versions,
            "load_average_before": [round(value, 2) for value in load_before],
            "load_average_after": [round(value, 2) for value in os.getloadavg()],
        },
        "code": code_version(),
        "database": settings.DATABASES["default"]["NAME"],
    }


def check_no_strangers(node_id: int, institution: Institution) -> None:
    """Fails the run if the bench node ran a job of another namespace: its figures would mix."""
    strangers = Job.objects.filter(node_id=node_id).exclude(institution=institution).count()
    if strangers:
        raise SystemExit(f"{strangers} jobs of other namespaces ran on the bench node")


def pool_setup_facts(*, slots: int, beat_sent: int, parked: int) -> dict:
    """How the pool of a run was set up, for its result file."""
    return {
        "broker": os.environ["CELERY_BROKER_URL"],
        "cache": os.environ["CACHE_URL"],
        "gunicorn": "2 workers x 4 threads (gthread)",
        "control_worker": "celery -A config worker --concurrency 2 (prefork)",
        "node_worker": f"python -m worker run --cpu-slots {slots}",
        "beat_dispatch_every_seconds": BEAT_SECONDS,
        "beat_dispatches_sent": beat_sent,
        "other_pending_jobs_parked": parked,
    }
