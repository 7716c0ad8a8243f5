"""What a node takes from a peer that ran one of its evaluations: the outcome is stored only
when the peer's signatures hold (usage record and result attestation, by a key pinned for that
peer) and the result matches the files and metrics; anything else is refused whole, with
nothing stored. The peer here signs with a key pinned for it: this node's own, under its id."""

import copy
import hashlib
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils import timezone

from apps.catalog import services as catalog_services
from apps.compute.models import Allocation
from apps.evaluations.models import Result
from apps.federation import attestations, keys, remote_api, remote_jobs
from apps.federation.contract import USAGE_PREDICATE_TYPE
from apps.federation.models import Peer, PeerKey, RemoteJob
from tests.catalog.conftest import store
from tests.catalog.samples import safetensors_bytes
from tests.federation.signing_helpers import KeyPair

pytestmark = pytest.mark.django_db


@pytest.fixture
def peer(settings):
    key = keys.node_key_ensure()
    peer = Peer.objects.create(node_id=settings.FEDERATION_NODE_URL, state=Peer.State.APPROVED)
    PeerKey.objects.create(peer=peer, key_id=key.key_id, public_key=key.public_key)
    return peer


@pytest.fixture
def remote_job(peer, institution, member):
    now = timezone.now()
    weights = store(member, safetensors_bytes(5), "model.safetensors")
    data = store(member, safetensors_bytes(6), "data.safetensors")
    model = catalog_services.model_create(
        user=member, institution=institution, name="Heron", slug="heron", license="MIT"
    )
    version = catalog_services.version_create(
        user=member, model=model, label="1.0", publish=True,
        files=[("model.safetensors", weights.sha256)],
    )  # fmt: skip
    dataset = catalog_services.dataset_create(
        user=member, institution=institution, name="Herons", slug="herons",
        license="CC-BY-4.0", files=[("data.safetensors", data.sha256)],
    )  # fmt: skip
    benchmark = catalog_services.benchmark_create(
        user=member, institution=institution, name="Heron count", slug="heron-count",
        dataset=dataset, task_type="counting", evaluator="onnx",
        evaluator_config={"task": "classification", "data_file": "data.safetensors"},
        metrics=[{"name": "accuracy", "higher_is_better": True}],
    )  # fmt: skip
    grant = Allocation.objects.create(
        institution=institution, name="South for North", budget_gpu_seconds=7200,
        starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=9),
        origin_node=peer.node_id, origin_id="12",
    )  # fmt: skip
    return RemoteJob.objects.create(
        request_id=uuid.uuid4(), peer=peer, allocation=grant, submitter=member,
        institution=institution, model_version=version, benchmark=benchmark,
        state=RemoteJob.State.RUNNING,
    )  # fmt: skip


def _usage(remote_job: RemoteJob, *, gpu_seconds: int = 30, request_id: str = "") -> dict:
    request = request_id or str(remote_job.request_id)
    return attestations.sign_statement(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [
                {
                    "name": f"evaluation/{request}",
                    "digest": {"sha256": hashlib.sha256(request.encode()).hexdigest()},
                }
            ],
            "predicateType": USAGE_PREDICATE_TYPE,
            "predicate": {
                "node": remote_job.peer.node_id,
                "request_id": request,
                "grant": remote_job.allocation.origin_id,
                "gpu_seconds": gpu_seconds,
                "state": "succeeded",
            },
        }
    )


def outcome(remote_job: RemoteJob, *, metrics: dict | None = None) -> dict:
    """What the peer sends when the job succeeded, every part signed as it would sign it."""
    ran = Result.objects.create(
        attempt=1, model_version=remote_job.model_version, benchmark=remote_job.benchmark,
        institution=remote_job.institution, metrics=metrics or {"accuracy": 0.75},
    )  # fmt: skip
    envelope = attestations.sign_statement(attestations.result_statement(ran))
    Result.objects.filter(pk=ran.pk).delete()  # it lives at the peer, not here
    grant = remote_job.allocation
    return {
        "request_id": str(remote_job.request_id),
        "state": "succeeded",
        "reason": "",
        "job": 41,
        "attempt": 1,
        "queue_position": None,
        "log_tail": "accuracy 0.75\n",
        "grant": {
            "id": grant.origin_id,
            "institution": str(grant.institution_id),
            "name": grant.name,
            "gpu_class": "",
            "budget_gpu_seconds": grant.budget_gpu_seconds,
            "used_gpu_seconds": 30,
            "starts_at": grant.starts_at.isoformat(),
            "ends_at": grant.ends_at.isoformat(),
        },
        "usage": _usage(remote_job),
        "result": {
            "id": str(ran.pk),
            "url": f"{remote_job.peer.node_id}/results/{ran.pk}/",
            "attempt": 1,
            "metrics": {"accuracy": 0.75},
            "provenance": {"isolation": {"level": "full"}},
            "isolation": "full",
            "gpu_seconds": 30.0,
            "started_at": None,
            "finished_at": None,
            "ran_by_institution": "South Institute",
            "attestation": envelope,
        },
    }


