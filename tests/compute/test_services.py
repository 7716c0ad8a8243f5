import contextlib
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.db.models import F
from django.utils import timezone

from apps.catalog import services as catalog_services
from apps.catalog.models import Visibility
from apps.compute import services
from apps.compute.models import (
    Allocation,
    ComputeRequest,
    DeviceAssignment,
    InstitutionUsage,
    Job,
)
from apps.evaluations.models import Result
from tests.catalog.conftest import store
from tests.catalog.samples import pickle_bytes
from tests.compute.conftest import A100
from tests.factories import isolated


def _run(job: Job, node, *, seconds: float = 0) -> Job:
    """Dispatches `job` and has `node` claim it, started `seconds` ago."""
    assert job.pk in services.jobs_dispatch()
    job.refresh_from_db()
    services.job_claim(node=node, job_id=job.pk, attempt=job.attempt)
    Job.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(seconds=seconds))
    job.refresh_from_db()
    return job


class TestSubmission:
    def test_a_member_queues_a_job_with_the_benchmarks_resources(
        self, member, submit_job, allocation, benchmark
    ):
        job = submit_job(member)
        assert job.state == Job.State.PENDING
        assert job.allocation == allocation
        assert (job.gpu_count, job.gpu_memory_gb, job.time_limit_minutes) == (1, 40, 30)
        assert job.events.get().message == f"Submitted by {member.username}."

    def test_a_job_no_node_isolates_enough_for_is_refused_at_submission(
        self, member, submit_job, gpu_node
    ):
        services.node_register(
            node=gpu_node, gpus=[A100], cpu_slots=1, host_info={"isolation": {"level": "partial"}}
        )
        with pytest.raises(ValidationError, match="fully isolates evaluations"):
            submit_job(member)
        assert not Job.objects.exists()

    def test_a_draft_version_is_refused(self, member, institution, submit_job, model_version):
        draft = catalog_services.version_create(user=member, model=model_version.model, label="2")
        with pytest.raises(ValidationError, match="draft"):
            submit_job(member, model_version=draft)

    def test_a_pickle_model_is_never_queued(self, member, institution, submit_job, model_version):
        unsafe = store(member, pickle_bytes(), "model.pt")
        version = catalog_services.version_create(
            user=member,
            model=model_version.model,
            label="2",
            files=[("model.pt", unsafe.sha256)],
            publish=True,
        )
        with pytest.raises(ValidationError, match="pickle"):
            submit_job(member, model_version=version)
        assert not Job.objects.exists()

    def test_a_model_the_submitter_cannot_see_is_refused(
        self, outsider, other_institution, submit_job, make_model_version, member, institution
    ):
        hidden = make_model_version(member, institution, visibility=Visibility.INSTITUTION)
        with pytest.raises(ValidationError, match="model version"):
            submit_job(outsider, model_version=hidden)

    def test_an_evaluator_that_does_not_take_the_format_is_refused(
        self, member, institution, submit_job, make_benchmark, model_version
    ):
        onnx_only = make_benchmark(member, institution)
        catalog_services.benchmark_update(
            user=member,
            benchmark=onnx_only,
            evaluator="onnx",
            evaluator_config={"task": "classification", "data_file": "data.safetensors"},
        )
        with pytest.raises(ValidationError, match="onnx"):
            submit_job(member, benchmark=onnx_only)

    def test_a_job_no_node_can_hold_is_refused(
        self, member, institution, submit_job, make_benchmark
    ):
        huge = make_benchmark(member, institution, gpu_count=4)
        with pytest.raises(ValidationError, match="No compute node"):
            submit_job(member, benchmark=huge)

    def test_a_gpu_job_needs_an_allocation(
        self, member, institution, gpu_node, model_version, benchmark
    ):
        with pytest.raises(ValidationError, match="no current GPU-hour allocation"):
            services.job_submit(user=member, model_version=model_version, benchmark=benchmark)

    def test_a_job_that_would_exceed_the_allocation_is_refused_with_the_numbers(
        self, member, submit_job, allocation
    ):
        Allocation.objects.filter(pk=allocation.pk).update(budget_gpu_seconds=2700)
        submit_job(member)  # 30 GPU-minutes held
        with pytest.raises(ValidationError) as refusal:
            submit_job(member)
        message = refusal.value.message_dict["allocation"][0]
        assert "up to 0.50 GPU-hours" in message
        assert "0.75 left" in message and "0.50 are held" in message
        assert Job.objects.count() == 1

    def test_a_cpu_job_runs_without_an_allocation(
        self, member, institution, gpu_node, model_version, make_benchmark
    ):
        cpu_benchmark = make_benchmark(member, institution, gpu_count=0)
        job = services.job_submit(user=member, model_version=model_version, benchmark=cpu_benchmark)
        assert job.allocation is None

    def test_a_cpu_job_runs_even_when_the_allocation_is_spent(
        self, member, institution, gpu_node, model_version, make_benchmark, allocation
    ):
        Allocation.objects.filter(pk=allocation.pk).update(used_gpu_seconds=F("budget_gpu_seconds"))
        cpu_benchmark = make_benchmark(member, institution, gpu_count=0)
        job = services.job_submit(user=member, model_version=model_version, benchmark=cpu_benchmark)
        assert job.state == Job.State.PENDING

    def test_outsiders_cannot_charge_another_institutions_allocation(
        self, outsider, institution, submit_job
    ):
        with pytest.raises(ValidationError, match="not a member"):
            submit_job(outsider, institution=institution)


