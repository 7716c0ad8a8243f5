"""Inbound authentication of node-to-node calls (PeerSignatureAuthentication) through the signed
ping: a valid call, then calls that differ from it in exactly one respect; signed answers; an
independent implementation on either side."""

import base64
import logging
from datetime import UTC, datetime, timedelta

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from django.utils import timezone
from http_message_signatures import HTTPMessageVerifier, MappingKeyResolver, algorithms
from requests_http_signature import HTTPSignatureAuth

from apps.federation import client, httpsig, keys, signatures
from apps.federation.contract import REQUEST_COMPONENTS, RESPONSE_COMPONENTS, SIGNATURE_LABEL
from apps.federation.models import Peer, PeerKey, SeenNonce
from tests.federation.signature_test_urls import PEERING_PROBE_PATH
from tests.federation.signing_helpers import KeyPair, make_peer, peer_server

NODE = "http://testserver"
PEER = "https://peer.example"
PING = "/federation/v1/ping"
URLS = "tests.federation.signature_test_urls"
PROBE = NODE + PEERING_PROBE_PATH

pytestmark = pytest.mark.urls(URLS)


@pytest.fixture(autouse=True)
def node(settings, tmp_path):
    settings.FEDERATION_NODE_URL = NODE
    settings.FEDERATION_KEY_DIR = tmp_path / "keys"
    settings.FEDERATION_PRIVATE_KEY = ""
    settings.FEDERATION_CONNECT_TIMEOUT_SECONDS = 1
    settings.FEDERATION_READ_TIMEOUT_SECONDS = 1


@pytest.fixture
def peer_key() -> KeyPair:
    return KeyPair()


@pytest.fixture
def node_key(db) -> None:
    # Made before any call: a key first made inside a refused request is rolled back with it.
    keys.node_key_ensure()


@pytest.fixture
def peer(node_key, peer_key) -> Peer:
    return make_peer(PEER, peer_key)


def signed(key: KeyPair, *, node_id: str = PEER, url: str = NODE + PING, **options) -> dict:
    options.setdefault("keyid", f"{node_id}#{key.key_id}")
    return httpsig.signed_request_headers(
        method=options.pop("method", "GET"), url=url, private_key=key.private_key, **options
    )


def ping(client_, headers: dict, *, body: bytes = b"", **extra):
    return client_.generic("GET", PING, data=body, headers=headers, **extra)


def assert_refused(response, caplog, *, status: int, code: str, key_id: str = "") -> None:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    lines = [r for r in caplog.records if r.name == "apps.federation.signatures"]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.WARNING
    assert f"reason={code}" in lines[0].getMessage()
    assert f"path={PING}" in lines[0].getMessage()
    assert key_id in lines[0].getMessage()


def node_public_keys() -> dict:
    return {k.key_id: keys.public_key_from_text(k.public_key) for k in keys.published_keys()}


def test_a_signed_ping_of_an_approved_peer_is_answered_signed(client, peer, peer_key, caplog):
    headers = signed(peer_key, nonce="nonce-of-the-ping-1")
    response = ping(client, headers)
    assert response.status_code == 200, response.content
    assert response.json() == {"node_id": NODE, "peer": PEER}
    assert response[httpsig.NONCE_HEADER] == "nonce-of-the-ping-1"
    key_id = httpsig.verify_response(
        status=200,
        headers=response.headers,
        body=response.content,
        node_id=NODE,
        public_keys=node_public_keys(),
        request_nonce="nonce-of-the-ping-1",
    )
    assert key_id == keys.signing_key().key_id
    assert SeenNonce.objects.filter(node_id=PEER, nonce="nonce-of-the-ping-1").exists()
    assert not [r for r in caplog.records if r.name == "apps.federation.signatures"]


def test_an_unsigned_call_is_refused(client, peer, caplog):
    assert_refused(ping(client, {}), caplog, status=401, code="signature_missing")


def test_a_key_id_not_pinned_for_the_peer_is_refused(client, peer, peer_key, caplog):
    response = ping(client, signed(peer_key, keyid=f"{PEER}#ed25519-0000000000000000"))
    assert_refused(response, caplog, status=401, code="unknown_key", key_id="ed25519-0000")


def test_a_node_that_is_no_peer_is_refused(client, peer, peer_key, caplog):
    response = ping(client, signed(peer_key, node_id="https://stranger.example"))
    assert_refused(response, caplog, status=401, code="unknown_key")


def test_a_flipped_signature_byte_is_refused(client, peer, peer_key, caplog):
    headers = signed(peer_key)
    raw = bytearray(base64.b64decode(headers["Signature"].split(":")[1]))
    raw[10] ^= 0x01
    headers["Signature"] = f"{SIGNATURE_LABEL}=:{base64.b64encode(raw).decode()}:"
    assert_refused(ping(client, headers), caplog, status=401, code="bad_signature")


