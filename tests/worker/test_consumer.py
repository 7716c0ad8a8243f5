"""`python -m worker run` against a real node (live server, PostgreSQL, Redis): it registers,
takes the attempts the dispatcher sends to its queue, fetches and verifies the files, runs the
evaluator and reports the outcome."""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from apps.catalog import services as catalog_services
from apps.catalog.models import Benchmark
from apps.compute import services
from apps.compute.models import ComputeNode, DeviceAssignment, Job, JobLogChunk
from apps.evaluations.models import Result
from tests.catalog.conftest import store
from tests.catalog.samples import safetensors_bytes
from tests.conftest import REPO, WorkerProcess, start_worker_process, wait_for
from tests.worker.recording_node import job_run, probe_spec
from worker.consumer import Heartbeat, RunningAttempts
from worker.node_client import NodeUnavailable
from worker.runner import LogStream

MODEL_BYTES = safetensors_bytes(16)
DATA_BYTES = safetensors_bytes(64)


@pytest.fixture(autouse=True)
def _artifacts_in_tmp(artifact_dir):
    """Every test here stores artifacts in a folder of its own."""


@pytest.fixture(autouse=True)
def _fast_heartbeats(settings):
    # The live server runs in this process: the worker learns the period when it registers.
    settings.COMPUTE_HEARTBEAT_SECONDS = 1


@pytest.fixture
def model_version(member, institution):
    model = catalog_services.model_create(
        user=member, institution=institution, name="Aurora", slug="aurora", license="MIT",
        summary="A model to evaluate.",
    )  # fmt: skip
    weights = store(member, MODEL_BYTES, "model.safetensors")
    return catalog_services.version_create(
        user=member, model=model, label="1.0", publish=True,
        files=[("model.safetensors", weights.sha256)],
    )  # fmt: skip


@pytest.fixture
def make_benchmark(member, institution):
    """make_benchmark(evaluator="smoke", config={}): a CPU-only benchmark over one data file."""
    data = store(member, DATA_BYTES, "data.safetensors")
    dataset = catalog_services.dataset_create(
        user=member, institution=institution, name="Pool data", slug="pool-data",
        license="CC-BY-4.0", files=[("data.safetensors", data.sha256)],
    )  # fmt: skip
    counter = iter(range(100))

    def _make(evaluator: str = "smoke", config: dict | None = None):
        number = next(counter)
        return catalog_services.benchmark_create(
            user=member, institution=institution, name=f"Bench {number}",
            slug=f"bench-{number}", task_type="pool-check", dataset=dataset,
            metrics=[{"name": "files", "higher_is_better": True}], evaluator=evaluator,
            evaluator_config=config or {}, gpu_count=0, time_limit_minutes=5,
        )  # fmt: skip

    return _make


@dataclass
class RunningWorker:
    node: ComputeNode
    process: WorkerProcess

    def log(self) -> str:
        return self.process.log()

    @property
    def cache_dir(self):
        return self.process.cache_dir


@pytest.fixture
def worker(transactional_db, live_server, settings, institution_admin, institution, tmp_path):
    """A node of the institution and its worker process, registered and consuming its queue."""
    node, token = services.node_create(
        user=institution_admin, institution=institution, name="cpu-01"
    )
    process = start_worker_process(
        token=token,
        node_url=live_server.url,
        broker_url=settings.CELERY_BROKER_URL,
        folder=tmp_path,
    )
    try:
        node.refresh_from_db()
        yield RunningWorker(node, process)
    finally:
        process.stop()


def _run(member, model_version, benchmark) -> Job:
    job = services.job_submit(user=member, model_version=model_version, benchmark=benchmark)
    assert services.jobs_dispatch() == [job.pk]
    return job


def _state(job: Job) -> str:
    job.refresh_from_db()
    return job.state


def test_the_worker_registers_what_its_host_offers(worker):
    assert worker.node.registered_at is not None
    assert worker.node.cpu_slots == 1
    assert worker.node.host_info["worker_version"]
    assert f"consuming {worker.node.queue}" in worker.log()


