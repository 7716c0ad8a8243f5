"""What a peer, or anyone who can reach a node, must not be able to make it do."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.catalog import services
from apps.catalog.models import Artifact, Dataset, Visibility
from apps.federation import client
from apps.federation.feed import public_records
from apps.federation.models import Peer
from apps.federation.services import peer_state_receive, peer_transition
from apps.federation.signatures import peer_keys_pin
from apps.federation.sync import SyncReport, page_apply
from tests.catalog.conftest import sha256_of, store
from tests.catalog.samples import safetensors_bytes

pytestmark = pytest.mark.django_db

NODE = settings.FEDERATION_NODE_URL


@pytest.fixture
def loopback_peer(db):
    return Peer.objects.create(node_id=NODE, state=Peer.State.APPROVED)


def dataset_record(origin_id: str, institution_id: int, *, slug: str, files=()) -> dict:
    return {
        "type": "dataset", "id": origin_id, "op": "upsert",
        "url": f"{NODE}/datasets/{origin_id}/",
        "data": {"institution": str(institution_id), "name": f"Data {origin_id}", "slug": slug,
                 "license": "CC0-1.0", "files": list(files)},
    }  # fmt: skip


def institution_record(institution) -> dict:
    return {
        "type": "institution", "id": str(institution.pk), "op": "upsert",
        "url": f"{NODE}/institutions/{institution.slug}/",
        "data": {"name": institution.name, "slug": institution.slug, "country": "NL"},
    }  # fmt: skip


def test_an_address_on_a_private_network_is_never_called_unless_allowed(settings, staff):
    settings.FEDERATION_ALLOW_PRIVATE_ADDRESSES = False

    for address in ("http://127.0.0.1:9", "http://10.0.0.5:6379", "http://[::1]:80"):
        with pytest.raises(client.NotAPeer, match="not a public address"):
            client.fetch_identity(address)


def test_a_name_that_resolves_elsewhere_after_the_check_is_never_called(settings, monkeypatch):
    """DNS rebinding: the name is public when checked, loopback a moment later; the node
    connects to the address it checked, never to the one the name turned into."""
    settings.FEDERATION_ALLOW_PRIVATE_ADDRESSES = False
    settings.FEDERATION_CONNECT_TIMEOUT_SECONDS = 0.5
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    real = socket.getaddrinfo
    lookups = []

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.example":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        return real("93.184.215.14" if len(lookups) == 1 else "127.0.0.1", port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        with pytest.raises(client.FederationError):
            client.fetch_identity(f"http://rebind.example:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()

    assert hits == []


def test_a_peer_naming_a_private_files_digest_does_not_make_it_readable(
    member, institution, api_client, artifact_dir, loopback_peer
):
    secret = store(member, safetensors_bytes(9), "secret.safetensors")
    services.dataset_create(
        user=member, institution=institution, name="Private data", slug="private-data",
        license="CC0-1.0", visibility=Visibility.PRIVATE,
        files=[("secret.safetensors", secret.sha256)],
    )  # fmt: skip
    claimed = {
        "filename": "x.safetensors", "sha256": secret.sha256, "size": secret.size,
        "format": "safetensors", "url": f"{NODE}/api/v1/artifacts/{secret.sha256}/download",
    }  # fmt: skip
    report = SyncReport()

    page_apply(
        peer=loopback_peer,
        records=[
            institution_record(institution),
            dataset_record("77", institution.pk, slug="bait", files=[claimed]),
        ],
        report=report,
    )

    assert report.rejected == 0 and Dataset.objects.exclude(origin_node="").count() == 1
    assert api_client.get(f"/api/v1/artifacts/{secret.sha256}/").status_code == 404
    assert api_client.get(f"/api/v1/artifacts/{secret.sha256}/download").status_code == 404


def test_a_file_only_a_peer_has_described_is_not_attached_until_read_here(
    member, institution, artifact_dir, loopback_peer
):
    content = safetensors_bytes(5)
    described = {
        "filename": "w.safetensors", "sha256": sha256_of(content), "size": len(content),
        "format": "safetensors", "url": f"{NODE}/api/v1/artifacts/x/download",
    }  # fmt: skip
    page_apply(
        peer=loopback_peer,
        records=[
            institution_record(institution),
            dataset_record("8", institution.pk, slug="w", files=[described]),
        ],
        report=SyncReport(),
    )
    assert not Artifact.objects.get(sha256=sha256_of(content)).is_stored
    model = services.model_create(
        user=member, institution=institution, name="M", slug="m", license="MIT"
    )

    with pytest.raises(ValidationError, match="not fetched yet"):
        services.version_create(
            user=member, model=model, label="1", files=[("w.safetensors", sha256_of(content))]
        )


def test_a_record_the_database_refuses_is_refused_alone(institution, loopback_peer):
    report = SyncReport()

    page_apply(
        peer=loopback_peer,
        records=[
            institution_record(institution),
            dataset_record("1", institution.pk, slug="same"),
            dataset_record("2", institution.pk, slug="same"),  # one slug twice: a unique clash
            dataset_record("3", institution.pk, slug="other"),
        ],
        report=report,
    )

    assert report.rejected == 1
    mirrored = set(Dataset.objects.exclude(origin_node="").values_list("origin_id", flat=True))
    assert mirrored == {"1", "3"}


def test_a_benchmark_on_a_peers_dataset_is_not_fed_as_ours(
    member, institution, loopback_peer, make_benchmark
):
    page_apply(
        peer=loopback_peer,
        records=[institution_record(institution), dataset_record("5", institution.pk, slug="d")],
        report=SyncReport(),
    )
    mirror = Dataset.objects.exclude(origin_node="").get()
    local = make_benchmark(member, institution)
    local.dataset = mirror
    local.save()

    assert not public_records("benchmark").filter(pk=local.pk).exists()


def test_a_key_the_peer_stops_publishing_is_accepted_no_more(db):
    peer = Peer.objects.create(node_id="http://127.0.0.1:9", state=Peer.State.APPROVED)
    keep, drop = "A" * 43, "B" * 43
    peer_keys_pin(
        peer=peer,
        identity={
            "keys": [{"key_id": "k1", "public_key": keep}, {"key_id": "k2", "public_key": drop}]
        },
    )

    peer_keys_pin(peer=peer, identity={"keys": [{"key_id": "k1", "public_key": keep}]})

    keys = {key.key_id: key.retiring_until for key in peer.keys.all()}
    assert keys["k1"] is None
    assert keys["k2"] is not None and keys["k2"] <= timezone.now()


def test_a_peering_the_peer_refused_is_not_approved_here_alone(staff):
    peer = Peer.objects.create(node_id="http://127.0.0.1:9", state=Peer.State.REQUESTED)
    peer_state_receive(peer=peer, state=Peer.State.REFUSED)

    with pytest.raises(ValidationError, match="only a new request"):
        peer_transition(peer=peer, action="approve", actor=staff)
    peer.refresh_from_db()
    assert peer.state == Peer.State.REFUSED


def test_a_peer_cannot_fill_the_node_with_records_that_never_resolve(
    settings, institution, loopback_peer
):
    settings.FEDERATION_MAX_PENDING = 2
    orphans = [dataset_record(str(n), 999_999, slug=f"o{n}") for n in range(5)]
    report = SyncReport()

    page_apply(peer=loopback_peer, records=orphans, report=report)

    assert loopback_peer.pending.count() == 2
    assert report.rejected == 3


def test_a_benchmark_whose_metrics_would_break_its_leaderboard_is_refused(
    institution, loopback_peer, client
):
    records = [institution_record(institution), dataset_record("9", institution.pk, slug="d9")]
    for origin_id, metrics in (("b1", ["accuracy"]), ("b2", [{}]), ("b3", "accuracy")):
        records.append(
            {
                "type": "benchmark", "id": origin_id, "op": "upsert",
                "url": f"{NODE}/benchmarks/{origin_id}/",
                "data": {"institution": str(institution.pk), "dataset": "9",
                         "name": origin_id, "slug": origin_id, "metrics": metrics},
            }
        )  # fmt: skip
    report = SyncReport()

    page_apply(peer=loopback_peer, records=records, report=report)

    assert report.rejected == 3
    assert client.get("/benchmarks/").status_code == 200
