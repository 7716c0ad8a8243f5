"""The worker's Celery consumer: registers with its node, heartbeats, and runs the attempts the
node's dispatcher sends to this node's queue.

The node's database decides which attempt is current; a message only says "attempt N of job J
is yours". The worker claims each attempt before running it and drops a message the node no
longer stands behind, so a message delivered twice or late does no harm.
"""

import logging
import os
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from celery.worker import state as worker_state

from worker import inventory as host_inventory
from worker import sandbox
from worker.evaluators import EvaluatorSpec, evaluator_specs
from worker.file_cache import DEFAULT_MAX_BYTES, FileCache, default_cache_dir
from worker.inventory import Inventory
from worker.node_client import NodeClient, NodeError, NodeUnavailable
from worker.protocol import RUN_JOB_TASK, run_job_task_id
from worker.runner import JobRun, worker_version
from worker.settings import WorkerSettings

logger = logging.getLogger(__name__)

# Redis hands an unacknowledged message out again after this long, even while its job still
# runs: longer than any time limit, so long jobs are not delivered twice. A message lost with
# its worker needs no redelivery: the node requeues the attempt itself (claim timeout, lease).
VISIBILITY_TIMEOUT_SECONDS = 8 * 24 * 3600
REVOKE_CHECK_SECONDS = 0.5


class RunningAttempts:
    """The attempts this process runs, each with the event that tells it to stop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stops: dict[tuple[int, int], threading.Event] = {}

    def add(self, job: int, attempt: int) -> threading.Event | None:
        """The new attempt's stop event; None when this process already runs it (a message
        delivered twice)."""
        with self._lock:
            if (job, attempt) in self._stops:
                return None
            event = self._stops[(job, attempt)] = threading.Event()
            return event

    def remove(self, job: int, attempt: int) -> None:
        with self._lock:
            self._stops.pop((job, attempt), None)

    def listing(self) -> list[dict[str, int]]:
        with self._lock:
            return [{"job": job, "attempt": attempt} for job, attempt in sorted(self._stops)]

    def stop(self, job: int, attempt: int) -> bool:
        with self._lock:
            event = self._stops.get((job, attempt))
        if event is None:
            return False
        event.set()
        return True

    def stop_all(self) -> int:
        with self._lock:
            events = list(self._stops.values())
        for event in events:
            event.set()
        return len(events)


class Heartbeat(threading.Thread):
    """Tells the node every `interval` seconds which attempts run here, which renews their
    leases, and stops the attempts the node lists as no longer wanted. When no heartbeat got
    through for a whole lease, the node has already given those attempts' devices to other
    jobs: they are stopped here too."""

    def __init__(
        self,
        client: NodeClient,
        running: RunningAttempts,
        interval: float,
        lease_seconds: float,
    ) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.client = client
        self.running = running
        self.interval = interval
        self.lease_seconds = lease_seconds
        self.last_answer = time.monotonic()
        self._halt = threading.Event()

    def beat(self) -> None:
        try:
            reply = self.client.heartbeat(self.running.listing())
        except (NodeError, NodeUnavailable) as error:
            logger.warning("heartbeat failed: %s", error)
            if time.monotonic() - self.last_answer > self.lease_seconds:
                stopped = self.running.stop_all()
                if stopped:
                    logger.error(
                        "no heartbeat reached the node for %.0f s: stopped %d attempt(s), "
                        "which the node requeues",
                        self.lease_seconds,
                        stopped,
                    )
            return
        self.last_answer = time.monotonic()
        for item in reply.get("stop", []):
            if self.running.stop(int(item["job"]), int(item["attempt"])):
                logger.info("node asked to stop job %s attempt %s", item["job"], item["attempt"])
        self.interval = float(reply.get("heartbeat_seconds") or self.interval)

    def stop_revoked(self) -> None:
        """The node revokes a cancelled attempt's message as it cancels: stopping on that
        broadcast ends the evaluation within a second, without waiting for the next beat."""
        for item in self.running.listing():
            job, attempt = item["job"], item["attempt"]
            if run_job_task_id(job, attempt) in worker_state.revoked and self.running.stop(
                job, attempt
            ):
                logger.info("job %s attempt %s was revoked: stopping it", job, attempt)

    def run(self) -> None:
        next_beat = time.monotonic() + self.interval
        while not self._halt.wait(REVOKE_CHECK_SECONDS):
            self.stop_revoked()
            if time.monotonic() >= next_beat:
                self.beat()
                next_beat = time.monotonic() + self.interval

    def halt(self) -> None:
        self._halt.set()


@dataclass(frozen=True)
class RunOptions:
    concurrency: int | None = None
    cpu_slots: int | None = None
    cache_dir: Path | None = None
    cache_max_bytes: int = DEFAULT_MAX_BYTES
    scratch_dir: Path | None = None
    loglevel: str = "INFO"
    limits: sandbox.SandboxLimits = field(default_factory=sandbox.SandboxLimits)


def default_cpu_slots(inventory: Inventory) -> int:
    """One slot beside the GPUs on a GPU host; a CPU-only host offers up to half its cores."""
    if inventory.gpus:
        return 1
    return max(1, min(inventory.cpu_count // 2, 4))


class WorkerRuntime:
    """What the run_job task needs: the node, the file cache, the evaluators' specs and the
    attempts running in this process."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        inventory: Inventory,
        cache: FileCache,
        specs: dict[str, EvaluatorSpec] | None = None,
        scratch_dir: Path | None = None,
        limits: sandbox.SandboxLimits | None = None,
    ) -> None:
        self.settings = settings
        self.inventory = inventory
        self.cache = cache
        self.specs = evaluator_specs() if specs is None else specs
        self.scratch_dir = scratch_dir
        self.limits = limits or sandbox.SandboxLimits()
        self.running = RunningAttempts()

    def run_job(self, job: int, attempt: int) -> str:
        """Claims and runs one attempt; returns its outcome. A failing job never raises into
        Celery: the worker goes on with the next message."""
        stop = self.running.add(job, attempt)
        if stop is None:
            logger.info(
                "job %s attempt %s already runs here: duplicate message dropped", job, attempt
            )
            return "duplicate"
        client = NodeClient(self.settings)
        try:
            spec = client.claim(job, attempt)
            if spec is None:
                return "dropped"
            run = JobRun(
                client=client,
                cache=self.cache,
                spec=spec,
                specs=self.specs,
                inventory=self.inventory,
                stop=stop,
                scratch_root=self.scratch_dir,
                limits=self.limits,
            )
            return run.execute()
        except (NodeError, NodeUnavailable) as error:
            logger.error("job %s attempt %s: could not claim: %s", job, attempt, error)
            return "unclaimed"
        finally:
            self.running.remove(job, attempt)
            client.close()


