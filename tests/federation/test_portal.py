"""Federation in the portal and the API: mirrored records beside local ones, marked and
filterable, read-only; the staff pages that manage peers and keys."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from apps.catalog import services
from apps.catalog.models import Artifact, Paper, Visibility
from apps.federation.models import Peer
from tests.catalog.conftest import sha256_of, store
from tests.catalog.samples import safetensors_bytes
from tests.federation.test_feed import apply_feed

pytestmark = pytest.mark.django_db


@pytest.fixture
def mirrored_paper(member, institution):
    """A paper of this node, and its mirror as a peer (this node's own id) would hold it."""
    local = services.paper_create(user=member, institution=institution, title="Tidal energy maps")
    peer = Peer.objects.create(node_id=settings.FEDERATION_NODE_URL, state=Peer.State.APPROVED)
    apply_feed(peer)
    return local, Paper.objects.exclude(origin_node="").get(origin_id=str(local.pk))


def test_a_mirrored_record_is_marked_with_its_origin_in_lists_and_search(client, mirrored_paper):
    _local, mirror = mirrored_paper
    origin = settings.FEDERATION_NODE_URL

    listed = client.get("/papers/").content.decode()
    found = client.get("/search/", {"q": "tidal"}).content.decode()

    assert listed.count("Tidal energy maps") == 2
    assert f"from {origin}" in listed
    assert f'href="{mirror.origin_url}"' in listed
    assert f"from {origin}" in found


def test_the_origin_filter_keeps_local_or_mirrored_records(client, api_client, mirrored_paper):
    local, mirror = mirrored_paper

    only_local = client.get("/papers/", {"origin": "local"}).content.decode()
    only_peers = api_client.get("/api/v1/papers/", {"origin": "peers"}).json()
    by_node = api_client.get("/api/v1/papers/", {"origin": settings.FEDERATION_NODE_URL}).json()
    everything = api_client.get("/api/v1/papers/").json()
    search = api_client.get("/api/v1/search/", {"q": "tidal", "origin": "local"}).json()

    assert only_local.count("Tidal energy maps") == 1 and "from http" not in only_local
    assert [p["id"] for p in only_peers["results"]] == [mirror.pk]
    assert only_peers["results"][0]["origin"]["node"] == settings.FEDERATION_NODE_URL
    assert only_peers["results"][0]["origin"]["id"] == str(local.pk)
    assert [p["id"] for p in by_node["results"]] == [mirror.pk]
    assert {p["origin"] is None for p in everything["results"] if p["id"] == local.pk} == {True}
    assert [hit["id"] for hit in search["results"]] == [local.pk]


def test_nobody_edits_a_mirrored_record_here_not_even_staff(staff, api_client, mirrored_paper):
    _local, mirror = mirrored_paper
    api_client.force_authenticate(staff)

    response = api_client.patch(f"/api/v1/papers/{mirror.pk}/", {"title": "Changed"})
    comment = api_client.post(
        "/api/v1/discussions/", {"paper": mirror.pk, "body": "Nice"}, format="json"
    )

    assert response.status_code == 403
    assert "can be changed only there" in response.json()["error"]["message"]
    mirror.refresh_from_db()
    assert mirror.title == "Tidal energy maps"
    assert comment.status_code in (201, 400)  # discussions stay local; never a 500


def test_nobody_publishes_for_a_mirrored_institution(staff, api_client, mirrored_paper):
    _local, mirror = mirrored_paper
    api_client.force_authenticate(staff)

    response = api_client.post(
        "/api/v1/papers/",
        {"institution": mirror.institution.slug, "title": "Posing as a peer"},
        format="json",
    )

    assert response.status_code in (400, 403)
    assert not Paper.objects.filter(title="Posing as a peer").exists()


@pytest.fixture
def pending_peer(db):
    """A node that asked to peer, unreachable (breaker open): telling it costs no network."""
    now = timezone.now()
    return Peer.objects.create(
        node_id="http://127.0.0.1:9",
        name="Harbour node",
        state=Peer.State.PENDING,
        consecutive_failures=5,
        unreachable_since=now,
        next_probe_at=now + timedelta(hours=1),
    )


def test_peers_pages_are_for_staff_only(member, pending_peer):
    client = Client()
    client.force_login(member)

    for path in ("/federation/peers/", f"/federation/peers/{pending_peer.pk}/"):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    response = client.post(f"/federation/peers/{pending_peer.pk}/approve/")
    assert response.status_code == 302
    pending_peer.refresh_from_db()
    assert pending_peer.state == Peer.State.PENDING


def test_staff_approve_a_peering_in_the_portal_and_the_history_says_who(staff, pending_peer):
    client = Client()
    client.force_login(staff)
    detail = client.get(f"/federation/peers/{pending_peer.pk}/").content.decode()
    assert "Approve" in detail and "Refuse" in detail and "Suspend" not in detail

    client.post(f"/federation/peers/{pending_peer.pk}/approve/", {"note": "Known partner"})

    pending_peer.refresh_from_db()
    assert pending_peer.state == Peer.State.APPROVED
    event = pending_peer.events.first()
    assert (event.from_state, event.to_state, event.actor, event.note) == (
        "pending", "approved", staff, "Known partner",
    )  # fmt: skip
    page = client.get(f"/federation/peers/{pending_peer.pk}/").content.decode()
    assert "staffer" in page and "The peer was not told" in page


def test_staff_rotate_the_key_and_the_old_one_is_published_as_retiring(staff, client):
    client.force_login(staff)
    before = client.get("/.well-known/research-exchange").json()["keys"]

    client.post("/federation/keys/rotate/")

    after = client.get("/.well-known/research-exchange").json()
    statuses = {key["key_id"]: key["status"] for key in after["keys"]}
    assert statuses[before[0]["key_id"]] == "retiring"
    assert list(statuses.values()).count("active") == 1
    assert after["node_id"] == settings.FEDERATION_NODE_URL
    assert {"catalogue-feed", "oai-pmh"} <= set(after["capabilities"])


def test_the_identity_document_is_public_and_cacheable(client, institution):
    response = client.get("/.well-known/research-exchange")

    assert response.status_code == 200
    assert "max-age=300" in response["Cache-Control"]
    document = response.json()
    assert document["protocol_version"] == "1"
    assert document["institutions"][0]["slug"] == institution.slug
    key = document["keys"][0]
    assert key["algorithm"] == "ed25519" and key["status"] == "active"


def test_a_private_record_never_reaches_the_mirror(member, institution):
    services.paper_create(
        user=member, institution=institution, title="Unpublished", visibility=Visibility.PRIVATE
    )
    peer = Peer.objects.create(node_id=settings.FEDERATION_NODE_URL, state=Peer.State.APPROVED)

    apply_feed(peer)

    assert not Paper.objects.exclude(origin_node="").exists()


def test_an_upload_of_bytes_known_from_a_peer_stores_them_here(member, artifact_dir):
    content = safetensors_bytes(12)
    known = Artifact.objects.create(
        sha256=sha256_of(content),
        size=len(content),
        format="pickle",  # what a peer claimed; our own reading decides
        unsafe=True,
        storage_name="",
        origin_url="http://127.0.0.1:9/api/v1/artifacts/x/download",
    )

    stored = store(member, content, "weights.safetensors")

    assert stored.pk == known.pk
    assert stored.is_stored and (artifact_dir / stored.storage_name).read_bytes() == content
    assert (stored.format, stored.unsafe) == ("safetensors", False)
