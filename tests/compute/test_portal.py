"""The compute pool's portal pages, as researchers, institution admins and platform staff use
them in a browser without JavaScript."""

import re
from datetime import timedelta
from decimal import Decimal
from html import unescape

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.catalog import services as catalog_services
from apps.catalog.models import Visibility
from apps.compute import services
from apps.compute.models import Allocation, ComputeNode, ComputeRequest, Job
from tests.factories import MembershipFactory, isolated

pytestmark = pytest.mark.django_db


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def field_errors(html: str, field: str) -> str:
    """The text of a form field's error list, as the portal renders it next to the field."""
    match = re.search(rf'<ul class="errorlist" id="id_{field}_errors"[^>]*>(.*?)</ul>', html, re.S)
    return unescape(match.group(1)) if match else ""


def section(html: str, heading_id: str) -> str:
    match = re.search(rf'<section aria-labelledby="{heading_id}">(.*?)</section>', html, re.S)
    assert match, heading_id
    return match.group(1)


def run(job: Job, node: ComputeNode) -> Job:
    """Dispatches the job to the node and has the node start it."""
    assert job.pk in services.jobs_dispatch()
    job.refresh_from_db()
    return services.job_claim(node=node, job_id=job.pk, attempt=job.attempt)


@pytest.fixture
def colleague(institution):
    """Another plain member of the submitter's institution."""
    return MembershipFactory(institution=institution).user


class TestQueue:
    def test_anonymous_visitors_are_sent_to_log_in(self, client):
        response = client.get("/compute/")

        assert response.status_code == 302
        assert response["Location"].startswith("/login/")

    def test_shows_pending_jobs_in_dispatch_order_and_what_runs_on_each_device(
        self, client, member, staff, submit_job, gpu_node
    ):
        running = run(submit_job(member), gpu_node)
        first, second = submit_job(member), submit_job(member)
        services.job_set_priority(user=staff, job=second, priority=50)
        client.force_login(member)

        html = page(client.get("/compute/"))

        pending = section(html, "pending-heading")
        assert "2 pending jobs" in pending
        assert pending.index(f"/compute/jobs/{second.pk}/") < pending.index(
            f"/compute/jobs/{first.pk}/"
        )
        on_nodes = section(html, "running-heading")
        assert "gpu-01" in on_nodes and "<code>gpu:0</code>" in on_nodes
        assert f"/compute/jobs/{running.pk}/" in on_nodes
        assert "Aurora Classifier 1.0 on Pool Smoke" in on_nodes

    def test_usage_against_allocations_is_charted_and_tabulated(self, client, member, allocation):
        Allocation.objects.filter(pk=allocation.pk).update(used_gpu_seconds=25 * 3600)
        client.force_login(member)

        usage = section(page(client.get("/compute/")), "usage-heading")

        assert '<svg role="img" aria-labelledby="usage-chart-title usage-chart-desc"' in usage
        assert '<title id="usage-chart-title">' in usage
        assert 'width="360.0"' in usage and 'width="90.0"' in usage  # budget and used bars
        row = re.search(r"<td>Northbridge University</td>\s*<td>(.*?)</td>\s*<td>(.*?)</td>", usage)
        assert row and row.groups() == ("25.0", "100.0")

    def test_recently_finished_jobs_are_listed(self, client, member, submit_job):
        job = submit_job(member)
        services.job_cancel(user=member, job=job)
        client.force_login(member)

        history = section(page(client.get("/compute/")), "history-heading")

        assert f"/compute/jobs/{job.pk}/" in history and "Cancelled" in history

    def test_an_outsider_sees_another_institutions_jobs_without_their_private_model(
        self, client, member, outsider, institution, submit_job, make_model_version, gpu_node
    ):
        secret = make_model_version(
            member, institution, name="Secret Weights", visibility=Visibility.PRIVATE
        )
        running = run(submit_job(member, model_version=secret), gpu_node)
        waiting = submit_job(member, model_version=secret)
        client.force_login(outsider)

        html = page(client.get("/compute/"))

        assert "Secret Weights" not in html
        assert f"/compute/jobs/{running.pk}/" not in html
        assert f"/compute/jobs/{waiting.pk}/" not in html
        pending = section(html, "pending-heading")
        assert "not visible to you" in pending and "Northbridge University" in pending
        assert "busy: a job of Northbridge University" in section(html, "running-heading")

    def test_the_number_of_queries_does_not_grow_with_the_number_of_jobs(
        self, client, member, staff, submit_job, gpu_node, django_assert_max_num_queries
    ):
        def add_jobs(count: int) -> None:
            for number in range(count):
                job = submit_job(member)
                if number % 3 == 0:
                    services.job_cancel(user=member, job=job)

        run(submit_job(member), gpu_node)
        add_jobs(3)
        client.force_login(staff)
        with CaptureQueriesContext(connection) as few:
            page(client.get("/compute/"))

        add_jobs(27)
        with django_assert_max_num_queries(len(few)):
            html = page(client.get("/compute/"))
        assert "20 pending jobs" in html