def registration(inventory: Inventory, cpu_slots: int) -> dict[str, Any]:
    return {
        "gpus": [
            {name: value for name, value in asdict(gpu).items() if name != "minor_number"}
            for gpu in inventory.gpus
        ],
        "cpu_slots": cpu_slots,
        "host": {
            "hostname": socket.gethostname(),
            "worker_version": worker_version(),
            "python": sys.version.split()[0],
            "cpu_count": inventory.cpu_count,
            "memory_bytes": inventory.memory_bytes,
            "driver_version": inventory.driver_version,
            "cuda_version": inventory.cuda_version,
            "gpu_unavailable_reason": inventory.gpu_unavailable_reason,
            "isolation": sandbox.isolation_capability(),
        },
    }


def broker_connection(url: str) -> tuple[str, dict[str, Any]]:
    """The broker URL and transport options for Celery. `filesystem:///path` is the embedded
    node's folder broker (what `make run` uses): its queue and control folders are named from
    the path, as the node's settings name them."""
    if url.startswith("filesystem://"):
        folder = Path(url.removeprefix("filesystem://"))
        if not folder.is_absolute():
            raise ValueError(f"A filesystem broker needs an absolute folder: {url!r}.")
        return "filesystem://", {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": 0.2,
        }
    return url, {
        "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
        # kombu sweeps unacked messages about every 100 s by default; every 5 s here.
        "unacked_restore_interval": 5,
        "unacked_restore_throttle": 1,
    }


