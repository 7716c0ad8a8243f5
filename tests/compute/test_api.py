import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.services import api_token_create
from apps.catalog.models import Visibility
from apps.compute import services
from apps.compute.models import ComputeNode, ComputeRequest, Job
from apps.evaluations.models import Result
from tests.catalog.conftest import store
from tests.compute.conftest import A100
from tests.factories import isolated


@pytest.fixture
def node_token(institution_admin, institution):
    """A registered node with one A100 and its token."""
    node, secret = services.node_create(
        user=institution_admin, institution=institution, name="gpu-api"
    )
    services.node_register(node=node, gpus=[A100], cpu_slots=1, host_info=isolated())
    return node, secret


@pytest.fixture
def worker(node_token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {node_token[1]}")
    return client


@pytest.fixture
def dispatched(member, submit_job, node_token):
    """A job dispatched to the node_token node (not claimed yet)."""
    node, _ = node_token
    ComputeNode.objects.exclude(pk=node.pk).update(draining=True)
    job = submit_job(member)
    assert services.jobs_dispatch() == [job.pk]
    job.refresh_from_db()
    assert job.node == node
    return job


class TestJobsApi:
    def test_a_member_submits_a_job(
        self, client_as, model_version, benchmark, gpu_node, allocation
    ):
        response = client_as("member").post(
            "/api/v1/jobs/",
            {"model_version": model_version.pk, "benchmark": benchmark.pk},
            format="json",
        )
        assert response.status_code == 201, response.json()
        body = response.json()
        assert body["state"] == "pending"
        assert body["model_name"] == "Aurora Classifier"
        assert body["allocation"] == allocation.pk

    def test_a_submission_while_the_broker_is_down_is_kept_and_answered_201(
        self,
        client_as,
        model_version,
        benchmark,
        gpu_node,
        allocation,
        monkeypatch,
        django_capture_on_commit_callbacks,
    ):
        # The job is committed before the dispatcher is asked for, and the beat's dispatcher
        # run places it: an error answer would have the researcher submit it again.
        from config.celery_app import app

        monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")  # Celery reads it first
        monkeypatch.setattr(app, "_pool", None)
        monkeypatch.setattr(app.amqp, "_producer_pool", None)
        with django_capture_on_commit_callbacks(execute=True):
            response = client_as("member").post(
                "/api/v1/jobs/",
                {"model_version": model_version.pk, "benchmark": benchmark.pk},
                format="json",
            )
        assert response.status_code == 201, response.json()
        assert Job.objects.get().state == Job.State.PENDING

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            ({"model_version": "one", "benchmark": 1}, "model_version"),
            ({"model_version": 1}, "benchmark"),
            ({"model_version": 1, "benchmark": 1, "gpus": 8}, "gpus"),
            ({"model_version": 999999, "benchmark": 1}, "model_version"),
        ],
    )
    def test_bad_submissions_say_which_field_is_wrong(
        self, client_as, payload, field, gpu_node, allocation
    ):
        response = client_as("member").post("/api/v1/jobs/", payload, format="json")
        assert response.status_code == 400
        assert field in response.json()["error"]["fields"]
        assert not Job.objects.exists()

    def test_malformed_json_is_a_400(self, client_as):
        response = client_as("member").post(
            "/api/v1/jobs/", "{not json", content_type="application/json"
        )
        assert response.status_code == 400
        assert "JSON" in response.json()["error"]["message"]

    def test_an_over_budget_submission_is_a_400_with_the_numbers(
        self, client_as, model_version, benchmark, gpu_node, allocation
    ):
        type(allocation).objects.filter(pk=allocation.pk).update(budget_gpu_seconds=600)
        response = client_as("member").post(
            "/api/v1/jobs/",
            {"model_version": model_version.pk, "benchmark": benchmark.pk},
            format="json",
        )
        assert response.status_code == 400
        assert "GPU-hours" in response.json()["error"]["fields"]["allocation"][0]

    def test_anonymous_cannot_submit(self, api_client, model_version, benchmark):
        response = api_client.post(
            "/api/v1/jobs/",
            {"model_version": model_version.pk, "benchmark": benchmark.pk},
            format="json",
        )
        assert response.status_code == 401

    def test_visibility_of_jobs_from_outside(
        self, actors, client_as, member, institution, submit_job, gpu_node, make_model_version
    ):
        """Researchers see their institution's jobs; everyone sees public results only."""
        pending = submit_job(member)
        public_done = submit_job(member)
        private_done = submit_job(
            member,
            model_version=make_model_version(member, institution, visibility=Visibility.PRIVATE),
        )
        Job.objects.filter(pk__in=[public_done.pk, private_done.pk]).update(
            state=Job.State.SUCCEEDED
        )
        expected = {
            "anonymous": {public_done.pk},
            "outsider": {public_done.pk},
            "member": {pending.pk, public_done.pk, private_done.pk},
            "institution_admin": {pending.pk, public_done.pk, private_done.pk},
            "staff": {pending.pk, public_done.pk, private_done.pk},
        }
        for actor, job_ids in expected.items():
            client = client_as(actor)
            listed = {row["id"] for row in client.get("/api/v1/jobs/").json()["results"]}
            assert listed == job_ids, actor
            for job in (pending, public_done, private_done):
                status = client.get(f"/api/v1/jobs/{job.pk}/").status_code
                assert status == (200 if job.pk in job_ids else 404), (actor, job.pk)
            client.force_authenticate(None)

    def test_a_private_model_stays_private_to_the_rest_of_the_paying_institution(
        self, client_as, member, institution, submit_job, make_model_version, dispatched
    ):
        """A job shows its model only to those who may see the model, even inside the
        institution that pays for it."""
        from tests.factories import MembershipFactory

        secret = make_model_version(
            member, institution, name="Unreleased Model", visibility=Visibility.PRIVATE
        )
        job = submit_job(member, model_version=secret)
        colleague = MembershipFactory(institution=institution).user
        client = client_as("member")
        client.force_authenticate(colleague)
        listed = {row["id"] for row in client.get("/api/v1/jobs/").json()["results"]}
        assert dispatched.pk in listed and job.pk not in listed
        assert client.get(f"/api/v1/jobs/{job.pk}/").status_code == 404
        assert client.get(f"/api/v1/jobs/{job.pk}/logs/").status_code == 404
        queue = client.get("/api/v1/jobs/queue/").json()["results"]
        assert {row["job"] for row in queue} == {None}
        client.force_authenticate(member)
        assert client.get(f"/api/v1/jobs/{job.pk}/").json()["model_name"] == "Unreleased Model"

    def test_the_list_filters_by_state_and_institution(self, client_as, member, submit_job):
        job = submit_job(member)
        submit_job(member)
        services.job_cancel(user=member, job=job)
        client = client_as("member")
        rows = client.get("/api/v1/jobs/?state=cancelled").json()["results"]
        assert [row["id"] for row in rows] == [job.pk]
        assert client.get("/api/v1/jobs/?institution=rheinau").json()["count"] == 0

    def test_the_list_spends_the_same_queries_for_one_or_many_jobs(
        self, client_as, member, submit_job, django_assert_max_num_queries
    ):
        client = client_as("member")
        submit_job(member)
        # Four for the page, six for its pending jobs' places in the queue (read at once).
        with django_assert_max_num_queries(10) as one:
            client.get("/api/v1/jobs/")
        for _ in range(15):
            submit_job(member)
        with django_assert_max_num_queries(len(one.captured_queries)):
            assert client.get("/api/v1/jobs/").json()["count"] == 16

    def test_cancel_from_the_api(self, client_as, member, submit_job):
        job = submit_job(member)
        assert client_as("outsider").post(f"/api/v1/jobs/{job.pk}/cancel/").status_code == 404
        response = client_as("member").post(
            f"/api/v1/jobs/{job.pk}/cancel/", {"reason": "wrong version"}, format="json"
        )
        assert response.status_code == 200
        assert response.json()["state"] == "cancelled"
        again = client_as("member").post(f"/api/v1/jobs/{job.pk}/cancel/")
        assert again.status_code == 400

    def test_priority_is_for_platform_admins(self, client_as, member, submit_job):
        job = submit_job(member)
        url = f"/api/v1/jobs/{job.pk}/priority/"
        assert client_as("institution_admin").post(url, {"priority": 9}).status_code == 403
        response = client_as("staff").post(url, {"priority": 9}, format="json")
        assert response.json()["priority"] == 9
        assert client_as("staff").post(url, {"priority": 500}).status_code == 400

    def test_logs_are_for_the_jobs_institution(self, client_as, dispatched, node_token, member):
        node, _ = node_token
        services.job_claim(node=node, job_id=dispatched.pk, attempt=1)
        services.job_log_append(
            node=node, job_id=dispatched.pk, attempt=1, offset=0, text="epoch 1\nepoch 2\n"
        )
        url = f"/api/v1/jobs/{dispatched.pk}/logs/"
        body = client_as("member").get(url).json()
        assert body == {
            "attempt": 1,
            "offset": 0,
            "next_offset": 16,
            "text": "epoch 1\nepoch 2\n",
            "finished": False,
        }
        assert client_as("member").get(url + "?offset=8").json()["text"] == "epoch 2\n"
        assert client_as("outsider").get(url).status_code == 404
        for bad in ("x", "%C2%B2", "9" * 5000):
            assert client_as("member").get(f"{url}?offset={bad}").status_code == 400

    def test_the_queue_shows_other_institutions_jobs_without_their_contents(
        self, client_as, member, submit_job
    ):
        job = submit_job(member)
        rows = client_as("outsider").get("/api/v1/jobs/queue/").json()
        assert rows["pending"] == 1
        assert rows["results"][0]["job"] is None and rows["results"][0]["submitted_at"] is None
        mine = client_as("member").get("/api/v1/jobs/queue/").json()
        assert mine["results"][0]["job"] == job.pk and mine["results"][0]["submitted_at"]