class TestJobs:
    def test_the_list_shows_the_users_jobs_and_filters_by_state(
        self, client, member, outsider, submit_job
    ):
        pending = submit_job(member)
        cancelled = submit_job(member)
        services.job_cancel(user=member, job=cancelled)
        client.force_login(member)

        everything = page(client.get("/compute/jobs/"))
        only_cancelled = page(client.get("/compute/jobs/?state=cancelled"))
        client.force_login(outsider)
        outsiders = page(client.get("/compute/jobs/"))

        assert f"/compute/jobs/{pending.pk}/" in everything
        assert f"/compute/jobs/{cancelled.pk}/" in everything
        assert f"/compute/jobs/{pending.pk}/" not in only_cancelled
        assert f"/compute/jobs/{cancelled.pk}/" in only_cancelled
        assert "No job matches." in outsiders

    def test_a_running_job_shows_its_placement_and_live_log_to_its_institution(
        self, client, colleague, member, submit_job, gpu_node
    ):
        job = run(submit_job(member), gpu_node)
        services.job_log_append(
            node=gpu_node, job_id=job.pk, attempt=job.attempt, offset=0, text="loading weights\n"
        )
        client.force_login(colleague)

        html = page(client.get(f"/compute/jobs/{job.pk}/"))

        assert '<meta http-equiv="refresh" content="5">' in html
        assert "loading weights" in html
        assert f'href="/compute/nodes/{gpu_node.pk}/"' in html and "<code>gpu:0</code>" in html
        assert "1 of at most 3" in html
        assert "Submitted by" in section(html, "events-heading")
        assert "Cancel job" not in html  # a colleague is neither the submitter nor an admin

    def test_a_job_of_another_institution_is_not_found(self, client, member, outsider, submit_job):
        job = submit_job(member)
        client.force_login(outsider)

        assert client.get(f"/compute/jobs/{job.pk}/").status_code == 404
        assert client.post(f"/compute/jobs/{job.pk}/cancel/").status_code == 404

    def test_a_public_result_is_open_to_everyone_but_its_log_is_not(
        self, client, member, submit_job, gpu_node
    ):
        job = run(submit_job(member), gpu_node)
        services.job_log_append(
            node=gpu_node, job_id=job.pk, attempt=job.attempt, offset=0, text="internal path\n"
        )
        services.job_result_post(
            node=gpu_node,
            job_id=job.pk,
            attempt=job.attempt,
            metrics={"files": 2},
            provenance=isolated(),
        )

        html = page(client.get(f"/compute/jobs/{job.pk}/"))

        result = section(html, "result-heading")
        assert "<td>files</td><td>2</td>" in result
        assert "internal path" not in html
        assert "http-equiv" not in html

    def test_the_submitter_cancels_a_job(self, client, member, submit_job):
        job = submit_job(member)
        client.force_login(member)

        response = client.post(f"/compute/jobs/{job.pk}/cancel/", {"reason": "wrong version"})

        assert response.status_code == 302
        job.refresh_from_db()
        assert job.state == Job.State.CANCELLED
        assert job.failure_reason.endswith(": wrong version")
        assert "has been cancelled" in page(client.get(response["Location"]))

    def test_a_colleague_may_not_cancel_someone_elses_job(
        self, client, colleague, member, submit_job
    ):
        job = submit_job(member)
        client.force_login(colleague)

        assert client.post(f"/compute/jobs/{job.pk}/cancel/").status_code == 403
        job.refresh_from_db()
        assert job.state == Job.State.PENDING

    def test_cancelling_a_finished_job_explains_why_nothing_happened(
        self, client, member, submit_job
    ):
        job = submit_job(member)
        services.job_cancel(user=member, job=job)
        client.force_login(member)

        response = client.post(f"/compute/jobs/{job.pk}/cancel/", follow=True)

        assert "The job is already cancelled." in page(response)

    def test_staff_set_a_jobs_priority_and_researchers_may_not(
        self, client, member, staff, submit_job
    ):
        job = submit_job(member)
        client.force_login(member)
        assert "Set priority" not in page(client.get(f"/compute/jobs/{job.pk}/"))
        assert client.post(f"/compute/jobs/{job.pk}/priority/", {"priority": 9}).status_code == 403

        client.force_login(staff)
        refused = client.post(f"/compute/jobs/{job.pk}/priority/", {"priority": 500})
        accepted = client.post(f"/compute/jobs/{job.pk}/priority/", {"priority": 40})

        assert refused.status_code == 400
        assert "less than or equal to 100" in field_errors(refused.content.decode(), "priority")
        assert accepted.status_code == 302
        job.refresh_from_db()
        assert job.priority == 40