class TestDispatch:
    def test_a_pending_job_goes_to_a_free_gpu_of_an_online_node(self, member, submit_job, gpu_node):
        job = submit_job(member)
        assert services.jobs_dispatch() == [job.pk]
        job.refresh_from_db()
        assert (job.state, job.node, job.devices, job.attempt) == (
            Job.State.DISPATCHED,
            gpu_node,
            ["gpu:0"],
            1,
        )
        assert DeviceAssignment.objects.get().device == "gpu:0"

    def test_jobs_wait_while_the_gpu_is_held(self, member, submit_job):
        first, second = submit_job(member), submit_job(member)
        assert services.jobs_dispatch() == [first.pk]
        assert services.jobs_dispatch() == []
        second.refresh_from_db()
        assert second.state == Job.State.PENDING

    def test_offline_and_draining_nodes_get_no_jobs(
        self, member, institution_admin, submit_job, gpu_node
    ):
        job = submit_job(member)
        services.node_set_draining(user=institution_admin, node=gpu_node, draining=True)
        assert services.jobs_dispatch() == []
        services.node_set_draining(user=institution_admin, node=gpu_node, draining=False)
        type(gpu_node).objects.filter(pk=gpu_node.pk).update(
            last_heartbeat_at=timezone.now() - timedelta(hours=1)
        )
        assert services.jobs_dispatch() == []
        services.node_heartbeat(node=gpu_node, running=[])
        assert services.jobs_dispatch() == [job.pk]

    def test_admin_priority_jumps_the_queue(self, member, staff, submit_job):
        _first, second = submit_job(member), submit_job(member)
        services.job_set_priority(user=staff, job=second, priority=50)
        assert services.jobs_dispatch() == [second.pk]

    def test_only_staff_set_priorities(self, institution_admin, member, submit_job):
        job = submit_job(member)
        with pytest.raises(PermissionDenied):
            services.job_set_priority(user=institution_admin, job=job, priority=50)