class TestNodesApi:
    def test_an_institution_admin_adds_a_node_and_sees_its_token_once(self, client_as, institution):
        response = client_as("institution_admin").post(
            "/api/v1/nodes/", {"institution": "northbridge", "name": "gpu-07"}, format="json"
        )
        assert response.status_code == 201
        token = response.json()["token"]
        assert token.startswith("rxn_")
        detail = client_as("institution_admin").get(f"/api/v1/nodes/{response.json()['id']}/")
        assert "token" not in detail.json() and "token_prefix" not in detail.json()
        assert token not in detail.content.decode()

    def test_members_and_outsiders_cannot_add_or_drain(self, client_as, gpu_node):
        for actor in ("member", "outsider"):
            client = client_as(actor)
            created = client.post(
                "/api/v1/nodes/", {"institution": "northbridge", "name": "x"}, format="json"
            )
            assert created.status_code == 403
            drained = client.patch(
                f"/api/v1/nodes/{gpu_node.pk}/", {"draining": True}, format="json"
            )
            assert drained.status_code == 403
            client.force_authenticate(None)

    def test_drain_and_rotate(self, client_as, gpu_node):
        client = client_as("institution_admin")
        body = client.patch(f"/api/v1/nodes/{gpu_node.pk}/", {"draining": True}, format="json")
        assert body.json()["status"] == "draining"
        rotated = client.post(f"/api/v1/nodes/{gpu_node.pk}/rotate-token/")
        assert rotated.json()["token"].startswith("rxn_")

    def test_nodes_are_listed_for_signed_in_users_only(self, client_as, api_client, gpu_node):
        assert api_client.get("/api/v1/nodes/").status_code == 401
        rows = client_as("outsider").get("/api/v1/nodes/").json()["results"]
        assert [row["name"] for row in rows] == ["gpu-01"]
        assert rows[0]["gpus"][0]["name"] == "NVIDIA A100 80GB"


