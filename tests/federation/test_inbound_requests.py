"""A peer's request to run an evaluation here: each check that refuses it says why and leaves
nothing behind; an accepted one is taken once. (The signed exchange itself, and the run, are
covered between real nodes in test_remote_evaluation.py.)"""

import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils import timezone
from rest_framework.exceptions import ValidationError as RequestInvalid

from apps.accounts.models import Institution
from apps.catalog import selectors as catalog_selectors
from apps.catalog import services as catalog_services
from apps.catalog.models import Artifact, ResearchModel, Visibility
from apps.compute import selectors as compute_selectors
from apps.compute import services as compute_services
from apps.compute.models import Allocation
from apps.evaluations.models import Result
from apps.federation import inbound_jobs
from apps.federation.models import InboundJob, Peer
from tests.catalog.conftest import store
from tests.catalog.samples import safetensors_bytes
from tests.factories import isolated

pytestmark = pytest.mark.django_db

PEER = "http://127.0.0.1:7"


@pytest.fixture
def setting(member, institution_admin, institution, settings):
    """Our public benchmark, a fully isolating node, the peer's institution (mirrored here)
    and our grant to it."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    peer = Peer.objects.create(node_id=PEER, state=Peer.State.APPROVED)
    theirs = Institution.objects.create(
        name="South", slug="south-peer", country="NZ", origin_node=PEER, origin_id="5"
    )
    data = store(member, safetensors_bytes(8), "data.safetensors")
    dataset = catalog_services.dataset_create(
        user=member, institution=institution, name="Herons", slug="herons",
        license="CC-BY-4.0", files=[("data.safetensors", data.sha256)],
    )  # fmt: skip
    benchmark = catalog_services.benchmark_create(
        user=member, institution=institution, name="Heron count", slug="heron-count",
        dataset=dataset, task_type="counting", evaluator="smoke",
        metrics=[{"name": "files", "higher_is_better": True}],
    )  # fmt: skip
    node, _token = compute_services.node_create(
        user=institution_admin, institution=institution, name="isolated"
    )
    compute_services.node_register(node=node, gpus=[], cpu_slots=1, host_info=isolated())
    now = timezone.now()
    grant = Allocation.objects.create(
        institution=theirs, name="For South", budget_gpu_seconds=3600,
        starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=9),
    )  # fmt: skip
    return {"peer": peer, "benchmark": benchmark, "grant": grant, "institution": theirs}


def request(setting, **changes) -> dict:
    body = {
        "request_id": str(uuid.uuid4()),
        "grant": setting["grant"].pk,
        "institution": "5",
        "requested_by": "Kiri Walker (kiri)",
        "model": {
            "id": "31",
            "institution": "5",
            "name": "Kestrel encoder",
            "slug": "kestrel-encoder",
            "license": "MIT",
            "public": False,
            "version": {
                "label": "1.0",
                "published_at": timezone.now().isoformat(),
                "files": [
                    {"filename": "model.safetensors", "sha256": "a" * 64, "size": 64,
                     "format": "safetensors"}
                ],
            },
        },
        "benchmark": {"node": "http://127.0.0.1:8001", "id": str(setting["benchmark"].pk)},
        "reproduction_of": None,
    }  # fmt: skip
    body.update(changes)
    return body


def receive(setting, body: dict):
    return inbound_jobs.evaluation_receive(peer=setting["peer"], data=body)


def assert_nothing_kept() -> None:
    assert not InboundJob.objects.exists()
    assert not ResearchModel.objects.filter(origin_node=PEER).exists()


@pytest.fixture(autouse=True)
def node_url(settings):
    settings.FEDERATION_NODE_URL = "http://127.0.0.1:8001"


def test_an_accepted_request_is_taken_once_and_its_model_stays_private(setting):
    body = request(setting)

    inbound, created = receive(setting, body)
    again, created_again = receive(setting, body)

    assert created and not created_again and again.pk == inbound.pk
    assert InboundJob.objects.count() == 1
    assert inbound.state == InboundJob.State.PREPARING
    model = inbound.model_version.model
    assert model.origin_node == PEER and model.visibility == Visibility.PRIVATE


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"institution": "6"}, "institution", "does not know your institution"),
        ({"grant": 999_999}, "grant", "made no grant"),
        ({"benchmark": {"node": "http://127.0.0.1:8001", "id": "999999"}}, "benchmark", "No such"),
        ({"benchmark": {"node": "http://elsewhere.example", "id": "1"}}, "benchmark", "No such"),
    ],
)
def test_a_request_this_node_cannot_take_is_refused_with_its_reason(setting, changes, field, words):
    with pytest.raises(ValidationError) as refused:
        receive(setting, request(setting, **changes))

    assert words in " ".join(refused.value.message_dict[field])
    assert_nothing_kept()


def test_a_grant_past_its_window_is_refused(setting):
    Allocation.objects.filter(pk=setting["grant"].pk).update(
        ends_at=timezone.now() - timedelta(hours=1)
    )
    with pytest.raises(ValidationError, match="runs from"):
        receive(setting, request(setting))
    assert_nothing_kept()


def test_files_larger_than_this_node_accepts_are_refused(setting, settings):
    body = request(setting)
    body["model"]["version"]["files"][0]["size"] = settings.ARTIFACT_MAX_BYTES + 1

    with pytest.raises(RequestInvalid):
        receive(setting, body)
    assert_nothing_kept()


def test_a_reproduction_of_a_result_of_another_model_is_refused(setting, member, institution):
    weights = store(member, safetensors_bytes(9), "model.safetensors")
    rival = catalog_services.model_create(
        user=member, institution=institution, name="Rival", slug="rival", license="MIT"
    )
    version = catalog_services.version_create(
        user=member, model=rival, label="1.0", publish=True,
        files=[("model.safetensors", weights.sha256)],
    )  # fmt: skip
    original = Result.objects.create(
        attempt=1, model_version=version, benchmark=setting["benchmark"],
        institution=institution, metrics={"files": 2},
    )  # fmt: skip
    body = request(
        setting, reproduction_of={"node": "http://127.0.0.1:8001", "id": str(original.pk)}
    )

    with pytest.raises(ValidationError, match="No such public result"):
        receive(setting, body)
    assert_nothing_kept()


def test_naming_the_digest_of_our_private_file_never_makes_it_readable(setting, member):
    ours = store(member, safetensors_bytes(10), "secret.safetensors")
    catalog_services.dataset_create(
        user=member, institution=setting["benchmark"].institution, name="Secret",
        slug="secret", license="CC-BY-4.0", visibility=Visibility.PRIVATE,
        files=[("secret.safetensors", ours.sha256)],
    )  # fmt: skip
    body = request(setting)
    body["model"]["public"] = True
    body["model"]["version"]["files"][0].update(sha256=ours.sha256, size=ours.size)

    inbound, _ = receive(setting, body)

    assert inbound.model_version.model.visibility == Visibility.PUBLIC
    assert Artifact.objects.get(sha256=ours.sha256).origin_url == ""
    with pytest.raises(Http404):
        catalog_selectors.artifact_get(user=None, sha256=ours.sha256)


def test_a_revoked_peering_stops_the_peers_jobs_here_at_no_cost(
    setting, django_capture_on_commit_callbacks
):
    preparing, _ = receive(setting, request(setting))
    queued, _ = receive(setting, request(setting))
    queued.model_version.files.update(artifact=store_artifact(setting))
    with django_capture_on_commit_callbacks(execute=False):
        queued = inbound_jobs.evaluation_prepare(inbound_id=queued.pk)
    assert queued.job is not None and queued.job.is_active

    with django_capture_on_commit_callbacks(execute=True):
        Peer.objects.filter(pk=setting["peer"].pk).update(state=Peer.State.REVOKED)
        peer = Peer.objects.get(pk=setting["peer"].pk)
        peer.save()

    preparing.refresh_from_db()
    queued.job.refresh_from_db()
    assert preparing.state == InboundJob.State.CANCELLED
    assert queued.job.state == "cancelled" and not queued.job.charged
    assert "revoked" in queued.job.failure_reason


def store_artifact(setting) -> Artifact:
    """The model's bytes, here already and proven (as after the peer sent them)."""
    artifact = store(setting["benchmark"].created_by, safetensors_bytes(11), "model.safetensors")
    Artifact.objects.filter(pk=artifact.pk).update(origin_url=f"{PEER}/files/model")
    return Artifact.objects.get(pk=artifact.pk)


def test_a_peer_institution_is_an_account_of_fair_share_here(setting, institution):
    now = timezone.now()
    Allocation.objects.create(
        institution=institution, name="Ours", budget_gpu_seconds=3600,
        starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=9),
    )  # fmt: skip

    shares = compute_selectors.fair_shares(now=now)

    # Equal grants and no use yet: the peer's institution weighs like ours.
    assert shares[setting["institution"].pk] == pytest.approx(shares[institution.pk])


def test_a_peer_hears_where_its_queued_job_stands_and_when_it_may_start(
    setting, django_capture_on_commit_callbacks
):
    queued, _ = receive(setting, request(setting))
    queued.model_version.files.update(artifact=store_artifact(setting))
    with django_capture_on_commit_callbacks(execute=False):
        queued = inbound_jobs.evaluation_prepare(inbound_id=queued.pk)

    status = inbound_jobs.evaluation_status(queued)

    assert status["queue_position"] == 1
    assert status["queue_estimated_start"] is not None
    assert status["queue_explanation"].startswith("First in line.")