class TestLifecycle:
    def test_a_result_ends_the_job_and_debits_the_run_time(
        self, member, submit_job, gpu_node, allocation
    ):
        job = _run(submit_job(member), gpu_node, seconds=120)
        _result, created = services.job_result_post(
            node=gpu_node, job_id=job.pk, attempt=1, metrics={"files": 2}, provenance=isolated()
        )
        assert created
        job.refresh_from_db()
        allocation.refresh_from_db()
        assert job.state == Job.State.SUCCEEDED
        assert 120 <= job.gpu_seconds <= 125
        assert allocation.used_gpu_seconds == job.gpu_seconds
        assert InstitutionUsage.objects.get().total_gpu_seconds == job.gpu_seconds
        assert not DeviceAssignment.objects.exists()

    def test_a_repeated_result_post_returns_the_stored_result(self, member, submit_job, gpu_node):
        job = _run(submit_job(member), gpu_node)
        first, _ = services.job_result_post(
            node=gpu_node, job_id=job.pk, attempt=1, metrics={"files": 2}, provenance=isolated()
        )
        again, created = services.job_result_post(
            node=gpu_node, job_id=job.pk, attempt=1, metrics={"files": 3}, provenance=isolated()
        )
        assert not created
        assert again == first and again.metrics == {"files": 2}
        assert Result.objects.count() == 1

    def test_a_superseded_attempt_cannot_claim_log_or_post(
        self, member, submit_job, gpu_node, settings
    ):
        job = _run(submit_job(member), gpu_node)
        Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(1))
        assert services.jobs_reconcile().requeued == [job.pk]
        assert services.jobs_dispatch() == [job.pk]
        for call in (
            lambda: services.job_claim(node=gpu_node, job_id=job.pk, attempt=1),
            lambda: services.job_log_append(
                node=gpu_node, job_id=job.pk, attempt=1, offset=0, text="late"
            ),
            lambda: services.job_result_post(
                node=gpu_node, job_id=job.pk, attempt=1, metrics={"files": 1}, provenance=isolated()
            ),
        ):
            with pytest.raises(services.JobConflict, match="superseded"):
                call()
        assert not Result.objects.exists()

    def test_another_nodes_token_cannot_touch_the_job(
        self, member, submit_job, gpu_node, other_institution, outsider
    ):
        job = _run(submit_job(member), gpu_node)
        other, _ = services.node_create(user=outsider, institution=other_institution, name="x")
        with pytest.raises(services.JobConflict, match="not assigned to this node"):
            services.job_result_post(
                node=other, job_id=job.pk, attempt=1, metrics={"files": 1}, provenance=isolated()
            )

    @pytest.mark.parametrize("value", ["high", float("inf"), float("nan"), True, 10**400])
    def test_metrics_must_be_finite_numbers(self, member, submit_job, gpu_node, value):
        job = _run(submit_job(member), gpu_node)
        with pytest.raises(ValidationError, match="must be finite numbers: accuracy"):
            services.job_result_post(
                node=gpu_node,
                job_id=job.pk,
                attempt=1,
                metrics={"accuracy": value},
                provenance=isolated(),
            )

    @pytest.mark.parametrize(
        ("metrics", "message"),
        [
            ({f"m{n}": 1 for n in range(1001)}, "At most 1000 metrics, not 1001."),
            ({"x" * 201: 1}, "Metric names have at most 200 characters"),
        ],
    )
    def test_a_flood_of_metrics_is_refused(self, member, submit_job, gpu_node, metrics, message):
        job = _run(submit_job(member), gpu_node)
        with pytest.raises(ValidationError, match=message):
            services.job_result_post(
                node=gpu_node, job_id=job.pk, attempt=1, metrics=metrics, provenance=isolated()
            )
        assert not Result.objects.exists()

    def test_a_claim_whose_answer_was_lost_can_be_made_again(self, member, submit_job, gpu_node):
        job = _run(submit_job(member), gpu_node)
        again = services.job_claim(node=gpu_node, job_id=job.pk, attempt=1)
        assert again.state == Job.State.RUNNING
        assert again.started_at == job.started_at
        assert job.events.filter(message__startswith="Started").count() == 1

    def test_the_charge_never_exceeds_what_the_job_could_cost(
        self, member, submit_job, gpu_node, allocation
    ):
        job = _run(submit_job(member), gpu_node, seconds=45 * 60)  # limit: 30 minutes
        services.job_report_failure(
            node=gpu_node, job_id=job.pk, attempt=1, state="timed_out", reason="late"
        )
        job.refresh_from_db()
        allocation.refresh_from_db()
        assert job.gpu_seconds == job.max_gpu_seconds == 30 * 60
        assert allocation.used_gpu_seconds == 30 * 60

    def test_a_failure_reported_by_the_worker_is_charged(
        self, member, submit_job, gpu_node, allocation
    ):
        job = _run(submit_job(member), gpu_node, seconds=60)
        services.job_report_failure(
            node=gpu_node, job_id=job.pk, attempt=1, state="failed", reason="evaluator crashed"
        )
        job.refresh_from_db()
        allocation.refresh_from_db()
        assert (job.state, job.failure_reason) == (Job.State.FAILED, "evaluator crashed")
        assert allocation.used_gpu_seconds >= 60

    def test_log_pieces_are_stored_in_order_and_a_resend_is_ignored(
        self, member, submit_job, gpu_node
    ):
        job = _run(submit_job(member), gpu_node)
        append = lambda offset, text: services.job_log_append(  # noqa: E731
            node=gpu_node, job_id=job.pk, attempt=1, offset=offset, text=text
        )
        assert append(0, "loading\n") == 8
        assert append(0, "loading\n") == 8
        assert append(8, "done\n") == 13
        with pytest.raises(ValidationError, match="has 13 characters"):
            append(20, "gap")
        # A resend whose first part arrived keeps only what is new.
        assert append(8, "done\nnext\n") == 18
        from apps.compute import selectors

        assert selectors.job_log(job=job, attempt=1) == "loading\ndone\nnext\n"