def apply(remote_job: RemoteJob, data: dict) -> RemoteJob:
    return remote_jobs.remote_job_apply(remote_job_id=remote_job.pk, data=data)


def assert_nothing_stored(remote_job: RemoteJob) -> None:
    remote_job.refresh_from_db()
    assert remote_job.state == RemoteJob.State.RUNNING
    assert remote_job.result_id is None and remote_job.gpu_seconds == 0
    assert not Result.objects.exists()
    assert Allocation.objects.get(pk=remote_job.allocation_id).used_gpu_seconds == 0


def test_a_signed_outcome_is_stored_once_with_its_verified_result(remote_job):
    data = outcome(remote_job)

    taken = apply(remote_job, data)

    assert taken.state == RemoteJob.State.SUCCEEDED and taken.gpu_seconds == 30
    result = Result.objects.get()
    assert result.origin_node == remote_job.peer.node_id
    assert result.origin_id == data["result"]["id"]
    assert result.attestation_status == "verified" and result.ran_on_node == result.origin_node
    assert result.model_version == remote_job.model_version
    assert Allocation.objects.get(pk=remote_job.allocation_id).used_gpu_seconds == 30
    # Delivered again (push and pull crossed): nothing changes.
    again = apply(remote_job, outcome(remote_job))
    assert again.result_id == result.pk and Result.objects.count() == 1


def test_metrics_that_differ_from_the_signed_ones_are_refused(remote_job):
    data = outcome(remote_job)
    data["result"]["metrics"] = {"accuracy": 0.99}

    with pytest.raises(ValidationError, match="attestation does not hold"):
        apply(remote_job, data)
    assert_nothing_stored(remote_job)


def test_an_attestation_whose_payload_was_changed_is_refused(remote_job):
    data = outcome(remote_job)
    forged = outcome(remote_job, metrics={"accuracy": 0.99})["result"]["attestation"]
    tampered = copy.deepcopy(data["result"]["attestation"])
    tampered["payload"] = forged["payload"]  # another statement under the first signature
    data["result"]["attestation"] = tampered
    data["result"]["metrics"] = {"accuracy": 0.99}

    with pytest.raises(ValidationError, match="attestation does not hold"):
        apply(remote_job, data)
    assert_nothing_stored(remote_job)


def test_a_result_signed_by_a_key_not_pinned_for_the_peer_is_refused(remote_job):
    data = outcome(remote_job)
    PeerKey.objects.filter(peer=remote_job.peer).delete()
    other = KeyPair()
    PeerKey.objects.create(peer=remote_job.peer, key_id=other.key_id, public_key=other.public_text)

    with pytest.raises(ValidationError):
        apply(remote_job, data)
    assert_nothing_stored(remote_job)


@pytest.mark.parametrize("change", ["figure", "other_request", "missing"])
def test_a_usage_record_that_does_not_hold_is_refused(remote_job, change):
    data = outcome(remote_job)
    if change == "figure":
        forged = _usage(remote_job, gpu_seconds=1)
        data["usage"] = {**data["usage"], "payload": forged["payload"]}
    elif change == "other_request":
        data["usage"] = _usage(remote_job, request_id=str(uuid.uuid4()))
    else:
        data["usage"] = None

    with pytest.raises(ValidationError, match="usage record"):
        apply(remote_job, data)
    assert_nothing_stored(remote_job)


def test_an_outcome_naming_another_grant_or_evaluation_is_refused(remote_job):
    other_grant = outcome(remote_job)
    other_grant["grant"]["id"] = "13"
    other_request = outcome(remote_job)
    other_request["request_id"] = str(uuid.uuid4())

    for data in (other_grant, other_request):
        with pytest.raises(ValidationError):
            apply(remote_job, data)
    assert_nothing_stored(remote_job)


