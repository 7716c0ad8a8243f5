"""The outbound client against a stand-in peer over real HTTP on 127.0.0.1: only approved peers'
base URLs, timeouts, the size limit, retries with back-off, the circuit breaker, signed answers,
and the identity document."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.federation import client
from apps.federation.models import Peer, PeerKey
from tests.federation.signing_helpers import KeyPair, PeerServer, make_peer, peer_server

FEED = "/federation/v1/feed"


@pytest.fixture(autouse=True)
def node(settings, tmp_path, db):
    settings.FEDERATION_NODE_URL = "http://node.test"
    settings.FEDERATION_KEY_DIR = tmp_path / "keys"
    settings.FEDERATION_PRIVATE_KEY = ""
    settings.FEDERATION_CONNECT_TIMEOUT_SECONDS = 0.5
    settings.FEDERATION_READ_TIMEOUT_SECONDS = 0.3
    settings.FEDERATION_RETRIES = 2
    settings.FEDERATION_BACKOFF_SECONDS = 0.01
    settings.FEDERATION_FAILURE_THRESHOLD = 3
    settings.FEDERATION_PROBE_INTERVAL_SECONDS = 60
    settings.FEDERATION_MAX_RESPONSE_BYTES = 10_000


@pytest.fixture
def server():
    with peer_server() as running:
        yield running


@pytest.fixture
def peer(server: PeerServer) -> Peer:
    return make_peer(server.url, server.key)


def test_a_signed_answer_of_an_approved_peer_is_returned(server, peer):
    server.payload = {"records": [], "has_more": False}
    assert client.peer_call(peer, "GET", FEED, params={"cursor": ""}) == server.payload
    (seen,) = server.requests_to(FEED)
    assert "Signature" in seen.headers and "Content-Digest" in seen.headers


@pytest.mark.parametrize("state", [Peer.State.PENDING, Peer.State.SUSPENDED, Peer.State.REVOKED])
def test_a_peer_that_is_not_approved_is_not_called(server, peer, state):
    peer.state = state
    with pytest.raises(client.NotAPeer, match="not an approved peer"):
        client.peer_call(peer, "GET", FEED)
    assert client.peer_call(peer, "GET", FEED, allow_unapproved=True) == {"ok": True}
    assert len(server.requests_to(FEED)) == 1


def test_only_the_peers_base_url_is_called(server, peer):
    for elsewhere in ("http://elsewhere.test/federation/v1/feed", "http://127.0.0.1:1/x"):
        with pytest.raises(client.NotAPeer, match="not under the base URL"):
            client.peer_call(peer, "GET", elsewhere)
    assert server.seen == []


def test_a_redirect_to_another_origin_is_not_followed(server, peer):
    with peer_server() as other:
        server.behaviours = ["redirect"]
        server.redirect_to = other.url + FEED
        with pytest.raises(client.InvalidPeerAnswer, match="another origin"):
            client.peer_call(peer, "GET", FEED)
        assert other.seen == []


def test_a_redirect_within_the_peer_is_followed_and_signed_again(server, peer):
    server.behaviours = ["redirect", "ok"]
    server.redirect_to = server.url + FEED + "?page=2"
    assert client.peer_call(peer, "GET", FEED) == {"ok": True}
    first, second = server.requests_to(FEED)
    assert second.path.endswith("?page=2")
    assert first.headers["Signature"] != second.headers["Signature"]


def test_a_stalled_peer_times_out(server, peer, settings):
    settings.FEDERATION_RETRIES = 0
    server.behaviours = ["stall"]
    started = time.monotonic()
    with pytest.raises(client.PeerUnreachable, match="timed out"):
        client.peer_call(peer, "GET", FEED)
    assert time.monotonic() - started < 0.9


@pytest.mark.parametrize("behaviour", ["huge", "huge-undeclared"])
def test_an_answer_over_the_size_limit_is_refused(server, peer, behaviour):
    server.behaviours = [behaviour]
    with pytest.raises(client.InvalidPeerAnswer, match="10000"):
        client.peer_call(peer, "GET", FEED)
    assert len(server.requests_to(FEED)) == 1


@pytest.mark.parametrize("failure", ["503", "502", "504", "429", "drop"])
def test_transient_failures_are_retried_with_a_fresh_signature(server, peer, failure):
    server.behaviours = [failure, failure, "ok"]
    assert client.peer_call(peer, "GET", FEED) == {"ok": True}
    seen = server.requests_to(FEED)
    assert len(seen) == 3
    assert len({s.headers["Signature"] for s in seen}) == 3
    peer.refresh_from_db()
    assert peer.consecutive_failures == 0


def test_retries_are_bounded(server, peer):
    server.behaviours = ["503"]
    with pytest.raises(client.PeerUnreachable, match="after 3 attempts: answered 503"):
        client.peer_call(peer, "GET", FEED)
    assert len(server.requests_to(FEED)) == 3


def test_back_off_grows_exponentially_with_full_jitter(settings):
    settings.FEDERATION_BACKOFF_SECONDS = 1.0
    waits = [[client._backoff(attempt) for _ in range(200)] for attempt in range(4)]
    for attempt, samples in enumerate(waits):
        assert all(0 <= wait <= 2**attempt for wait in samples)
        assert max(samples) > 0.8 * 2**attempt and min(samples) < 0.2 * 2**attempt


def test_an_error_answer_is_not_retried(server, peer):
    server.behaviours = ["404"]
    with pytest.raises(client.PeerRefused) as refused:
        client.peer_call(peer, "GET", FEED)
    assert (refused.value.status, refused.value.code) == (404, "not_found")
    assert "No such thing." in str(refused.value)
    assert len(server.requests_to(FEED)) == 1


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("unsigned", "signature_missing"),
        ("forged", "bad_signature"),
        ("tampered", "digest_mismatch"),
        ("other-nonce", "nonce_mismatch"),
    ],
)
def test_an_answer_not_signed_by_the_peer_for_this_request_is_refused(
    server, peer, behaviour, reason
):
    server.behaviours = [behaviour]
    with pytest.raises(client.InvalidPeerAnswer, match=reason):
        client.peer_call(peer, "GET", FEED)


def test_an_answer_signed_with_a_rotated_key_is_accepted_after_one_refetch(server, peer):
    new = KeyPair()
    Peer.objects.filter(pk=peer.pk).update(identity_fetched_at=None)
    peer.refresh_from_db()
    server.key = new
    server.identity_keys = [new.published()]
    assert client.peer_call(peer, "GET", FEED) == {"ok": True}
    assert PeerKey.objects.filter(peer=peer, key_id=new.key_id).exists()


def test_the_breaker_opens_after_the_threshold_and_stays_off_the_network(server, peer):
    server.behaviours = ["503"]
    for _ in range(3):
        with pytest.raises(client.PeerUnreachable):
            client.peer_call(peer, "GET", FEED)
    peer.refresh_from_db()
    assert peer.consecutive_failures == 3 and peer.unreachable_since is not None
    assert peer.next_probe_at > timezone.now() + timedelta(seconds=55)
    calls = len(server.seen)
    with pytest.raises(client.PeerUnreachable, match="unreachable since"):
        client.peer_call(peer, "GET", FEED)
    assert len(server.seen) == calls


def test_a_due_probe_is_one_attempt_and_a_failure_doubles_the_interval(server, peer):
    Peer.objects.filter(pk=peer.pk).update(
        consecutive_failures=3,
        unreachable_since=timezone.now() - timedelta(minutes=5),
        next_probe_at=timezone.now() - timedelta(seconds=1),
    )
    server.behaviours = ["503"]
    with pytest.raises(client.PeerUnreachable, match="after 1 attempt"):
        client.peer_call(peer, "GET", FEED)
    assert len(server.seen) == 1
    peer.refresh_from_db()
    assert peer.consecutive_failures == 4
    assert peer.next_probe_at > timezone.now() + timedelta(seconds=115)


def test_a_successful_probe_closes_the_breaker(server, peer):
    Peer.objects.filter(pk=peer.pk).update(
        consecutive_failures=9,
        unreachable_since=timezone.now() - timedelta(hours=5),
        next_probe_at=timezone.now() - timedelta(seconds=1),
    )
    assert client.peer_call(peer, "GET", FEED) == {"ok": True}
    peer.refresh_from_db()
    assert (peer.consecutive_failures, peer.unreachable_since, peer.next_probe_at) == (
        0,
        None,
        None,
    )


def test_the_probe_interval_is_capped_at_an_hour():
    assert client._probe_interval(3) == timedelta(seconds=60)
    assert client._probe_interval(5) == timedelta(seconds=240)
    assert client._probe_interval(40) == timedelta(hours=1)


def test_a_download_streams_within_its_limit(server, peer):
    server.behaviours = ["huge"]
    chunks = client.peer_download(peer, server.url + "/artifacts/x", max_bytes=50_000)
    assert sum(len(chunk) for chunk in chunks) == 50_000
    with pytest.raises(client.InvalidPeerAnswer, match="larger than"):
        list(client.peer_download(peer, server.url + "/artifacts/x", max_bytes=49_999))


def test_the_identity_document_is_checked(server):
    identity = client.fetch_identity(server.url + "/")
    assert identity["node_id"] == server.url
    server.identity_node_id = "http://impostor.test"
    with pytest.raises(client.InvalidPeerAnswer, match="node_id"):
        client.fetch_identity(server.url)
    server.identity_node_id = None
    server.identity_keys = [server.key.published(public_key="AAAA")]
    with pytest.raises(client.InvalidPeerAnswer, match="32 bytes"):
        client.fetch_identity(server.url)
    server.identity_keys = [server.key.published(algorithm="rsa")]
    with pytest.raises(client.InvalidPeerAnswer, match="not ed25519"):
        client.fetch_identity(server.url)
    assert len(server.seen) == 4


def test_an_unreachable_identity_fails_once_without_retries(settings):
    with peer_server() as gone:
        url = gone.url
    with pytest.raises(client.PeerUnreachable, match="could not connect"):
        client.fetch_identity(url)
    with pytest.raises(client.NotAPeer):
        client.fetch_identity("ftp://node.test")