class TestSubmit:
    def test_the_form_preselects_a_model_version_and_benchmark_from_the_address(
        self, client, member, model_version, benchmark
    ):
        client.force_login(member)

        html = page(
            client.get(
                f"/compute/jobs/new/?model_version={model_version.pk}&benchmark={benchmark.pk}"
            )
        )

        assert f'<option value="{model_version.pk}" selected>Aurora Classifier 1.0' in html
        assert f'<option value="{benchmark.pk}" selected>Pool Smoke</option>' in html

    def test_the_form_offers_only_published_versions_the_user_can_see(
        self, client, member, outsider, institution, model_version, make_model_version
    ):
        hidden = make_model_version(
            member, institution, name="Internal Model", visibility=Visibility.INSTITUTION
        )
        draft = catalog_services.version_create(user=member, model=model_version.model, label="2")
        client.force_login(outsider)

        html = page(client.get("/compute/jobs/new/"))

        assert "Aurora Classifier 1.0" in html
        assert "Internal Model" not in html and f'value="{hidden.pk}"' not in html
        assert f'value="{draft.pk}"' not in html

    def test_submitting_queues_a_job_and_shows_it(
        self, client, member, institution, allocation, gpu_node, model_version, benchmark
    ):
        client.force_login(member)

        response = client.post(
            "/compute/jobs/new/",
            {
                "model_version": model_version.pk,
                "benchmark": benchmark.pk,
                "institution": institution.pk,
                "allocation": "",
            },
        )

        job = Job.objects.get()
        assert response.status_code == 302
        assert response["Location"] == f"/compute/jobs/{job.pk}/"
        assert (job.submitter, job.allocation, job.state) == (member, allocation, "pending")
        assert f"Job {job.pk} has been queued." in page(client.get(response["Location"]))

    def test_the_services_refusals_appear_on_the_fields_they_concern(
        self, client, member, institution, allocation, gpu_node, model_version, make_benchmark
    ):
        too_big = make_benchmark(member, institution, name="Two GPUs", gpu_count=2)
        client.force_login(member)

        response = client.post(
            "/compute/jobs/new/",
            {
                "model_version": model_version.pk,
                "benchmark": too_big.pk,
                "institution": institution.pk,
            },
        )

        assert "No compute node in the pool has 2 GPU(s)" in field_errors(
            page(response), "benchmark"
        )
        assert not Job.objects.exists()

    def test_an_institution_without_allocation_is_told_to_request_compute(
        self, client, member, institution, gpu_node, model_version, benchmark
    ):
        client.force_login(member)

        response = client.post(
            "/compute/jobs/new/",
            {
                "model_version": model_version.pk,
                "benchmark": benchmark.pk,
                "institution": institution.pk,
            },
        )

        assert "request compute first" in field_errors(page(response), "allocation")

    def test_a_user_without_institution_is_told_how_to_join_one(self, client, db):
        from tests.factories import UserFactory

        client.force_login(UserFactory())

        assert "ask one of its admins to add you" in page(client.get("/compute/jobs/new/"))