class TestCancel:
    def test_the_submitter_pays_for_what_ran(self, member, submit_job, gpu_node, allocation):
        job = _run(submit_job(member), gpu_node, seconds=90)
        services.job_cancel(user=member, job=job)
        job.refresh_from_db()
        allocation.refresh_from_db()
        assert job.state == Job.State.CANCELLED and job.charged
        assert allocation.used_gpu_seconds >= 90
        assert not DeviceAssignment.objects.exists()

    def test_an_admins_cancellation_costs_nothing(
        self, member, staff, submit_job, gpu_node, allocation
    ):
        job = _run(submit_job(member), gpu_node, seconds=90)
        services.job_cancel(user=staff, job=job, reason="node maintenance")
        job.refresh_from_db()
        allocation.refresh_from_db()
        assert not job.charged and allocation.used_gpu_seconds == 0
        assert "node maintenance" in job.failure_reason

    def test_other_researchers_cannot_cancel(self, member, outsider, submit_job):
        job = submit_job(member)
        with pytest.raises(PermissionDenied):
            services.job_cancel(user=outsider, job=job)

    def test_a_finished_job_cannot_be_cancelled(self, member, submit_job):
        job = submit_job(member)
        services.job_cancel(user=member, job=job)
        with pytest.raises(ValidationError, match="already cancelled"):
            services.job_cancel(user=member, job=job)

    def test_the_worker_is_told_to_stop_a_cancelled_attempt(self, member, submit_job, gpu_node):
        job = _run(submit_job(member), gpu_node)
        services.job_cancel(user=member, job=job)
        reply = services.node_heartbeat(node=gpu_node, running=[{"job": job.pk, "attempt": 1}])
        assert reply.stop == [{"job": job.pk, "attempt": 1}]


class TestReconciler:
    def test_a_lost_message_is_requeued_free_of_charge(self, member, submit_job, gpu_node):
        job = submit_job(member)
        services.jobs_dispatch()
        later = timezone.now() + timedelta(seconds=121)
        report = services.jobs_reconcile(now=later)
        job.refresh_from_db()
        assert report.requeued == [job.pk]
        assert (job.state, job.node, job.charged) == (Job.State.PENDING, None, False)
        assert "message lost" in job.events.last().message
        assert not DeviceAssignment.objects.exists()

    def test_heartbeats_keep_a_running_job_alive(self, member, submit_job, gpu_node, settings):
        job = _run(submit_job(member), gpu_node)
        Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() + timedelta(1))
        services.node_heartbeat(node=gpu_node, running=[{"job": job.pk, "attempt": 1}])
        job.refresh_from_db()
        lease = (job.lease_expires_at - timezone.now()).total_seconds()
        assert settings.COMPUTE_LEASE_SECONDS - 5 < lease <= settings.COMPUTE_LEASE_SECONDS
        assert services.jobs_reconcile().requeued == []

    def test_after_the_last_attempt_the_job_fails_with_the_reason(
        self, member, submit_job, gpu_node
    ):
        job = submit_job(member)
        for _ in range(job.max_attempts):
            services.jobs_dispatch()
            services.jobs_reconcile(now=timezone.now() + timedelta(minutes=5))
        job.refresh_from_db()
        assert job.state == Job.State.FAILED
        assert "Gave up after 3 attempts" in job.failure_reason
        assert not job.charged

    def test_a_job_past_its_time_limit_times_out(self, member, submit_job, gpu_node, allocation):
        job = _run(submit_job(member), gpu_node, seconds=31 * 60)
        report = services.jobs_reconcile(now=timezone.now() + timedelta(minutes=2))
        job.refresh_from_db()
        assert report.timed_out == [job.pk]
        assert job.state == Job.State.TIMED_OUT and job.charged