def test_a_succeeded_outcome_without_its_result_is_refused(remote_job):
    data = outcome(remote_job)
    data["result"] = None

    with pytest.raises(ValidationError, match="comes with its result"):
        apply(remote_job, data)
    assert_nothing_stored(remote_job)


def test_a_model_file_leaves_only_for_the_peer_running_an_active_job_of_it(remote_job):
    sha256 = remote_job.model_version.files.get().artifact.sha256
    stranger = Peer.objects.create(node_id="http://127.0.0.1:8", state=Peer.State.APPROVED)

    artifact, filename = remote_jobs.requested_file(
        peer=remote_job.peer, request_id=str(remote_job.request_id), sha256=sha256
    )
    assert artifact.sha256 == sha256 and filename == "model.safetensors"

    with pytest.raises(Http404):
        remote_jobs.requested_file(
            peer=stranger, request_id=str(remote_job.request_id), sha256=sha256
        )
    with pytest.raises(Http404):
        remote_jobs.requested_file(
            peer=remote_job.peer, request_id=str(remote_job.request_id), sha256="0" * 64
        )
    RemoteJob.objects.filter(pk=remote_job.pk).update(state=RemoteJob.State.SUCCEEDED)
    with pytest.raises(Http404):
        remote_jobs.requested_file(
            peer=remote_job.peer, request_id=str(remote_job.request_id), sha256=sha256
        )


def test_a_result_already_stored_for_another_job_is_refused(remote_job):
    data = outcome(remote_job)
    apply(remote_job, data)
    second = RemoteJob.objects.create(
        request_id=uuid.uuid4(), peer=remote_job.peer, allocation=remote_job.allocation,
        submitter=remote_job.submitter, institution=remote_job.institution,
        model_version=remote_job.model_version, benchmark=remote_job.benchmark,
        state=RemoteJob.State.RUNNING,
    )  # fmt: skip
    replayed = {**data, "request_id": str(second.request_id), "usage": _usage(second)}

    with pytest.raises(ValidationError, match="already stored here"):
        apply(second, replayed)
    second.refresh_from_db()
    assert second.state == RemoteJob.State.RUNNING and Result.objects.count() == 1


def test_what_the_result_says_of_itself_comes_from_its_signed_statement(remote_job):
    data = outcome(remote_job)
    data["result"]["gpu_seconds"] = 999_999.0
    data["result"]["provenance"] = {"isolation": {"level": "full", "sandbox": "claimed"}}

    apply(remote_job, data)

    result = Result.objects.get()
    assert result.gpu_seconds == 0  # what the attestation says (the signed result had none)
    assert result.provenance["isolation"].get("sandbox") is None


def test_a_usage_record_signed_by_a_retired_key_is_refused(remote_job):
    data = outcome(remote_job)
    PeerKey.objects.filter(peer=remote_job.peer).update(
        retiring_until=timezone.now() - timedelta(hours=1)
    )

    with pytest.raises(ValidationError, match="usage record"):
        apply(remote_job, data)
    assert_nothing_stored(remote_job)


def test_a_revoked_peering_ends_our_jobs_there(remote_job, django_capture_on_commit_callbacks):
    peer = remote_job.peer
    with django_capture_on_commit_callbacks(execute=True):
        peer.state = Peer.State.REVOKED
        peer.save()

    remote_job.refresh_from_db()
    assert remote_job.state == RemoteJob.State.FAILED and "revoked" in remote_job.reason
    # What the peer might still send is not taken: it is no longer asked, nor heard.
    assert not remote_job.is_active


def test_a_researcher_reads_the_peers_estimate_for_a_job_waiting_there(remote_job):
    start = timezone.now() + timedelta(minutes=20)
    explanation = "Behind 2 jobs submitted earlier. Estimated start in ~20 min, ..."
    waiting = remote_api._detail(
        remote_job,
        {"queue_estimated_start": start.isoformat(), "queue_explanation": explanation},
    )
    assert waiting["queue_estimated_start"] == start.isoformat().replace("+00:00", "Z")
    assert waiting["queue_explanation"] == explanation
    # A peer that gives no estimate, one that says nonsense, and one that could not be asked.
    for answer in ({}, {"queue_estimated_start": "soon", "queue_explanation": "x"}, None):
        body = remote_api._detail(remote_job, answer)
        assert body["queue_estimated_start"] is None and body["queue_explanation"] is None