def request_form(institution, **fields) -> dict:
    today = timezone.localdate()
    return {
        "institution": institution.pk,
        "purpose": "Evaluate our distilled models on the shared benchmarks.",
        "gpu_hours": "40",
        "gpu_count": 1,
        "gpu_class": "A100",
        "starts_on": today.isoformat(),
        "ends_on": (today + timedelta(days=30)).isoformat(),
        **fields,
    }


@pytest.fixture
def compute_request(member, institution):
    today = timezone.localdate()
    return services.compute_request_submit(
        user=member,
        institution=institution,
        purpose="Benchmark sweep.",
        gpu_hours=Decimal(40),
        gpu_count=1,
        starts_on=today,
        ends_on=today + timedelta(days=30),
    )


class TestComputeRequests:
    def test_a_member_asks_for_gpu_time_linked_to_a_model(
        self, client, member, institution, model_version
    ):
        client.force_login(member)

        response = client.post(
            "/compute/requests/new/",
            request_form(institution, model=model_version.model.pk),
        )

        request = ComputeRequest.objects.get()
        assert response["Location"] == f"/compute/requests/{request.pk}/"
        assert (request.requester, request.model, request.state) == (
            member,
            model_version.model,
            "submitted",
        )
        detail = page(client.get(response["Location"]))
        assert "Aurora Classifier" in detail and "Withdraw the request" in detail
        assert "Approve" not in detail  # only staff review
        assert f"/compute/requests/{request.pk}/" in page(client.get("/compute/requests/"))

    def test_a_window_that_already_ended_is_refused_on_its_field(self, client, member, institution):
        client.force_login(member)
        long_ago = (timezone.localdate() - timedelta(days=10)).isoformat()

        response = client.post(
            "/compute/requests/new/",
            request_form(institution, starts_on="2020-01-01", ends_on=long_ago),
        )

        assert "already ended" in field_errors(page(response), "ends_on")
        assert not ComputeRequest.objects.exists()

    def test_an_outsider_cannot_see_the_request(self, client, outsider, compute_request):
        client.force_login(outsider)

        assert client.get(f"/compute/requests/{compute_request.pk}/").status_code == 404
        assert "No compute request yet." in page(client.get("/compute/requests/"))

    def test_the_requester_withdraws_the_request(self, client, member, compute_request):
        client.force_login(member)

        client.post(f"/compute/requests/{compute_request.pk}/withdraw/")

        compute_request.refresh_from_db()
        assert compute_request.state == ComputeRequest.State.WITHDRAWN

    def test_staff_approve_a_smaller_grant_which_becomes_an_allocation(
        self, client, staff, compute_request
    ):
        client.force_login(staff)
        prefix = f"review-{compute_request.pk}"

        response = client.post(
            f"/compute/requests/{compute_request.pk}/review/",
            {f"{prefix}-decision": "approve", f"{prefix}-gpu_hours": "25", f"{prefix}-comment": ""},
        )

        assert response.status_code == 302
        allocation = Allocation.objects.get(request=compute_request)
        assert allocation.budget_gpu_seconds == 25 * 3600
        assert "25.0 GPU-hours allocated" in page(client.get(response["Location"]))

    def test_rejecting_without_a_comment_is_refused_with_a_reason(
        self, client, staff, compute_request
    ):
        client.force_login(staff)
        prefix = f"review-{compute_request.pk}"

        response = client.post(
            f"/compute/requests/{compute_request.pk}/review/",
            {f"{prefix}-decision": "reject", f"{prefix}-comment": "  "},
        )

        assert response.status_code == 400
        errors = field_errors(response.content.decode(), f"{prefix}-comment")
        assert "Say why the request is rejected." in errors
        compute_request.refresh_from_db()
        assert compute_request.state == ComputeRequest.State.SUBMITTED

    def test_the_review_page_lists_waiting_requests_oldest_first_and_rejects_from_there(
        self, client, staff, member, institution, compute_request
    ):
        newer = services.compute_request_submit(
            user=member,
            institution=institution,
            purpose="Second sweep.",
            gpu_hours=Decimal(5),
            gpu_count=1,
            starts_on=timezone.localdate(),
            ends_on=timezone.localdate(),
        )
        client.force_login(staff)

        html = page(client.get("/compute/requests/review/"))
        response = client.post(
            f"/compute/requests/{newer.pk}/review/",
            {
                f"review-{newer.pk}-decision": "reject",
                f"review-{newer.pk}-comment": "The pool is full this month.",
                "return_to": "review",
            },
        )

        assert html.index("Benchmark sweep.") < html.index("Second sweep.")
        assert response["Location"] == "/compute/requests/review/"
        newer.refresh_from_db()
        assert (newer.state, newer.review_comment) == ("rejected", "The pool is full this month.")
        assert "Second sweep." not in page(client.get("/compute/requests/review/"))

    def test_researchers_cannot_review(self, client, institution_admin, compute_request):
        client.force_login(institution_admin)

        assert client.get("/compute/requests/review/").status_code == 403
        response = client.post(
            f"/compute/requests/{compute_request.pk}/review/",
            {f"review-{compute_request.pk}-decision": "approve"},
        )
        assert response.status_code == 403