def consumer_app(name: str, broker_url: str) -> Celery:
    """A Django-free Celery app with the pool's consumer settings: JSON only, acks late,
    prefetch 1, a message back in the queue when its worker process dies."""
    url, transport_options = broker_connection(broker_url)
    # Celery takes CELERY_BROKER_URL (and its read/write variants) from the environment before
    # the broker it is given: on a host that has one set for something else, the worker would
    # consume another broker's queues. The broker this worker was given wins.
    for variable in ("CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL"):
        os.environ.pop(variable, None)
    # No fixups: Celery's Django fixup would set up Django wherever DJANGO_SETTINGS_MODULE is set.
    app = Celery(name, broker=url, set_as_current=False, fixups=[])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_reject_on_worker_lost=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options,
        worker_send_task_events=False,
    )
    return app


def create_app(settings: WorkerSettings, runtime: WorkerRuntime) -> Celery:
    app = consumer_app("research_exchange_worker", settings.broker_url)

    @app.task(name=RUN_JOB_TASK)
    def run_job(job: int, attempt: int) -> str:
        return runtime.run_job(int(job), int(attempt))

    return app


def log_isolation(capability: dict[str, str], *, trusted_only: bool) -> None:
    """Says at registration what isolation this worker gives evaluations, and what follows."""
    level = capability["level"]
    if level == sandbox.FULL:
        logger.info("evaluations run fully isolated (%s)", capability["sandbox"])
    elif level == sandbox.PARTIAL:
        logger.warning(
            "evaluations run partly isolated (%s): %s; benchmarks that require full isolation "
            "are refused. Install bubblewrap for full isolation.",
            capability["sandbox"], capability["reason"],
        )  # fmt: skip
    elif trusted_only:
        logger.warning(
            "this worker cannot isolate evaluations (%s); its node is trusted-only: it runs "
            "only benchmarks of its own institution",
            capability["reason"],
        )
    else:
        logger.error(
            "this worker cannot isolate evaluations (%s): it refuses every job until bubblewrap "
            "or user namespaces are available, or an admin marks its node trusted-only",
            capability["reason"],
        )


def run(settings: WorkerSettings, options: RunOptions) -> int:
    """`python -m worker run`: registers, heartbeats, and consumes the node's queue until a
    signal stops it (SIGTERM finishes the running jobs first)."""
    logging.basicConfig(
        level=options.loglevel, format="[%(asctime)s: %(levelname)s/%(name)s] %(message)s"
    )
    sandbox.adopt_orphans()
    sandbox.hide_from_same_user()
    inventory = host_inventory.discover()
    cpu_slots = options.cpu_slots if options.cpu_slots is not None else default_cpu_slots(inventory)
    client = NodeClient(settings)
    try:
        reply = client.register(registration(inventory, cpu_slots))
    except (NodeError, NodeUnavailable) as error:
        logger.error("could not register with %s: %s", settings.node_url, error)
        return 1
    node = reply["node"]
    queue = str(node["queue"])
    concurrency = options.concurrency or len(inventory.gpus) + cpu_slots
    logger.info(
        "registered as node %s (%s) of %s: %d GPU(s), %d CPU slot(s), consuming %s",
        node.get("name"), node.get("id"), node.get("institution"), len(inventory.gpus),
        cpu_slots, queue,
    )  # fmt: skip
    log_isolation(sandbox.isolation_capability(), trusted_only=bool(node.get("trusted_only")))
    cache = FileCache(options.cache_dir or default_cache_dir(), options.cache_max_bytes)
    if options.scratch_dir is not None:
        options.scratch_dir.mkdir(parents=True, exist_ok=True)
    runtime = WorkerRuntime(
        settings,
        inventory=inventory,
        cache=cache,
        scratch_dir=options.scratch_dir,
        limits=options.limits,
    )
    heartbeat = Heartbeat(
        NodeClient(settings, retries=2),
        runtime.running,
        float(reply["heartbeat_seconds"]),
        float(reply["lease_seconds"]),
    )
    heartbeat.start()
    app = create_app(settings, runtime)
    try:
        exit_code = app.start(
            [
                "worker",
                "--pool", "threads",
                "--concurrency", str(concurrency),
                "--queues", queue,
                "--hostname", f"node-{node['id']}.{os.getpid()}@{socket.gethostname()}",
                "--loglevel", options.loglevel,
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ]
        )  # fmt: skip
    finally:
        heartbeat.halt()
        client.close()
    return int(exit_code or 0)