class TestRequests:
    def _ask(self, member, institution, **fields):
        today = timezone.localdate()
        values = {
            "purpose": "Evaluate our classifiers",
            "gpu_hours": Decimal("50"),
            "gpu_count": 2,
            "starts_on": today,
            "ends_on": today + timedelta(days=30),
            **fields,
        }
        return services.compute_request_submit(user=member, institution=institution, **values)

    def test_approval_creates_the_allocation_and_tells_the_requester(
        self, member, institution, staff
    ):
        member.email = "ada@northbridge.example"
        member.save()
        request = self._ask(member, institution)
        with self.captured_on_commit():
            allocation = services.compute_request_approve(
                reviewer=staff, request=request, gpu_hours=Decimal("40"), comment="Enjoy"
            )
        assert allocation.budget_gpu_seconds == 40 * 3600
        assert allocation.institution == institution
        request.refresh_from_db()
        assert request.state == ComputeRequest.State.APPROVED
        assert mail.outbox[0].to == ["ada@northbridge.example"]
        assert "approved" in mail.outbox[0].subject and "Enjoy" in mail.outbox[0].body

    @contextlib.contextmanager
    def captured_on_commit(self):
        """Runs what the change sends after commit, its tasks (the event's mail) in this
        process."""
        from django.test import TestCase

        from config.celery_app import app

        eager = app.conf.task_always_eager
        app.conf.task_always_eager = True
        try:
            with TestCase.captureOnCommitCallbacks(execute=True):
                yield
        finally:
            app.conf.task_always_eager = eager

    def test_rejection_needs_a_reason(self, member, institution, staff):
        request = self._ask(member, institution)
        with pytest.raises(ValidationError, match="why"):
            services.compute_request_reject(reviewer=staff, request=request, comment=" ")

    def test_only_platform_admins_review(self, member, institution, institution_admin):
        request = self._ask(member, institution)
        with pytest.raises(PermissionDenied):
            services.compute_request_approve(reviewer=institution_admin, request=request)

    def test_a_decided_request_cannot_be_decided_again(self, member, institution, staff):
        request = self._ask(member, institution)
        services.compute_request_reject(reviewer=staff, request=request, comment="No budget")
        with pytest.raises(ValidationError, match="already rejected"):
            services.compute_request_approve(reviewer=staff, request=request)

    def test_granting_more_than_asked_is_refused(self, member, institution, staff):
        request = self._ask(member, institution)
        with pytest.raises(ValidationError, match="Grant between"):
            services.compute_request_approve(
                reviewer=staff, request=request, gpu_hours=Decimal("51")
            )

    def test_only_members_ask_for_their_institution(self, outsider, institution):
        with pytest.raises(ValidationError, match="not a member"):
            self._ask(outsider, institution)

    def test_the_requester_withdraws(self, member, institution, institution_admin):
        request = self._ask(member, institution)
        with pytest.raises(PermissionDenied):
            services.compute_request_withdraw(user=institution_admin, request=request)
        services.compute_request_withdraw(user=member, request=request)
        request.refresh_from_db()
        assert request.state == ComputeRequest.State.WITHDRAWN


class TestNodes:
    def test_the_token_is_stored_hashed_and_authenticates_its_node(
        self, institution_admin, institution
    ):
        node, secret = services.node_create(
            user=institution_admin, institution=institution, name="gpu-02"
        )
        assert secret.startswith("rxn_") and secret not in node.token_hash
        assert services.node_authenticate(secret=secret) == node
        services.node_token_rotate(user=institution_admin, node=node)
        with pytest.raises(PermissionDenied):
            services.node_authenticate(secret=secret)

    def test_members_cannot_add_nodes(self, member, institution):
        with pytest.raises(PermissionDenied):
            services.node_create(user=member, institution=institution, name="mine")

    def test_registration_refuses_a_malformed_inventory(self, gpu_node):
        with pytest.raises(ValidationError, match="GPU 0"):
            services.node_register(
                node=gpu_node, gpus=[{"index": 0}], cpu_slots=1, host_info=isolated()
            )
        with pytest.raises(ValidationError, match="once"):
            services.node_register(
                node=gpu_node, gpus=[A100, A100], cpu_slots=1, host_info=isolated()
            )


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_at_once_never_double_book_a_gpu(
    institution_admin, institution, staff, member, make_model_version, make_benchmark
):
    """Two dispatcher runs race over 20 jobs and 2 nodes x 4 GPUs: every GPU holds one job."""
    for number in range(2):
        node, _ = services.node_create(
            user=institution_admin, institution=institution, name=f"quad-{number}"
        )
        gpus = [{**A100, "index": index, "uuid": f"GPU-{number}-{index}"} for index in range(4)]
        services.node_register(node=node, gpus=gpus, cpu_slots=0, host_info=isolated())
    now = timezone.now()
    services.allocation_create(
        user=staff,
        institution=institution,
        name="Race",
        gpu_hours=Decimal(1000),
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=1),
    )
    version = make_model_version(member, institution)
    benchmark = make_benchmark(member, institution)
    for _ in range(20):
        services.job_submit(user=member, model_version=version, benchmark=benchmark)

    barrier = threading.Barrier(2)
    dispatched: list[list[int]] = []

    def dispatcher() -> None:
        barrier.wait()
        try:
            dispatched.append(services.jobs_dispatch())
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Whatever the first runs left (a node locked by the other) the next run places.
    dispatched.append(services.jobs_dispatch())

    placed = [job_id for run in dispatched for job_id in run]
    assert len(placed) == len(set(placed)) == 8
    running = Job.objects.filter(state=Job.State.DISPATCHED)
    devices = [(job.node_id, device) for job in running for device in job.devices]
    assert len(devices) == len(set(devices)) == 8
    assert DeviceAssignment.objects.count() == 8