def test_a_body_changed_after_signing_is_refused(client, peer, peer_key, caplog):
    headers = signed(peer_key, body=b'{"cursor": "a"}')
    response = ping(client, headers, body=b'{"cursor": "b"}', content_type="application/json")
    assert_refused(response, caplog, status=401, code="digest_mismatch")


def test_a_signature_older_than_the_window_is_refused(client, peer, peer_key, caplog):
    created = datetime.now(UTC) - timedelta(seconds=301)
    response = ping(client, signed(peer_key, created=created))
    assert_refused(response, caplog, status=401, code="signature_expired")


def test_a_signature_from_the_future_is_refused(client, peer, peer_key, caplog):
    # Clear of the window even if a second ticks between signing and checking.
    created = datetime.now(UTC) + timedelta(seconds=305)
    response = ping(client, signed(peer_key, created=created))
    assert_refused(response, caplog, status=401, code="signature_from_future")


def test_a_signature_past_its_expires_is_refused():
    now = timezone.now()
    params = httpsig.SignatureParams(
        label="rx",
        keyid=f"{PEER}#k",
        node_id=PEER,
        key_id="k",
        created=int(now.timestamp()) - 60,
        expires=int(now.timestamp()) - 1,
        nonce="a-fine-nonce",
        alg="ed25519",
        components=REQUEST_COMPONENTS,
    )
    with pytest.raises(httpsig.BadSignature) as refused:
        httpsig.check_params(params, required=REQUEST_COMPONENTS)
    assert refused.value.code == "signature_expired"


def test_a_replayed_nonce_is_refused(client, peer, peer_key, caplog):
    headers = signed(peer_key)
    assert ping(client, headers).status_code == 200
    assert_refused(ping(client, headers), caplog, status=401, code="replayed_nonce")


def test_a_signature_that_does_not_cover_the_authority_is_refused(client, peer, peer_key, caplog):
    headers = signed(peer_key, components=("@method", "@target-uri", "content-digest"))
    response = ping(client, headers)
    assert_refused(response, caplog, status=401, code="bad_signature")
    assert "@authority" in response.json()["error"]["message"]


def test_a_call_signed_for_another_node_is_refused(client, settings, peer, peer_key, caplog):
    settings.ALLOWED_HOSTS = ["*"]
    headers = signed(peer_key, url="http://other-node.example" + PING)
    response = ping(client, headers, HTTP_HOST="other-node.example")
    assert_refused(response, caplog, status=401, code="wrong_authority")


@pytest.mark.parametrize(
    ("state", "code"),
    [
        (Peer.State.PENDING, "peer_not_approved"),
        (Peer.State.REQUESTED, "peer_not_approved"),
        (Peer.State.REFUSED, "peer_not_approved"),
        (Peer.State.SUSPENDED, "peer_suspended"),
        (Peer.State.REVOKED, "peer_revoked"),
    ],
)
def test_a_peer_that_is_not_approved_is_refused(client, peer, peer_key, caplog, state, code):
    Peer.objects.filter(pk=peer.pk).update(state=state)
    headers = signed(peer_key)
    response = ping(client, headers)
    assert_refused(response, caplog, status=403, code=code)
    # The refusal itself is signed: the peer can trust what it is told.
    httpsig.verify_response(
        status=403,
        headers=response.headers,
        body=response.content,
        node_id=NODE,
        public_keys=node_public_keys(),
        request_nonce=httpsig.read_signature(headers).nonce or "",
    )


