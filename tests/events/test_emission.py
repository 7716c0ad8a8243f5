"""Events are recorded where things happen, in the transaction of the change: jobs ending in
each final state (worker, reconciler, cancel), compute requests reviewed, GPU-hours granted
(here or by a peer), an evaluation at a peer ending, and a node asking to peer."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.accounts.models import Membership
from apps.compute import services as compute_services
from apps.compute.models import Allocation, Job
from apps.events.models import Event, EventType, Notification
from apps.federation import grants, remote_jobs
from apps.federation import services as federation_services
from apps.federation.models import Peer, RemoteJob
from tests.evaluations.conftest import (  # noqa: F401 - shared fixtures
    METRICS,
    cpu_benchmark,
    gpu_node,
    make_benchmark,
    make_cpu_benchmark,
    make_model_version,
    post_result,
)
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _artifacts_in_tmp(artifact_dir):
    """Every test here stores artifacts in a folder of its own."""


PEER = "https://peer.example.org"


def events(type_: str) -> list[Event]:
    return list(Event.objects.filter(type=type_).order_by("id"))


def told(event: Event) -> set[str]:
    return set(event.notifications.values_list("user__username", flat=True))


@pytest.fixture
def version(member, institution, make_model_version):  # noqa: F811
    return make_model_version(member, institution, name="Digits CNN")


@pytest.fixture
def running_job(member, version, cpu_benchmark, gpu_node):  # noqa: F811
    job = compute_services.job_submit(user=member, model_version=version, benchmark=cpu_benchmark)
    compute_services.jobs_dispatch()
    job.refresh_from_db()
    return compute_services.job_claim(node=gpu_node, job_id=job.pk, attempt=job.attempt)


class TestJobs:
    def test_a_result_tells_the_submitter_with_the_model_benchmark_and_metrics(
        self,
        member,
        institution,
        version,
        cpu_benchmark,  # noqa: F811
        post_result,  # noqa: F811
    ):
        result = post_result(member, version, cpu_benchmark, {"accuracy": 0.97, "loss": 0.12})

        (event,) = events(EventType.JOB_SUCCEEDED)
        job = result.job
        assert event.summary == (
            f"Job {job.pk} succeeded: Digits CNN 1.0 on Digits held out (accuracy 0.97, loss 0.12)"
        )
        assert event.institution == institution
        assert event.url == f"/compute/jobs/{job.pk}/"
        assert event.data["job"] == job.pk and event.data["state"] == "succeeded"
        assert event.data["model"] == {
            "id": version.model_id,
            "name": "Digits CNN",
            "version": "1.0",
        }
        assert event.data["benchmark"] == {"id": cpu_benchmark.pk, "name": "Digits held out"}
        assert event.data["metrics"] == {"accuracy": 0.97, "loss": 0.12}
        assert event.data["failure_reason"] == "" and "gpu_hours" in event.data
        assert told(event) == {member.username}

    def test_a_worker_reporting_failure_gives_the_reason(self, member, gpu_node, running_job):  # noqa: F811
        compute_services.job_report_failure(
            node=gpu_node,
            job_id=running_job.pk,
            attempt=running_job.attempt,
            state="failed",
            reason="CUDA out of memory",
        )

        (event,) = events(EventType.JOB_FAILED)
        assert event.data["failure_reason"] == "CUDA out of memory"
        assert event.summary.startswith(f"Job {running_job.pk} failed: Digits CNN 1.0")
        assert told(event) == {member.username}

    def test_a_job_past_its_limit_times_out_through_the_reconciler(self, member, running_job):
        Job.objects.filter(pk=running_job.pk).update(
            started_at=timezone.now() - timedelta(minutes=running_job.time_limit_minutes + 30)
        )

        report = compute_services.jobs_reconcile()

        assert report.timed_out == [running_job.pk]
        (event,) = events(EventType.JOB_TIMED_OUT)
        assert event.data["state"] == "timed_out" and "limit" in event.data["failure_reason"]

    def test_the_reconciler_giving_up_is_a_failure(self, member, running_job):
        Job.objects.filter(pk=running_job.pk).update(
            attempt=running_job.max_attempts, lease_expires_at=timezone.now() - timedelta(1)
        )

        compute_services.jobs_reconcile()

        (event,) = events(EventType.JOB_FAILED)
        assert "Gave up" in event.data["failure_reason"]

    def test_a_cancelled_job_tells_the_submitter_whoever_cancelled_it(
        self, member, institution_admin, running_job
    ):
        compute_services.job_cancel(user=institution_admin, job=running_job, reason="maintenance")

        (event,) = events(EventType.JOB_CANCELLED)
        assert "maintenance" in event.data["failure_reason"]
        assert told(event) == {member.username}

    def test_a_peers_job_tells_no_one_here(self, running_job, gpu_node):  # noqa: F811
        Job.objects.filter(pk=running_job.pk).update(from_peer=True)
        running_job.refresh_from_db()

        compute_services.job_withdraw(job=running_job, reason="The peer left.")

        assert not Event.objects.exists()

    def test_a_change_rolled_back_records_no_event(self, member, gpu_node, running_job):  # noqa: F811
        with pytest.raises(Exception, match="metric"):
            compute_services.job_result_post(
                node=gpu_node,
                job_id=running_job.pk,
                attempt=running_job.attempt,
                metrics={"accuracy": float("nan")},
                provenance={},
            )
        assert not Event.objects.filter(type=EventType.JOB_SUCCEEDED).exists()


class TestComputeRequestsAndGrants:
    def _ask(self, member, institution):
        today = timezone.localdate()
        return compute_services.compute_request_submit(
            user=member,
            institution=institution,
            purpose="Digits sweep",
            gpu_hours=Decimal("40"),
            gpu_count=1,
            starts_on=today,
            ends_on=today + timedelta(days=30),
        )

    def test_a_rejection_tells_the_requester_and_names_the_institution(
        self, member, institution, staff
    ):
        request = self._ask(member, institution)

        compute_services.compute_request_reject(reviewer=staff, request=request, comment="Later")

        (event,) = events(EventType.COMPUTE_REQUEST_REVIEWED)
        assert told(event) == {member.username}
        assert event.institution == institution
        assert event.data["state"] == "rejected" and event.data["comment"] == "Later"
        assert "rejected" in event.summary and "Later" in event.summary

    def test_an_approval_is_a_review_for_the_requester_and_a_grant_for_the_admins(
        self, member, institution_admin, institution, staff
    ):
        request = self._ask(member, institution)

        allocation = compute_services.compute_request_approve(reviewer=staff, request=request)

        (review,) = events(EventType.COMPUTE_REQUEST_REVIEWED)
        assert told(review) == {member.username}
        (grant,) = events(EventType.GRANT_RECEIVED)
        assert told(grant) == {institution_admin.username}
        assert grant.data["allocation"] == allocation.pk and grant.data["gpu_hours"] == 40

    def test_an_allocation_made_by_staff_tells_the_institutions_admins_only(
        self, member, institution_admin, institution, staff
    ):
        now = timezone.now()
        compute_services.allocation_create(
            user=staff,
            institution=institution,
            name="Spring",
            gpu_hours=Decimal("12.5"),
            starts_at=now,
            ends_at=now + timedelta(days=10),
        )

        (event,) = events(EventType.GRANT_RECEIVED)
        assert told(event) == {institution_admin.username}
        assert event.institution == institution
        assert "12.5 GPU-hours" in event.summary

    def test_a_peers_grant_tells_the_admins_once(self, institution_admin, institution):
        peer = Peer.objects.create(node_id=PEER, name="Peer node", state=Peer.State.APPROVED)
        now = timezone.now()
        grant = {
            "id": "7",
            "institution": str(institution.pk),
            "name": "Shared A100s",
            "gpu_class": "",
            "budget_gpu_seconds": 36000,
            "used_gpu_seconds": 0,
            "starts_at": now.isoformat(),
            "ends_at": (now + timedelta(days=5)).isoformat(),
        }

        grants.grant_receive(peer=peer, data=grant)
        grants.grant_receive(peer=peer, data={**grant, "used_gpu_seconds": 3600})

        (event,) = events(EventType.GRANT_RECEIVED)
        assert told(event) == {institution_admin.username}
        assert event.data["granted_by"] == "Peer node" and event.data["origin_node"] == PEER


class TestFederation:
    def test_a_node_asking_to_peer_tells_every_active_staff_member(self, staff, member):
        UserFactory(username="retired-staff", is_staff=True, is_active=False)

        federation_services.peering_request_receive(node_id=PEER, identity=None)
        federation_services.peering_request_receive(node_id=PEER, identity=None)

        (event,) = events(EventType.PEER_REQUESTED)
        assert told(event) == {staff.username}
        assert event.institution is None and event.data["node_id"] == PEER

    def test_a_remote_job_ended_by_a_revoked_peering_tells_its_submitter(
        self,
        member,
        institution,
        version,
        cpu_benchmark,  # noqa: F811
    ):
        peer = Peer.objects.create(node_id=PEER, name="Peer node", state=Peer.State.APPROVED)
        now = timezone.now()
        allocation = Allocation.objects.create(
            institution=institution,
            name="Peer grant",
            budget_gpu_seconds=3600,
            starts_at=now,
            ends_at=now + timedelta(days=1),
            origin_node=PEER,
            origin_id="9",
        )
        remote_job = RemoteJob.objects.create(
            request_id=uuid.uuid4(),
            peer=peer,
            allocation=allocation,
            submitter=member,
            institution=institution,
            model_version=version,
            benchmark=cpu_benchmark,
            state=RemoteJob.State.RUNNING,
        )

        assert remote_jobs.remote_jobs_end(peer=peer) == 1

        (event,) = events(EventType.JOB_FAILED)
        assert told(event) == {member.username}
        assert event.data["remote_job"] == remote_job.pk and event.data["peer"] == PEER
        assert "revoked" in event.data["failure_reason"]
        assert event.summary.startswith(f"Remote job {remote_job.pk} at Peer node failed")


def test_an_institution_member_who_is_not_admin_hears_of_no_grant(institution, staff):
    plain = MembershipFactory(institution=institution, role=Membership.Role.MEMBER).user
    now = timezone.now()
    compute_services.allocation_create(
        user=staff,
        institution=institution,
        name="Summer",
        gpu_hours=Decimal(1),
        starts_at=now,
        ends_at=now + timedelta(days=1),
    )
    assert not Notification.objects.filter(user=plain).exists()
