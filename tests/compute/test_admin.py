"""Platform staff look after the compute pool in the Django admin; every action goes through
the services."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from apps.compute import services
from apps.compute.models import Allocation, ComputeNode, ComputeRequest, Job
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


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


def act(client, model: str, action: str, records, **fields):
    return client.post(
        f"/admin/compute/{model}/",
        {"action": action, ACTION_CHECKBOX_NAME: [record.pk for record in records], **fields},
        follow=True,
    )


def test_staff_list_and_open_every_kind_of_compute_record(
    admin_client, member, submit_job, compute_request
):
    job = submit_job(member)
    records = {
        "computenode": ComputeNode.objects.get(),
        "computerequest": compute_request,
        "allocation": Allocation.objects.get(),
        "job": job,
    }
    for model, record in records.items():
        listing = admin_client.get(f"/admin/compute/{model}/")
        change = admin_client.get(f"/admin/compute/{model}/{record.pk}/change/")

        assert listing.status_code == 200, model
        assert f"/admin/compute/{model}/{record.pk}/change/" in listing.content.decode()
        assert change.status_code == 200, model
    assert (
        "Submitted by" in admin_client.get(f"/admin/compute/job/{job.pk}/change/").content.decode()
    )


def test_the_allocation_list_shows_used_against_budget(admin_client, allocation):
    Allocation.objects.filter(pk=allocation.pk).update(used_gpu_seconds=9000)

    html = admin_client.get("/admin/compute/allocation/").content.decode()

    assert '<td class="field-used_hours">2.5</td>' in html
    assert '<td class="field-budget_hours">100.0</td>' in html


def test_nodes_are_never_created_in_the_admin_and_their_token_cannot_be_edited(
    admin_client, gpu_node
):
    assert admin_client.get("/admin/compute/computenode/add/").status_code == 403
    html = admin_client.get(f"/admin/compute/computenode/{gpu_node.pk}/change/").content.decode()
    assert 'name="token_hash"' not in html and 'name="token_prefix"' not in html


def test_drain_and_undrain_actions(admin_client, gpu_node):
    drained = act(admin_client, "computenode", "drain", [gpu_node])
    gpu_node.refresh_from_db()
    assert gpu_node.draining
    assert "Draining: 1." in drained.content.decode()

    act(admin_client, "computenode", "undrain", [gpu_node])
    gpu_node.refresh_from_db()
    assert not gpu_node.draining


def test_approve_action_creates_the_allocation(admin_client, compute_request):
    response = act(admin_client, "computerequest", "approve", [compute_request])

    compute_request.refresh_from_db()
    assert compute_request.state == ComputeRequest.State.APPROVED
    assert Allocation.objects.get(request=compute_request).budget_gpu_seconds == 40 * 3600
    assert "Approved, with an allocation each: 1." in response.content.decode()


def test_approving_a_request_twice_shows_the_services_refusal(admin_client, compute_request):
    act(admin_client, "computerequest", "approve", [compute_request])

    response = act(admin_client, "computerequest", "approve", [compute_request])

    assert "This request is already approved." in response.content.decode()
    assert Allocation.objects.count() == 1


def test_reject_action_asks_for_a_comment_first(admin_client, compute_request):
    asked = act(admin_client, "computerequest", "reject", [compute_request])
    empty = act(admin_client, "computerequest", "reject", [compute_request], apply="1", comment="")

    assert asked.status_code == 200 and 'name="comment"' in asked.content.decode()
    assert "This field is required." in empty.content.decode()
    compute_request.refresh_from_db()
    assert compute_request.state == ComputeRequest.State.SUBMITTED


def test_reject_action_with_a_comment_rejects_the_request(admin_client, compute_request):
    response = act(
        admin_client,
        "computerequest",
        "reject",
        [compute_request],
        apply="1",
        comment="Use the shared pool's free tier.",
    )

    compute_request.refresh_from_db()
    assert compute_request.state == ComputeRequest.State.REJECTED
    assert compute_request.review_comment == "Use the shared pool's free tier."
    assert "Rejected: 1." in response.content.decode()


def test_cancel_action_cancels_at_no_cost_and_reports_finished_jobs(
    admin_client, member, submit_job
):
    job = submit_job(member)

    act(admin_client, "job", "cancel", [job])
    again = act(admin_client, "job", "cancel", [job])

    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED and not job.charged
    assert "The job is already cancelled." in again.content.decode()


def test_set_priority_action_takes_the_priority_from_an_intermediate_form(
    admin_client, member, submit_job
):
    first, second = submit_job(member), submit_job(member)

    asked = act(admin_client, "job", "set_priority", [first, second])
    out_of_range = act(admin_client, "job", "set_priority", [first], apply="1", priority="101")
    act(admin_client, "job", "set_priority", [first, second], apply="1", priority="25")

    assert 'name="priority"' in asked.content.decode()
    assert "less than or equal to 100" in out_of_range.content.decode()
    assert set(Job.objects.values_list("priority", flat=True)) == {25}


def test_staff_grant_an_allocation_directly_in_hours(admin_client, institution):
    url = reverse("admin:compute_allocation_add")
    fields = {
        "institution": institution.pk,
        "name": "Workshop grant",
        "gpu_class": "",
        "gpu_hours": "12.5",
        "starts_at_0": "2026-12-01",
        "starts_at_1": "00:00:00",
        "ends_at_0": "2026-11-01",
        "ends_at_1": "00:00:00",
    }
    refused = admin_client.post(url, fields)
    assert refused.status_code == 200
    assert "The allocation must end after it starts." in refused.content.decode()
    assert not Allocation.objects.exists()

    response = admin_client.post(url, {**fields, "ends_at_0": "2027-01-31"})
    assert response.status_code == 302
    allocation = Allocation.objects.get()
    assert allocation.budget_gpu_seconds == 45_000
    assert allocation.created_by.is_staff