def test_a_node_asking_to_peer_is_checked_with_the_keys_it_publishes(node_key, client):
    with peer_server() as stranger:
        headers = signed(stranger.key, node_id=stranger.url, url=PROBE, method="POST")
        response = client.generic("POST", PEERING_PROBE_PATH, headers=headers)
        assert response.status_code == 200, response.content
        assert response.json() == {
            "node_id": stranger.url,
            "known": False,
            "published_keys": [stranger.key.key_id],
        }
        impostor = KeyPair()
        headers = signed(impostor, node_id=stranger.url, url=PROBE, method="POST")
        response = client.generic("POST", PEERING_PROBE_PATH, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unknown_key"
    assert not Peer.objects.exists()
    # Its document was read once, then kept: a claimed node id cannot make us fetch at will.
    assert len(stranger.requests_to("/.well-known/research-exchange")) == 1


def test_a_revoked_peer_cannot_ask_to_peer_again(client, peer, peer_key):
    Peer.objects.filter(pk=peer.pk).update(state=Peer.State.REVOKED)
    headers = signed(peer_key, url=PROBE, method="POST")
    response = client.generic("POST", PEERING_PROBE_PATH, headers=headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "peer_revoked"


def test_a_retiring_key_works_until_its_validity_ends(client, peer, peer_key, caplog):
    pinned = PeerKey.objects.get(peer=peer)
    pinned.retiring_until = timezone.now() + timedelta(hours=1)
    pinned.save()
    assert ping(client, signed(peer_key)).status_code == 200
    pinned.retiring_until = timezone.now() - timedelta(seconds=1)
    pinned.save()
    assert_refused(ping(client, signed(peer_key)), caplog, status=401, code="key_expired")


def test_an_unknown_key_of_a_peer_is_fetched_once(client, db, settings, caplog):
    settings.FEDERATION_KEY_REFETCH_SECONDS = 60
    old, new, newer = KeyPair(), KeyPair(), KeyPair()
    with peer_server(old) as server:
        peer = make_peer(server.url, old)
        Peer.objects.filter(pk=peer.pk).update(identity_fetched_at=None)
        server.identity_keys = [old.published(), new.published()]
        response = ping(client, signed(new, node_id=server.url))
        assert response.status_code == 200, response.content
        assert PeerKey.objects.filter(peer=peer, key_id=new.key_id).exists()
        assert len(server.requests_to("/.well-known/research-exchange")) == 1

        server.identity_keys.append(newer.published())
        response = ping(client, signed(newer, node_id=server.url))
        assert_refused(response, caplog, status=401, code="unknown_key")
        assert len(server.requests_to("/.well-known/research-exchange")) == 1


def test_the_nonces_no_request_can_carry_any_more_are_pruned(db):
    SeenNonce.objects.create(node_id=PEER, nonce="old", expires_at=timezone.now())
    SeenNonce.objects.create(
        node_id=PEER, nonce="live", expires_at=timezone.now() + timedelta(seconds=60)
    )
    assert signatures.seen_nonces_prune() == 1
    assert list(SeenNonce.objects.values_list("nonce", flat=True)) == ["live"]


def _node_resolver() -> MappingKeyResolver:
    return MappingKeyResolver(
        public_keys={f"{NODE}#{k}": v for k, v in node_public_keys().items()}, private_keys={}
    )


def test_the_clients_signature_verifies_with_requests_http_signature(db):
    """A request this node sends, checked by an independent verifier the test configures."""
    peer_key = KeyPair()
    with peer_server(peer_key) as server:
        client.peer_call(make_peer(server.url, peer_key), "POST", PING, json={"a": 1})
        seen = server.requests_to(PING)[0]
    prepared = requests.Request(
        "POST", server.url + PING, headers=seen.headers, data=seen.body
    ).prepare()
    result = HTTPSignatureAuth.verify(
        prepared,
        signature_algorithm=algorithms.ED25519,
        key_resolver=_node_resolver(),
        require_components=REQUEST_COMPONENTS,
        max_age=timedelta(minutes=5),
    )
    assert result.body == b'{"a": 1}'
    assert result.parameters["nonce"] and result.parameters["expires"]
    assert result.label == SIGNATURE_LABEL

    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519, key_resolver=_node_resolver()
    )
    (checked,) = verifier.verify(prepared, body=prepared.body, require_components=("@authority",))
    assert checked.body == b'{"a": 1}'


@pytest.mark.django_db(transaction=True)
def test_a_call_signed_by_requests_http_signature_is_accepted(live_server, settings):
    """The other direction, over real HTTP: an independent signer, and its verifier on the
    node's signed answer."""
    settings.FEDERATION_NODE_URL = live_server.url
    peer_key = KeyPair()
    make_peer(PEER, peer_key)
    pem = peer_key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    auth = HTTPSignatureAuth(
        signature_algorithm=algorithms.ED25519,
        key=pem,
        key_id=f"{PEER}#{peer_key.key_id}",
        covered_component_ids=REQUEST_COMPONENTS,
        label=SIGNATURE_LABEL,
        use_nonce=True,
        expires_in=timedelta(minutes=5),
    )
    response = requests.get(live_server.url + PING, auth=auth, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {"node_id": live_server.url, "peer": PEER}
    resolver = MappingKeyResolver(
        public_keys={f"{live_server.url}#{k}": v for k, v in node_public_keys().items()},
        private_keys={},
    )
    result = HTTPSignatureAuth.verify(
        response,
        signature_algorithm=algorithms.ED25519,
        key_resolver=resolver,
        require_components=RESPONSE_COMPONENTS,
    )
    nonce = httpsig.read_signature(response.request.headers).nonce
    assert result.covered_components['"x-request-nonce"'] == nonce


@pytest.mark.django_db(transaction=True)
def test_a_node_pings_itself_through_client_and_authentication(live_server, settings):
    settings.FEDERATION_NODE_URL = live_server.url
    own = keys.signing_key()
    peer = Peer.objects.create(node_id=live_server.url, state=Peer.State.APPROVED)
    PeerKey.objects.create(
        peer=peer, key_id=own.key_id, public_key=keys.public_key_text(own.private_key)
    )
    assert client.peer_ping(peer) == {"node_id": live_server.url, "peer": live_server.url}
    # The target URI with an encoded query string reconstructs on the server as signed.
    answer = client.peer_call(peer, "GET", PING, params={"cursor": "a b/ü+", "limit": 5})
    assert answer == {"node_id": live_server.url, "peer": live_server.url}
