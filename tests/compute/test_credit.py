"""Credit: the GPU time institutions gave each other, here and across peer nodes."""

import re
import uuid
from datetime import timedelta
from html import unescape

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from apps.compute import selectors, services
from apps.compute.models import Allocation, Job
from apps.federation import selectors as federation_selectors
from apps.federation.models import Peer, RemoteJob
from tests.factories import InstitutionFactory

PEER = "https://kestrel-bay.example"
HOUR = 3600


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return unescape(response.content.decode())


def section(html: str, heading_id: str) -> str:
    match = re.search(rf'<section aria-labelledby="{heading_id}">(.*?)</section>', html, re.S)
    assert match, heading_id
    return match.group(1)


def cells(html: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in rows
        if "<td" in row
    ]


@pytest.fixture
def their_node(staff, other_institution):
    node, _secret = services.node_create(user=staff, institution=other_institution, name="rh-01")
    return node


@pytest.fixture
def peer_institution(db):
    """An institution of a peer node, mirrored here."""
    return InstitutionFactory(name="Kestrel Bay Lab", origin_node=PEER, origin_id="3")


@pytest.fixture
def ran(member, model_version, benchmark):
    """ran(institution, node, gpu_seconds, charged=True, **fields): a finished job of
    `institution` that ran on `node`."""

    def _ran(institution, node, gpu_seconds, *, charged=True, **fields) -> Job:
        return Job.objects.create(
            model_version=model_version,
            benchmark=benchmark,
            submitter=member,
            institution=institution,
            gpu_count=1,
            gpu_memory_gb=40,
            time_limit_minutes=600,
            state=Job.State.SUCCEEDED,
            node=node,
            gpu_seconds=gpu_seconds,
            charged=charged,
            finished_at=timezone.now(),
            **fields,
        )

    return _ran


@pytest.fixture
def remote_job(member, institution, model_version, benchmark):
    """remote_job(gpu_seconds): an evaluation a peer ran for the institution, as it charged it."""
    peer = Peer.objects.create(node_id=PEER, name="Kestrel Bay", state=Peer.State.APPROVED)
    now = timezone.now()
    grant = Allocation.objects.create(
        institution=institution,
        name="Kestrel Bay grant",
        budget_gpu_seconds=100 * HOUR,
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=30),
        origin_node=PEER,
        origin_id="grant-1",
    )

    def _remote(gpu_seconds: int) -> RemoteJob:
        return RemoteJob.objects.create(
            request_id=uuid.uuid4(),
            peer=peer,
            allocation=grant,
            submitter=member,
            institution=institution,
            model_version=model_version,
            benchmark=benchmark,
            state=RemoteJob.State.SUCCEEDED,
            gpu_seconds=gpu_seconds,
        )

    return _remote