def test_the_worker_refuses_to_start_with_a_token_the_node_does_not_know(
    transactional_db, live_server, settings
):
    env = {key: value for key, value in os.environ.items() if not key.startswith("WORKER_")}
    result = subprocess.run(
        [
            sys.executable, "-m", "worker", "run", "--broker-url", settings.CELERY_BROKER_URL,
            "--node-url", live_server.url, "--node-token", "rxn_not-a-token",
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "could not register" in result.stderr and "Invalid node token" in result.stderr


def test_a_smoke_job_runs_on_the_worker_and_reports_verified_files(
    worker, member, model_version, make_benchmark
):
    job = _run(member, model_version, make_benchmark())

    assert wait_for(lambda: _state(job) in Job.FINISHED_STATES, timeout=60), worker.log()
    assert job.state == Job.State.SUCCEEDED, (job.failure_reason, worker.log())
    result = Result.objects.get(job=job)
    assert result.attempt == 1
    assert result.metrics == {"files": 2, "bytes": len(MODEL_BYTES) + len(DATA_BYTES)}
    provenance = result.provenance
    assert provenance["evaluator"] == "smoke"
    assert provenance["gpus"] == "cpu" and provenance["devices"] == ["cpu:0"]
    assert set(provenance["model_files"]) == {"model.safetensors"}
    assert provenance["started_at"] <= provenance["finished_at"]
    log = "".join(chunk.text for chunk in JobLogChunk.objects.filter(job=job, attempt=1))
    assert f"model.safetensors: {len(MODEL_BYTES)} bytes, sha256 verified" in log
    assert not DeviceAssignment.objects.filter(node=worker.node).exists()
    cached = {path.name for path in worker.cache_dir.rglob("*") if path.is_file()}
    digests = {*provenance["model_files"].values(), *provenance["dataset_files"].values()}
    assert cached == digests


def test_a_job_for_an_evaluator_the_worker_lacks_fails_with_the_reason(
    worker, member, model_version, make_benchmark
):
    benchmark = make_benchmark()
    job = services.job_submit(user=member, model_version=model_version, benchmark=benchmark)
    # An evaluator installed on the node alone (an institution's plugin), not on this worker.
    Benchmark.objects.filter(pk=benchmark.pk).update(evaluator="tabular-automl")
    assert services.jobs_dispatch() == [job.pk]

    assert wait_for(lambda: _state(job) in Job.FINISHED_STATES, timeout=60), worker.log()
    assert job.state == Job.State.FAILED
    assert job.failure_reason == "evaluator tabular-automl is not installed on this worker"
    assert not Result.objects.filter(job=job).exists()
    # The worker goes on: the next job runs.
    next_job = _run(member, model_version, make_benchmark())
    assert wait_for(lambda: _state(next_job) == Job.State.SUCCEEDED, timeout=60), worker.log()


def test_cancelling_a_running_job_stops_it_on_the_worker_and_frees_its_devices(
    worker, member, model_version, make_benchmark
):
    job = _run(member, model_version, make_benchmark(config={"hold_seconds": 30}))
    assert wait_for(
        lambda: JobLogChunk.objects.filter(job=job, text__contains="holding cpu:0").exists(),
        timeout=60,
    ), worker.log()

    services.job_cancel(user=member, job=job, reason="wrong benchmark")
    cancelled_at = time.monotonic()

    assert wait_for(lambda: f"job {job.pk} attempt 1 stopped" in worker.log(), timeout=15)
    assert time.monotonic() - cancelled_at < 15
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED
    assert not Result.objects.filter(job=job).exists()
    assert not DeviceAssignment.objects.filter(node=worker.node).exists()


def _job_run(tmp_path, entry, *, time_limit_seconds=60, config=None):
    return job_run(
        tmp_path,
        evaluator="probe",
        specs={"probe": probe_spec(entry)},
        model={"model.safetensors": MODEL_BYTES},
        formats={"model.safetensors": "safetensors"},
        config=config,
        time_limit_seconds=time_limit_seconds,
    )


def test_an_evaluator_error_fails_the_job_with_the_error_and_leaves_no_scratch(tmp_path):
    run, node = _job_run(tmp_path, "tests.worker.probe_evaluators:broken")

    assert run.execute() == "failed"
    assert node.outcomes == [("failed", "ValueError: labels_key 'y' is not in data.npz")]
    [line] = [line for line in node.log.splitlines() if line.startswith("SEEN ")]
    seen = json.loads(line.removeprefix("SEEN "))
    assert bytes.fromhex(seen["model"]) == MODEL_BYTES
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert seen["environ"]["CUDA_VISIBLE_DEVICES"] == ""
    assert seen["cwd"] == seen["scratch"]
    assert not os.path.exists(seen["scratch"])
    assert "Traceback" in node.log


def test_the_result_carries_the_evaluators_provenance_under_the_workers_facts(tmp_path):
    run, node = _job_run(tmp_path, "tests.worker.probe_evaluators:with_provenance")

    assert run.execute() == "succeeded"
    assert node.outcomes == [("succeeded", {"accuracy": 0.5})]
    provenance = node.provenance
    # The worker seeded the evaluation (the config's default seed): that is the seed it records.
    assert provenance["seed"] == 0 and provenance["batch_size"] == 8
    assert provenance["host"] != "forged"
    assert provenance["evaluator"] == "probe"
    assert provenance["network"]
    assert set(provenance["model_files"]) == {"model.safetensors"}


def test_an_evaluation_past_its_time_limit_is_stopped_and_reported_timed_out(tmp_path):
    run, node = _job_run(
        tmp_path,
        "worker.evaluators.smoke:evaluate",
        time_limit_seconds=1,
        config={"hold_seconds": 30},
    )
    started = time.monotonic()

    assert run.execute() == "timed_out"
    assert time.monotonic() - started < 10
    assert node.outcomes == [("timed_out", "Ran past its time limit of 1 seconds.")]


def test_a_result_the_node_could_not_take_is_posted_again_until_it_is(tmp_path, monkeypatch):
    monkeypatch.setattr("worker.runner.OUTCOME_RETRY_WAIT_SECONDS", 0.01)
    run, node = _job_run(tmp_path, "worker.evaluators.smoke:evaluate")
    answers = iter([NodeUnavailable("node restarting"), NodeUnavailable("still restarting")])
    posted = node.post_result

    def flaky_post(*args):
        error = next(answers, None)
        if error is not None:
            raise error
        return posted(*args)

    node.post_result = flaky_post  # type: ignore[method-assign]
    assert run.execute() == "succeeded"
    assert [state for state, _ in node.outcomes] == ["succeeded"]


def test_a_message_delivered_twice_never_runs_the_attempt_twice():
    running = RunningAttempts()
    first = running.add(7, 1)
    assert first is not None
    assert running.add(7, 1) is None  # the duplicate is dropped, the first keeps its entry
    assert running.listing() == [{"job": 7, "attempt": 1}]


def test_attempts_stop_once_no_heartbeat_reached_the_node_for_a_lease():
    class Unreachable:
        def heartbeat(self, running):
            raise NodeUnavailable("connection refused")

    running = RunningAttempts()
    stop = running.add(7, 1)
    heartbeat = Heartbeat(Unreachable(), running, interval=1, lease_seconds=60)  # type: ignore[arg-type]
    heartbeat.beat()
    assert stop is not None and not stop.is_set()
    heartbeat.last_answer -= 61
    heartbeat.beat()
    assert stop.is_set()


class _LimitedLog:
    """A node that keeps the first `limit` characters of a log, as COMPUTE_LOG_MAX_CHARS does."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.stored = ""
        self.requests = 0

    def append_log(self, job, attempt, offset, text):
        self.requests += 1
        self.stored += text[: max(self.limit - len(self.stored), 0)]
        return len(self.stored)


def test_a_log_past_the_nodes_limit_stops_being_sent(caplog):
    node = _LimitedLog(limit=1000)
    stream = LogStream(node, 9, 1, flush_seconds=60, flush_chars=100)  # type: ignore[arg-type]
    for number in range(5000):
        stream.write(f"line {number:05d} of a flooding evaluation")
    stream.close()

    assert len(node.stored) == 1000
    assert node.requests <= 12  # ten pieces fill it, one more finds it full
    assert "keeps no more of this log" in caplog.text


def test_the_worker_consumes_the_broker_it_was_given_whatever_the_host_environment():
    """Celery prefers CELERY_BROKER_URL from the environment: a host with one set for
    something else must not send the worker to that broker's queues."""
    program = (
        "from worker.consumer import consumer_app\n"
        "app = consumer_app('pool', 'redis://127.0.0.1:6379/9')\n"
        "print(app.connection_for_write().as_uri())\n"
    )
    env = {**os.environ, "CELERY_BROKER_URL": "redis://127.0.0.1:6379/3"}
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip

    assert done.stdout.strip().endswith("127.0.0.1:6379/9")