class TestNodes:
    def test_an_institution_admin_adds_a_node_and_sees_its_token_once(
        self, client, institution_admin, institution
    ):
        client.force_login(institution_admin)

        response = client.post(
            "/compute/nodes/new/",
            {"institution": institution.pk, "name": "gpu-07", "pool": "a100", "labels": "nvlink"},
        )
        node = ComputeNode.objects.get()
        first = page(client.get(response["Location"]))
        again = page(client.get(response["Location"]))

        assert response["Location"] == f"/compute/nodes/{node.pk}/"
        token = re.search(r'<code id="node-token">(rxn_[^<]+)</code>', first).group(1)
        assert services.node_authenticate(secret=token) == node
        assert token not in again and "node-token" not in again
        assert (node.pool, node.labels) == ("a100", ["nvlink"])

    def test_the_token_is_shown_only_on_its_own_nodes_page(
        self, client, institution_admin, institution, gpu_node
    ):
        client.force_login(institution_admin)

        response = client.post(
            "/compute/nodes/new/",
            {"institution": institution.pk, "name": "gpu-08", "pool": "default"},
        )

        assert "node-token" not in page(client.get(f"/compute/nodes/{gpu_node.pk}/"))
        assert "node-token" not in page(client.get(response["Location"]))

    def test_a_taken_name_is_refused_on_its_field(
        self, client, institution_admin, institution, gpu_node
    ):
        client.force_login(institution_admin)

        response = client.post(
            "/compute/nodes/new/",
            {"institution": institution.pk, "name": "gpu-01", "pool": "default"},
        )

        assert response.status_code == 200
        assert ComputeNode.objects.count() == 1
        assert "errorlist" in response.content.decode()

    def test_plain_members_cannot_add_nodes(self, client, member):
        client.force_login(member)

        assert client.get("/compute/nodes/new/").status_code == 403

    def test_the_list_shows_each_nodes_status_to_signed_in_users(
        self, client, member, gpu_node, institution_admin, institution
    ):
        services.node_create(user=institution_admin, institution=institution, name="never-seen")
        client.force_login(member)

        html = page(client.get("/compute/nodes/"))

        assert "gpu-01" in html and "NVIDIA A100 80GB" in html
        assert '<span class="badge status-online">online</span>' in html
        assert '<span class="badge status-offline">offline</span>' in html
        assert "Add a node" not in html
        client.logout()
        assert client.get("/compute/nodes/").status_code == 302

    def test_an_admin_drains_and_undrains_a_node(self, client, institution_admin, gpu_node):
        client.force_login(institution_admin)

        client.post(f"/compute/nodes/{gpu_node.pk}/drain/")
        gpu_node.refresh_from_db()
        drained = gpu_node.draining
        html = page(client.get(f"/compute/nodes/{gpu_node.pk}/"))
        client.post(f"/compute/nodes/{gpu_node.pk}/undrain/")
        gpu_node.refresh_from_db()

        assert drained and "status-draining" in html and "Take new jobs again" in html
        assert not gpu_node.draining

    def test_an_admin_marks_a_node_trusted_only_and_back(
        self, client, institution_admin, member, gpu_node
    ):
        client.force_login(member)
        assert client.post(f"/compute/nodes/{gpu_node.pk}/trusted-only/").status_code == 403
        client.force_login(institution_admin)

        client.post(f"/compute/nodes/{gpu_node.pk}/trusted-only/")
        gpu_node.refresh_from_db()
        trusted = gpu_node.trusted_only
        html = page(client.get(f"/compute/nodes/{gpu_node.pk}/"))
        client.post(f"/compute/nodes/{gpu_node.pk}/all-institutions/")
        gpu_node.refresh_from_db()

        assert trusted and "trusted-only: runs only Northbridge University's benchmarks" in html
        assert "Run every institution's benchmarks" in html
        assert not gpu_node.trusted_only

    def test_rotating_the_token_shows_the_new_one_once_and_retires_the_old(
        self, client, institution_admin, institution
    ):
        node, old = services.node_create(
            user=institution_admin, institution=institution, name="gpu-09"
        )
        client.force_login(institution_admin)

        response = client.post(f"/compute/nodes/{node.pk}/token/")
        shown = page(client.get(response["Location"]))
        new = re.search(r'<code id="node-token">(rxn_[^<]+)</code>', shown).group(1)

        assert services.node_authenticate(secret=new) == node
        assert new != old
        with pytest.raises(PermissionDenied):
            services.node_authenticate(secret=old)
        assert new not in page(client.get(response["Location"]))

    def test_members_and_outsiders_cannot_manage_a_node(self, client, member, outsider, gpu_node):
        for user in (member, outsider):
            client.force_login(user)
            html = page(client.get(f"/compute/nodes/{gpu_node.pk}/"))
            assert "Rotate the token" not in html and gpu_node.token_prefix not in html
            assert client.post(f"/compute/nodes/{gpu_node.pk}/drain/").status_code == 403
            assert client.post(f"/compute/nodes/{gpu_node.pk}/token/").status_code == 403
        gpu_node.refresh_from_db()
        assert not gpu_node.draining


def test_the_navigation_links_to_the_compute_pages(client):
    assert '<a href="/compute/">Compute</a>' in page(client.get("/"))