def test_jobs_run_for_another_institution_credit_the_nodes_owner_and_charge_the_payer(
    member, institution, other_institution, gpu_node, their_node, ran
):
    ran(other_institution, gpu_node, 2 * HOUR)
    ran(other_institution, gpu_node, HOUR // 2)
    ran(institution, their_node, 900)
    ran(institution, gpu_node, 10 * HOUR)  # its own node: not an exchange
    ran(other_institution, gpu_node, 5 * HOUR, charged=False)  # cancelled by an admin
    ran(other_institution, None, 5 * HOUR)  # its node was removed since: nobody to credit

    ours = selectors.institution_credit(user=member, institution=institution)
    theirs = selectors.institution_credit(user=member, institution=other_institution)

    assert ours is not None and theirs is not None
    assert (ours.contributed_local_gpu_seconds, ours.consumed_local_gpu_seconds) == (9000, 900)
    assert (theirs.contributed_local_gpu_seconds, theirs.consumed_local_gpu_seconds) == (900, 9000)
    assert ours.contributed_peers_gpu_seconds == ours.consumed_peers_gpu_seconds == 0
    assert ours.contributed_local_gpu_hours == 2.5


def test_jobs_a_peer_submitted_for_its_institution_count_as_contributed_to_peers(
    member, institution, peer_institution, gpu_node, ran
):
    ran(peer_institution, gpu_node, 3 * HOUR, from_peer=True)

    ours = selectors.institution_credit(user=member, institution=institution)
    theirs = selectors.institution_credit(user=member, institution=peer_institution)

    assert ours is not None and theirs is not None
    assert (ours.contributed_local_gpu_seconds, ours.contributed_peers_gpu_seconds) == (0, 3 * HOUR)
    assert theirs.consumed_local_gpu_seconds == 3 * HOUR


def test_remote_jobs_count_as_consumed_at_peers_as_the_peers_charged_them(
    member, institution, other_institution, remote_job
):
    remote_job(2 * HOUR)
    remote_job(HOUR)
    remote_job(0)  # refused, or still running at the peer

    assert federation_selectors.remote_gpu_seconds_by_institution() == {institution.pk: 3 * HOUR}
    assert federation_selectors.remote_gpu_seconds(institution=other_institution) == 0
    summary = selectors.credit_summary(
        user=member, consumed_peers=federation_selectors.remote_gpu_seconds_by_institution()
    )
    assert [(c.institution, c.consumed_peers_gpu_hours) for c in summary] == [(institution, 3.0)]


def test_the_summary_lists_every_institution_in_an_exchange_in_two_queries(
    member, institution, other_institution, peer_institution, gpu_node, their_node, ran,
    django_assert_num_queries,
):  # fmt: skip
    ran(other_institution, gpu_node, HOUR)
    ran(peer_institution, their_node, 2 * HOUR, from_peer=True)

    with django_assert_num_queries(2):
        summary = selectors.credit_summary(user=member, consumed_peers={institution.pk: HOUR})

    assert [
        (
            credit.institution.name,
            credit.contributed_local_gpu_seconds,
            credit.contributed_peers_gpu_seconds,
            credit.consumed_local_gpu_seconds,
            credit.consumed_peers_gpu_seconds,
        )
        for credit in summary
    ] == [
        ("Kestrel Bay Lab", 0, 0, 2 * HOUR, 0),
        ("Northbridge University", HOUR, 0, 0, HOUR),
        ("Rheinau Institute", 0, 2 * HOUR, HOUR, 0),
    ]


def test_anonymous_visitors_see_no_credit(institution, other_institution, gpu_node, ran):
    ran(other_institution, gpu_node, HOUR)
    anonymous = AnonymousUser()
    assert selectors.institution_credit(user=anonymous, institution=institution) is None
    assert selectors.credit_summary(user=anonymous) == []


def test_an_institutions_page_shows_its_credit_in_gpu_hours(
    client, outsider, institution, other_institution, peer_institution, gpu_node, their_node,
    ran, remote_job,
):  # fmt: skip
    ran(other_institution, gpu_node, 5400)
    ran(peer_institution, gpu_node, 720, from_peer=True)
    ran(institution, their_node, 360)
    remote_job(2 * HOUR)
    url = f"/institutions/{institution.slug}/"

    assert "credit-heading" not in page(client.get(url))
    client.force_login(outsider)
    credit = section(page(client.get(url)), "credit-heading")

    assert "Contributed to institutions here</dt><dd>1.5 GPU-hours" in credit
    assert "Contributed to peers' institutions</dt><dd>0.2 GPU-hours" in credit
    assert "Consumed from institutions here</dt><dd>0.1 GPU-hours" in credit
    assert "Consumed on peers' pools</dt><dd>2.0 GPU-hours" in credit
    quiet = InstitutionFactory(name="Quiet Institute", slug="quiet")
    assert "has not yet run jobs" in section(
        page(client.get(f"/institutions/{quiet.slug}/")), "credit-heading"
    )


def test_the_queue_page_tables_each_institutions_credit(
    client, member, institution, other_institution, peer_institution, gpu_node, ran, remote_job
):
    ran(other_institution, gpu_node, 5400)
    ran(peer_institution, gpu_node, 720, from_peer=True)
    remote_job(2 * HOUR)
    client.force_login(member)

    credit = section(page(client.get("/compute/")), "credit-heading")

    assert cells(credit) == [
        [f"Kestrel Bay Lab from {PEER}", "0.0", "0.0", "0.2", "0.0"],
        ["Northbridge University", "1.5", "0.2", "0.0", "2.0"],
        ["Rheinau Institute", "0.0", "0.0", "1.5", "0.0"],
    ]
