"""The pool end to end, with real processes: PostgreSQL, Redis, the control-plane Celery worker
(dispatcher), node workers, and the node's worker endpoints on a live server. The test plays
beat: it runs the reconciler and asks for dispatcher runs, as the schedule would."""

import os
import signal
import subprocess
import sys

import pytest
import redis

from apps.catalog import services as catalog_services
from apps.compute import services
from apps.compute.models import DeviceAssignment, Job
from apps.compute.tasks import jobs_dispatch_task
from apps.evaluations.models import Result
from tests.compute.conftest import A100
from tests.conftest import REPO, start_worker_process, wait_for
from tests.factories import isolated


@pytest.fixture
def fast_pool(settings, monkeypatch):
    """Leases and claim deadlines of seconds, here and in the control worker's process."""
    for name, value in [
        ("COMPUTE_HEARTBEAT_SECONDS", 1),
        ("COMPUTE_LEASE_SECONDS", 3),
        ("COMPUTE_CLAIM_TIMEOUT_SECONDS", 4),
    ]:
        setattr(settings, name, value)
        monkeypatch.setenv(name, str(value))


@pytest.fixture
def dispatcher(fast_pool, control_worker, settings):
    """Dispatcher runs requested by the services go to the test's control worker."""
    settings.CELERY_TASK_DEFAULT_QUEUE = control_worker
    return control_worker


def play_beat(queue: str) -> None:
    services.jobs_reconcile()
    jobs_dispatch_task.apply_async(queue=queue)


def finished(jobs: list[Job], queue: str) -> bool:
    play_beat(queue)
    return not Job.objects.filter(pk__in=[job.pk for job in jobs], state__in=Job.ACTIVE_STATES)


def test_a_gpu_job_runs_through_the_dispatcher_and_a_node_worker_and_is_debited(
    dispatcher, live_server, settings, member, institution_admin, institution, allocation,
    model_version, benchmark, tmp_path,
):  # fmt: skip
    node, token = services.node_create(
        user=institution_admin, institution=institution, name="gpu-e2e"
    )
    services.node_register(node=node, gpus=[A100], cpu_slots=0, host_info=isolated())
    env = {
        **os.environ,
        "TEST_WORKER_BROKER_URL": settings.CELERY_BROKER_URL,
        "TEST_WORKER_NODE_URL": live_server.url,
        "TEST_WORKER_NODE_TOKEN": token,
    }
    log_path = tmp_path / "gpu-worker.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "tests.compute.gpu_test_worker", "worker",
                "--queues", node.queue, "--pool", "threads", "--concurrency", "1",
                "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        assert wait_for(lambda: " ready." in log_path.read_text(), timeout=60)
        job = services.job_submit(user=member, model_version=model_version, benchmark=benchmark)
        # No dispatcher call here: the submission asked the control worker for one.
        assert wait_for(lambda: Job.objects.get(pk=job.pk).state == "succeeded", timeout=60), (
            Job.objects.get(pk=job.pk).state,
            log_path.read_text(),
        )
    finally:
        process.terminate()
        process.wait(timeout=30)

    job.refresh_from_db()
    allocation.refresh_from_db()
    assert job.node == node and job.attempt == 1
    assert Result.objects.get(job=job).metrics == {"files": 2}
    assert 1 <= job.gpu_seconds <= 10 and job.charged
    assert allocation.used_gpu_seconds == job.gpu_seconds
    assert not DeviceAssignment.objects.exists()


def test_a_worker_killed_mid_job_is_requeued_and_the_job_completes_exactly_once(
    dispatcher, live_server, settings, member, institution_admin, institution,
    model_version, make_benchmark, tmp_path,
):  # fmt: skip
    _node, token = services.node_create(
        user=institution_admin, institution=institution, name="cpu-kill"
    )
    start = dict(token=token, node_url=live_server.url, broker_url=settings.CELERY_BROKER_URL)
    first = start_worker_process(**start, folder=tmp_path / "first")
    benchmark = make_benchmark(member, institution, gpu_count=0)
    catalog_services.benchmark_update(
        user=member, benchmark=benchmark, evaluator_config={"hold_seconds": 4}
    )
    job = services.job_submit(user=member, model_version=model_version, benchmark=benchmark)
    try:
        assert wait_for(lambda: Job.objects.get(pk=job.pk).state == "running", timeout=30)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    finally:
        first.stop()

    second = start_worker_process(**start, folder=tmp_path / "second")
    try:
        assert wait_for(lambda: finished([job], dispatcher), timeout=60, interval=1), second.log()
    finally:
        second.stop()
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED, job.failure_reason
    assert job.attempt == 2
    assert list(Result.objects.filter(job=job).values_list("attempt", flat=True)) == [2]
    assert "lease expired" in job.events.filter(attempt=1).last().message
    assert not DeviceAssignment.objects.exists()


def test_jobs_dispatched_before_the_broker_was_flushed_all_complete(
    dispatcher, live_server, settings, member, institution_admin, institution,
    model_version, make_benchmark, tmp_path,
):  # fmt: skip
    node, token = services.node_create(
        user=institution_admin, institution=institution, name="cpu-flush"
    )
    services.node_register(node=node, gpus=[], cpu_slots=2, host_info=isolated())
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(node.queue)  # left by an earlier run's node of the same id, if any
    benchmark = make_benchmark(member, institution, gpu_count=0)
    jobs = [
        services.job_submit(user=member, model_version=model_version, benchmark=benchmark)
        for _ in range(3)
    ]
    # The control worker places two of them while no node worker is consuming.
    assert wait_for(lambda: Job.objects.filter(state=Job.State.DISPATCHED).count() == 2, timeout=30)
    # The messages go out once the dispatcher's transaction has committed: a moment later.
    assert wait_for(lambda: broker.llen(node.queue) == 2, timeout=10), broker.llen(node.queue)
    broker.flushdb()  # what a Redis restart without persistence does

    worker = start_worker_process(
        token=token,
        node_url=live_server.url,
        broker_url=settings.CELERY_BROKER_URL,
        folder=tmp_path / "worker",
        cpu_slots=2,
    )
    try:
        assert wait_for(lambda: finished(jobs, dispatcher), timeout=90, interval=1), worker.log()
    finally:
        worker.stop()
    states = Job.objects.filter(pk__in=[job.pk for job in jobs]).values_list("state", flat=True)
    assert list(states) == [Job.State.SUCCEEDED] * 3
    assert Result.objects.filter(job__in=jobs).count() == 3
    lost = Job.objects.filter(pk__in=[job.pk for job in jobs], attempt=2)
    assert lost.count() == 2  # the two whose messages were flushed ran as second attempts