class TestComputeRequestsApi:
    def _payload(self, **fields):
        today = timezone.localdate()
        return {
            "institution": "northbridge",
            "purpose": "Benchmark our speech models",
            "gpu_hours": "120.0",
            "gpu_count": 4,
            "gpu_class": "A100",
            "starts_on": str(today),
            "ends_on": str(today + timedelta(days=60)),
            **fields,
        }

    def test_request_review_and_allocation(self, client_as, member):
        created = client_as("member").post(
            "/api/v1/compute-requests/", self._payload(), format="json"
        )
        assert created.status_code == 201, created.json()
        request_id = created.json()["id"]
        client_as("member").force_authenticate(None)
        assert (
            client_as("institution_admin")
            .post(f"/api/v1/compute-requests/{request_id}/approve/", {}, format="json")
            .status_code
            == 403
        )
        approved = client_as("staff").post(
            f"/api/v1/compute-requests/{request_id}/approve/",
            {"gpu_hours": "100.0", "comment": "Granted 100 of 120"},
            format="json",
        )
        assert approved.status_code == 201
        allocation = approved.json()
        assert allocation["budget_gpu_hours"] == 100.0
        assert allocation["gpu_class"] == "A100"
        detail = client_as("member").get(f"/api/v1/compute-requests/{request_id}/").json()
        assert detail["state"] == "approved" and detail["allocation"] == allocation["id"]
        allocations = client_as("member").get("/api/v1/allocations/?current=true").json()
        assert [row["id"] for row in allocations["results"]] == [allocation["id"]]

    def test_a_rejection_without_a_comment_is_refused(self, client_as, member):
        request_id = (
            client_as("member")
            .post("/api/v1/compute-requests/", self._payload(), format="json")
            .json()["id"]
        )
        response = client_as("staff").post(
            f"/api/v1/compute-requests/{request_id}/reject/", {}, format="json"
        )
        assert response.status_code == 400
        assert "comment" in response.json()["error"]["fields"]
        assert ComputeRequest.objects.get().state == "submitted"

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"gpu_hours": "-3"}, "gpu_hours"),
            ({"gpu_count": 0}, "gpu_count"),
            ({"starts_on": "tomorrow"}, "starts_on"),
            ({"ends_on": "2020-01-01"}, "ends_on"),
            ({"institution": "nowhere"}, "institution"),
            ({"paper": 999999}, "paper"),
        ],
    )
    def test_bad_requests_name_the_field(self, client_as, fields, field):
        response = client_as("member").post(
            "/api/v1/compute-requests/", self._payload(**fields), format="json"
        )
        assert response.status_code == 400
        assert field in response.json()["error"]["fields"]

    def test_requests_are_seen_by_the_requester_the_institutions_admins_and_staff(
        self, client_as, member
    ):
        client_as("member").post("/api/v1/compute-requests/", self._payload(), format="json")
        for actor, count in [
            ("member", 1),
            ("institution_admin", 1),
            ("staff", 1),
            ("outsider", 0),
        ]:
            client = client_as(actor)
            assert client.get("/api/v1/compute-requests/").json()["count"] == count, actor
            client.force_authenticate(None)

    def test_allocations_are_for_members_and_staff_grants_them(self, client_as, allocation):
        assert client_as("outsider").get("/api/v1/allocations/").json()["count"] == 0
        assert client_as("outsider").get(f"/api/v1/allocations/{allocation.pk}/").status_code == 404
        response = client_as("member").post(
            "/api/v1/allocations/",
            {
                "institution": "northbridge",
                "name": "More",
                "gpu_hours": "5",
                "starts_at": timezone.now().isoformat(),
                "ends_at": (timezone.now() + timedelta(days=2)).isoformat(),
            },
            format="json",
        )
        assert response.status_code == 403


class TestWorkerApi:
    def test_node_tokens_open_only_the_worker_endpoints(self, worker, api_client, node_token):
        assert worker.get("/api/v1/jobs/").status_code == 401
        assert worker.get("/api/v1/me/").status_code == 401
        assert api_client.post("/api/v1/worker/heartbeat", {"running": []}).status_code == 401

    def test_personal_api_tokens_cannot_act_as_a_node(self, member, node_token):
        _token, secret = api_token_create(user=member, name="t", scope="read_write")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        response = client.post("/api/v1/worker/heartbeat", {"running": []}, format="json")
        assert response.status_code == 401
        client.force_authenticate(member)
        response = client.post("/api/v1/worker/heartbeat", {"running": []}, format="json")
        assert response.status_code in (401, 403)

    def test_register_reports_the_queue(self, worker, node_token):
        response = worker.post(
            "/api/v1/worker/register",
            {"gpus": [A100, {**A100, "index": 1, "uuid": "GPU-2"}], "cpu_slots": 2},
            format="json",
        )
        assert response.status_code == 200
        node = response.json()["node"]
        assert node["queue"] == f"pool.default.node-{node_token[0].pk}"
        node_token[0].refresh_from_db()
        assert len(node_token[0].gpus) == 2

    def test_register_refuses_a_malformed_inventory(self, worker):
        response = worker.post(
            "/api/v1/worker/register", {"gpus": [{"index": "a"}], "cpu_slots": 1}, format="json"
        )
        assert response.status_code == 400

    def test_a_whole_attempt_through_the_worker_endpoints(
        self, worker, dispatched, model_version, allocation
    ):
        job = dispatched
        claim = worker.post(f"/api/v1/worker/jobs/{job.pk}/claim", {"attempt": 1}, format="json")
        assert claim.status_code == 200
        details = claim.json()
        assert details["gpu_indices"] == [0]
        assert details["benchmark"]["evaluator"] == "smoke"
        (model_file,) = details["model"]["files"]
        assert model_file["filename"] == "model.safetensors"
        download = worker.get(model_file["url"])
        content = b"".join(download.streaming_content)
        assert hashlib.sha256(content).hexdigest() == model_file["sha256"]
        (data_file,) = details["benchmark"]["dataset"]["files"]
        assert worker.get(data_file["url"]).status_code == 200

        logged = worker.post(
            f"/api/v1/worker/jobs/{job.pk}/logs",
            {"attempt": 1, "offset": 0, "text": "ok\n"},
            format="json",
        )
        assert logged.json() == {"length": 3}
        beat = worker.post(
            "/api/v1/worker/heartbeat", {"running": [{"job": job.pk, "attempt": 1}]}, format="json"
        )
        assert beat.json()["stop"] == []

        result = {
            "attempt": 1,
            "metrics": {"files": 2},
            "provenance": {"host": "gpu-api", "isolation": {"level": "full"}},
        }
        first = worker.post(f"/api/v1/worker/jobs/{job.pk}/result", result, format="json")
        again = worker.post(f"/api/v1/worker/jobs/{job.pk}/result", result, format="json")
        assert (first.status_code, again.status_code) == (201, 200)
        assert Result.objects.get().provenance == result["provenance"]
        job.refresh_from_db()
        assert job.state == Job.State.SUCCEEDED

        # After the job ends, its files are no longer the node's to read.
        assert worker.get(model_file["url"]).status_code == 409

    def test_a_node_reads_only_its_jobs_files(self, worker, dispatched, member):
        other = store(member, b"not part of the job", "notes.txt")
        worker.post(f"/api/v1/worker/jobs/{dispatched.pk}/claim", {"attempt": 1}, format="json")
        url = f"/api/v1/worker/jobs/{dispatched.pk}/files/{other.sha256}?attempt=1"
        assert worker.get(url).status_code == 404

    def test_another_nodes_token_gets_409_for_the_job(
        self, dispatched, outsider, other_institution
    ):
        _node, secret = services.node_create(
            user=outsider, institution=other_institution, name="elsewhere"
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        for path, payload in [
            ("claim", {"attempt": 1}),
            ("logs", {"attempt": 1, "offset": 0, "text": "x"}),
            ("status", {"attempt": 1, "state": "failed", "reason": "x"}),
            ("result", {"attempt": 1, "metrics": {"files": 1}}),
        ]:
            response = client.post(
                f"/api/v1/worker/jobs/{dispatched.pk}/{path}", payload, format="json"
            )
            assert response.status_code == 409, path
            assert "not assigned to this node" in response.json()["error"]["message"]
        dispatched.refresh_from_db()
        assert dispatched.state == Job.State.DISPATCHED

    def test_a_failure_report(self, worker, dispatched):
        worker.post(f"/api/v1/worker/jobs/{dispatched.pk}/claim", {"attempt": 1}, format="json")
        response = worker.post(
            f"/api/v1/worker/jobs/{dispatched.pk}/status",
            {"attempt": 1, "state": "succeeded", "reason": "x"},
            format="json",
        )
        assert response.status_code == 400
        response = worker.post(
            f"/api/v1/worker/jobs/{dispatched.pk}/status",
            {"attempt": 1, "state": "failed", "reason": "CUDA out of memory"},
            format="json",
        )
        assert response.json()["state"] == "failed"
        dispatched.refresh_from_db()
        assert dispatched.failure_reason == "CUDA out of memory"

    def test_a_metric_out_of_range_is_a_400_not_a_500(self, worker, dispatched):
        worker.post(f"/api/v1/worker/jobs/{dispatched.pk}/claim", {"attempt": 1}, format="json")
        response = worker.generic(
            "POST",
            f"/api/v1/worker/jobs/{dispatched.pk}/result",
            '{"attempt": 1, "metrics": {"loss": 1e400}}',
            content_type="application/json",
        )
        assert response.status_code == 400
        assert not Result.objects.exists()

    def test_a_result_without_numbers_is_refused_and_the_job_keeps_running(
        self, worker, dispatched
    ):
        worker.post(f"/api/v1/worker/jobs/{dispatched.pk}/claim", {"attempt": 1}, format="json")
        response = worker.post(
            f"/api/v1/worker/jobs/{dispatched.pk}/result",
            {"attempt": 1, "metrics": {"accuracy": [0.9]}},
            format="json",
        )
        assert response.status_code == 400
        dispatched.refresh_from_db()
        assert dispatched.state == Job.State.RUNNING
        assert not Result.objects.exists()
